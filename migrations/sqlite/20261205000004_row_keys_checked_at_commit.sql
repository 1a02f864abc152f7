-- The per-user and claim rows' key to their run (`run_seq` → `runs.seq`) is checked when
-- the run's transaction commits (DEFERRABLE INITIALLY DEFERRED), not as each statement ends.
--
-- Why: recoup inserts these rows with multi-row INSERTs of thousands of rows. SQLite gives a
-- statement that writes many rows and may abort half-way (an immediate foreign key, or a
-- NOT NULL or PRIMARY KEY check that aborts the statement) a statement journal, so that it
-- can undo that one statement: every page the statement changes that existed when it began
-- (the last leaf, its parents and what a split touches: about five 64 KiB pages a statement
-- of 1,024 rows) is first copied into a temporary file. On a million-claimant run that file
-- took 1.3 GB of writes, more than the 748 MB database itself (`strace`, BENCHMARKS.md,
-- "Session 13"). With the key checked at commit and recoup's statements written
-- `INSERT OR FAIL` (src/store/mod.rs, `insert_sql`), nothing in them can abort half-way
-- and SQLite opens no statement journal. A failing row still fails its statement, and
-- recoup then rolls the whole run back; a row naming a run that does not exist still fails
-- the commit.
--
-- SQLite cannot alter a foreign key, so both tables are rebuilt with their rows.
CREATE TABLE user_results_v4 (
    run_seq     INTEGER NOT NULL REFERENCES runs(seq) DEFERRABLE INITIALLY DEFERRED,
    account     TEXT NOT NULL,               -- EIP-55
    result_json TEXT NOT NULL,               -- per-asset loss, haircut and payout
    PRIMARY KEY (run_seq, account)
) WITHOUT ROWID;
INSERT INTO user_results_v4 (run_seq, account, result_json)
    SELECT run_seq, account, result_json FROM user_results;
DROP TABLE user_results;
ALTER TABLE user_results_v4 RENAME TO user_results;

CREATE TABLE claims_v4 (
    run_seq    INTEGER NOT NULL REFERENCES runs(seq) DEFERRABLE INITIALLY DEFERRED,
    tree       TEXT NOT NULL,
    account    TEXT NOT NULL,
    amount     TEXT NOT NULL,                -- base-unit digits, checked when bound
    leaf_index BIGINT NOT NULL,
    PRIMARY KEY (run_seq, tree, account)
) WITHOUT ROWID;
INSERT INTO claims_v4 (run_seq, tree, account, amount, leaf_index)
    SELECT run_seq, tree, account, amount, leaf_index FROM claims;
DROP TABLE claims;
ALTER TABLE claims_v4 RENAME TO claims;
