//! Test harness: a real feed server on 127.0.0.1:0 that records every request, and an app
//! handle with a fresh config and SQLite file in a temp dir.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
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
    /// Statuses for the next requests, one each, before `status` applies (e.g. [500, 500]).
    pub first_statuses: Vec<u16>,
    /// Wait this long before answering (a slow or hanging server).
    pub delay: Option<std::time::Duration>,
    /// Answer this status instead to a request whose body contains the text.
    pub status_for_body: Option<(String, u16)>,
    /// Answers by hand: the handler gets the connection right after the request head was read
    /// and writes whatever it likes (or nothing); the connection closes when it returns.
    pub raw: Option<RawHandler>,
}

/// A route that misbehaves below HTTP: stalls, trickles, lies about lengths, resets.
pub type RawHandler = Arc<dyn Fn(TcpStream) + Send + Sync>;

impl Route {
    pub fn feed(body: impl Into<Vec<u8>>) -> Route {
        Route {
            status: 200,
            body: body.into(),
            content_type: "application/rss+xml; charset=utf-8".into(),
            validators: true,
            headers: Vec::new(),
            first_statuses: Vec::new(),
            delay: None,
            status_for_body: None,
            raw: None,
        }
    }

    /// A route answered by `handler` on the raw connection.
    pub fn raw(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Route {
        Route {
            raw: Some(Arc::new(handler)),
            ..Route::feed("")
        }
    }

    /// A webhook receiver: answers `status` to every POST.
    pub fn webhook(status: u16) -> Route {
        Route {
            status,
            content_type: "text/plain".into(),
            validators: false,
            ..Route::feed("ok")
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
    pub body: Vec<u8>,
}

#[derive(Default)]
struct ServerState {
    routes: HashMap<String, Route>,
    seen: Vec<Seen>,
    /// Requests being answered right now, and the most there ever were at once.
    active: usize,
    max_active: usize,
}

/// A minimal HTTP/1.1 server: a thread per connection, keep-alive, and each response written
/// in one `write_all` (split writes cost ~40 ms each through Nagle + delayed ACK).
pub struct FeedServer {
    base: String,
    state: Arc<Mutex<ServerState>>,
}

/// Validators derived from the body, so a changed body gets a new ETag.
fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &blake3::hash(body).to_hex()[..16])
}

const LAST_MODIFIED: &str = "Mon, 23 Nov 2026 10:00:00 GMT";

impl FeedServer {
    pub fn start() -> FeedServer {
        FeedServer::start_on("127.0.0.1")
    }

    /// A server on another loopback address (127.0.0.2 …): another host to the poller.
    pub fn start_on(ip: &str) -> FeedServer {
        FeedServer::listen(ip, None)
    }

    /// A server on 127.0.0.1 that speaks HTTPS only, with the certificate in `tls` (see
    /// [`TestCa::server_config`]). Its routes answer as over HTTP, except raw ones.
    pub fn start_tls(tls: Arc<rustls::ServerConfig>) -> FeedServer {
        FeedServer::listen("127.0.0.1", Some(tls))
    }

    fn listen(ip: &str, tls: Option<Arc<rustls::ServerConfig>>) -> FeedServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ServerState::default()));
        let accepting = Arc::clone(&state);
        let scheme = if tls.is_some() { "https" } else { "http" };
        // The thread ends with the test process; servers are per test and cheap.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&accepting);
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve_connection(stream, &state),
                    // The handshake happens on the first read; a client that refuses the
                    // certificate ends the connection before any request.
                    Some(config) => {
                        let tls = rustls::ServerConnection::new(config).unwrap();
                        serve_connection(rustls::StreamOwned::new(tls, stream), &state);
                    }
                });
            }
        });
        FeedServer {
            base: format!("{scheme}://{ip}:{port}"),
            state,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        let (_, address) = self.base.split_once("://").unwrap();
        address.parse().unwrap()
    }

    pub fn set(&self, path: &str, route: Route) {
        let path = format!("/{}", path.trim_start_matches('/'));
        self.state.lock().unwrap().routes.insert(path, route);
    }

    pub fn feed(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.set(path, Route::feed(body));
    }

    /// Every request this server has seen, on any path.
    pub fn all_requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The most requests this server was answering at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.state.lock().unwrap().max_active
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

