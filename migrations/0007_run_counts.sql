-- insert_bucket runs recorded in aggregate: the runs of one action for one
-- device and topic that share a commit are one row, and `count` says how
-- many runs it stands for (1 for every other row). A rejected publish keeps
-- a row of its own, with its reason.
ALTER TABLE action_runs ADD COLUMN count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1);
