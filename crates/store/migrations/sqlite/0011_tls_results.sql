-- Results of our own outbound TLS sessions, for the TLS-RPT reports (RFC 8460) we send to
-- the domains we deliver to. Same portability rules as 0001.
--
-- One row counts the sessions of one UTC day (day: unix seconds of 00:00 UTC) to one policy
-- domain (the recipient domain) under one applied policy with one result.
-- policy_type: sts | tlsa | no-policy-found
-- policy_strings, mx_hosts: JSON arrays of strings (the MTA-STS policy lines or TLSA records;
--                           the policy's mx patterns or the DANE MX host).
-- result: success, or an RFC 8460 result type such as certificate-not-trusted.
-- receiving_mx, receiving_ip: where a failed session went ('' for successes or unknown).
-- report_id: '' until a report claims the row; then the id of the report that covers it.
-- reported_at: when it was claimed (0: not yet).
CREATE TABLE tls_results (
    day BIGINT NOT NULL,
    domain TEXT NOT NULL,
    policy_type TEXT NOT NULL,
    policy_strings TEXT NOT NULL,
    mx_hosts TEXT NOT NULL,
    result TEXT NOT NULL,
    receiving_mx TEXT NOT NULL,
    receiving_ip TEXT NOT NULL,
    sessions BIGINT NOT NULL,
    report_id TEXT NOT NULL DEFAULT '',
    reported_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, domain, policy_type, policy_strings, mx_hosts, result, receiving_mx,
                 receiving_ip, report_id)
);

CREATE INDEX tls_results_pending ON tls_results (report_id, day);
