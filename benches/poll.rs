//! End to end: the real `feedhound poll` binary against a generated corpus served on loopback.
//!
//! `cargo bench --bench poll` generates N feeds × M entries (70% RSS 2.0, 30% Atom 1.0, news-like
//! HTML of 1–3 KB per entry, a tracked company named in about 28% of entries, 2% of entries
//! copies of an earlier feed's entry under its headline, which join its story), serves them from
//! a raw-TCP server inside this process (ETag → 304, gzip), and runs the release binary built by
//! cargo for, in each run, a fresh database:
//!
//! - **cold**: empty database, every feed answers 200;
//! - **warm**: the same again, every feed answers 304;
//! - **incremental**: every tenth feed has published 5 new entries (and dropped its 5 oldest).
//!
//! A one-shot poll leaves the search index to catch up later (the daemon does it when idle), so
//! after the cold poll the bench also times `feedhound reindex --pending`, which indexes the
//! cold poll's entries, and reports the database size with the index.
//!
//! For each poll it prints the median (min–max) over the runs of wall time, CPU user+sys of the
//! child (`wait4`), its peak RSS, entries per second, CPU seconds per 1000 entries and the bytes
//! it read and wrote per entry (`/proc/PID/io`, sockets included); the poll's own summary line
//! is checked against what the corpus holds, so a fast wrong answer fails.
//! Finally it starts `feedhound run` on the last database (nothing due) and reads the idle
//! daemon's resident memory after `FEEDHOUND_BENCH_IDLE_SECS`. The daemon first indexes the
//! last poll's entries for search (5,000 at 10,000 feeds: under a second on the benchmark
//! machine); 10 s after that, its database writer gives back the memory the work took.
//!
//! With `FEEDHOUND_BENCH_SCALE_TO=K` (K larger than the feed count N), each run ends with a cold
//! poll of K feeds (the same N first, then more of the same kind) into another fresh database, and
//! the bench prints the CPU cost per entry at K over the cost at N, and the same for user CPU
//! alone (without the kernel's page-cache work): one ratio per run, from two polls about a
//! second apart, so a machine that is slower for a minute skews both sides alike (a
//! slowdown inside one poll still shows). The K documents are generated once at the start and
//! held in memory (about 1.5 GB for K = 10,000). Before each cold poll the bench writes dirty
//! pages out to disk (`sync`), so the previous poll's writeback is not paid for inside it.
//!
//! Environment: `FEEDHOUND_BENCH_FEEDS` (default 1000), `FEEDHOUND_BENCH_ENTRIES` (50),
//! `FEEDHOUND_BENCH_RUNS` (3), `FEEDHOUND_BENCH_CONCURRENCY` (8), `FEEDHOUND_BENCH_GZIP` (1),
//! `FEEDHOUND_BENCH_IDLE_SECS` (15; 0 skips the daemon), `FEEDHOUND_BENCH_SCALE_TO` (off),
//! `FEEDHOUND_BENCH_PREFAULT_MIB` (0: memory the bench writes to and frees before each cold
//! poll, for virtual machines that hand freed memory back to their host; see [`prefault`]),
//! `FEEDHOUND_BIN` (default: the binary cargo built alongside this bench). The default takes
//! about a minute on 2 cores; `FEEDHOUND_BENCH_SCALE_TO=10000` adds about 25 s to generate the
//! documents and 35 s per run.

#[path = "common/mod.rs"]
mod common;
use common::{COMPANIES, env_or};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;

