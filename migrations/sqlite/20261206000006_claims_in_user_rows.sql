-- Each user's claims are kept in the user's own row (`user_results.claims_json`) instead of a
-- row each in `claim_leaves`; `claims` stays a view with the same columns and one row per
-- leaf of every tree, so what read `claims` reads the same rows.
--
-- Why: a million-claimant run stored 2M claim rows beside its 1M per-user rows, each with the
-- account again, under a key of their own, written at the end of the run once the trees were
-- built. A claim's leaf index is fixed before its tree is hashed, so a user's claims are known
-- when the user's row is made, and go into it. The database of such a run is 0.61 GB instead
-- of 0.64 GB although it now holds a million more leaves (below); the run's time did not
-- change measurably (BENCHMARKS.md, "Session 19").
--
-- Leaf indices: a merkle-distributor tree with sorted leaves publishes each claim's `index`
-- as the rank of its account's EIP-55 text; recoup stored the claim's position in account
-- order instead, and shared an OpenZeppelin tree's leaves with it (`roots.leaves_of`) as if
-- the two were the same. Runs stored from now on hold the published indices; the rows of
-- runs stored before are moved as they were (whether a tree's leaves were sorted is not
-- stored, so its indices cannot be recomputed here).
--
-- `claims_json` is NULL for a user with no claim; otherwise a JSON object keyed by the name
-- of each tree that owns its leaves (`roots.leaves_of` IS NULL), in ascending name order,
-- each value `[leaf_index, "amount"]`: the leaf's index as the tree publishes it (an
-- OpenZeppelin dump's value index, a merkle-distributor's `index`), and the amount in the
-- tree's asset's base units as a string of digits (a JSON number would be read back as a
-- float). E.g. {"usdc-claims.json":[17,"289719027076"]}. A tree whose
-- `roots.leaves_of` names another shows that tree's claims in `claims`.
ALTER TABLE user_results ADD COLUMN claims_json TEXT;

-- Every claim row must have its user's row: a claim of no user fails the migration (the
-- CHECK below) rather than being dropped, and the database is left as it was.
CREATE TEMP TABLE claim_leaves_without_a_user (n INTEGER NOT NULL CHECK (n = 0));
INSERT INTO claim_leaves_without_a_user (n)
    SELECT COUNT(*) FROM claim_leaves c
     WHERE NOT EXISTS (SELECT 1 FROM user_results u
                        WHERE u.run_seq = c.run_seq AND u.account = c.account);
DROP TABLE claim_leaves_without_a_user;

-- Grouped in the order of this index, then joined to each user's row by its key (a subquery
-- per user would search `claim_leaves`, whose key leads with the tree, from the run's first
-- row: quadratic in the users). About 7 s for a million-claimant run.
CREATE INDEX claim_leaves_by_user ON claim_leaves (run_seq, account, tree);
UPDATE user_results
   SET claims_json = g.claims
  FROM (SELECT run_seq, account,
               json_group_object(tree, json_array(leaf_index, amount) ORDER BY tree) AS claims
          FROM claim_leaves
         GROUP BY run_seq, account) g
 WHERE g.run_seq = user_results.run_seq AND g.account = user_results.account;

DROP VIEW claims;
DROP TABLE claim_leaves;
-- The casts give the view's columns the affinity the table's had (TEXT, INTEGER), so that
-- comparisons in queries behave as before.
CREATE VIEW claims (run_seq, tree, account, amount, leaf_index) AS
    SELECT u.run_seq, j.key, u.account,
           CAST(json_extract(j.value, '$[1]') AS TEXT),
           CAST(json_extract(j.value, '$[0]') AS INTEGER)
      FROM user_results u, json_each(u.claims_json) j
    UNION ALL
    SELECT u.run_seq, r.tree, u.account,
           CAST(json_extract(j.value, '$[1]') AS TEXT),
           CAST(json_extract(j.value, '$[0]') AS INTEGER)
      FROM roots r
      JOIN runs s ON s.run_id = r.run_id
      JOIN user_results u ON u.run_seq = s.seq
      JOIN json_each(u.claims_json) j ON j.key = r.leaves_of;
