-- The dashboard's counters per domain, for a domain administrator's dashboard: as
-- message_counts (0015), with the domain the mail belongs to: the recipient's for inbound
-- mail, the sender's for outbound. Kept by triggers as the log is written.
CREATE TABLE message_domain_counts (
    hour BIGINT NOT NULL,
    domain TEXT NOT NULL,
    direction TEXT NOT NULL,
    status TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (domain, hour, direction, status)
);

INSERT INTO message_domain_counts (hour, domain, direction, status, count)
SELECT m.received_at - (m.received_at % 3600),
       LOWER(CASE WHEN m.direction = 'outbound' THEN substr(m.sender, instr(m.sender, '@') + 1)
                  ELSE substr(r.address, instr(r.address, '@') + 1) END),
       m.direction, r.status, COUNT(*)
FROM messages m JOIN message_recipients r ON r.message = m.id
WHERE 1 = 1
GROUP BY 1, 2, 3, 4;

CREATE TRIGGER message_domain_counts_insert AFTER INSERT ON message_recipients
BEGIN
    INSERT INTO message_domain_counts (hour, domain, direction, status, count)
    SELECT m.received_at - (m.received_at % 3600),
           LOWER(CASE WHEN m.direction = 'outbound' THEN substr(m.sender, instr(m.sender, '@') + 1)
                      ELSE substr(NEW.address, instr(NEW.address, '@') + 1) END),
           m.direction, NEW.status, 1
    FROM messages m WHERE m.id = NEW.message
    ON CONFLICT (domain, hour, direction, status) DO UPDATE SET count = count + 1;
END;

CREATE TRIGGER message_domain_counts_status AFTER UPDATE OF status ON message_recipients
WHEN OLD.status <> NEW.status
BEGIN
    UPDATE message_domain_counts SET count = count - 1
    WHERE status = OLD.status
      AND (hour, domain, direction) IN (
          SELECT m.received_at - (m.received_at % 3600),
                 LOWER(CASE WHEN m.direction = 'outbound' THEN substr(m.sender, instr(m.sender, '@') + 1)
                            ELSE substr(OLD.address, instr(OLD.address, '@') + 1) END),
                 m.direction
          FROM messages m WHERE m.id = OLD.message);
    INSERT INTO message_domain_counts (hour, domain, direction, status, count)
    SELECT m.received_at - (m.received_at % 3600),
           LOWER(CASE WHEN m.direction = 'outbound' THEN substr(m.sender, instr(m.sender, '@') + 1)
                      ELSE substr(NEW.address, instr(NEW.address, '@') + 1) END),
           m.direction, NEW.status, 1
    FROM messages m WHERE m.id = NEW.message
    ON CONFLICT (domain, hour, direction, status) DO UPDATE SET count = count + 1;
END;