/// Share of entries naming a company, in percent (the shared corpus has ~28%).
const MENTION_PERCENT: u64 = 28;
/// Share of entries that carry another feed's story under its headline (wire copy), in percent.
/// A fixed share, so that a corpus of 10,000 feeds has as many story joins per entry as one of
/// 1,000: with four-word headlines drawn at random, 12.5% of 500,000 entries met an earlier one
/// by chance against 1.3% of 50,000, and the larger poll did other work per entry.
const SYNDICATED_PERCENT: usize = 2;
/// Phrases that contain a company name without meaning it, so the matcher's rules are exercised.
const TRAPS: &[&str] = &[
    "metadata standards",
    "at arm's length",
    "an apple pie recipe",
    "uber-competitive pricing",
];
const WORDS: &[&str] = &[
    "market",
    "shares",
    "analysts",
    "quarter",
    "revenue",
    "growth",
    "chip",
    "supply",
    "demand",
    "investors",
    "forecast",
    "regulators",
    "launch",
    "device",
    "cloud",
    "software",
    "factory",
    "Europe",
    "Asia",
    "percent",
    "billion",
    "report",
    "deal",
    "price",
    "customers",
    "rivals",
    "strategy",
    "earnings",
    "data",
    "network",
    "battery",
    "display",
    "security",
    "pilot",
];
/// Entries a changed feed gains (and loses from its tail) between polls.
const NEW_PER_CHANGE: usize = 5;
/// One feed in this many changes for the incremental poll.
const CHANGE_EVERY: usize = 10;

struct Settings {
    feeds: usize,
    entries: usize,
    runs: usize,
    concurrency: usize,
    gzip: bool,
    idle_secs: u64,
    /// Also cold-poll this many feeds in each run (0: no scale comparison).
    scale_to: usize,
    /// Memory to write to and free just before each cold poll, in MiB (0: none).
    prefault_mib: usize,
    binary: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            feeds: env_or("FEEDHOUND_BENCH_FEEDS", 1000),
            entries: env_or("FEEDHOUND_BENCH_ENTRIES", 50),
            runs: env_or("FEEDHOUND_BENCH_RUNS", 3),
            concurrency: env_or("FEEDHOUND_BENCH_CONCURRENCY", 8),
            gzip: env_or("FEEDHOUND_BENCH_GZIP", 1u8) != 0,
            idle_secs: env_or("FEEDHOUND_BENCH_IDLE_SECS", 15),
            scale_to: env_or("FEEDHOUND_BENCH_SCALE_TO", 0),
            prefault_mib: env_or("FEEDHOUND_BENCH_PREFAULT_MIB", 0),
            binary: std::env::var_os("FEEDHOUND_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_feedhound"))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus

/// splitmix64: a deterministic stream per (feed, entry) without a dependency.
struct Rng(u64);

