-- The claims' amounts are checked by recoup as each row is bound (base-unit digits, at most
-- 2^256 - 1: `check_claim_amount` in src/store/mod.rs, on both backends), no longer by a
-- CHECK here. The CHECK (`length(amount) BETWEEN 1 AND 78 AND amount NOT GLOB '*[^0-9]*'`)
-- ran on SQLite's one writing thread, which is what a large run waits on at the end: a
-- million-claimant run's last part took ~0.85 s less without it (BENCHMARKS.md, "Session
-- 11"). `roots.total` keeps its CHECK (a few rows a run). SQLite cannot drop a CHECK, so the
-- table is rebuilt with its rows.
CREATE TABLE claims_v3 (
    run_seq    INTEGER NOT NULL REFERENCES runs(seq),
    tree       TEXT NOT NULL,
    account    TEXT NOT NULL,
    amount     TEXT NOT NULL,                -- base-unit digits, checked when bound
    leaf_index BIGINT NOT NULL,
    PRIMARY KEY (run_seq, tree, account)
) WITHOUT ROWID;
INSERT INTO claims_v3 (run_seq, tree, account, amount, leaf_index)
    SELECT run_seq, tree, account, amount, leaf_index FROM claims;
DROP TABLE claims;
ALTER TABLE claims_v3 RENAME TO claims;
