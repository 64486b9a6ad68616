//! `feedhound demo`: the whole pipeline on bundled sample feeds, offline.
//!
//! Serves the sample feeds in `src/demo/feeds/` and the article pages in `src/demo/pages/`
//! (written for this demo; every story is invented) on a loopback port with ETag support, writes
//! a config that tracks a few companies, polls twice into a fresh database — the second poll
//! shows conditional GET and deduplication at work — and prints what was stored and how to look
//! at it. One feed only teases its stories and has `fetch_articles`: its story is flagged for
//! what its page says, and not for the company the page's menus and footer name.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::scheduler;

const SAMPLE_FEEDS: &[(&str, &str)] = &[
    ("harbor-tech.xml", include_str!("feeds/harbor-tech.xml")),
    (
        "lantern-markets.xml",
        include_str!("feeds/lantern-markets.xml"),
    ),
    ("circuit-wire.xml", include_str!("feeds/circuit-wire.xml")),
    (TEASER_FEED, include_str!("feeds/quayside-briefs.xml")),
];

/// The sample feed that carries headlines and teasers only: the demo turns `fetch_articles` on
/// for it. Its links say `{BASE}` where the server's address goes.
const TEASER_FEED: &str = "quayside-briefs.xml";

/// The teaser feed's article pages, served under `/stories/`.
const SAMPLE_PAGES: &[(&str, &str)] = &[
    (
        "spring-launches.html",
        include_str!("pages/spring-launches.html"),
    ),
    (
        "fourth-terminal.html",
        include_str!("pages/fourth-terminal.html"),
    ),
];

const COMPANIES: &str = r#"
[[company]]
name = "Xiaomi"
aliases = ["Xiaomi Corp", "小米", "Redmi", "POCO"]

[[company]]
name = "Samsung"
ticker = "005930.KS"

[[company]]
name = "Apple"
case_sensitive = true
exclude = ["apple pie", "Big Apple", "Apple Records"]
require_any = ["iPhone", "iPad", "Mac", "Tim Cook", "Cupertino", "App Store"]

[[company]]
name = "Amazon"
exclude = ["Amazon rainforest", "Amazon river", "Amazon basin"]
"#;

/// The demo database's file name, in the demo's folder.
const DATABASE: &str = "feedhound.db";

/// The first line of the config the demo writes: a folder whose config starts otherwise is the
/// user's, and the demo leaves it (and its database) alone.
const CONFIG_MARK: &str =
    "# Written by `feedhound demo`, which replaces this file and feedhound.db when run again.";

/// The demo replaces `feedhound.toml` and `feedhound.db` in its folder: only its own, never a
/// config or database of the user's that happen to have these (the usual) names.
fn refuse_a_users_folder(dir: &Path) -> anyhow::Result<()> {
    let config = dir.join("feedhound.toml");
    let users = match std::fs::read_to_string(&config) {
        Ok(text) => !text.starts_with(CONFIG_MARK),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => dir.join(DATABASE).exists(),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", config.display())),
    };
    if users {
        anyhow::bail!(
            "{} holds a feedhound.toml or feedhound.db that the demo did not write, and the demo would replace them; choose another folder with --dir (or leave it out for a temporary one)",
            dir.display()
        );
    }
    Ok(())
}

/// Counts of what the sample server answered.
#[derive(Default)]
struct Served {
    full: AtomicUsize,
    not_modified: AtomicUsize,
}

