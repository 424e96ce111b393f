-- Content lists: words and patterns with scores. The PostgreSQL spelling of
-- sqlite/0007_content.sql. field: subject | body | headers | any; is_regex: 0 or 1.
CREATE TABLE content_patterns (
    list TEXT COLLATE "C" NOT NULL,
    pattern TEXT COLLATE "C" NOT NULL,
    field TEXT COLLATE "C" NOT NULL,
    is_regex BIGINT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (list, pattern, field)
);
