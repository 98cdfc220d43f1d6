-- Enhanced acknowledgement mode: where a sender receives its application acknowledgements
-- (host:port, MLLP); none when it takes commit acknowledgements only.
ALTER TABLE hl7_senders ADD COLUMN ack_destination TEXT;

-- Node events for outbound channels: how far each channel has read the record's change
-- feed (a resource_versions sequence number). No patient data.
CREATE TABLE hl7_event_cursors (
    channel TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_micros INTEGER NOT NULL
);
