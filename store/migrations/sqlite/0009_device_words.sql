-- A word index of the fleet lists' search (store/src/fleet.rs, "The search's candidates"),
-- written off the pairing path by a background duty (engine/src/duties/words.rs), never by a
-- pairing or a reconnection.
--
-- `words_of`: the searched text (`fleet::SEARCHED_TEXT`) the device's entry in `device_words`
-- was made from; NULL when it has none. A device is *unindexed* when that is not the text it
-- should have now: its own searched text while it is active, none once it has ended. A new
-- device, a device that reported another name, model, OS or app version, one whose admin name
-- or notes changed, and an unpaired one are unindexed until the duty comes by. Nothing but the
-- duty writes `words_of`, so nothing else needs to know of the index.
ALTER TABLE devices ADD COLUMN words_of TEXT;

-- The unindexed devices: what a search reads besides its matches in `device_words`, and what
-- the duty reads to do. Small once the duty has caught up. The first alternative is the second's
-- answer for a new device (no entry, active), without working out its text: a pairing writes
-- this index, and it need not pay for lower-casing the text.
CREATE INDEX devices_unindexed ON devices (org_id)
    WHERE (words_of IS NULL AND ended_at IS NULL) OR words_of IS NOT (CASE WHEN ended_at IS NULL THEN
        (' ' || lower(COALESCE(admin_name, '') || ' ' || name || ' ' || model || ' ' || os || ' '
            || app_version || ' ' || COALESCE(notes, ''))) END);

-- One row per indexed active device, its rowid the device's: its searched text, cut into words
-- at spaces and at nothing else (every character class is a token character, the space alone
-- separates), so that a search word begins one of its words exactly when it begins a word of
-- the text. FTS5 folds case (a superset of SQLite's `lower`, ASCII only) and keeps diacritics;
-- the search still checks each match against the text itself. Contentless: the text is in
-- `devices`; `contentless_delete` lets the duty delete a device's row by its rowid.
CREATE VIRTUAL TABLE device_words USING fts5 (
    words,
    content = '',
    contentless_delete = 1,
    prefix = '1 2 3',
    tokenize = "unicode61 remove_diacritics 0 categories 'L* N* Co M* P* S* Z* C*' separators ' '"
);
