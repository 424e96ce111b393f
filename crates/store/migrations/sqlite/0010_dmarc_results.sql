-- What inbound messages contribute to the DMARC aggregate reports the gateway sends
-- (RFC 7489 section 7.2): one row per message whose From domain publishes a DMARC record
-- with rua, kept until its day has been reported. Same portability rules as 0001.
--
-- domain: the policy domain (the RFC5322.From domain DMARC was evaluated for).
-- received_at: when the message came; the report covers its UTC day.
-- result: the report record, the published policy and the rua destinations, as JSON.
-- claim, claimed_at: the report run that is sending this row (NULL: none). A claim older
--                    than an hour is a run that died; its rows are taken up again.
CREATE TABLE dmarc_results (
    id TEXT NOT NULL PRIMARY KEY,
    domain TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    result TEXT NOT NULL,
    claim TEXT,
    claimed_at BIGINT
);

CREATE INDEX dmarc_results_received ON dmarc_results (received_at);
CREATE INDEX dmarc_results_claim ON dmarc_results (claim);
