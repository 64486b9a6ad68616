#!/usr/bin/env python3
"""What an index on publication dates costs per row as the table grows, in SQLite alone.

feedhound's `entries_by_age` orders entries by coalesce(published_at, first_seen_at). A cold
poll inserts each feed's backlog, which spans weeks, so new rows land inside the index rather
than at its end. This script inserts 500,000 rows the way a cold poll's writer does (64 feeds
of 50 entries per transaction, 16 KiB pages, WAL, a 16 MiB page cache, about 2 KB of text per
row) into a table without the index, with it when every feed carries the same 50 dates (as
`cargo bench --bench poll`'s corpus does), and with it when each feed's dates are its own, and
prints, for every 50,000 rows, the user and system CPU seconds and the bytes read and written
(/proc/self/io). Python's share is the same in every block.

    python3 bench/date-index-cost.py [DIR]
"""

import datetime
import os
import resource
import sqlite3
import sys
import tempfile

ROWS = 500_000
FEEDS_PER_TRANSACTION = 64
ENTRIES_PER_FEED = 50
BLOCK = 50_000
TEXT = "x" * 2000
FIRST_DATE = datetime.datetime(2025, 1, 1)


def published(feed: int, seq: int, dates: str) -> str:
    """Hourly dates; with "own", each feed's 50 hours start somewhere in a year."""
    hour = seq if dates == "shared" else (feed * 37 + seq) % 8760
    return (FIRST_DATE + datetime.timedelta(hours=hour)).strftime("%Y-%m-%d %H:%M:%S")


def counters() -> tuple[float, float, float, float]:
    """User and system CPU seconds, and MB read and written through system calls, so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/io") as proc:
        io = dict(line.split(": ") for line in proc.read().splitlines())
    return usage.ru_utime, usage.ru_stime, int(io["rchar"]) / 1e6, int(io["wchar"]) / 1e6


def run(dates: str, directory: str) -> list[tuple[float, ...]]:
    db = sqlite3.connect(os.path.join(directory, f"{dates}.db"), isolation_level=None)
    for pragma in ("page_size = 16384", "journal_mode = WAL", "synchronous = NORMAL",
                   "cache_size = -16384", "wal_autocheckpoint = 2048"):
        db.execute(f"PRAGMA {pragma}")
    db.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, feed_id INTEGER, story_id INTEGER, "
               "published_at TEXT, first_seen_at TEXT, content TEXT)")
    if dates != "none":
        # As migration 0022 left it: the date, then the entry's story and feed.
        db.execute("CREATE INDEX entries_by_age ON entries "
                   "(coalesce(published_at, first_seen_at), story_id, feed_id)")
    blocks, feed, rows, started = [], 0, 0, counters()
    while rows < ROWS:
        batch = []
        for _ in range(FEEDS_PER_TRANSACTION):
            feed += 1
            batch += [(feed, rows + len(batch) + 1, published(feed, seq, dates),
                       "2026-11-25 10:00:00", TEXT)
                      for seq in range(ENTRIES_PER_FEED)]
        db.execute("BEGIN")
        db.executemany("INSERT INTO entries (feed_id, story_id, published_at, first_seen_at, "
                       "content) VALUES (?, ?, ?, ?, ?)", batch)
        db.execute("COMMIT")
        rows += len(batch)
        if rows // BLOCK > len(blocks):
            now = counters()
            blocks.append(tuple(a - b for a, b in zip(now, started)))
            started = now
    db.close()
    return blocks


def main() -> None:
    with tempfile.TemporaryDirectory(dir=sys.argv[1] if len(sys.argv) > 1 else None) as directory:
        print(f"per {BLOCK:,} rows inserted, in order of rows already stored:")
        for dates in ("none", "shared", "own"):
            label = {"none": "no date index", "shared": "index, shared dates",
                     "own": "index, own dates"}[dates]
            blocks = run(dates, directory)
            kinds = ("user CPU s", "system CPU s", "MB read", "MB written")
            for part, kind in enumerate(kinds):
                figures = (f"{b[part]:7.3f}" if part < 2 else f"{b[part]:7.0f}" for b in blocks)
                print(f"{label + ', ' + kind:35}" + " ".join(figures))


if __name__ == "__main__":
    main()
