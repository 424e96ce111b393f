-- Incoming aggregate reports about our domains: DMARC (RFC 7489 section 7.2) and TLS-RPT
-- (RFC 8460). Same portability rules as 0001.
--
-- kind: dmarc | tlsrpt
-- domain: the policy domain the report is about.
-- date_begin, date_end: the period the report covers; received_at: when we took it in.
-- messages, pass, fail: DMARC message counts (pass: DKIM or SPF aligned pass) or TLS-RPT
--                       session counts (pass: successful sessions).
-- report: the parsed report as JSON.
CREATE TABLE reports (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    org TEXT NOT NULL,
    report_id TEXT NOT NULL,
    domain TEXT NOT NULL,
    date_begin BIGINT NOT NULL,
    date_end BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    pass BIGINT NOT NULL,
    fail BIGINT NOT NULL,
    report TEXT NOT NULL,
    -- A reporter resending a report (a retry, a second copy) stores it once.
    UNIQUE (kind, org, report_id)
);

CREATE INDEX reports_received ON reports (received_at);
CREATE INDEX reports_domain ON reports (domain, received_at);
