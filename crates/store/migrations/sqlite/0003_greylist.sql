-- Greylisting state. It lives in the store so that every node of a cluster defers and passes the
-- same triplets: a client that retries on another node is recognised there.
--
-- Times are unix seconds; `passed` is 0 or 1 (BIGINT, not BOOLEAN, so both engines bind the same
-- value). The filter crate owns the policy; these tables only remember.

-- One row per triplet: client network (CIDR text such as 192.0.2.0/24), sender, recipient.
-- `deferred` counts the attempts that were told to come back, `passes` the attempts let through.
CREATE TABLE greylist (
    network TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    passed BIGINT NOT NULL,
    deferred BIGINT NOT NULL,
    passes BIGINT NOT NULL,
    PRIMARY KEY (network, sender, recipient)
);

-- The purge deletes by age.
CREATE INDEX greylist_last_seen ON greylist (last_seen);

-- Client networks that have passed greylisting: `passes` counts passes (at most one per
-- `counted_at` interval), and a network with enough of them is let through without a triplet.
CREATE TABLE greylist_clients (
    network TEXT NOT NULL PRIMARY KEY,
    passes BIGINT NOT NULL,
    counted_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);

CREATE INDEX greylist_clients_last_seen ON greylist_clients (last_seen);
