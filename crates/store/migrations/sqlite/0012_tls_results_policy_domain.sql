-- The policy domain of a TLS result when it is not the recipient domain (RFC 8460 §3): for
-- DANE, the TLSA base domain of the MX host. '' means the recipient domain (`domain`, whose
-- _smtp._tls record says where the report goes), as for every row made before this column.
-- It belongs to the key, and neither engine changes a primary key in place: the table is
-- built anew under another name, filled, and renamed (portable SQL, as in 0001).
CREATE TABLE tls_results_v2 (
    day BIGINT NOT NULL,
    domain TEXT NOT NULL,
    policy_type TEXT NOT NULL,
    policy_domain TEXT NOT NULL DEFAULT '',
    policy_strings TEXT NOT NULL,
    mx_hosts TEXT NOT NULL,
    result TEXT NOT NULL,
    receiving_mx TEXT NOT NULL,
    receiving_ip TEXT NOT NULL,
    sessions BIGINT NOT NULL,
    report_id TEXT NOT NULL DEFAULT '',
    reported_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, domain, policy_type, policy_domain, policy_strings, mx_hosts, result,
                 receiving_mx, receiving_ip, report_id)
);

INSERT INTO tls_results_v2 (day, domain, policy_type, policy_domain, policy_strings, mx_hosts,
                            result, receiving_mx, receiving_ip, sessions, report_id, reported_at)
SELECT day, domain, policy_type, '', policy_strings, mx_hosts, result, receiving_mx,
       receiving_ip, sessions, report_id, reported_at
FROM tls_results;

DROP TABLE tls_results;

ALTER TABLE tls_results_v2 RENAME TO tls_results;

CREATE INDEX tls_results_pending ON tls_results (report_id, day);
