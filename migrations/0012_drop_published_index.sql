-- `entries_by_published` goes: every query orders and filters entries by
-- coalesce(published_at, first_seen_at), which `entries_by_age` serves, so this index was only
-- ever written. Publication dates arrive in no order, so each group of new entries rewrote one
-- of its leaf pages almost everywhere in it: with 500,000 entries stored, a cost paid on every
-- poll for nothing.
DROP INDEX entries_by_published;
