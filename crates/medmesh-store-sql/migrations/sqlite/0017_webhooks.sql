-- Where a recipient's webhooks go and the secret they are signed with, sealed.
ALTER TABLE notification_settings ADD COLUMN webhook BLOB;
