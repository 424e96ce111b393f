-- The PostgreSQL spelling of sqlite/0019_config_overrides.sql: settings changed in the
-- console, the API or the command line, over the configuration file's values.
CREATE TABLE config_overrides (
    section TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (section, key)
);