/// A request's path, headers and body (as long as Content-Length says).
fn read_request(reader: &mut impl BufRead) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let target = line.split_whitespace().nth(1)?;
    // Through an HTTP proxy the target is the whole URL (absolute form); the server then acts
    // as the proxy and the origin at once, and the Host header says which origin was asked for.
    let path = match target.strip_prefix("http://") {
        Some(rest) => format!("/{}", rest.split_once('/').map_or("", |(_, path)| path)),
        None => target.to_string(),
    };
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: u64 = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    reader.by_ref().take(length).read_to_end(&mut body).ok()?;
    Some((path, headers, body))
}

/// A connection a [`FeedServer`] answers on: plain TCP, or TLS over it.
trait Connection: Read + Write {
    /// The TCP connection for a raw route's handler.
    fn into_tcp(self) -> TcpStream;
}

impl Connection for TcpStream {
    fn into_tcp(self) -> TcpStream {
        self
    }
}

impl Connection for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn into_tcp(self) -> TcpStream {
        panic!("raw routes answer on plain HTTP servers only")
    }
}

fn serve_connection(stream: impl Connection, state: &Mutex<ServerState>) {
    let mut reader = BufReader::new(stream);
    while let Some((path, headers, request_body)) = read_request(&mut reader) {
        let route = {
            let mut state = state.lock().unwrap();
            state.active += 1;
            state.max_active = state.max_active.max(state.active);
            let route = state.routes.get_mut(&path);
            route.map(|route| {
                let answer = route.clone();
                if !route.first_statuses.is_empty() {
                    route.first_statuses.remove(0);
                }
                answer
            })
        };
        if let Some(handler) = route.as_ref().and_then(|r| r.raw.clone()) {
            {
                let mut state = state.lock().unwrap();
                state.seen.push(Seen {
                    path,
                    headers,
                    at: Instant::now(),
                    status: 0,
                    body: request_body,
                });
                state.active -= 1;
            }
            handler(reader.into_inner().into_tcp());
            return;
        }
        let (mut status, extra, body) = respond(route.as_ref(), &headers);
        if let Some((text, special)) = route.as_ref().and_then(|r| r.status_for_body.as_ref())
            && String::from_utf8_lossy(&request_body).contains(text.as_str())
        {
            status = *special;
        }
        state.lock().unwrap().seen.push(Seen {
            path,
            headers: headers.clone(),
            at: Instant::now(),
            status,
            body: request_body,
        });
        if let Some(delay) = route.as_ref().and_then(|r| r.delay) {
            std::thread::sleep(delay);
        }
        let mut response = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
        for (name, value) in extra {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        let mut bytes = response.into_bytes();
        bytes.extend_from_slice(&body);
        let written = reader.get_mut().write_all(&bytes);
        state.lock().unwrap().active -= 1;
        if written.is_err() || headers.get("connection").is_some_and(|c| c == "close") {
            return;
        }
    }
}

fn respond(
    route: Option<&Route>,
    headers: &HashMap<String, String>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let Some(route) = route else {
        return (404, Vec::new(), b"no such feed".to_vec());
    };
    let etag = etag_of(&route.body);
    // If-None-Match wins when both are sent (RFC 9110 section 13.2.2).
    let fresh = route.validators
        && match headers.get("if-none-match") {
            Some(tag) => *tag == etag,
            None => headers.get("if-modified-since").map(String::as_str) == Some(LAST_MODIFIED),
        };
    let mut extra = route.headers.clone();
    if route.validators {
        extra.push(("ETag".into(), etag));
        extra.push(("Last-Modified".into(), LAST_MODIFIED.into()));
    }
    if fresh {
        return (304, extra, Vec::new());
    }
    extra.push(("Content-Type".into(), route.content_type.clone()));
    let status = route
        .first_statuses
        .first()
        .copied()
        .unwrap_or(route.status);
    (status, extra, route.body.clone())
}

/// A certificate authority made for one test server, which no machine trusts unless told to
/// ([`TestCa::trust`]). Each has a name of its own: a verifier that found another test
/// server's CA by name would report a bad signature, not the unknown issuer a real stranger's
/// certificate has.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// Holds `pem_file`.
    _dir: tempfile::TempDir,
    pem_file: PathBuf,
}

