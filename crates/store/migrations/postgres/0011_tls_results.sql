-- Results of our own outbound TLS sessions, for the TLS-RPT reports we send. The PostgreSQL
-- spelling of sqlite/0011_tls_results.sql, which describes the columns.
CREATE TABLE tls_results (
    day BIGINT NOT NULL,
    domain TEXT COLLATE "C" NOT NULL,
    policy_type TEXT COLLATE "C" NOT NULL,
    policy_strings TEXT COLLATE "C" NOT NULL,
    mx_hosts TEXT COLLATE "C" NOT NULL,
    result TEXT COLLATE "C" NOT NULL,
    receiving_mx TEXT COLLATE "C" NOT NULL,
    receiving_ip TEXT COLLATE "C" NOT NULL,
    sessions BIGINT NOT NULL,
    report_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    reported_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, domain, policy_type, policy_strings, mx_hosts, result, receiving_mx,
                 receiving_ip, report_id)
);

CREATE INDEX tls_results_pending ON tls_results (report_id, day);
