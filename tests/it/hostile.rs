//! Hostile servers and hostile documents. Every misbehaving feed must end in a clear per-feed
//! error in `feeds.last_error` (or be handled correctly), in bounded time and memory, while a
//! normal feed on the same server, polled in the same pass, is stored normally.
//!
//! Each test prints one line per case (`cargo test hostile -- --nocapture`): the error text
//! stored, or how many entries were.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helpers::{App, FeedServer, Route, rss};

/// One feed's state after the poll.
#[derive(Debug)]
struct Case {
    error: Option<String>,
    entries: i64,
}

/// The last path segment of each feed's URL → its error and entry count.
fn cases(app: &App) -> HashMap<String, Case> {
    let db = app.db();
    let mut statement = db
        .prepare(
            "SELECT f.url, f.last_error, (SELECT count(*) FROM entries e WHERE e.feed_id = f.id)
             FROM feeds f",
        )
        .unwrap();
    statement
        .query_map([], |r| {
            let url: String = r.get(0)?;
            let name = url.rsplit('/').next().unwrap_or_default().to_owned();
            Ok((
                name,
                Case {
                    error: r.get(1)?,
                    entries: r.get(2)?,
                },
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn print_cases(group: &str, cases: &HashMap<String, Case>) {
    let mut names: Vec<&String> = cases.keys().collect();
    names.sort();
    for name in names {
        let case = &cases[name];
        match &case.error {
            Some(error) => println!("[{group}] {name}: error: {error}"),
            None => println!("[{group}] {name}: ok, {} entries stored", case.entries),
        }
    }
}

/// The error a case recorded; panics with the whole table when it has none.
fn error_of<'a>(cases: &'a HashMap<String, Case>, name: &str) -> &'a str {
    cases[name]
        .error
        .as_deref()
        .unwrap_or_else(|| panic!("{name} recorded no error: {cases:#?}"))
}

fn assert_stored(cases: &HashMap<String, Case>, name: &str, entries: i64) {
    let case = &cases[name];
    assert_eq!(
        (case.error.as_deref(), case.entries),
        (None, entries),
        "{name}: {cases:#?}"
    );
}

const NORMAL: &str = "normal.xml";

fn normal_feed() -> String {
    rss(&[
        "<guid>n1</guid><title>Normal one</title><link>https://news.example/n1</link>",
        "<guid>n2</guid><title>Normal two</title><link>https://news.example/n2</link>",
    ])
}

/// An app polling `paths` of `server` plus the normal feed, every fetch in parallel (so the slow
/// cases overlap) and with a short `timeout`; `polling` goes into `[polling]`, `extra` after.
fn app_for(server: &FeedServer, paths: &[&str], polling: &str, extra: &str) -> App {
    server.feed(NORMAL, normal_feed());
    let mut urls: Vec<String> = paths.iter().map(|p| server.url(p)).collect();
    urls.push(server.url(NORMAL));
    let app = App::with_polling(
        &urls,
        &format!("concurrency = 128\nper_host_concurrency = 128\n{polling}"),
        extra,
    );
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replacen("timeout = \"10s\"", "timeout = \"2s\"", 1),
    )
    .unwrap();
    app
}

// ---------------------------------------------------------------------------------------------
// Raw responses
// ---------------------------------------------------------------------------------------------

fn head(headers: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n{headers}\r\n")
}

/// Writes `chunk` every `pause` until the client goes away or `for_at_most` passes (so a
/// handler never outlives the test by much).
fn keep_writing(stream: &mut TcpStream, chunk: &[u8], pause: Duration, for_at_most: Duration) {
    let started = Instant::now();
    while started.elapsed() < for_at_most {
        if stream.write_all(chunk).is_err() {
            return;
        }
        std::thread::sleep(pause);
    }
}

/// Closes the connection with a TCP RST rather than a FIN: SO_LINGER with a zero timeout.
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized `linger` value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
    drop(stream);
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

const CAP: u64 = 64 * 1024;
const BOMB_SIZE: u64 = 1 << 30;

/// A gzip stream inflating to `size` zero bytes (a multiple of 1 MiB). Deflate's best ratio is about 1:1030, so
/// this is about 1 MB. Compressing a gigabyte takes seconds, so one megabyte is compressed and
/// its steady-state deflate block (byte-aligned by a sync flush, referring only to the zeros
/// before it) repeated. The trailer's CRC is left at zero: a reader that honours the cap stops
/// a thousand times earlier, and one that does not has run out of memory before checking it.
fn gzip_bomb(size: u64) -> Vec<u8> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let mut block_ends = Vec::new();
    for _ in 0..3 {
        encoder.write_all(&zeros).unwrap();
        encoder.flush().unwrap();
        block_ends.push(encoder.get_ref().len());
    }
    let deflate = encoder.get_ref();
    let steady = &deflate[block_ends[1]..block_ends[2]];
    assert_eq!(
        &deflate[block_ends[0]..block_ends[1]],
        steady,
        "a megabyte of zeros after zeros always compresses to the same block"
    );
    let mut bomb = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    bomb.extend_from_slice(&deflate[..block_ends[0]]);
    for _ in 1..size as usize / CHUNK {
        bomb.extend_from_slice(steady);
    }
    // An empty final block with fixed codes (BFINAL=1, BTYPE=01, end-of-block), CRC32, ISIZE.
    bomb.extend_from_slice(&[0x03, 0x00]);
    bomb.extend_from_slice(&0u32.to_le_bytes());
    bomb.extend_from_slice(&((size % (1 << 32)) as u32).to_le_bytes());
    bomb
}

/// A brotli stream inflating to `size` zero bytes (a multiple of 4 MiB), in a few kilobytes: brotli copies
/// reach 16 MiB back. Built like the gzip one: compressed in steady-state chunks (each flush
/// ends a meta-block on a byte boundary), one chunk repeated, then the closing bytes.
fn brotli_bomb(size: u64) -> Vec<u8> {
    const CHUNK: usize = 4 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut encoder = brotli::CompressorWriter::new(Vec::new(), 1 << 16, 4, 24);
    let mut block_ends = Vec::new();
    for _ in 0..3 {
        encoder.write_all(&zeros).unwrap();
        encoder.flush().unwrap();
        block_ends.push(encoder.get_ref().len());
    }
    let stream = encoder.into_inner();
    let steady = &stream[block_ends[1]..block_ends[2]];
    assert_eq!(
        &stream[block_ends[0]..block_ends[1]],
        steady,
        "four megabytes of zeros after zeros always compress to the same meta-blocks"
    );
    let mut bomb = stream[..block_ends[0]].to_vec();
    for _ in 1..size as usize / CHUNK {
        bomb.extend_from_slice(steady);
    }
    bomb.extend_from_slice(&stream[block_ends[2]..]);
    bomb
}

/// Inflates and counts the bytes: the bombs are what they claim to be (checked at a size an
/// unoptimised decoder gets through quickly; the construction does not depend on the size).
#[test]
fn the_compression_bombs_inflate_to_the_size_they_claim() {
    const SIZE: u64 = 32 << 20;
    let inflated = |mut reader: Box<dyn std::io::Read>| {
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap()
    };
    let gzip = gzip_bomb(SIZE);
    // The deflate stream between the 10-byte header and the 8-byte trailer (whose CRC is not
    // computed, see `gzip_bomb`).
    let deflate = gzip[10..gzip.len() - 8].to_vec();
    let gzip_size = inflated(Box::new(flate2::read::DeflateDecoder::new(&deflate[..])));
    let brotli = brotli_bomb(SIZE);
    let brotli_size = inflated(Box::new(brotli::Decompressor::new(&brotli[..], 1 << 16)));
    assert_eq!((gzip_size, brotli_size), (SIZE, SIZE));
}

fn encoded(body: Vec<u8>, encoding: &'static str) -> Route {
    let mut route = Route::feed(body).without_validators();
    route
        .headers
        .push(("Content-Encoding".into(), encoding.into()));
    route
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_servers_each_end_in_a_clear_error_while_a_normal_feed_is_stored() {
    let server = FeedServer::start();
    // Headers that never finish: a byte of one header line every 100 ms.
    server.set(
        "slowloris.xml",
        Route::raw(|mut stream| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ");
            keep_writing(
                &mut stream,
                b"a",
                Duration::from_millis(100),
                Duration::from_secs(6),
            );
        }),
    );
    // A body trickled a byte a second.
    server.set(
        "trickle.xml",
        Route::raw(|mut stream| {
            let _ = stream.write_all(head("Content-Length: 5000\r\n").as_bytes());
            keep_writing(
                &mut stream,
                b"<",
                Duration::from_secs(1),
                Duration::from_secs(6),
            );
        }),
    );
    // A body that never ends, as fast as the client reads it.
    server.set(
        "endless.xml",
        Route::raw(|mut stream| {
            let _ = stream.write_all(head("Connection: close\r\n").as_bytes());
            let _ = stream.write_all(b"<rss version=\"2.0\"><channel><title>t</title>");
            let items = "<item><title>more</title></item>".repeat(512);
            keep_writing(
                &mut stream,
                items.as_bytes(),
                Duration::ZERO,
                Duration::from_secs(6),
            );
        }),
    );
    let too_big = format!(
        "<rss version=\"2.0\"><channel><title>t</title>{}</channel></rss>",
        "<item><title>x</title></item>".repeat(4000)
    );
    assert!(too_big.len() as u64 > CAP);
    // The helper server always sends a true Content-Length.
    server.feed("over_cap_with_length.xml", too_big.clone());
    server.set(
        "over_cap_without_length.xml",
        Route::raw(move |mut stream| {
            let _ = stream.write_all(head("Connection: close\r\n").as_bytes());
            let _ = stream.write_all(too_big.as_bytes());
        }),
    );
    // Announces more than it sends, then closes.
    server.set(
        "length_lies_long.xml",
        Route::raw(|mut stream| {
            let body = normal_feed();
            let _ = stream
                .write_all(head(&format!("Content-Length: {}\r\n", body.len() + 1000)).as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }),
    );
    // Announces less than it sends: the client reads what was announced, a truncated document.
    server.set(
        "length_lies_short.xml",
        Route::raw(|mut stream| {
            let body = normal_feed();
            let _ = stream.write_all(
                head(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n",
                    body.len() / 2
                ))
                .as_bytes(),
            );
            let _ = stream.write_all(body.as_bytes());
        }),
    );
    // Announces terabytes and sends a small feed.
    server.set(
        "length_lies_huge.xml",
        Route::raw(|mut stream| {
            let body = normal_feed();
            let _ = stream.write_all(head("Content-Length: 1099511627776\r\n").as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }),
    );
    let building = Instant::now();
    let gzip = gzip_bomb(BOMB_SIZE);
    let brotli = brotli_bomb(BOMB_SIZE);
    println!(
        "gzip bomb: {} bytes → {BOMB_SIZE}; brotli bomb: {} bytes → {BOMB_SIZE}; built in {:?}",
        gzip.len(),
        brotli.len(),
        building.elapsed()
    );
    assert!(brotli.len() < 64 * 1024, "{}", brotli.len());
    server.set("gzip_bomb.xml", encoded(gzip, "gzip"));
    server.set("brotli_bomb.xml", encoded(brotli, "br"));
    server.set(
        "reset_mid_body.xml",
        Route::raw(|mut stream| {
            let _ = stream.write_all(head("Content-Length: 5000\r\n").as_bytes());
            let _ = stream.write_all(b"<rss version=\"2.0\"><channel><title>cut</title>");
            std::thread::sleep(Duration::from_millis(50));
            reset(stream);
        }),
    );
    server.feed("empty.xml", "");
    let real_feed = server.url("real-feed.xml");
    let mut page = Route::feed(
        "<!DOCTYPE html><html><head><title>News</title>\
         <link rel=\"alternate\" type=\"application/rss+xml\" href=\"/real-feed.xml\">\
         </head><body><p>Welcome</p></body></html>",
    );
    page.content_type = "text/html; charset=utf-8".into();
    server.set("html_page.xml", page.clone());
    page.body = b"<html><body>No feed here</body></html>".to_vec();
    server.set("html_page_without_link.xml", page);
    // 304 to a first fetch, which sends no validators.
    server.set(
        "unasked_304.xml",
        Route {
            status: 304,
            validators: false,
            ..Route::feed("")
        },
    );

    let paths = [
        "slowloris.xml",
        "trickle.xml",
        "endless.xml",
        "over_cap_with_length.xml",
        "over_cap_without_length.xml",
        "length_lies_long.xml",
        "length_lies_short.xml",
        "length_lies_huge.xml",
        "gzip_bomb.xml",
        "brotli_bomb.xml",
        "reset_mid_body.xml",
        "empty.xml",
        "html_page.xml",
        "html_page_without_link.xml",
        "unasked_304.xml",
    ];
    let app = app_for(&server, &paths, &format!("max_body_size = {CAP}"), "");
    let memory_before = peak_rss();
    let started = Instant::now();
    let summary = app.poll().await;
    let took = started.elapsed();
    let memory_growth = peak_rss().saturating_sub(memory_before);
    let cases = cases(&app);
    print_cases("network", &cases);
    println!("poll took {took:?}; peak RSS grew by {memory_growth} bytes; {summary}");

    assert_stored(&cases, NORMAL, 2);
    assert_eq!(summary.feeds_ok, 1, "{summary}");
    assert_eq!(summary.feeds_failed, paths.len(), "{summary}");
    assert!(
        took < Duration::from_secs(4),
        "the 2 s timeout bounds the poll: {took:?}"
    );
    // The bombs inflate to a gigabyte each; the cap keeps them at 64 KiB. (Other tests run in
    // this process too, so this is a loose bound, far below what an uncapped read would take.)
    assert!(
        memory_growth < 256 << 20,
        "peak RSS grew by {memory_growth}"
    );
    for slow in ["slowloris.xml", "trickle.xml"] {
        assert_eq!(error_of(&cases, slow), "timed out after 2s");
    }
    let too_large = "response body is larger than max_body_size (65536 bytes)";
    for big in [
        "endless.xml",
        "over_cap_with_length.xml",
        "over_cap_without_length.xml",
        "length_lies_huge.xml",
        "gzip_bomb.xml",
        "brotli_bomb.xml",
    ] {
        assert_eq!(error_of(&cases, big), too_large, "{big}");
    }
    assert!(
        error_of(&cases, "length_lies_long.xml").contains("network error"),
        "{cases:#?}"
    );
    assert!(
        error_of(&cases, "length_lies_short.xml").starts_with("not a valid feed"),
        "{cases:#?}"
    );
    assert!(
        error_of(&cases, "reset_mid_body.xml").contains("network error"),
        "{cases:#?}"
    );
    assert_eq!(error_of(&cases, "empty.xml"), "the document is empty");
    assert_eq!(
        error_of(&cases, "html_page.xml"),
        format!("this is an HTML page; its feed may be at {real_feed}")
    );
    assert!(
        error_of(&cases, "html_page_without_link.xml").starts_with("this is an HTML page"),
        "{cases:#?}"
    );
    assert!(
        error_of(&cases, "unasked_304.xml")
            .starts_with("HTTP status 304 Not Modified to a request without If-None-Match"),
        "{cases:#?}"
    );
    assert_eq!(
        app.count("SELECT last_status FROM feeds WHERE url LIKE '%unasked_304.xml'"),
        304
    );
}

fn redirect(to: &str) -> Route {
    let mut route = Route::feed("moved").without_validators();
    route.status = 302;
    route.headers.push(("Location".into(), to.into()));
    route
}

#[tokio::test]
async fn redirect_loops_long_chains_and_other_schemes_are_refused() {
    let server = FeedServer::start();
    server.set("loop_a.xml", redirect("loop_b.xml"));
    server.set("loop_b.xml", redirect("loop_a.xml"));
    // hop0 → hop1 → … → hop11 → the feed: eleven redirects.
    for hop in 0..=11 {
        server.set(
            &format!("hop{hop}.xml"),
            redirect(&format!("hop{}.xml", hop + 1)),
        );
    }
    server.feed("hop12.xml", normal_feed());
    let schemes = [
        ("to_file.xml", "file:///etc/passwd"),
        ("to_ftp.xml", "ftp://127.0.0.1/feed.xml"),
        ("to_gopher.xml", "gopher://127.0.0.1/feed"),
        ("to_data.xml", "data:application/rss+xml,<rss/>"),
        ("to_javascript.xml", "javascript:alert(1)"),
    ];
    for (path, target) in schemes {
        server.set(path, redirect(target));
    }
    let mut paths = vec!["loop_a.xml", "hop0.xml", "hop2.xml"];
    paths.extend(schemes.iter().map(|(path, _)| *path));
    let app = app_for(&server, &paths, "", "");
    let summary = app.poll().await;
    let cases = cases(&app);
    print_cases("redirects", &cases);

    assert_stored(&cases, NORMAL, 2);
    // Ten redirects are fine.
    assert_stored(&cases, "hop2.xml", 2);
    assert_eq!(
        (summary.feeds_ok, summary.feeds_failed),
        (2, 7),
        "{summary}"
    );
    assert!(
        error_of(&cases, "loop_a.xml").starts_with("redirect loop through http://127.0.0.1:"),
        "{cases:#?}"
    );
    assert_eq!(error_of(&cases, "hop0.xml"), "more than 10 redirects");
    assert!(
        server.requests("hop12.xml").len() == 1,
        "only hop2's chain reached the feed"
    );
    for (path, target) in schemes {
        let scheme = target.split(':').next().unwrap();
        let error = error_of(&cases, path);
        assert!(
            error.starts_with(&format!("refusing to fetch {scheme}:"))
                && error.ends_with("only http and https URLs are fetched"),
            "{path}: {error}"
        );
    }
}

#[tokio::test]
async fn entities_are_never_expanded_and_external_ones_never_fetched() {
    let server = FeedServer::start();
    let elsewhere = FeedServer::start_on("127.0.0.2");
    elsewhere.feed("evil.dtd", "<!ENTITY stolen \"pwned\">");
    let mut laughs = String::from("<!DOCTYPE rss [\n<!ENTITY lol \"lol\">\n");
    laughs.push_str("<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n");
    for level in 2..=9 {
        let previous = format!("&lol{};", level - 1).repeat(10);
        laughs.push_str(&format!("<!ENTITY lol{level} \"{previous}\">\n"));
    }
    laughs.push(']');
    let with_doctype = |doctype: &str, title: &str| {
        rss(&[&format!(
            "<guid>e1</guid><title>{title}</title><link>https://news.example/e1</link>"
        )])
        .replacen("<rss ", &format!("{doctype}>\n<rss "), 1)
    };
    server.feed("billion_laughs.xml", with_doctype(&laughs, "Laughs &lol9;"));
    server.feed(
        "xxe_file.xml",
        with_doctype(
            "<!DOCTYPE rss [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]",
            "Secret &xxe;",
        ),
    );
    let remote = elsewhere.url("evil.dtd");
    server.feed(
        "xxe_http.xml",
        with_doctype(
            &format!("<!DOCTYPE rss [<!ENTITY xxe SYSTEM \"{remote}\">]"),
            "Remote &xxe;",
        ),
    );
    server.feed(
        "xxe_parameter.xml",
        with_doctype(
            &format!("<!DOCTYPE rss [<!ENTITY % dtd SYSTEM \"{remote}\"> %dtd;]"),
            "Parameter &stolen;",
        ),
    );
    server.feed(
        "external_dtd.xml",
        with_doctype(
            &format!("<!DOCTYPE rss SYSTEM \"{remote}\""),
            "External DTD",
        ),
    );
    let paths = [
        "billion_laughs.xml",
        "xxe_file.xml",
        "xxe_http.xml",
        "xxe_parameter.xml",
        "external_dtd.xml",
    ];
    let app = app_for(&server, &paths, "", "");
    let started = Instant::now();
    app.poll().await;
    let took = started.elapsed();
    let cases = cases(&app);
    print_cases("entities", &cases);
    let titles: Vec<(String, String)> = app
        .db()
        .prepare("SELECT f.url, e.title FROM entries e JOIN feeds f ON f.id = e.feed_id")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    println!("entities: titles stored {titles:?}, took {took:?}");

    assert_stored(&cases, NORMAL, 2);
    assert!(
        elsewhere.all_requests().is_empty(),
        "an external entity or DTD was fetched: {:?}",
        elsewhere.all_requests()
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    for (url, title) in &titles {
        assert!(title.len() < 200, "{url}: an entity was expanded: {title}");
        assert!(!title.contains("root:"), "{url}: /etc/passwd leaked");
        assert!(!title.contains("pwned"), "{url}: the remote DTD was used");
        assert!(!title.contains("lollol"), "{url}: entities were expanded");
    }
    // Each document is either stored (entities left as written) or refused with an error.
    for path in paths {
        let case = &cases[path];
        assert!(
            case.entries == 1 || case.error.is_some(),
            "{path}: neither stored nor refused: {case:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Encodings
// ---------------------------------------------------------------------------------------------

/// An RSS document with one item titled `title`, declaring `declared` (or nothing).
fn feed_in(declared: Option<&str>, guid: &str, title: &str) -> String {
    let declaration = match declared {
        Some(label) => format!("<?xml version=\"1.0\" encoding=\"{label}\"?>\n"),
        None => String::new(),
    };
    format!(
        "{declaration}<rss version=\"2.0\"><channel><title>Encoded</title>\
         <link>https://news.example/</link><description>d</description>\
         <item><guid>{guid}</guid><title>{title}</title>\
         <link>https://news.example/{guid}</link><description>{title}</description></item>\
         </channel></rss>"
    )
}

fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
    let units = bom
        .then_some(0xFEFF_u16)
        .into_iter()
        .chain(text.encode_utf16());
    if big_endian {
        units.flat_map(u16::to_be_bytes).collect()
    } else {
        units.flat_map(u16::to_le_bytes).collect()
    }
}

fn legacy(text: &str, label: &str) -> Vec<u8> {
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes()).unwrap();
    let (bytes, _, unmappable) = encoding.encode(text);
    assert!(!unmappable, "{text} is not representable in {label}");
    bytes.into_owned()
}

/// Served without a charset in Content-Type: only the bytes (and declaration) say what they are.
fn bytes_route(body: Vec<u8>) -> Route {
    let mut route = Route::feed(body);
    route.content_type = "application/rss+xml".into();
    route
}

#[tokio::test]
async fn documents_in_legacy_encodings_are_stored_as_correct_utf8() {
    let server = FeedServer::start();
    let english = "Fish &amp; chips “quoted” — café, naïve, Müller, 5 €";
    let latin1 = "Café Müller à Zürich, naïve façade";
    let russian = "Привет, мир: новости экономики";
    let chinese = "小米发布新款手机，销量创新高";
    let japanese = "ソニーが新しいカメラを発表しました";
    // (path, bytes, expected title)
    let mut documents: Vec<(String, Vec<u8>, &str)> = Vec::new();
    for (big_endian, order) in [(false, "le"), (true, "be")] {
        for (bom, with) in [(true, "bom"), (false, "nobom")] {
            let text = feed_in(Some("UTF-16"), &format!("u16{order}{with}"), russian);
            documents.push((
                format!("utf16{order}_{with}.xml"),
                utf16(&text, big_endian, bom),
                russian,
            ));
        }
    }
    let legacies = [
        ("iso-8859-1", "latin1", latin1),
        ("windows-1252", "cp1252", english),
        ("windows-1251", "cp1251", russian),
        ("gb2312", "gb2312", chinese),
        ("shift_jis", "sjis", japanese),
    ];
    for (label, short, title) in legacies {
        documents.push((
            format!("{short}_declared.xml"),
            legacy(&feed_in(Some(label), &format!("{short}d"), title), label),
            title,
        ));
        documents.push((
            format!("{short}_undeclared.xml"),
            legacy(&feed_in(None, &format!("{short}u"), title), label),
            title,
        ));
    }
    for (path, bytes, _) in &documents {
        server.set(path, bytes_route(bytes.clone()));
    }
    // A declaration that lies (says UTF-8, is windows-1251) but an HTTP charset that is right.
    let mut by_header = bytes_route(legacy(
        &feed_in(Some("UTF-8"), "hdr", russian),
        "windows-1251",
    ));
    by_header.content_type = "application/rss+xml; charset=windows-1251".into();
    server.set("cp1251_by_http_charset.xml", by_header);
    documents.push(("cp1251_by_http_charset.xml".into(), Vec::new(), russian));

    let paths: Vec<&str> = documents.iter().map(|(p, _, _)| p.as_str()).collect();
    let app = app_for(
        &server,
        &paths,
        "",
        "\n[[company]]\nname = \"Xiaomi\"\naliases = [\"小米\"]\n",
    );
    app.poll().await;
    let cases = cases(&app);
    print_cases("encodings", &cases);
    let stored: HashMap<String, String> = app
        .db()
        .prepare("SELECT f.url, e.title FROM entries e JOIN feeds f ON f.id = e.feed_id")
        .unwrap()
        .query_map([], |r| {
            let url: String = r.get(0)?;
            Ok((url.rsplit('/').next().unwrap().to_owned(), r.get(1)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut wrong = Vec::new();
    for (path, _, expected) in &documents {
        let expected = expected.replace("&amp;", "&");
        let got = stored.get(path).map(String::as_str);
        println!("[encodings] {path}: title {got:?}");
        if got != Some(expected.as_str()) {
            wrong.push(format!("{path}: stored {got:?}, want {expected:?}"));
        }
    }
    assert_stored(&cases, NORMAL, 2);
    assert!(wrong.is_empty(), "{wrong:#?}");
    let flagged: Vec<String> = app
        .db()
        .prepare("SELECT title FROM flagged_stories WHERE companies = 'Xiaomi'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        flagged.iter().any(|title| title == chinese),
        "the GB2312 story about 小米 is flagged: {flagged:?}"
    );
}

#[tokio::test]
async fn old_rss_dialects_are_stored() {
    let server = FeedServer::start();
    server.feed(
        "rss_without_version.xml",
        "<rss><channel><title>No version</title><link>https://news.example/</link>\
         <item><title>Versionless</title><link>https://news.example/v1</link></item>\
         </channel></rss>",
    );
    server.feed(
        "rss_090.xml",
        "<?xml version=\"1.0\"?>\
         <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" \
         xmlns=\"http://my.netscape.com/rdf/simple/0.9/\">\
         <channel><title>Netscape</title><link>https://news.example/</link>\
         <description>old</description></channel>\
         <item><title>Ninety one</title><link>https://news.example/90a</link></item>\
         <item><title>Ninety two</title><link>https://news.example/90b</link></item>\
         </rdf:RDF>",
    );
    let app = app_for(&server, &["rss_without_version.xml", "rss_090.xml"], "", "");
    app.poll().await;
    let cases = cases(&app);
    print_cases("dialects", &cases);
    assert_stored(&cases, NORMAL, 2);
    assert_stored(&cases, "rss_without_version.xml", 1);
    assert_stored(&cases, "rss_090.xml", 2);
}

// ---------------------------------------------------------------------------------------------
// Absurd content
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_documents_are_stored_within_limits() {
    let server = FeedServer::start();
    let many: Vec<String> = (0..10_000)
        .map(|i| {
            format!(
                "<guid>m{i}</guid><title>Entry {i}</title><link>https://news.example/m{i}</link>"
            )
        })
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    server.feed("ten_thousand.xml", rss(&many));
    let huge_title = "A".repeat(1 << 20);
    server.feed(
        "huge_title.xml",
        rss(&[&format!(
            "<guid>big</guid><title>{huge_title}</title><link>https://news.example/big</link>"
        )]),
    );
    server.feed(
        "nul_bytes.xml",
        rss(&[
            "<guid>nul</guid><title>Nul\0 in\0 title</title><link>https://news.example/nul</link>",
        ])
        .replace("<channel>", "<channel>\0"),
    );
    server.feed(
        "odd_dates.xml",
        rss(&[
            "<guid>d9999</guid><title>Far future</title><pubDate>Fri, 31 Dec 9999 23:59:59 GMT</pubDate>",
            "<guid>dbad</guid><title>Garbage date</title><pubDate>the day after tomorrow-ish</pubDate>",
            "<guid>d0</guid><title>Year zero</title><pubDate>Sat, 01 Jan 0000 00:00:00 GMT</pubDate>",
        ]),
    );
    server.feed(
        "only_links.xml",
        rss(&[
            "<link>https://news.example/only-1</link>",
            "<link>https://news.example/only-2</link>",
        ]),
    );
    let paths = [
        "ten_thousand.xml",
        "huge_title.xml",
        "nul_bytes.xml",
        "odd_dates.xml",
        "only_links.xml",
    ];
    let app = app_for(&server, &paths, "", "");
    let started = Instant::now();
    app.poll().await;
    let took = started.elapsed();
    let cases = cases(&app);
    print_cases("absurd", &cases);
    println!("absurd: poll took {took:?}");

    assert_stored(&cases, NORMAL, 2);
    assert_stored(&cases, "ten_thousand.xml", 10_000);
    assert_stored(&cases, "huge_title.xml", 1);
    assert_stored(&cases, "nul_bytes.xml", 1);
    assert_stored(&cases, "odd_dates.xml", 3);
    assert_stored(&cases, "only_links.xml", 2);
    let title_length = app.count("SELECT max(length(title)) FROM entries WHERE guid = 'big'");
    assert!(
        (1..=1000).contains(&title_length),
        "the title is capped: {title_length}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE guid = 'nul' AND title = 'Nul in title'"),
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE guid LIKE 'd%' AND published_at IS NOT NULL"),
        0,
        "implausible and unparsable dates are not stored"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM entries WHERE link LIKE 'https://news.example/only-%' AND title IS NULL"
        ),
        2
    );
    // A second poll of the same 10,000 entries stores nothing twice.
    let summary = app.poll().await;
    assert_eq!(summary.entries_new, 0, "{summary}");
    assert_eq!(
        app.count("SELECT count(*) FROM entries"),
        10_000 + 2 + 1 + 1 + 3 + 2
    );
}