/// When a server certificate is valid.
#[derive(Clone, Copy)]
pub enum Validity {
    /// rcgen's default: from 1975 to 4096.
    Current,
    /// It ended in 2020.
    Expired,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        static CAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("feedhound test CA {n}"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_file = dir.path().join("ca.pem");
        std::fs::write(&pem_file, issuer.pem()).unwrap();
        TestCa {
            issuer,
            _dir: dir,
            pem_file,
        }
    }

    /// A server's TLS settings with a certificate for `names` (host names or IP addresses)
    /// signed by this CA.
    pub fn server_config(&self, names: &[&str], validity: Validity) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = names
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if let Validity::Expired = validity {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .unwrap();
        Arc::new(config)
    }

    /// `SSL_CERT_FILE` for a binary that is to trust this CA instead of the system's roots.
    pub fn trust(&self) -> (&'static str, &str) {
        ("SSL_CERT_FILE", self.pem_file.to_str().unwrap())
    }
}

/// A SOCKS5 proxy on 127.0.0.1:0 (RFC 1928, no login, CONNECT only) that sends every
/// connection to one `upstream` server, whatever it was asked for, and records what it was asked
/// for: `host:port`, the host a name when the client left resolving it to the proxy (`socks5h`).
pub struct SocksProxy {
    pub url_authority: String,
    asked: Arc<Mutex<Vec<String>>>,
}

impl SocksProxy {
    pub fn start(upstream: std::net::SocketAddr) -> SocksProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url_authority = listener.local_addr().unwrap().to_string();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let recording = Arc::clone(&asked);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let recording = Arc::clone(&recording);
                std::thread::spawn(move || {
                    if let Ok(destination) = socks5_handshake(&client) {
                        recording.lock().unwrap().push(destination);
                        relay(client, upstream);
                    }
                });
            }
        });
        SocksProxy {
            url_authority,
            asked,
        }
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// Reads a client's greeting and CONNECT request, accepts both, and returns the destination.
fn socks5_handshake(mut client: &TcpStream) -> std::io::Result<String> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head)?;
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods)?;
    assert!(
        head[0] == 5 && methods.contains(&0),
        "a SOCKS5 client offering no login"
    );
    client.write_all(&[5, 0])?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request)?;
    assert_eq!(request[..3], [5, 1, 0], "a CONNECT request");
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip)?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len)?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name)?;
            String::from_utf8(name).unwrap()
        }
        other => panic!("address type {other} is not used here"),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port)?;
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
    Ok(format!("{host}:{}", u16::from_be_bytes(port)))
}

/// Copies bytes both ways between `client` and a new connection to `upstream` until either ends.
fn relay(client: TcpStream, upstream: std::net::SocketAddr) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut client_in, mut server_out) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut server_out);
        let _ = server_out.shutdown(std::net::Shutdown::Write);
    });
    let (mut server_in, mut client_out) = (server, client);
    let _ = std::io::copy(&mut server_in, &mut client_out);
    let _ = client_out.shutdown(std::net::Shutdown::Write);
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

    /// An app whose `[polling]` table also holds `polling` (e.g. `min_interval = "1s"`).
    pub fn with_polling(feed_urls: &[String], polling: &str, extra: &str) -> App {
        let app = App::new(feed_urls, extra);
        let text = std::fs::read_to_string(&app.config_path).unwrap();
        let text = text.replacen("[polling]\n", &format!("[polling]\n{polling}\n"), 1);
        std::fs::write(&app.config_path, text).unwrap();
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

    /// Sets `[storage] busy_timeout` (e.g. `"1s"`) in the config written.
    pub fn set_busy_timeout(&self, timeout: &str) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let storage = format!("[storage]\nbusy_timeout = \"{timeout}\"\n");
        std::fs::write(&self.config_path, text.replacen("[storage]\n", &storage, 1)).unwrap();
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

    /// `count`, or None while the database is still being created by another process.
    pub fn try_count(&self, sql: &str) -> Option<i64> {
        if !self.db_path().exists() {
            return None;
        }
        self.db().query_row(sql, [], |r| r.get(0)).ok()
    }

    /// Runs the real binary with this app's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_env(&[], args)
    }

    /// [`App::cli`] with these environment variables set.
    pub fn cli_with_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        binary()
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .unwrap()
    }
}

