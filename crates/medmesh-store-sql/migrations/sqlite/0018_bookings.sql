-- Claimed time, so no two appointments share a practitioner's hour. One row per calendar
-- (a practitioner or schedule reference, or a patient's blind day tag) that a claim locks
-- first, and the claims themselves: an interval held by an Appointment id, with the end of
-- a hold (NULL once booked). No column names a patient in clear.
CREATE TABLE booking_calendars (
    calendar TEXT PRIMARY KEY,
    claims INTEGER NOT NULL
);
CREATE TABLE booking_claims (
    calendar TEXT NOT NULL,
    holder TEXT NOT NULL,
    start_micros INTEGER NOT NULL,
    end_micros INTEGER NOT NULL,
    expires_micros INTEGER,
    PRIMARY KEY (calendar, holder)
);
CREATE INDEX booking_claims_time ON booking_claims (calendar, start_micros);
CREATE INDEX booking_claims_holder ON booking_claims (holder);
