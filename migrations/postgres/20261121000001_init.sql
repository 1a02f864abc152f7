-- recoup schema (PostgreSQL). Amounts are TEXT of base-unit decimal digits, checked to
-- be at most 2^256 - 1 (NUMERIC(78,0) alone would admit 2^256, and sqlx's Any driver
-- cannot read NUMERIC).
CREATE TABLE incidents (
    id             TEXT PRIMARY KEY,
    name           TEXT,
    chain_id       BIGINT NOT NULL,
    snapshot_block BIGINT NOT NULL
);

CREATE TABLE runs (
    run_id         TEXT PRIMARY KEY,
    incident_id    TEXT NOT NULL REFERENCES incidents(id),
    recoup_version TEXT NOT NULL,
    summary_json   TEXT NOT NULL
);

CREATE TABLE user_results (
    run_id      TEXT NOT NULL REFERENCES runs(run_id),
    account     TEXT NOT NULL,
    result_json TEXT NOT NULL,
    PRIMARY KEY (run_id, account)
);

CREATE TABLE claims (
    run_id     TEXT NOT NULL REFERENCES runs(run_id),
    tree       TEXT NOT NULL,
    account    TEXT NOT NULL,
    amount     TEXT NOT NULL CHECK (amount ~ '^[0-9]{1,78}$' AND amount::numeric <= 115792089237316195423570985008687907853269984665640564039457584007913129639935),
    leaf_index BIGINT NOT NULL,
    PRIMARY KEY (run_id, tree, account)
);

CREATE TABLE roots (
    run_id  TEXT NOT NULL REFERENCES runs(run_id),
    tree    TEXT NOT NULL,
    format  TEXT NOT NULL,
    asset   TEXT NOT NULL,
    root    TEXT NOT NULL,
    leaves  BIGINT NOT NULL,
    total   TEXT NOT NULL CHECK (total ~ '^[0-9]{1,78}$' AND total::numeric <= 115792089237316195423570985008687907853269984665640564039457584007913129639935),
    PRIMARY KEY (run_id, tree)
);

CREATE TABLE simulations (
    model_hash  TEXT PRIMARY KEY,
    model_name  TEXT NOT NULL,
    seed        BIGINT NOT NULL,
    trials      BIGINT NOT NULL,
    report_json TEXT NOT NULL
);
