-- The broker epoch (shared/bus/epoch.py) of each checkpoint's next_offset: offsets count in one
-- incarnation of the broker's log. NULL (checkpoints written before this column) means "of an
-- earlier log", which resumes like any other epoch change: builder state kept, new log read
-- from its start.
ALTER TABLE data_bridge.bar_checkpoints ADD COLUMN IF NOT EXISTS epoch text;
