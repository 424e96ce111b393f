-- Substring search of the message log without reading every message: a trigram index
-- (FTS5, `tokenize='trigram'`) over each message's sender, subject and Message-ID and each
-- recipient's address, kept by triggers as the log is written (crates/store/src/log_search.rs).
-- One row per message (recipient NULL) and one per recipient (the other columns NULL);
-- `id` names the message, `received_at` lets a time range narrow the matches first.
-- Contentless: the text is in `messages` already, so only the index and the two
-- unindexed columns are kept, not a copy of the text.
CREATE VIRTUAL TABLE message_text USING fts5(
    id UNINDEXED,
    received_at UNINDEXED,
    sender,
    subject,
    message_id,
    recipient,
    tokenize = 'trigram',
    content = '',
    contentless_delete = 1,
    contentless_unindexed = 1
);

INSERT INTO message_text (id, received_at, sender, subject, message_id)
SELECT id, received_at, sender, subject, message_id FROM messages ORDER BY received_at, id;
INSERT INTO message_text (id, received_at, recipient)
SELECT r.message, m.received_at, r.address
FROM message_recipients r JOIN messages m ON m.id = r.message
ORDER BY m.received_at, r.message;

CREATE TRIGGER message_text_message AFTER INSERT ON messages
BEGIN
    INSERT INTO message_text (id, received_at, sender, subject, message_id)
    VALUES (NEW.id, NEW.received_at, NEW.sender, NEW.subject, NEW.message_id);
END;

CREATE TRIGGER message_text_recipient AFTER INSERT ON message_recipients
BEGIN
    INSERT INTO message_text (id, received_at, recipient)
    SELECT NEW.message, m.received_at, NEW.address FROM messages m WHERE m.id = NEW.message;
END;

-- The log keeps messages today; when a retention job removes them, their rows go too
-- (a scan of the index's rows per message: a job removing many should batch).
CREATE TRIGGER message_text_forget AFTER DELETE ON messages
BEGIN
    DELETE FROM message_text WHERE id = OLD.id;
END;
