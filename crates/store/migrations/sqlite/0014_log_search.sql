-- Indexes for the message-log search of the console and `portcullis log search`
-- (crates/store/src/log_search.rs; measured by bench/logsearch).

-- Newest-first pages walk this index in order, ties broken by id, without a sort.
DROP INDEX messages_received_at;
CREATE INDEX messages_received_at_id ON messages (received_at, id);

-- A whole address (sender or recipient) is looked up, case-insensitively, not scanned.
CREATE INDEX messages_sender_lower ON messages (LOWER(sender));
CREATE INDEX message_recipients_address_lower ON message_recipients (LOWER(address));

-- A Message-ID and a client address are matched exactly.
CREATE INDEX messages_message_id ON messages (message_id);
CREATE INDEX messages_client_ip ON messages (client_ip);
