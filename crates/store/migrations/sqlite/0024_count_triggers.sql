-- The dashboard counters' status triggers (0015, 0020) find the counter row of the old
-- status with `(hour, direction) = (SELECT ...)` instead of `IN (SELECT ...)`: the
-- message is one row, and `IN` made SQLite build a temporary table for every status
-- change. `=` reads the counter by its whole primary key. Same rows, same counts.
DROP TRIGGER message_counts_status;
CREATE TRIGGER message_counts_status AFTER UPDATE OF status ON message_recipients
WHEN OLD.status <> NEW.status
BEGIN
    UPDATE message_counts SET count = count - 1
    WHERE status = OLD.status
      AND (hour, direction) = (
          SELECT m.received_at - (m.received_at % 3600), m.direction
          FROM messages m WHERE m.id = OLD.message);
    INSERT INTO message_counts (hour, direction, status, count)
    SELECT m.received_at - (m.received_at % 3600), m.direction, NEW.status, 1
    FROM messages m WHERE m.id = NEW.message
    ON CONFLICT (hour, direction, status) DO UPDATE SET count = count + 1;
END;

DROP TRIGGER message_domain_counts_status;
CREATE TRIGGER message_domain_counts_status AFTER UPDATE OF status ON message_recipients
WHEN OLD.status <> NEW.status
BEGIN
    UPDATE message_domain_counts SET count = count - 1
    WHERE status = OLD.status
      AND (hour, domain, direction) = (
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
