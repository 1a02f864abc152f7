-- Per-user and claim rows name their run by a small integer (`runs.seq`) instead of
-- repeating the 66-character run id (see the SQLite migration of the same name).
ALTER TABLE runs ADD COLUMN seq BIGINT;
UPDATE runs SET seq = n.seq
    FROM (SELECT run_id, row_number() OVER (ORDER BY run_id) AS seq FROM runs) n
    WHERE runs.run_id = n.run_id;
ALTER TABLE runs ALTER COLUMN seq SET NOT NULL;
ALTER TABLE runs ADD CONSTRAINT runs_seq UNIQUE (seq);

CREATE TABLE user_results_v2 (
    run_seq     BIGINT NOT NULL REFERENCES runs(seq),
    account     TEXT NOT NULL,
    result_json TEXT NOT NULL,
    PRIMARY KEY (run_seq, account)
);
INSERT INTO user_results_v2 (run_seq, account, result_json)
    SELECT r.seq, u.account, u.result_json FROM user_results u JOIN runs r ON r.run_id = u.run_id;
DROP TABLE user_results;
ALTER TABLE user_results_v2 RENAME TO user_results;

CREATE TABLE claims_v2 (
    run_seq    BIGINT NOT NULL REFERENCES runs(seq),
    tree       TEXT NOT NULL,
    account    TEXT NOT NULL,
    amount     TEXT NOT NULL CHECK (amount ~ '^[0-9]{1,78}$' AND amount::numeric <= 115792089237316195423570985008687907853269984665640564039457584007913129639935),
    leaf_index BIGINT NOT NULL,
    PRIMARY KEY (run_seq, tree, account)
);
INSERT INTO claims_v2 (run_seq, tree, account, amount, leaf_index)
    SELECT r.seq, c.tree, c.account, c.amount, c.leaf_index FROM claims c JOIN runs r ON r.run_id = c.run_id;
DROP TABLE claims;
ALTER TABLE claims_v2 RENAME TO claims;
