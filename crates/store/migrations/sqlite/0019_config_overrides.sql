-- Settings changed in the console, the API or `portcullis settings set`, over the
-- configuration file's values: one row per key of a section (`greylist`, `dnsbl`,
-- `fcrdns`), its value as JSON. Every node reloads them with the policy; removing a row
-- gives the key back to the file.
CREATE TABLE config_overrides (
    section TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (section, key)
);
