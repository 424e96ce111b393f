-- Greylisting state, shared by every node of a cluster. The PostgreSQL spelling of
-- sqlite/0003_greylist.sql; `passed` is 0 or 1 as a BIGINT there too, so both engines bind and
-- read the same value.

-- One row per triplet: client network (CIDR text such as 192.0.2.0/24), sender, recipient.
CREATE TABLE greylist (
    network TEXT COLLATE "C" NOT NULL,
    sender TEXT COLLATE "C" NOT NULL,
    recipient TEXT COLLATE "C" NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    passed BIGINT NOT NULL,
    deferred BIGINT NOT NULL,
    passes BIGINT NOT NULL,
    PRIMARY KEY (network, sender, recipient)
);

-- The purge deletes by age.
CREATE INDEX greylist_last_seen ON greylist (last_seen);

-- Client networks that have passed greylisting.
CREATE TABLE greylist_clients (
    network TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    passes BIGINT NOT NULL,
    counted_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);

CREATE INDEX greylist_clients_last_seen ON greylist_clients (last_seen);
