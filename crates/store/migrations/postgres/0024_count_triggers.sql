-- SQLite's 0024 rewrites its counter triggers to read the counter row by its primary key;
-- PostgreSQL's trigger function (0015, 0020) already joins on every key column, so nothing
-- changes here. The file keeps both engines' migration lists the same.
SELECT 1;