/// The environment variables that route feedhound's requests through a proxy.
const PROXY_VARIABLES: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_feedhound"));
    command
        .env_remove("FEEDHOUND_CONFIG")
        .env("RUST_LOG", "feedhound=warn");
    // The binary's requests go to loopback servers: a proxy set in the caller's environment
    // must not stand between them (nor REQUEST_METHOD switch the proxy tests' proxy off). The
    // tests that poll in this process still read the caller's proxy variables.
    for variable in PROXY_VARIABLES.iter().chain(&["REQUEST_METHOD"]) {
        command.env_remove(variable);
    }
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

/// `feedhound run` as a child process.
pub struct Daemon {
    pub child: std::process::Child,
}

impl App {
    pub fn spawn_daemon(&self) -> Daemon {
        self.spawn_daemon_with_env(&[])
    }

    /// [`App::spawn_daemon`] with these environment variables set.
    pub fn spawn_daemon_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        let child = binary()
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&self.config_path)
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start feedhound run");
        Daemon { child }
    }
}

impl Daemon {
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with the pid of a child we own; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Ids of the process's threads that carry `name`, read from /proc.
    #[cfg(target_os = "linux")]
    pub fn thread_ids(&self, name: &str) -> std::collections::BTreeSet<u32> {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(&tasks)
            .unwrap_or_else(|err| panic!("{tasks}: {err}"))
            .filter_map(|task| {
                let task = task.ok()?;
                let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                (comm.trim_end() == name).then(|| task.file_name().to_str()?.parse().ok())?
            })
            .collect()
    }

    /// SIGKILL and reap: the process gets no chance to clean up.
    pub fn kill_hard(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `within` for the exit; returns the exit status and stderr.
    pub fn stop(mut self, within: std::time::Duration) -> (std::process::ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return (status, stderr);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("feedhound did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 20 ms until it holds or `within` passes.
pub fn wait_until(within: std::time::Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// An article page in the shape news sites use: the story in `<article>`, and menus, a
/// "related" box and a footer around it that name another company.
pub fn article_page(headline: &str, story: &str) -> String {
    let paragraph = "Analysts on the call pressed management on margins, on the supply of \
                     memory chips and on how long the current pricing can hold in the face of \
                     rising component costs across the industry this year.";
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{headline}</title></head><body>\
         <header><nav><a href=\"/\">Home</a> <a href=\"/samsung\">Samsung coverage</a> \
         <a href=\"/markets\">Markets</a></nav></header>\
         <main><article><h1>{headline}</h1>\
         <p>{story}</p><p>{paragraph}</p><p>{paragraph}</p><p>{paragraph}</p></article>\
         <aside class=\"related sidebar\"><h2>Related</h2><ul><li><a href=\"/r1\">Samsung \
         shares slip</a></li><li><a href=\"/r2\">More on Samsung</a></li></ul></aside></main>\
         <footer class=\"footer\"><a href=\"/about\">About</a> Samsung is a sponsor of our \
         newsletter.</footer></body></html>"
    )
}

pub fn html(body: String) -> Route {
    Route {
        content_type: "text/html; charset=utf-8".into(),
        ..Route::feed(body).without_validators()
    }
}

/// Turns `fetch_articles` on for the feed at `url` in the app's config.
pub fn fetch_articles_of(app: &App, url: &str) {
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let text = text.replacen(
        &format!("url = \"{url}\"\n"),
        &format!("url = \"{url}\"\nfetch_articles = true\n"),
        1,
    );
    std::fs::write(&app.config_path, text).unwrap();
}

/// An SMTP server on 127.0.0.1:0, without TLS (a target's `?tls=none`), that takes any login
/// and records each email it is given. `refuse` makes it answer an email whose text holds a
/// phrase with a code of its own, as a server's filter would; `down` makes it greet every
/// connection with 421, as a server that is overloaded or shutting down does;
/// `refuse_command` answers a command (`AUTH`, `MAIL FROM`, `RCPT TO:<bo@`) with a reply of
/// its own; `emails_per_session` makes it end a session that asks for more, with a 421, and
/// `hang_up_after_each_email` close each after its email without a word.
/// [`SmtpServer::start_tls`] starts one that speaks TLS.
pub struct SmtpServer {
    pub port: u16,
    state: Arc<Mutex<SmtpState>>,
    /// With TLS: the throwaway CA its certificate is signed by.
    ca: Option<TestCa>,
}

/// How a test SMTP server speaks TLS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// From the first byte, as `smtps://` expects.
    Implicit,
    /// After STARTTLS, which it offers; `AUTH` only once it is done, as real servers do.
    StartTls,
}

#[derive(Default)]
struct SmtpState {
    /// Each command's verb, as received (`EHLO`, `AUTH`, `MAIL`…).
    verbs: Vec<String>,
    mails: Vec<Mail>,
    refuse: Option<(String, u16)>,
    down: bool,
    /// Commands answered with a refusal: the start of the command (upper case) and the reply.
    refused_commands: Vec<(String, String)>,
    emails_per_session: Option<usize>,
    /// Closes each session, without a word, once it has answered an email.
    hang_up_after_email: bool,
}

/// One email as the server got it, accepted or not.
#[derive(Debug, Clone)]
pub struct Mail {
    /// `user:password` from an `AUTH PLAIN`.
    pub login: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent, dot-unstuffed.
    pub data: String,
    pub accepted: bool,
    /// Whether it came over TLS.
    pub tls: bool,
}

impl Mail {
    /// A header's value, its folded lines joined.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            match (&mut value, line.starts_with([' ', '\t'])) {
                (Some(value), true) => value.push_str(line),
                (Some(_), false) => break,
                (None, _) => {
                    if let Some((key, rest)) = line.split_once(':')
                        && key.eq_ignore_ascii_case(name)
                    {
                        value = Some(rest.trim_start().to_owned());
                    }
                }
            }
        }
        value
    }

