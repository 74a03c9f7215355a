-- Fixed-window request counters behind the rate limits (edge/src/limits.rs). One row per key and minute; rows of
-- past windows are deleted by the scheduled handler.
CREATE TABLE rate_limits (
    key           TEXT NOT NULL,
    window_start  INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_limits_by_window ON rate_limits (window_start);
