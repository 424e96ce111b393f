-- The dashboard's counters: recipients of the message log per hour of reception,
-- direction and status, kept by triggers as the log is written, so that a chart of 30
-- days reads a few thousand counter rows instead of every message (crates/store/src/stats.rs).
-- A message later removed from the log stays counted: the counters are the history.
CREATE TABLE message_counts (
    hour BIGINT NOT NULL,
    direction TEXT NOT NULL,
    status TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (hour, direction, status)
);

INSERT INTO message_counts (hour, direction, status, count)
SELECT m.received_at - (m.received_at % 3600), m.direction, r.status, COUNT(*)
FROM messages m JOIN message_recipients r ON r.message = m.id
WHERE 1 = 1
GROUP BY 1, 2, 3;

CREATE TRIGGER message_counts_insert AFTER INSERT ON message_recipients
BEGIN
    INSERT INTO message_counts (hour, direction, status, count)
    SELECT m.received_at - (m.received_at % 3600), m.direction, NEW.status, 1
    FROM messages m WHERE m.id = NEW.message
    ON CONFLICT (hour, direction, status) DO UPDATE SET count = count + 1;
END;

CREATE TRIGGER message_counts_status AFTER UPDATE OF status ON message_recipients
WHEN OLD.status <> NEW.status
BEGIN
    UPDATE message_counts SET count = count - 1
    WHERE status = OLD.status
      AND (hour, direction) IN (
          SELECT m.received_at - (m.received_at % 3600), m.direction
          FROM messages m WHERE m.id = OLD.message);
    INSERT INTO message_counts (hour, direction, status, count)
    SELECT m.received_at - (m.received_at % 3600), m.direction, NEW.status, 1
    FROM messages m WHERE m.id = NEW.message
    ON CONFLICT (hour, direction, status) DO UPDATE SET count = count + 1;
END;
