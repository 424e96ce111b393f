-- Incoming aggregate reports about our domains (DMARC, TLS-RPT). The PostgreSQL spelling of
-- sqlite/0008_reports.sql, which describes the columns.
CREATE TABLE reports (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    kind TEXT COLLATE "C" NOT NULL,
    org TEXT COLLATE "C" NOT NULL,
    report_id TEXT COLLATE "C" NOT NULL,
    domain TEXT COLLATE "C" NOT NULL,
    date_begin BIGINT NOT NULL,
    date_end BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    pass BIGINT NOT NULL,
    fail BIGINT NOT NULL,
    report TEXT COLLATE "C" NOT NULL,
    -- A reporter resending a report (a retry, a second copy) stores it once.
    UNIQUE (kind, org, report_id)
);

CREATE INDEX reports_received ON reports (received_at);
CREATE INDEX reports_domain ON reports (domain, received_at);
