//! Test harness: a real feed server on 127.0.0.1:0 that records every request, and an app
//! handle with a fresh config and SQLite file in a temp dir.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use feedhound::config::Config;
use feedhound::scheduler::{self, PollSummary};
use tokio_util::sync::CancellationToken;

/// What the server answers on one path.
#[derive(Clone)]
pub struct Route {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: String,
    /// Answer 304 to a matching If-None-Match / If-Modified-Since.
    pub validators: bool,
    pub headers: Vec<(String, String)>,
}

impl Route {
    pub fn feed(body: impl Into<Vec<u8>>) -> Route {
        Route {
            status: 200,
            body: body.into(),
            content_type: "application/rss+xml; charset=utf-8".into(),
            validators: true,
            headers: Vec::new(),
        }
    }

    pub fn without_validators(mut self) -> Route {
        self.validators = false;
        self
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HashMap<String, String>,
    #[allow(dead_code)]
    pub at: Instant,
    pub status: u16,
}

#[derive(Default)]
struct ServerState {
    routes: HashMap<String, Route>,
    seen: Vec<Seen>,
}

pub struct FeedServer {
    base: String,
    state: Arc<Mutex<ServerState>>,
    server: Arc<tiny_http::Server>,
}

/// Validators derived from the body, so a changed body gets a new ETag.
fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &blake3::hash(body).to_hex()[..16])
}

const LAST_MODIFIED: &str = "Mon, 23 Nov 2026 10:00:00 GMT";

impl FeedServer {
    pub fn start() -> FeedServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
        let port = server.server_addr().to_ip().unwrap().port();
        let state = Arc::new(Mutex::new(ServerState::default()));
        // Several workers, so slow answers on one path do not hold up the others.
        for _ in 0..8 {
            let server = Arc::clone(&server);
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    answer(request, &state);
                }
            });
        }
        FeedServer {
            base: format!("http://127.0.0.1:{port}"),
            state,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn set(&self, path: &str, route: Route) {
        let path = format!("/{}", path.trim_start_matches('/'));
        self.state.lock().unwrap().routes.insert(path, route);
    }

    pub fn feed(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.set(path, Route::feed(body));
    }

    pub fn requests(&self, path: &str) -> Vec<Seen> {
        let path = format!("/{}", path.trim_start_matches('/'));
        let state = self.state.lock().unwrap();
        state
            .seen
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn answer(mut request: tiny_http::Request, state: &Mutex<ServerState>) {
    let path = request.url().to_string();
    let headers: HashMap<String, String> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let route = state.lock().unwrap().routes.get(&path).cloned();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(request.as_reader(), &mut sink);
    let (status, response) = match route {
        None => (
            404,
            tiny_http::Response::from_data(b"no such feed".to_vec()).with_status_code(404),
        ),
        Some(route) => {
            let etag = etag_of(&route.body);
            // If-None-Match wins when both are sent (RFC 9110 §13.2.2).
            let fresh = route.validators
                && match headers.get("if-none-match") {
                    Some(tag) => *tag == etag,
                    None => headers.get("if-modified-since").map(String::as_str) == Some(LAST_MODIFIED),
                };
            let mut response = if fresh {
                tiny_http::Response::from_data(Vec::new()).with_status_code(304)
            } else {
                tiny_http::Response::from_data(route.body.clone())
                    .with_status_code(route.status)
                    .with_header(header("Content-Type", &route.content_type))
            };
            if route.validators {
                response = response
                    .with_header(header("ETag", &etag))
                    .with_header(header("Last-Modified", LAST_MODIFIED));
            }
            for (name, value) in &route.headers {
                response = response.with_header(header(name, value));
            }
            (if fresh { 304 } else { route.status }, response)
        }
    };
    state.lock().unwrap().seen.push(Seen {
        path,
        headers,
        at: Instant::now(),
        status,
    });
    let _ = request.respond(response);
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

/// A config file and database in a fresh temp dir.
pub struct App {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl App {
    /// An app whose config lists `feed_urls`, with `extra` TOML appended.
    pub fn new(feed_urls: &[String], extra: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("feedhound.toml");
        let app = App { dir, config_path };
        app.write_config(feed_urls, extra);
        app
    }

    pub fn write_config(&self, feed_urls: &[String], extra: &str) {
        let mut text =
            String::from("[storage]\npath = \"feedhound.db\"\n\n[polling]\ntimeout = \"10s\"\n");
        for url in feed_urls {
            text.push_str(&format!("\n[[feed]]\nurl = \"{url}\"\n"));
        }
        text.push_str(extra);
        std::fs::write(&self.config_path, text).unwrap();
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path).expect("valid test config")
    }

    pub async fn poll(&self) -> PollSummary {
        scheduler::poll_once(&self.config(), CancellationToken::new())
            .await
            .expect("poll runs")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("feedhound.db")
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Runs the real binary with this app's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        binary()
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .unwrap()
    }
}

pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_feedhound"));
    command
        .env_remove("FEEDHOUND_CONFIG")
        .env("RUST_LOG", "feedhound=warn");
    command
}

/// `../shared/<rel>` beside the crate, or None (with a message) when it is absent.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; this test needs the shared test material",
            path.display()
        );
        None
    }
}

/// An RSS 2.0 document with the given `<item>` bodies.
pub fn rss(items: &[&str]) -> String {
    let mut doc = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel><title>Test feed</title><link>https://news.example/</link><description>d</description>\n",
    );
    for item in items {
        doc.push_str(&format!("<item>{item}</item>\n"));
    }
    doc.push_str("</channel></rss>\n");
    doc
}
