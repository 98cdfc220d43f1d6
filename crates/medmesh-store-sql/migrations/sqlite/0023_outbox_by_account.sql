-- A booking or a cancellation withdraws the account's pending reminders by key prefix. Found
-- through the due index, that read every pending row of every account (a growing outbox made
-- each booking slower); by account, only that account's.
CREATE INDEX notification_outbox_account ON notification_outbox (account, status);
