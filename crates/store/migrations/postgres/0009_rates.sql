-- Rate limit counters shared by every node of a cluster. The PostgreSQL spelling of
-- sqlite/0009_rates.sql.
CREATE TABLE rate_counters (
    key TEXT COLLATE "C" NOT NULL,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);