pub async fn run(dir: Option<PathBuf>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = match dir {
        Some(dir) => dir,
        None => tempfile::Builder::new()
            .prefix("feedhound-demo-")
            .tempdir()
            .context("cannot create a temporary folder for the demo")?
            .keep(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The demo replaces the folder's config and database: not under a daemon that uses them.
    let _no_daemon = crate::daemon_lock::refuse_beside_any_daemon(&dir.join(DATABASE))?;
    refuse_a_users_folder(&dir)?;
    let server = tiny_http::Server::http("127.0.0.1:0")
        .map_err(|err| anyhow::anyhow!("cannot start the sample feed server: {err}"))?;
    let port = server
        .server_addr()
        .to_ip()
        .context("sample server has no IP address")?
        .port();
    let served = Arc::new(Served::default());
    let server = Arc::new(server);
    let base = format!("http://127.0.0.1:{port}");
    let serving = std::thread::spawn({
        let server = Arc::clone(&server);
        let served = Arc::clone(&served);
        let base = base.clone();
        move || serve_samples(&server, &served, &base)
    });

    let config_path = dir.join("feedhound.toml");
    let mut config_text = format!(
        "{CONFIG_MARK}\n[storage]\npath = \"{DATABASE}\"\n\n[polling]\ninterval = \"15m\"\n"
    );
    for (file, _) in SAMPLE_FEEDS {
        config_text.push_str(&format!("\n[[feed]]\nurl = \"{base}/{file}\"\n"));
        if *file == TEASER_FEED {
            config_text.push_str("fetch_articles = true\n");
        }
    }
    config_text.push_str(COMPANIES);
    std::fs::write(&config_path, config_text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = Config::load(&config_path)?;
    let database = config.database_path();
    // A stale WAL beside a new database file would be replayed into it.
    for suffix in ["", "-wal", "-shm"] {
        let mut file = database.clone().into_os_string();
        file.push(suffix);
        let file = PathBuf::from(file);
        if file.exists() {
            std::fs::remove_file(&file)
                .with_context(|| format!("cannot replace {}", file.display()))?;
        }
    }

    println!(
        "Serving {} sample feeds and {} article pages on {base}/",
        SAMPLE_FEEDS.len(),
        SAMPLE_PAGES.len()
    );
    println!("Config: {}", config_path.display());
    let first = scheduler::poll_once(&config, shutdown.clone()).await?;
    println!("First poll:  {first}");
    let second = scheduler::poll_once(&config, shutdown).await?;
    println!("Second poll: {second}");
    println!(
        "The server sent {} full responses and {} × 304 Not Modified (the second poll sent If-None-Match).",
        served.full.load(Ordering::Relaxed),
        served.not_modified.load(Ordering::Relaxed)
    );
    server.unblock();
    let _ = serving.join();

    let store = scheduler::open_store(&config)?;
    println!("\nStored entries, newest first:");
    for entry in store.recent_entries(20)? {
        println!(
            "  {:<19}  {:<20}  {}",
            entry.published_at.unwrap_or_default(),
            entry.feed,
            entry.title.unwrap_or_default()
        );
    }
    println!("\nFlagged stories (each story once, however many feeds carried it):");
    for story in store.flagged_stories(None, None, None, None, Some(20))? {
        println!(
            "  {:<17}  {} source(s)  {}",
            story.companies.join(", "),
            story.sources.len(),
            story.title.unwrap_or_default()
        );
    }
    println!(
        "(Quayside Briefs only teases its stories and has `fetch_articles = true`: its story is \
         flagged for what its page says, and not for the Samsung its menus and footer name.)"
    );
    println!("\nDatabase: {}", database.display());
    println!("Try:");
    println!(
        "  sqlite3 {} \"SELECT published_at, companies, sources, title FROM flagged_stories ORDER BY published_at DESC\"",
        database.display()
    );
    println!(
        "  cargo run --release -- --config {} mentions",
        config_path.display()
    );
    println!(
        "  cargo run --release -- --config {} feeds",
        config_path.display()
    );
    Ok(())
}

/// Answers requests for the sample feeds and pages until the server is unblocked; `base` is
/// what the teaser feed's `{BASE}` stands for.
fn serve_samples(server: &tiny_http::Server, served: &Served, base: &str) {
    for request in server.incoming_requests() {
        let path = request.url().trim_start_matches('/');
        let sample = |samples: &[(&str, &'static str)], name: &str| {
            samples
                .iter()
                .find(|(file, _)| *file == name)
                .map(|(_, body)| *body)
        };
        let found = match path.strip_prefix("stories/") {
            Some(page) => sample(SAMPLE_PAGES, page).map(|body| (body.to_owned(), "text/html")),
            None => sample(SAMPLE_FEEDS, path)
                .map(|body| (body.replace("{BASE}", base), "application/xml")),
        };
        let Some((body, media_type)) = found else {
            let _ = request
                .respond(tiny_http::Response::from_string("not found").with_status_code(404));
            continue;
        };
        let etag = format!("\"{}\"", &blake3::hash(body.as_bytes()).to_hex()[..16]);
        let fresh = request
            .headers()
            .iter()
            .any(|h| h.field.equiv("If-None-Match") && h.value.as_str() == etag);
        let etag_header =
            tiny_http::Header::from_bytes("ETag", etag.as_bytes()).expect("valid header");
        let response = if fresh {
            served.not_modified.fetch_add(1, Ordering::Relaxed);
            tiny_http::Response::from_data(Vec::new()).with_status_code(304)
        } else {
            served.full.fetch_add(1, Ordering::Relaxed);
            let content_type = format!("{media_type}; charset=utf-8");
            let content_type =
                tiny_http::Header::from_bytes("Content-Type", content_type).expect("valid header");
            tiny_http::Response::from_data(body.into_bytes()).with_header(content_type)
        };
        let _ = request.respond(response.with_header(etag_header));
    }
}
