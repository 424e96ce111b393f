-- What inbound messages contribute to the DMARC aggregate reports the gateway sends. The
-- PostgreSQL spelling of sqlite/0010_dmarc_results.sql, which describes the columns.
CREATE TABLE dmarc_results (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    domain TEXT COLLATE "C" NOT NULL,
    received_at BIGINT NOT NULL,
    result TEXT COLLATE "C" NOT NULL,
    claim TEXT COLLATE "C",
    claimed_at BIGINT
);

CREATE INDEX dmarc_results_received ON dmarc_results (received_at);
CREATE INDEX dmarc_results_claim ON dmarc_results (claim);
