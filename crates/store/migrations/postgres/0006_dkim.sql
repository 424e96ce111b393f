-- Outbound DKIM signing keys. The PostgreSQL spelling of sqlite/0006_dkim.sql, which describes
-- the states and columns.
CREATE TABLE dkim_keys (
    domain TEXT COLLATE "C" NOT NULL,
    selector TEXT COLLATE "C" NOT NULL,
    algorithm TEXT COLLATE "C" NOT NULL,
    private_key TEXT COLLATE "C" NOT NULL,
    public_key TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    retired_at BIGINT,
    PRIMARY KEY (domain, selector)
);

-- Building the signing key ring reads the active keys of every domain.
CREATE INDEX dkim_keys_state ON dkim_keys (state, domain);
