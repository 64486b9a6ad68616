-- Let the full-text index gather 16 segments of a level before merging them (FTS5's default is
-- 4). Merging is most of the cost of indexing as entries arrive, and it runs on the one writer
-- thread; fewer, larger merges make a cold poll of 50,000 entries about 7% cheaper
-- (`cargo bench --bench poll`), for slightly more segments for a search to read.
INSERT INTO entries_fts (entries_fts, rank) VALUES ('automerge', 16);
