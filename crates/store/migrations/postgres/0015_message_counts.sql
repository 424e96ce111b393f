-- The dashboard's counters: recipients of the message log per hour of reception,
-- direction and status, kept by a trigger as the log is written, so that a chart of 30
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
GROUP BY 1, 2, 3;

CREATE FUNCTION message_counts_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.status = NEW.status THEN
            RETURN NULL;
        END IF;
        UPDATE message_counts c SET count = c.count - 1
        FROM messages m
        WHERE m.id = OLD.message
          AND c.hour = m.received_at - (m.received_at % 3600)
          AND c.direction = m.direction
          AND c.status = OLD.status;
    END IF;
    INSERT INTO message_counts (hour, direction, status, count)
    SELECT m.received_at - (m.received_at % 3600), m.direction, NEW.status, 1
    FROM messages m WHERE m.id = NEW.message
    ON CONFLICT (hour, direction, status) DO UPDATE SET count = message_counts.count + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER message_counts_insert AFTER INSERT ON message_recipients
    FOR EACH ROW EXECUTE FUNCTION message_counts_bump();
CREATE TRIGGER message_counts_status AFTER UPDATE OF status ON message_recipients
    FOR EACH ROW EXECUTE FUNCTION message_counts_bump();
