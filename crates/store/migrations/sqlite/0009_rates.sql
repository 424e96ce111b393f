-- Rate limit counters shared by every node of a cluster: hits per key (a client address,
-- a user) in fixed windows that start at multiples of the window length.
CREATE TABLE rate_counters (
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);
