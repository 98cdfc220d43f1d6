-- Each user's private calendar feed (RFC 5545): the SHA-256 of its unguessable token (the
-- token itself is shown once and never stored), and how much it shows. One per user; a new
-- one replaces the old, and removing it revokes it.
CREATE TABLE calendar_feeds (
    user_id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    detail TEXT NOT NULL,
    created_micros INTEGER NOT NULL
);