impl Rng {
    fn new(feed: usize, entry: usize) -> Rng {
        Rng(((feed as u64) << 32 | entry as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xfeed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn word(&mut self) -> &'static str {
        WORDS[self.below(WORDS.len())]
    }
}

/// One entry's text; `company` is the name it mentions, if any.
struct Story {
    title: String,
    summary_html: String,
    content_html: String,
    company: Option<&'static str>,
}

fn story(feed: usize, seq: usize) -> Story {
    let mut rng = Rng::new(feed, seq);
    let (company, title) = subject(feed, seq, &mut rng);
    let mut content_html = String::with_capacity(2048);
    let paragraphs = 3 + rng.below(8); // ~250 bytes each: 1–3 KB of HTML
    let mention_at = rng.below(paragraphs);
    for p in 0..paragraphs {
        content_html.push_str("<p>");
        for w in 0..24 {
            if w > 0 {
                content_html.push(' ');
            }
            match rng.below(40) {
                0 => {
                    let _ = write!(
                        content_html,
                        "<a href=\"https://example.com/{}?utm_source=rss\">{}</a>",
                        rng.next() % 10_000,
                        rng.word()
                    );
                }
                1 => content_html.push_str("<b>&#8220;important&#8221;</b>"),
                2 => content_html.push_str("R&amp;D"),
                3 => content_html.push_str("Zürich&nbsp;office"),
                4 => content_html.push_str(TRAPS[rng.below(TRAPS.len())]),
                _ => content_html.push_str(rng.word()),
            }
        }
        if p == mention_at
            && let Some(name) = company
        {
            let _ = write!(content_html, ", said a spokesperson for {name}");
        }
        content_html.push_str(".</p>\n");
    }
    let summary_html = content_html[..content_html.find("</p>").unwrap() + 4].to_string();
    Story {
        title,
        summary_html,
        content_html,
        company,
    }
}

/// What an entry is about: the company it names, if any, and its headline of six words (34^6 of
/// them, so that 500,000 entries hardly ever meet by chance), with the company's name before it in
/// half of the entries that name one. In [`SYNDICATED_PERCENT`] of entries, both are those of the
/// entry at the same place in an earlier feed, whose story such an entry joins.
fn subject(feed: usize, seq: usize, rng: &mut Rng) -> (Option<&'static str>, String) {
    if feed > 0 && rng.below(100) < SYNDICATED_PERCENT {
        let original = rng.below(feed);
        return subject(original, seq, &mut Rng::new(original, seq));
    }
    let company =
        (rng.below(100) < MENTION_PERCENT as usize).then(|| COMPANIES[rng.below(COMPANIES.len())]);
    let title = format!(
        "{} {} {} as {} {} {}",
        capitalised(rng.word()),
        rng.word(),
        rng.word(),
        rng.word(),
        rng.word(),
        rng.word()
    );
    match company.filter(|_| rng.below(2) == 0) {
        Some(name) => (company, format!("{name} {title}")),
        None => (company, title),
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn is_atom(feed: usize) -> bool {
    feed % 10 >= 7
}

/// Hours before a fixed, past instant, so dates are plausible yet the document is deterministic.
fn date(seq: usize, atom: bool) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap();
    let at = base - chrono::Duration::hours(10_000 - seq as i64);
    if atom {
        at.to_rfc3339()
    } else {
        at.to_rfc2822()
    }
}

fn xml_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The document of `feed` at `generation`: entries `generation * NEW_PER_CHANGE ..` onwards.
fn document(feed: usize, generation: usize, entries: usize) -> (Vec<u8>, usize) {
    let atom = is_atom(feed);
    let first = generation * NEW_PER_CHANGE;
    let mut doc = String::with_capacity(entries * 3000);
    let mut mentions = 0;
    if atom {
        let _ = write!(
            doc,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\
             <title>Bench site {feed}</title><id>urn:bench:{feed}</id>\
             <link rel=\"alternate\" href=\"https://site{feed}.example.com/\"/><updated>{}</updated>\n",
            date(first + entries, true)
        );
    } else {
        let _ = write!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" \
             xmlns:content=\"http://purl.org/rss/1.0/modules/content/\"><channel>\
             <title>Bench site {feed}</title><link>https://site{feed}.example.com/</link>\
             <description>Generated</description>\n"
        );
    }
    // Newest first, as feeds publish them.
    for seq in (first..first + entries).rev() {
        let s = story(feed, seq);
        mentions += usize::from(s.company.is_some());
        let link = format!("https://site{feed}.example.com/2026/story-{seq}.html?utm_medium=feed");
        if atom {
            let _ = writeln!(
                doc,
                "<entry><title type=\"html\">{}</title><link rel=\"alternate\" href=\"{}\"/>\
                 <id>urn:bench:{feed}:{seq}</id><updated>{}</updated>\
                 <summary type=\"html\">{}</summary><content type=\"html\">{}</content></entry>",
                xml_escaped(&s.title),
                xml_escaped(&link),
                date(seq, true),
                xml_escaped(&s.summary_html),
                xml_escaped(&s.content_html)
            );
        } else {
            let _ = writeln!(
                doc,
                "<item><title>{}</title><link>{}</link><guid isPermaLink=\"false\">bench-{feed}-{seq}</guid>\
                 <pubDate>{}</pubDate><description><![CDATA[{}]]></description>\
                 <content:encoded><![CDATA[{}]]></content:encoded></item>",
                xml_escaped(&s.title),
                xml_escaped(&link),
                date(seq, false),
                s.summary_html,
                s.content_html
            );
        }
    }
    doc.push_str(if atom {
        "</feed>\n"
    } else {
        "</channel></rss>\n"
    });
    (doc.into_bytes(), mentions)
}

/// A served document with its validators.
struct Served {
    body: Vec<u8>,
    gzipped: Option<Vec<u8>>,
    etag: String,
}

fn served(feed: usize, generation: usize, entries: usize, gzip: bool) -> (Served, usize) {
    let (body, mentions) = document(feed, generation, entries);
    let gzipped = gzip.then(|| {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::new(6));
        encoder.write_all(&body).unwrap();
        encoder.finish().unwrap()
    });
    let etag = format!("\"{feed}-{generation}\"");
    (
        Served {
            body,
            gzipped,
            etag,
        },
        mentions,
    )
}

// ---------------------------------------------------------------------------------------------
// The server

#[derive(Default)]
struct Counters {
    ok: AtomicUsize,
    not_modified: AtomicUsize,
    bytes: AtomicUsize,
}

impl Counters {
    /// Responses 200, responses 304, bytes sent.
    fn read(&self) -> [usize; 3] {
        [&self.ok, &self.not_modified, &self.bytes].map(|c| c.load(Ordering::Relaxed))
    }
}

struct Site {
    docs: RwLock<Vec<Arc<Served>>>,
    counters: Counters,
}

/// Serves `/f/{index}` on 127.0.0.1, a thread per connection, until the process ends.
fn serve(site: Arc<Site>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let site = Arc::clone(&site);
            std::thread::spawn(move || {
                let _ = handle(stream, &site);
            });
        }
    });
    port
}

