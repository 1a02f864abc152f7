-- A run's trees that have the same leaves (the same accounts and amounts at the same leaf
-- indices: one payout asset published in two formats, say OpenZeppelin's and Uniswap's) keep
-- those leaves once.
--
-- Why: the bundled scenario publishes its USDC claims both as an OpenZeppelin dump and as a
-- Uniswap merkle-distributor file; at a million claimants that was a million claim rows
-- stored twice, a quarter of the run's rows. Stored once, the run took 0.92 times as long
-- (1.3 s less, medians of four alternated runs; BENCHMARKS.md, "Session 14").
--
-- `claim_leaves` (the table `claims` was) holds the rows of every tree that owns its leaves;
-- `roots.leaves_of` names, for a tree that does not, the tree of the same run whose rows are
-- its leaves (NULL: its own). `claims` is now a view with the columns it always had and one
-- row per leaf of every tree, so what read `claims` reads the same rows.
ALTER TABLE claims RENAME TO claim_leaves;
ALTER TABLE roots ADD COLUMN leaves_of TEXT;
CREATE VIEW claims (run_seq, tree, account, amount, leaf_index) AS
    SELECT run_seq, tree, account, amount, leaf_index FROM claim_leaves
    UNION ALL
    SELECT c.run_seq, r.tree, c.account, c.amount, c.leaf_index
      FROM roots r
      JOIN runs u ON u.run_id = r.run_id
      JOIN claim_leaves c ON c.run_seq = u.seq AND c.tree = r.leaves_of;
