-- The PostgreSQL spelling of sqlite/0020_message_domain_counts.sql: the dashboard's
-- counters per domain (the recipient's for inbound mail, the sender's for outbound).
CREATE TABLE message_domain_counts (
    hour BIGINT NOT NULL,
    domain TEXT COLLATE "C" NOT NULL,
    direction TEXT NOT NULL,
    status TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (domain, hour, direction, status)
);

CREATE FUNCTION message_domain(direction TEXT, sender TEXT, recipient TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT LOWER(CASE WHEN direction = 'outbound' THEN substr(sender, strpos(sender, '@') + 1)
                      ELSE substr(recipient, strpos(recipient, '@') + 1) END)
$$;

INSERT INTO message_domain_counts (hour, domain, direction, status, count)
SELECT m.received_at - (m.received_at % 3600), message_domain(m.direction, m.sender, r.address),
       m.direction, r.status, COUNT(*)
FROM messages m JOIN message_recipients r ON r.message = m.id
GROUP BY 1, 2, 3, 4;

CREATE FUNCTION message_domain_counts_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.status = NEW.status THEN
            RETURN NULL;
        END IF;
        UPDATE message_domain_counts c SET count = c.count - 1
        FROM messages m
        WHERE m.id = OLD.message
          AND c.hour = m.received_at - (m.received_at % 3600)
          AND c.domain = message_domain(m.direction, m.sender, OLD.address)
          AND c.direction = m.direction
          AND c.status = OLD.status;
    END IF;
    INSERT INTO message_domain_counts (hour, domain, direction, status, count)
    SELECT m.received_at - (m.received_at % 3600), message_domain(m.direction, m.sender, NEW.address),
           m.direction, NEW.status, 1
    FROM messages m WHERE m.id = NEW.message
    ON CONFLICT (domain, hour, direction, status)
    DO UPDATE SET count = message_domain_counts.count + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER message_domain_counts_insert AFTER INSERT ON message_recipients
    FOR EACH ROW EXECUTE FUNCTION message_domain_counts_bump();
CREATE TRIGGER message_domain_counts_status AFTER UPDATE OF status ON message_recipients
    FOR EACH ROW EXECUTE FUNCTION message_domain_counts_bump();