    /// A header's value with its RFC 2047 encoded words (`=?utf-8?b?…?=`) decoded. Adjacent
    /// encoded words join without the space between them, as the RFC says.
    pub fn decoded_header(&self, name: &str) -> Option<String> {
        use base64::Engine;
        let raw = self.header(name)?;
        let mut decoded = String::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut after_word = false;
        for token in raw.split_whitespace() {
            let word = token
                .strip_prefix("=?")
                .and_then(|rest| rest.strip_suffix("?="))
                .and_then(|inner| {
                    let mut parts = inner.splitn(3, '?');
                    Some((parts.next()?, parts.next()?, parts.next()?))
                });
            match word {
                Some((_charset, encoding, text)) => {
                    let bytes = if encoding.eq_ignore_ascii_case("b") {
                        base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .ok()?
                    } else {
                        quoted_printable::decode(
                            text.replace('_', " "),
                            quoted_printable::ParseMode::Strict,
                        )
                        .ok()?
                    };
                    if !after_word && !decoded.is_empty() {
                        decoded.push(' ');
                    }
                    pending.extend(bytes);
                    after_word = true;
                }
                None => {
                    decoded.push_str(&String::from_utf8(std::mem::take(&mut pending)).ok()?);
                    if !decoded.is_empty() {
                        decoded.push(' ');
                    }
                    decoded.push_str(token);
                    after_word = false;
                }
            }
        }
        decoded.push_str(&String::from_utf8(pending).ok()?);
        Some(decoded)
    }

