-- recoup schema (SQLite). Amounts are TEXT of base-unit decimal digits: a NUMERIC
-- column would turn U256::MAX into a float and SUM() would return floats.
CREATE TABLE incidents (
    id             TEXT PRIMARY KEY,
    name           TEXT,
    chain_id       BIGINT NOT NULL,
    snapshot_block BIGINT NOT NULL
);

CREATE TABLE runs (
    run_id        TEXT PRIMARY KEY,          -- keccak256 of manifest and input bytes
    incident_id   TEXT NOT NULL REFERENCES incidents(id),
    recoup_version TEXT NOT NULL,
    summary_json  TEXT NOT NULL
);

CREATE TABLE user_results (
    run_id      TEXT NOT NULL REFERENCES runs(run_id),
    account     TEXT NOT NULL,               -- EIP-55
    result_json TEXT NOT NULL,               -- per-asset loss, sources, payout, haircut
    PRIMARY KEY (run_id, account)
);

CREATE TABLE claims (
    run_id     TEXT NOT NULL REFERENCES runs(run_id),
    tree       TEXT NOT NULL,
    account    TEXT NOT NULL,
    amount     TEXT NOT NULL CHECK (length(amount) BETWEEN 1 AND 78 AND amount NOT GLOB '*[^0-9]*'),
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
    total   TEXT NOT NULL CHECK (length(total) BETWEEN 1 AND 78 AND total NOT GLOB '*[^0-9]*'),
    PRIMARY KEY (run_id, tree)
);

CREATE TABLE simulations (
    model_hash  TEXT PRIMARY KEY,            -- hash of model, seed and trials
    model_name  TEXT NOT NULL,
    seed        BIGINT NOT NULL,
    trials      BIGINT NOT NULL,
    report_json TEXT NOT NULL
);
