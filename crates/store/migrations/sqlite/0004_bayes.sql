-- The statistical spam classifier's model: per token, how many trained spam and ham messages held it,
-- and how many messages of each class were trained. Tokens are the classifier's own strings
-- (`subject:free`, `url:example.com`, body words). Portable to PostgreSQL: TEXT and BIGINT only.

CREATE TABLE bayes_tokens (
    token TEXT NOT NULL PRIMARY KEY,
    spam_count BIGINT NOT NULL,
    ham_count BIGINT NOT NULL
);

-- One row (id = 1): the trained message counts, and when training last changed them.
CREATE TABLE bayes_totals (
    id INTEGER NOT NULL PRIMARY KEY,
    spam_messages BIGINT NOT NULL,
    ham_messages BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