    /// The body, decoded from its transfer encoding.
    pub fn text(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").unwrap_or_default().1;
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = match encoding.as_str() {
            "base64" => {
                use base64::Engine;
                let joined: String = body.split_whitespace().collect();
                base64::engine::general_purpose::STANDARD
                    .decode(joined)
                    .unwrap_or_default()
            }
            "quoted-printable" => {
                quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
                    .unwrap_or_default()
            }
            _ => body.as_bytes().to_vec(),
        };
        String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
    }
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        SmtpServer::serve(None)
    }

    /// A server with a certificate for 127.0.0.1 from a CA made for it, which no machine
    /// trusts unless told to ([`SmtpServer::trust`]).
    pub fn start_tls(mode: TlsMode) -> SmtpServer {
        let ca = TestCa::new();
        let config = ca.server_config(&["127.0.0.1"], Validity::Current);
        SmtpServer {
            ca: Some(ca),
            ..SmtpServer::serve(Some((config, mode)))
        }
    }

    fn serve(tls: Option<(Arc<rustls::ServerConfig>, TlsMode)>) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(SmtpState::default()));
        let serving = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let state = Arc::clone(&serving);
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = match tls {
                        None => smtp_session(Box::new(client), &state, None, false),
                        Some((config, TlsMode::StartTls)) => {
                            smtp_session(Box::new(client), &state, Some(config), false)
                        }
                        Some((config, TlsMode::Implicit)) => rustls::ServerConnection::new(config)
                            .map_err(std::io::Error::other)
                            .and_then(|tls| {
                                let stream = rustls::StreamOwned::new(tls, client);
                                smtp_session(Box::new(stream), &state, None, true)
                            }),
                    };
                });
            }
        });
        SmtpServer {
            port,
            state,
            ca: None,
        }
    }

    /// `SSL_CERT_FILE` for a binary that is to trust this server's CA instead of the system's
    /// roots.
    pub fn trust(&self) -> (&'static str, &str) {
        self.ca.as_ref().expect("a server started with TLS").trust()
    }

    /// A target URL for this server with this login.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("smtp://{user}:{password}@127.0.0.1:{}?tls=none", self.port)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.state.lock().unwrap().mails.clone()
    }

    pub fn verbs(&self) -> Vec<String> {
        self.state.lock().unwrap().verbs.clone()
    }

    /// How many times a command with this verb was received.
    pub fn times(&self, verb: &str) -> usize {
        self.verbs().iter().filter(|v| *v == verb).count()
    }

    pub fn accepted(&self) -> Vec<Mail> {
        self.mails().into_iter().filter(|m| m.accepted).collect()
    }

    pub fn refuse(&self, phrase: &str, code: u16) {
        self.state.lock().unwrap().refuse = Some((phrase.to_owned(), code));
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn refuse_command(&self, start: &str, reply: &str) {
        let mut state = self.state.lock().unwrap();
        state
            .refused_commands
            .push((start.to_ascii_uppercase(), reply.to_owned()));
    }

    pub fn emails_per_session(&self, limit: usize) {
        self.state.lock().unwrap().emails_per_session = Some(limit);
    }

    pub fn hang_up_after_each_email(&self) {
        let mut state = self.state.lock().unwrap();
        state.emails_per_session = None;
        state.hang_up_after_email = true;
    }

    /// Takes every email and command from now on (still `down` if set).
    pub fn accept_all(&self) {
        let mut state = self.state.lock().unwrap();
        state.refuse = None;
        state.refused_commands.clear();
    }
}

/// A client's byte stream, plain or TLS.
trait SmtpStream: Read + Write + Send {}
impl<T: Read + Write + Send> SmtpStream for T {}

/// A client's session as the server reads its commands and writes each reply at once,
/// through TLS too.
struct SmtpConnection(BufReader<Box<dyn SmtpStream>>);

impl SmtpConnection {
    fn write_all(&mut self, reply: &[u8]) -> std::io::Result<()> {
        self.0.get_mut().write_all(reply)?;
        self.0.get_mut().flush()
    }
}

/// One client's session; `starttls` while it may still be upgraded, and `tls` once it is.
fn smtp_session(
    stream: Box<dyn SmtpStream>,
    state: &Mutex<SmtpState>,
    starttls: Option<Arc<rustls::ServerConfig>>,
    tls: bool,
) -> std::io::Result<()> {
    let mut out = SmtpConnection(BufReader::new(stream));
    if state.lock().unwrap().down {
        out.write_all(b"421 4.3.2 test server is shutting down\r\n")?;
        return Ok(());
    }
    out.write_all(b"220 test ESMTP\r\n")?;
    smtp_commands(out, state, starttls, tls)
}