fn handle(mut stream: TcpStream, site: &Site) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let read = stream.read(&mut chunk)?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("");
        let header = |name: &str| {
            head.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
        };
        let doc = path
            .strip_prefix("/f/")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| site.docs.read().unwrap().get(i).cloned());
        // Headers and body leave in ONE write: a second small write would wait for the
        // client's delayed ACK (Nagle), 40 ms per response.
        let mut response = Vec::new();
        match doc {
            None => {
                response.extend_from_slice(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            }
            Some(doc) if header("if-none-match").as_deref() == Some(doc.etag.as_str()) => {
                site.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                let _ = write!(
                    response,
                    "HTTP/1.1 304 Not Modified\r\nETag: {}\r\n\r\n",
                    doc.etag
                );
            }
            Some(doc) => {
                site.counters.ok.fetch_add(1, Ordering::Relaxed);
                let accepts_gzip = header("accept-encoding").is_some_and(|v| v.contains("gzip"));
                let (body, encoding) = match &doc.gzipped {
                    Some(gz) if accepts_gzip => (gz, "Content-Encoding: gzip\r\n"),
                    _ => (&doc.body, ""),
                };
                site.counters.bytes.fetch_add(body.len(), Ordering::Relaxed);
                let _ = write!(
                    response,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/xml; charset=utf-8\r\nETag: {}\r\n\
                     {encoding}Content-Length: {}\r\n\r\n",
                    doc.etag,
                    body.len()
                );
                response.extend_from_slice(body);
            }
        }
        stream.write_all(&response)?;
        if header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// What one poll cost and what it reported.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    wall: f64,
    cpu: f64,
    /// The user-space share of `cpu`: the kernel's share holds the page-cache copies, whose
    /// cost per byte on a virtual machine depends on how recently the memory was backed.
    user_cpu: f64,
    max_rss_mb: f64,
    bytes_read: f64,
    bytes_written: f64,
    summary: [usize; 5],
}

/// `feeds: A ok, B not modified, C failed; entries: D new, E updated` → [A, B, C, D, E].
fn summary_numbers(line: &str) -> [usize; 5] {
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|_| panic!("unexpected poll summary: {line:?}"))
}

