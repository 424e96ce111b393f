-- Values every node of a cluster must share and that no file should hold. The PostgreSQL
-- spelling of sqlite/0005_settings.sql.
CREATE TABLE settings (
    name TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);