/// A session's commands, from its greeting or from its STARTTLS.
fn smtp_commands(
    mut out: SmtpConnection,
    state: &Mutex<SmtpState>,
    starttls: Option<Arc<rustls::ServerConfig>>,
    tls: bool,
) -> std::io::Result<()> {
    let mut mail = Mail {
        login: None,
        mail_from: String::new(),
        rcpt_to: Vec::new(),
        data: String::new(),
        accepted: false,
        tls,
    };
    let mut emails_in_session = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if out.0.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let upper = command.to_ascii_uppercase();
        let verb = upper
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_owned();
        let refusal = {
            let mut state = state.lock().unwrap();
            state.verbs.push(verb.clone());
            (state.refused_commands.iter())
                .find(|(start, _)| upper.starts_with(start.as_str()))
                .map(|(_, reply)| reply.clone())
        };
        if let Some(reply) = refusal {
            out.write_all(format!("{reply}\r\n").as_bytes())?;
            continue;
        }
        // Commands out of their order are refused, as real servers do, so that a session kept
        // in the wrong state shows.
        let in_transaction = !mail.mail_from.is_empty();
        let out_of_order = if starttls.is_some() && (verb == "AUTH" || verb == "MAIL") {
            Some("530 5.7.0 must issue a STARTTLS command first")
        } else if verb == "MAIL" && in_transaction {
            Some("503 5.5.1 sender already given")
        } else if verb == "RCPT" && !in_transaction {
            Some("503 5.5.1 need MAIL before RCPT")
        } else if verb == "DATA" && mail.rcpt_to.is_empty() {
            Some("503 5.5.1 need RCPT before DATA")
        } else {
            None
        };
        if let Some(reply) = out_of_order {
            out.write_all(format!("{reply}\r\n").as_bytes())?;
            continue;
        }
        if upper.starts_with("EHLO") {
            out.write_all(match starttls {
                Some(_) => b"250-test\r\n250-STARTTLS\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                None => b"250-test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            })?;
        } else if let (true, Some(config)) = (upper == "STARTTLS", &starttls) {
            out.write_all(b"220 2.0.0 ready to start TLS\r\n")?;
            let tls =
                rustls::ServerConnection::new(Arc::clone(config)).map_err(std::io::Error::other)?;
            let stream: Box<dyn SmtpStream> =
                Box::new(rustls::StreamOwned::new(tls, out.0.into_inner()));
            return smtp_commands(SmtpConnection(BufReader::new(stream)), state, None, true);
        } else if let Some(encoded) = upper.strip_prefix("AUTH PLAIN ").map(|_| &command[11..]) {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default();
            let parts: Vec<String> = decoded
                .split(|&b| b == 0)
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect();
            if parts.len() != 3 {
                out.write_all(b"501 5.5.2 cannot decode the login\r\n")?;
                continue;
            }
            mail.login = Some(format!("{}:{}", parts[1], parts[2]));
            out.write_all(b"235 2.7.0 accepted\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            let limit = state.lock().unwrap().emails_per_session;
            if limit.is_some_and(|limit| emails_in_session >= limit) {
                out.write_all(b"421 4.7.0 too many emails in one session, closing\r\n")?;
                return Ok(());
            }
            mail.mail_from = command[10..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            out.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            mail.rcpt_to.push(command[8..].trim().to_owned());
            out.write_all(b"250 2.1.5 ok\r\n")?;
        } else if upper == "DATA" {
            out.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if out.0.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            mail.data = data;
            let mut shared = state.lock().unwrap();
            let hang_up = shared.hang_up_after_email;
            let refusal = shared
                .refuse
                .as_ref()
                .filter(|(phrase, _)| mail.text().contains(phrase.as_str()))
                .map(|(_, code)| *code);
            mail.accepted = refusal.is_none();
            shared.mails.push(mail.clone());
            drop(shared);
            emails_in_session += 1;
            mail.mail_from.clear();
            mail.rcpt_to.clear();
            match refusal {
                None => out.write_all(b"250 2.0.0 queued\r\n")?,
                Some(code) => out.write_all(format!("{code} refused by filter\r\n").as_bytes())?,
            }
            if hang_up {
                return Ok(());
            }
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" {
            mail.mail_from.clear();
            mail.rcpt_to.clear();
            out.write_all(b"250 2.0.0 ok\r\n")?;
        } else if upper == "NOOP" {
            out.write_all(b"250 2.0.0 ok\r\n")?;
        } else {
            out.write_all(b"502 5.5.2 not implemented\r\n")?;
        }
    }
}
