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
-- `roots.leaves_of` names another shows that tree's claims in `claims`. The amounts were
-- checked by a CHECK on `claim_leaves.amount`; recoup writes them from U256 values, which
-- are always 1 to 78 digits of at most 2^256 - 1.
ALTER TABLE user_results ADD COLUMN claims_json TEXT;

-- Every claim row must have its user's row: a claim of no user fails the migration rather
-- than being dropped, and the database is left as it was.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM claim_leaves c
                WHERE NOT EXISTS (SELECT 1 FROM user_results u
                                   WHERE u.run_seq = c.run_seq AND u.account = c.account)) THEN
        RAISE EXCEPTION 'claim_leaves has claims of accounts with no user_results row';
    END IF;
END
$$;

UPDATE user_results u
   SET claims_json = c.claims
  FROM (SELECT run_seq, account,
               '{' || string_agg(to_json(tree)::text || ':[' || leaf_index || ',"' || amount || '"]',
                                 ',' ORDER BY tree COLLATE "C") || '}' AS claims
          FROM claim_leaves
         GROUP BY run_seq, account) c
 WHERE u.run_seq = c.run_seq AND u.account = c.account;

DROP VIEW claims;
DROP TABLE claim_leaves;
CREATE VIEW claims (run_seq, tree, account, amount, leaf_index) AS
    SELECT u.run_seq, j.key, u.account, j.value ->> 1, (j.value ->> 0)::bigint
      FROM user_results u
      CROSS JOIN LATERAL json_each(u.claims_json::json) j
    UNION ALL
    SELECT u.run_seq, r.tree, u.account, j.value ->> 1, (j.value ->> 0)::bigint
      FROM roots r
      JOIN runs s ON s.run_id = r.run_id
      JOIN user_results u ON u.run_seq = s.seq
      CROSS JOIN LATERAL json_each(u.claims_json::json) j
     WHERE j.key = r.leaves_of;
