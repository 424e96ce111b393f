-- The spam classifier's model. The PostgreSQL spelling of sqlite/0004_bayes.sql.

CREATE TABLE bayes_tokens (
    token TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    spam_count BIGINT NOT NULL,
    ham_count BIGINT NOT NULL
);

-- One row (id = 1, always given): the trained message counts, and when training last changed
-- them. SQLite's INTEGER PRIMARY KEY is never left to number rows here, so no identity column.
CREATE TABLE bayes_totals (
    id BIGINT NOT NULL PRIMARY KEY,
    spam_messages BIGINT NOT NULL,
    ham_messages BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
