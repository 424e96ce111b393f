-- Content lists: words and patterns with scores (portcullis_filter::lexical).
-- field: subject | body | headers | any; is_regex: 0 or 1.
CREATE TABLE content_patterns (
    list TEXT NOT NULL,
    pattern TEXT NOT NULL,
    field TEXT NOT NULL,
    is_regex BIGINT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (list, pattern, field)
);