fn poll(binary: &Path, config: &Path) -> Measured {
    let (mut measured, stdout) = timed(binary, config, &["poll"]);
    measured.summary = summary_numbers(stdout.trim());
    measured
}

/// Runs `feedhound --config CONFIG ARGS…`; returns what it cost (no summary) and its output.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped with wait4, which also returns its rusage"
)]
fn timed(binary: &Path, config: &Path, args: &[&str]) -> (Measured, String) {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start feedhound");
    // Peak RSS from the child's own VmHWM, sampled until it exits: wait4's ru_maxrss would
    // include this process's memory (the corpus), which the child inherits at spawn.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        let status_path = format!("/proc/{}/status", child.id());
        std::thread::spawn(move || {
            let mut peak_kb = 0f64;
            while !done.load(Ordering::Relaxed) {
                if let Some(kb) = std::fs::read_to_string(&status_path)
                    .ok()
                    .and_then(|status| status_field_kb(&status, "VmHWM:"))
                {
                    peak_kb = peak_kb.max(kb);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            peak_kb
        })
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    done.store(true, Ordering::Relaxed);
    let peak_kb = sampler.join().unwrap();
    let (bytes_read, bytes_written) = io_of_exited(child.id());
    // wait4 rather than Child::wait: it also returns the child's own rusage.
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value, and wait4 only writes through the two
    // pointers, which point at live locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "feedhound {args:?} failed: {stdout}"
    );
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let measured = Measured {
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        user_cpu: seconds(usage.ru_utime),
        max_rss_mb: peak_kb / 1024.0,
        bytes_read,
        bytes_written,
        summary: [0; 5],
    };
    (measured, stdout)
}

/// The `rchar` and `wchar` of /proc/PID/io once the child has exited, before it is reaped:
/// bytes through read and write calls, the database's and the HTTP bodies' alike. Per entry they
/// show how often the writer reads and writes a page again: what grows from 1,000 feeds to 10,000
/// (`bench/RESULTS.md`, session 30).
fn io_of_exited(pid: u32) -> (f64, f64) {
    // SAFETY: a zeroed siginfo_t is a valid value; waitid only writes through the pointer, which
    // points at a live local. WNOWAIT leaves the child unreaped for wait4.
    let waited = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
    };
    assert_eq!(waited, 0, "waitid failed");
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (field("rchar:"), field("wchar:"))
}

/// A `kB` field of /proc/PID/status.
fn status_field_kb(status: &str, name: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident memory of `feedhound run` once it has settled with nothing due: (VmRSS, VmHWM) in MB.
fn idle_daemon_memory(binary: &Path, config: &Path, settle: Duration) -> (f64, f64) {
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start feedhound run");
    std::thread::sleep(settle);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let field = |name: &str| status_field_kb(&status, name).unwrap_or(f64::NAN) / 1024.0;
    let memory = (field("VmRSS:"), field("VmHWM:"));
    // SAFETY: plain syscall on the pid of the child we started and have not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let exited = child.wait().unwrap();
    assert!(
        exited.success(),
        "feedhound run did not stop cleanly on SIGTERM: {exited}"
    );
    memory
}

/// A cold poll of the first `feeds` feeds into a fresh database in a new temporary folder,
/// which holds the config too.
fn cold_poll(
    settings: &Settings,
    port: u16,
    feeds: usize,
) -> (tempfile::TempDir, PathBuf, Measured) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), port, feeds, settings);
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    prefault(settings.prefault_mib);
    let measured = poll(&settings.binary, &config);
    assert_eq!(
        measured.summary,
        [feeds, 0, 0, feeds * settings.entries, 0],
        "cold poll of {feeds} feeds stored the wrong thing"
    );
    (dir, config, measured)
}

