-- One-time console sign-in links (`leadtime-host console-link`): the SHA-256 of the link's code,
-- whose it is, until when it works, and when it was used (once).
CREATE TABLE console_links (
    code_digest TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
