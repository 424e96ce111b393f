-- The policy domain of a TLS result when it is not the recipient domain (RFC 8460 §3); ''
-- means the recipient domain. See sqlite/0012_tls_results_policy_domain.sql. SQLite must
-- rebuild the table to change its primary key; PostgreSQL changes it in place, which keeps
-- the table's and the key's names as 0011 made them.
ALTER TABLE tls_results ADD COLUMN policy_domain TEXT COLLATE "C" NOT NULL DEFAULT '';

ALTER TABLE tls_results DROP CONSTRAINT tls_results_pkey;

ALTER TABLE tls_results ADD CONSTRAINT tls_results_pkey
    PRIMARY KEY (day, domain, policy_type, policy_domain, policy_strings, mx_hosts, result,
                 receiving_mx, receiving_ip, report_id);
