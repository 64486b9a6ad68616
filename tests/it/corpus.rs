//! Every saved real-world feed in ../shared/corpus/feeds/, served over HTTP and polled.

use std::path::{Path, PathBuf};

use crate::helpers::{App, FeedServer, Route, shared};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("LICENSE")
        {
            out.push(path);
        }
    }
}

/// Per feed: URL, entries stored, last error.
fn feed_outcomes(app: &App) -> Vec<(String, i64, Option<String>)> {
    app.db()
        .prepare("SELECT url, (SELECT count(*) FROM entries e WHERE e.feed_id = f.id), last_error FROM feeds f ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_file_either_stores_entries_or_records_an_error() {
    let Some(root) = shared("corpus/feeds") else {
        return;
    };
    let mut files = Vec::new();
    files_under(&root, &mut files);
    files.sort();
    let server = FeedServer::start();
    let mut urls = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let path = format!("f{i}");
        let mut route = Route::feed(std::fs::read(file).unwrap());
        route.content_type = "application/octet-stream".into();
        server.set(&path, route);
        urls.push(server.url(&path));
    }
    let app = App::new(&urls, "");
    let started = std::time::Instant::now();
    let summary = app.poll().await;
    let elapsed = started.elapsed();
    let polled = summary.feeds_ok + summary.feeds_failed + summary.feeds_not_modified;
    assert_eq!(
        polled,
        files.len(),
        "every file is polled exactly once: {summary}"
    );
    let with_entries = app.count("SELECT count(DISTINCT feed_id) FROM entries");
    let with_error = app.count("SELECT count(*) FROM feeds WHERE last_error IS NOT NULL");
    let neither = app.count(
        "SELECT count(*) FROM feeds f WHERE last_error IS NULL AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.feed_id = f.id)",
    );
    println!(
        "corpus: {} files — {} stored entries, {} recorded an error, {} parsed with no entries; {} entries in {:.2?}",
        files.len(),
        with_entries,
        with_error,
        neither,
        app.count("SELECT count(*) FROM entries"),
        elapsed
    );
    let errors: Vec<(String, i64)> = app
        .db()
        .prepare("SELECT substr(last_error, 1, 60), count(*) c FROM feeds WHERE last_error IS NOT NULL GROUP BY 1 ORDER BY c DESC LIMIT 12")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (error, count) in &errors {
        println!("  {count:>5}  {error}");
    }
    assert_eq!(with_error as usize, summary.feeds_failed);
    assert_eq!(
        app.count("SELECT count(*) FROM feeds WHERE last_fetch_at IS NULL"),
        0
    );
    let before = feed_outcomes(&app);
    // A second poll over the same bodies stores nothing new.
    let again = app.poll().await;
    let after = feed_outcomes(&app);
    assert!(
        before == after,
        "a second poll of the same bodies changes nothing"
    );
    assert_eq!(again.entries_new, 0, "{again}");
}
