-- Values every node of a cluster must share and that no file should hold: the secret that
-- signs quarantine links, and the like.
CREATE TABLE settings (
    name TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