/// The share of a cold poll's entries that joined another entry's story, from the database it
/// left: syndicated copies by design (see [`SYNDICATED_PERCENT`]), headlines met by chance too.
fn joined_share(dir: &Path) -> f64 {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("bench.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (entries, stories): (f64, f64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM stories)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    (entries - stories) / entries
}

/// Writes one byte to every page of `mib` MiB of fresh memory, then frees it, so the pages the
/// poll's page cache takes next are ones the hypervisor backs already. On a virtual machine that
/// hands freed guest memory back to its host (`virtio_balloon` free page reporting), the first
/// write to such a page costs a fault in the host, charged as system time to whatever wrote it:
/// in a cold poll, the kernel copying database pages into the page cache. A poll of 1,000 feeds
/// finds enough recently freed memory and hardly pays it; one of 10,000 feeds grows the page
/// cache by gigabytes and pays it throughout (session 29 on this project's VM: 1.2 of its 15.3
/// CPU seconds; `bench/RESULTS.md`). Prefaulting before both puts them on the same footing.
fn prefault(mib: usize) {
    if mib == 0 {
        return;
    }
    let mut memory = vec![0u8; mib << 20];
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    std::hint::black_box(&memory);
}

fn write_config(dir: &Path, port: u16, feeds: usize, settings: &Settings) -> PathBuf {
    let mut text = format!(
        "[storage]\npath = \"bench.db\"\n\n[polling]\nconcurrency = {}\ntimeout = \"60s\"\n\n",
        settings.concurrency
    );
    for feed in 0..feeds {
        let _ = writeln!(text, "[[feed]]\nurl = \"http://127.0.0.1:{port}/f/{feed}\"");
    }
    for name in COMPANIES {
        let _ = writeln!(
            text,
            "[[company]]\nname = \"{name}\"\ncase_sensitive = true"
        );
    }
    let path = dir.join("feedhound.toml");
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// Figures

fn median(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

fn report(phase: &str, runs: &[Measured], entries_parsed: usize, entries_new: usize) {
    let (wall, wall_min, wall_max) = median(runs.iter().map(|m| m.wall).collect());
    let (cpu, cpu_min, cpu_max) = median(runs.iter().map(|m| m.cpu).collect());
    let (rss, _, rss_max) = median(runs.iter().map(|m| m.max_rss_mb).collect());
    let (read, _, _) = median(runs.iter().map(|m| m.bytes_read).collect());
    let (written, _, _) = median(runs.iter().map(|m| m.bytes_written).collect());
    let io_per_entry = if entries_parsed == 0 {
        "n/a".to_string()
    } else {
        let kb = |bytes: f64| bytes / entries_parsed as f64 / 1000.0;
        format!("{:.1}/{:.1} KB", kb(read), kb(written))
    };
    let per_thousand = |cpu: f64| {
        if entries_parsed == 0 {
            "n/a".to_string()
        } else {
            format!("{:.4}", cpu / entries_parsed as f64 * 1000.0)
        }
    };
    println!(
        "{phase:<14} wall {wall:7.3} s ({wall_min:.3}–{wall_max:.3})  CPU {cpu:7.3} s ({cpu_min:.3}–{cpu_max:.3})  \
         peak RSS {rss:6.1} MB (max {rss_max:.1})  {:>9} entries/s  CPU s/1000 entries parsed {}  \
         read/written per entry parsed {io_per_entry}  ({entries_parsed} parsed, {entries_new} new)",
        if entries_parsed == 0 {
            "n/a".to_string()
        } else {
            format!("{:.0}", entries_parsed as f64 / wall)
        },
        per_thousand(cpu),
    );
}

fn main() {
    let settings = Settings::from_env();
    assert!(
        settings.binary.exists(),
        "no feedhound binary at {} (set FEEDHOUND_BIN)",
        settings.binary.display()
    );
    let (n, m) = (settings.feeds, settings.entries);
    assert!(
        m >= NEW_PER_CHANGE,
        "FEEDHOUND_BENCH_ENTRIES must be at least {NEW_PER_CHANGE}"
    );
    let scale_to = settings.scale_to;
    assert!(
        scale_to == 0 || scale_to > n,
        "FEEDHOUND_BENCH_SCALE_TO must be larger than FEEDHOUND_BENCH_FEEDS"
    );

    let started = Instant::now();
    let (mut base, mentions_per_feed): (Vec<Arc<Served>>, Vec<usize>) = (0..n)
        .map(|feed| {
            let (doc, mentions) = served(feed, 0, m, settings.gzip);
            (Arc::new(doc), mentions)
        })
        .unzip();
    let mentions: usize = mentions_per_feed.iter().sum();
    let generated_in = started.elapsed();
    let changed: Vec<usize> = (0..n).step_by(CHANGE_EVERY).collect();
    let next: Vec<Arc<Served>> = changed
        .iter()
        .map(|&feed| Arc::new(served(feed, 1, m, settings.gzip).0))
        .collect();
    let xml_bytes: usize = base.iter().map(|d| d.body.len()).sum();
    let wire_bytes: usize = base
        .iter()
        .map(|d| d.gzipped.as_ref().map_or(d.body.len(), Vec::len))
        .sum();
    println!(
        "corpus: {n} feeds × {m} entries = {} entries, {:.1} MB of XML ({:.1} MB on the wire{}), \
         {mentions} entries ({:.1}%) name a company; generated in {:.1} s",
        n * m,
        xml_bytes as f64 / 1e6,
        wire_bytes as f64 / 1e6,
        if settings.gzip { ", gzip" } else { "" },
        mentions as f64 * 100.0 / (n * m) as f64,
        generated_in.as_secs_f64()
    );
    if scale_to > 0 {
        // The site serves every feed the larger poll lists; the first n are the corpus above.
        let started = Instant::now();
        base.extend((n..scale_to).map(|feed| Arc::new(served(feed, 0, m, settings.gzip).0)));
        println!(
            "scale poll: {scale_to} feeds × {m} entries (the {n} above and {} more of the same kind); generated in {:.1} s",
            scale_to - n,
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "binary: {}; concurrency {}; {} runs; machine: {} CPUs",
        settings.binary.display(),
        settings.concurrency,
        settings.runs,
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    let site = Arc::new(Site {
        docs: RwLock::new(base.clone()),
        counters: Counters::default(),
    });
    let port = serve(Arc::clone(&site));

    let (mut cold, mut warm, mut incremental) = (Vec::new(), Vec::new(), Vec::new());
    let mut catch_up = Vec::new();
    let (mut cold_scaled, mut scale_ratios, mut user_ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut scale_traffic = [0; 3];
    let mut db_bytes = Vec::new();
    let mut last_dir = None;
    let mut joined = Vec::new();
    for _ in 0..settings.runs {
        *site.docs.write().unwrap() = base.clone();
        let (dir, config, measured) = cold_poll(&settings, port, n);
        cold.push(measured);
        joined = vec![(n, joined_share(dir.path()))];
        let (measured, stdout) = timed(&settings.binary, &config, &["reindex", "--pending"]);
        assert_eq!(
            stdout.trim(),
            format!("search index up to date; entries added: {}", n * m),
            "the catch-up did not index the cold poll's entries"
        );
        catch_up.push(measured);
        let db = dir.path().join("bench.db");
        let wal = dir.path().join("bench.db-wal");
        db_bytes.push(
            std::fs::metadata(&db).map_or(0, |m| m.len())
                + std::fs::metadata(&wal).map_or(0, |m| m.len()),
        );

        let measured = poll(&settings.binary, &config);
        assert_eq!(
            measured.summary,
            [0, n, 0, 0, 0],
            "warm poll was not all 304"
        );
        warm.push(measured);

        {
            let mut docs = site.docs.write().unwrap();
            for (&feed, doc) in changed.iter().zip(&next) {
                docs[feed] = Arc::clone(doc);
            }
        }
        let measured = poll(&settings.binary, &config);
        let expected = [
            changed.len(),
            n - changed.len(),
            0,
            changed.len() * NEW_PER_CHANGE,
            0,
        ];
        assert_eq!(
            measured.summary, expected,
            "incremental poll stored the wrong thing"
        );
        incremental.push(measured);
        last_dir = Some(dir);

        if scale_to > 0 {
            *site.docs.write().unwrap() = base.clone();
            let before = site.counters.read();
            let (scaled_dir, _, scaled) = cold_poll(&settings, port, scale_to);
            joined.push((scale_to, joined_share(scaled_dir.path())));
            drop(scaled_dir);
            let after = site.counters.read();
            for (total, (a, b)) in scale_traffic.iter_mut().zip(after.iter().zip(before)) {
                *total += a - b;
            }
            let small = cold.last().expect("this run's cold poll");
            let ratio = |cost: fn(&Measured) -> f64| {
                (cost(&scaled) / (scale_to * m) as f64) / (cost(small) / (n * m) as f64)
            };
            scale_ratios.push(ratio(|measured| measured.cpu));
            user_ratios.push(ratio(|measured| measured.user_cpu));
            cold_scaled.push(scaled);
        }
    }

    println!("median (min–max) of {} runs:", settings.runs);
    if settings.prefault_mib > 0 {
        println!(
            "({} MiB of memory written to and freed before each cold poll)",
            settings.prefault_mib
        );
    }
    report(&format!("cold {n}"), &cold, n * m, n * m);
    if scale_to > 0 {
        report(
            &format!("cold {scale_to}"),
            &cold_scaled,
            scale_to * m,
            scale_to * m,
        );
        for (what, ratios) in [("CPU", &scale_ratios), ("user CPU", &user_ratios)] {
            let (ratio, low, high) = median(ratios.clone());
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
            println!(
                "{what} per entry, {scale_to} feeds over {n} (ratio within each run): median {ratio:.3} ({low:.3}–{high:.3}; runs: {})",
                each.join(", ")
            );
        }
    }
    let joined: Vec<String> = joined
        .iter()
        .map(|(feeds, share)| format!("{:.1}% at {feeds} feeds", share * 100.0))
        .collect();
    println!(
        "entries that joined an earlier entry's story (last run): {}",
        joined.join(", ")
    );
    report("index catch-up", &catch_up, n * m, 0);
    report("warm (304)", &warm, 0, 0);
    report(
        "incremental",
        &incremental,
        changed.len() * m,
        changed.len() * NEW_PER_CHANGE,
    );
    let (db, _, _) = median(db_bytes.iter().map(|&b| b as f64).collect());
    println!(
        "database after the cold poll and the index catch-up: {:.1} MB, {:.0} bytes per entry (XML: {:.0} bytes per entry)",
        db / 1e6,
        db / (n * m) as f64,
        xml_bytes as f64 / (n * m) as f64
    );
    let [ok, not_modified, bytes] = site.counters.read();
    println!(
        "server: {} responses 200, {} responses 304, {:.1} MB sent{}",
        ok - scale_traffic[0],
        not_modified - scale_traffic[1],
        (bytes - scale_traffic[2]) as f64 / 1e6,
        if scale_to > 0 {
            format!(
                " (and {} responses, {:.1} MB for the {scale_to}-feed polls)",
                scale_traffic[0] + scale_traffic[1],
                scale_traffic[2] as f64 / 1e6
            )
        } else {
            String::new()
        }
    );
    if settings.idle_secs > 0
        && let Some(dir) = &last_dir
    {
        let config = dir.path().join("feedhound.toml");
        let (rss, hwm) = idle_daemon_memory(
            &settings.binary,
            &config,
            Duration::from_secs(settings.idle_secs),
        );
        println!(
            "idle daemon (`feedhound run`, {n} feeds, nothing due, after {} s): RSS {rss:.1} MB (peak {hwm:.1} MB)",
            settings.idle_secs
        );
    }
}
