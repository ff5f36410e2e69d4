-- A word index of the fleet lists' search (store/src/fleet.rs, "The search's candidates"),
-- written off the pairing path by a background duty (engine/src/duties/words.rs), never by a
-- pairing or a reconnection.
--
-- `words_of`: the searched text (`fleet::SEARCHED_TEXT`) the device's row in `device_words` was
-- made from; NULL when it has none. A device is *unindexed* when that is not the text it should
-- have now: its own searched text while it is active, none once it has ended. A new device, a
-- device that reported another name, model, OS or app version, one whose admin name or notes
-- changed, and an unpaired one are unindexed until the duty comes by. Nothing but the duty
-- writes `words_of`, so nothing else needs to know of the index.
ALTER TABLE devices ADD COLUMN words_of TEXT;

-- The unindexed devices: what a search reads besides its matches in `device_words`, and what
-- the duty reads to do. Small once the duty has caught up. The first alternative is the second's
-- answer for a new device (no entry, active), without working out its text: a pairing writes
-- this index, and it need not pay for lower-casing the text.
CREATE INDEX devices_unindexed ON devices (org_id, id)
    WHERE (words_of IS NULL AND ended_at IS NULL) OR words_of IS DISTINCT FROM (CASE WHEN ended_at IS NULL THEN
        (' ' || lower(COALESCE(admin_name, '') || ' ' || name || ' ' || model || ' ' || os || ' '
            || app_version || ' ' || COALESCE(notes, ''))) END);

-- One row per indexed active device: the words of its searched text, cut at spaces and at
-- nothing else, each one a lexeme as it is (`array_to_tsvector`: no parser, no dictionary), cut
-- to its first 500 characters (a lexeme holds 2 KB at most; a search word is cut the same way,
-- so a cut word still finds it). A search asks the GIN index for devices with a lexeme that
-- begins with each search word (`'word':*`), and still checks each match against the text.
--
-- The device's organization is kept beside its words, so that a search of a common word counts
-- its matches from this table alone (store/src/fleet.rs, `index_count_statement`).
CREATE TABLE device_words (
    device_id UUID PRIMARY KEY REFERENCES devices (id),
    org_id    UUID NOT NULL,
    words     TSVECTOR NOT NULL
);
CREATE INDEX device_words_words ON device_words USING gin (words);
