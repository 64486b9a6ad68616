//! Feed documents → normalised entries.
//!
//! `parse_feed` takes the bytes `fetch` brought back and returns a [`ParsedFeed`] whose entries
//! carry plain text, resolved links and a `dedup_key` the store can rely on. The actual RSS /
//! Atom / JSON Feed grammar is feed-rs's job; this module owns everything around it that real
//! feeds need:
//!
//! 1. **Bytes → UTF-8** (`decode_document`). feed-rs decodes by the XML declaration only,
//!    fails on any invalid byte and panics on UTF-16. We decode every document to UTF-8
//!    ourselves (BOM, then valid UTF-8, then declaration, then the HTTP charset, then a
//!    guess from the bytes) and rewrite the declaration so feed-rs sees consistent UTF-8.
//! 2. **Sniffing and repairs** (`sniff_root`, `repair_dialects`): empty bodies and HTML
//!    pages are told apart from broken feeds (an HTML page yields its advertised feed link);
//!    `<rss>` without a version and the Netscape RSS 0.90 namespace are rewritten into forms
//!    feed-rs accepts; a feed pasted into an XHTML page is cut out of it; and after a failed
//!    parse, bare `&`s ("Fish & Chips") are escaped and the parse retried once.
//! 3. **Reading** (`read_document`), behind `catch_unwind`: RSS 2.0 and Atom of the usual shape
//!    by [`direct`], a direct reader that gives exactly feed-rs's reading in about half its time;
//!    everything else by feed-rs, with an id generator that invents nothing, so an entry's
//!    `id` is the publisher's guid or empty. Both produce the `FeedFields` normalisation reads.
//! 4. **Normalisation** (`normalise_feed`): text via [`crate::text::html_to_text`], caps
//!    against absurd input, plausible dates only, canonical links, the content hash and the
//!    dedup key (see `dedup_key`).
//!
//! Entity expansion: quick-xml (under feed-rs) never expands entities declared in a DTD and
//! never fetches external ones; a reference to one stays in the text as written (`&lol9;`),
//! so "billion laughs" and XXE documents cost nothing. A test pins this down.

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};
use url::Url;

use crate::model::{ParsedEntry, ParsedFeed};
use crate::text::html_to_text;

mod direct;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the document is empty")]
    Empty,
    /// An HTML page where a feed was expected; `feed_links` are the page's
    /// `<link rel="alternate">` feeds, in its order. The message names the first: it is the URL
    /// the user most likely meant to configure.
    #[error("{}", html_page_text(.feed_links.first().map(String::as_str)))]
    HtmlPage { feed_links: Vec<String> },
    #[error("not a valid feed: {0}")]
    Invalid(String),
    #[error("the feed parser crashed on this document: {0}")]
    Panicked(String),
}

fn html_page_text(feed_link: Option<&str>) -> String {
    match feed_link {
        Some(link) => format!("this is an HTML page; its feed may be at {link}"),
        None => "this is an HTML page, not a feed, and it links to no feed".to_owned(),
    }
}

/// Longest title kept, in characters; real titles are far below, this only stops a broken
/// feed from storing a megabyte per row.
const MAX_TITLE_CHARS: usize = 1_000;
/// Longest author kept, in characters.
const MAX_AUTHOR_CHARS: usize = 500;
/// Longest summary or content kept, in bytes of UTF-8 (256 KiB holds a long article's text
/// several times over).
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest guid kept, in bytes; guids are URLs or short tokens in practice.
const MAX_GUID_BYTES: usize = 2_048;
/// Links longer than this are ignored (8 KiB is the common server limit for a request line).
const MAX_LINK_BYTES: usize = 8_192;
/// How far into the future a date may lie and still be believed: time zones and clock skew
/// explain a day; anything later is a typo or a placeholder.
const FUTURE_DATE_TOLERANCE: TimeDelta = TimeDelta::days(2);

/// Parses one fetched document. `url` is where it was fetched from (base for relative links).
pub fn parse_feed(
    body: &[u8],
    content_type: Option<&str>,
    url: &Url,
) -> Result<ParsedFeed, ParseError> {
    // The feed URL may carry the user's credentials (https://user:token@host/feed.xml). Links
    // resolved against it would keep them, and links are stored, printed and sent to webhooks.
    let url = &without_credentials(url);
    if is_blank(body) {
        return Err(ParseError::Empty);
    }
    let document = decode_document(body, content_type);
    if document
        .trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}' || c == '\0')
        .is_empty()
    {
        return Err(ParseError::Empty);
    }
    let document = without_nul(document);
    let root = sniff_root(&document);
    if let Some(Root::Element { name, .. }) = &root
        && is_html_root(name)
    {
        return match embedded_feed(&document) {
            Some(feed) => parse_feed(feed.as_bytes(), None, url),
            None => Err(ParseError::HtmlPage {
                feed_links: find_feed_links(&document, url),
            }),
        };
    }
    let document = repair_dialects(document, root.as_ref());
    let feed = match read_document(&document, url) {
        Err(ParseError::Invalid(error)) if matches!(root, Some(Root::Json)) => {
            let repaired = repair_json_feed(&document).ok_or(ParseError::Invalid(error))?;
            // What could be repaired is: whatever else is wrong is the error to report.
            read_document(&repaired, url)?
        }
        Err(ParseError::Invalid(error)) => {
            let repaired = escape_bare_ampersands(&document)
                .ok_or_else(|| ParseError::Invalid(error.clone()))?;
            // If the repair does not help, the first error is the one that explains the document.
            read_document(&repaired, url).map_err(|_| ParseError::Invalid(error))?
        }
        other => other?,
    };
    Ok(normalise_feed(feed, &document, url))
}

fn without_credentials(url: &Url) -> Url {
    let mut url = url.clone();
    // These setters fail only for URLs that cannot carry credentials.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

/// The canonical form of a story link (see `ParsedEntry::canonical_link`).
///
/// `https://WWW.Example.com:443/a/b/?utm_source=x&id=7#top` → `example.com/a/b?id=7`. The scheme
/// is dropped for http(s) (sites serve the same story on both), as are `www.`, a default port,
/// user info, the fragment, a trailing slash and known tracking parameters; the remaining
/// query is kept byte for byte and in order, since it often names the story (`?p=123`).
/// Non-web schemes keep their scheme and lose only the fragment.
pub fn canonical_link(link: &Url) -> String {
    if !matches!(link.scheme(), "http" | "https") {
        let mut link = link.clone();
        link.set_fragment(None);
        return link.to_string();
    }
    let host = link.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let mut canonical = String::with_capacity(link.as_str().len());
    canonical.push_str(host);
    // `port()` is already None for the scheme's default port.
    if let Some(port) = link.port()
        && port != 80
        && port != 443
    {
        canonical.push(':');
        canonical.push_str(&port.to_string());
    }
    canonical.push_str(link.path().trim_end_matches('/'));
    if let Some(query) = link.query() {
        let mut first = true;
        for pair in query_without(query, is_tracking_param) {
            canonical.push(if first { '?' } else { '&' });
            canonical.push_str(pair);
            first = false;
        }
    }
    canonical
}

/// The pairs of `query` that are not empty and not `dropped`, byte for byte and in order.
fn query_without(query: &str, dropped: fn(&str) -> bool) -> impl Iterator<Item = &str> {
    query
        .split('&')
        .filter(move |pair| !pair.is_empty() && !dropped(pair))
}

/// `link` without the click-tracking parameters of its query ([`is_click_tracking_param`]):
/// the links alerts, reports and the database give are the story's own, as Miniflux gives
/// them. A link without one is left as it is; otherwise the rest of the query is kept in order
/// (empty pairs dropped), and so is the fragment, which may name the item. The canonical link
/// is the same either way.
fn without_tracking_params(mut link: Url) -> Url {
    let Some(query) = link.query() else {
        return link;
    };
    if !query.split('&').any(is_click_tracking_param) {
        return link;
    }
    let kept = query_without(query, is_click_tracking_param)
        .collect::<Vec<_>>()
        .join("&");
    link.set_query(Some(kept.as_str()).filter(|kept| !kept.is_empty()));
    link
}

/// The part of a link's `#fragment` that can tell items apart: a live blog or changelog that
/// serves only its latest update links each one to its own anchor of one page, and for a feed
/// without guids that anchor is all that distinguishes the updates. Empty fragments, text
/// directives (`#:~:text=`) and tracking fragments (`#xtor=RSS-3`, `#utm_source=…`) name no item.
/// Takes the link as text (`Url`'s serialisation), since the store compares stored links too.
pub fn identity_fragment(link: &str) -> Option<&str> {
    let (_, fragment) = link.split_once('#')?;
    // AT Internet's `xtor` is common in fragments. It is not in `is_tracking_param`, since
    // dropping it from links' queries now would change the keys of entries already stored.
    let names_no_item = fragment.is_empty()
        || fragment.starts_with(":~:")
        || is_tracking_param(fragment)
        || fragment
            .get(..5)
            .is_some_and(|key| key.eq_ignore_ascii_case("xtor="));
    (!names_no_item).then_some(fragment)
}

/// Click ids and referrers that ad and mail platforms add to links.
const CLICK_IDS: [&str; 15] = [
    "fbclid", "gclid", "dclid", "gclsrc", "msclkid", "mc_cid", "mc_eid", "igshid", "yclid",
    "ref_src", "ref_url", "twclid", "ttclid", "_ga", "_gl",
];

/// A query pair's name, in lower case.
fn param_name(pair: &str) -> String {
    pair.split('=').next().unwrap_or(pair).to_ascii_lowercase()
}

/// Query parameters that only say where a click came from, for the canonical link. Sources: the
/// Google Analytics / Matomo / HubSpot / Mailchimp / Webtrekk documentation and the lists kept
/// by ClearURLs. Its prefixes are broad (`pk_`, `wt_`): a story's identity can afford to ignore
/// a parameter that names a page, rarely, but changing the list now would re-key stored entries.
fn is_tracking_param(pair: &str) -> bool {
    let key = param_name(pair);
    const PREFIXES: [&str; 6] = ["utm_", "pk_", "mtm_", "_hs", "wt_", "ga_"];
    PREFIXES.iter().any(|prefix| key.starts_with(prefix)) || CLICK_IDS.contains(&key.as_str())
}

/// The tracking parameters removed from the links feedhound stores and gives: those of
/// [`is_tracking_param`] named in full where its prefixes also catch other names (`pk_id`,
/// `wt_id`), since a parameter wrongly removed here opens another page.
fn is_click_tracking_param(pair: &str) -> bool {
    let key = param_name(pair);
    CLICK_TRACKING_PREFIXES
        .iter()
        .any(|prefix| key.starts_with(prefix))
        || CLICK_IDS.contains(&key.as_str())
        || CLICK_TRACKING_NAMES.contains(&key.as_str())
}

const CLICK_TRACKING_PREFIXES: [&str; 2] = ["utm_", "mtm_"];
/// Campaign parameters of Matomo, HubSpot, Webtrekk and Google Analytics, named in full.
const CLICK_TRACKING_NAMES: [&str; 17] = [
    "pk_campaign",
    "pk_kwd",
    "pk_keyword",
    "pk_source",
    "pk_medium",
    "pk_content",
    "pk_cid",
    "_hsenc",
    "_hsmi",
    "wt_mc",
    "wt_zmc",
    "ga_source",
    "ga_medium",
    "ga_term",
    "ga_content",
    "ga_campaign",
    "ga_place",
];

// ---------------------------------------------------------------------------------------------
// 1. Bytes → UTF-8
// ---------------------------------------------------------------------------------------------

fn is_blank(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    body.iter().all(|b| b.is_ascii_whitespace() || *b == 0)
}

/// The document as UTF-8 text whose XML declaration (if any) no longer names another encoding.
///
/// Order of evidence: a BOM; the UTF-16 byte pattern of `<?`/`<x` without BOM; valid UTF-8
/// (a document that validates as UTF-8 is UTF-8 whatever its declaration says — a Latin-1 or
/// CJK text almost never does, and feeds re-encoded by their CMS keep stale declarations);
/// the declared encoding; the `charset` of the Content-Type; UTF-8 if the document is mostly
/// UTF-8 with a few bad bytes; else the legacy encoding its bytes look like (windows-1252 for
/// Western text, the web's old default for undeclared 8-bit text).
fn decode_document<'a>(body: &'a [u8], content_type: Option<&str>) -> Cow<'a, str> {
    if let Some((encoding, bom_length)) = Encoding::for_bom(body) {
        let (text, _) = encoding.decode_without_bom_handling(&body[bom_length..]);
        return with_utf8_declaration(text);
    }
    if let Some(encoding) = utf16_without_bom(body) {
        let (text, _) = encoding.decode_without_bom_handling(body);
        return with_utf8_declaration(text);
    }
    let declared = declared_encoding(body);
    if let Ok(text) = std::str::from_utf8(body) {
        return match declared {
            Some(label) if !is_utf8_label(label) => with_utf8_declaration(Cow::Borrowed(text)),
            _ => Cow::Borrowed(text),
        };
    }
    let encoding = declared
        .and_then(legacy_encoding_named)
        .or_else(|| {
            content_type
                .and_then(charset_of)
                .and_then(|label| legacy_encoding_named(label.as_bytes()))
        })
        .unwrap_or_else(|| undeclared_encoding(body));
    let (text, _) = encoding.decode_without_bom_handling(body);
    with_utf8_declaration(text)
}

/// The encoding a label names, if it is one a document that is not valid UTF-8 can be in.
fn legacy_encoding_named(label: &[u8]) -> Option<&'static Encoding> {
    Encoding::for_label(label).filter(|e| *e != UTF_8 && e.is_ascii_compatible())
}

/// The encoding of a document that is not valid UTF-8 and names none it can be in.
fn undeclared_encoding(body: &[u8]) -> &'static Encoding {
    if mostly_utf8(body) {
        UTF_8
    } else {
        guess_legacy_encoding(body)
    }
}

/// An HTML page (an article, see `articles`) as UTF-8 text: a BOM; valid UTF-8; the `charset`
/// of the Content-Type; a `<meta charset>` near the start; else the legacy encoding its bytes
/// look like, as for a feed.
pub(crate) fn decode_html<'a>(body: &'a [u8], content_type: Option<&str>) -> Cow<'a, str> {
    if let Some((encoding, bom_length)) = Encoding::for_bom(body) {
        return encoding.decode_without_bom_handling(&body[bom_length..]).0;
    }
    if let Ok(text) = std::str::from_utf8(body) {
        return Cow::Borrowed(text);
    }
    let encoding = content_type
        .and_then(charset_of)
        .and_then(|label| legacy_encoding_named(label.as_bytes()))
        .or_else(|| meta_charset(body).and_then(legacy_encoding_named))
        .unwrap_or_else(|| undeclared_encoding(body));
    encoding.decode_without_bom_handling(body).0
}

/// The label after the first `charset=` in a page's first 1,024 bytes: `<meta charset="…">` and
/// `<meta http-equiv="Content-Type" content="text/html; charset=…">` both put it there.
fn meta_charset(body: &[u8]) -> Option<&[u8]> {
    let head = &body[..body.len().min(1024)];
    let at = head
        .windows(8)
        .position(|w| w.eq_ignore_ascii_case(b"charset="))?;
    let rest = &head[at + 8..];
    let rest = rest
        .strip_prefix(b"\"")
        .or(rest.strip_prefix(b"'"))
        .unwrap_or(rest);
    let end = rest
        .iter()
        .position(|b| matches!(b, b'"' | b'\'' | b';' | b'>' | b'/') || b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|label| !label.is_empty())
}

/// The legacy encoding of an undeclared 8-bit document, as browsers guess it: chardetng
/// (Firefox's detector) scores the byte patterns of every legacy Web encoding, so GBK,
/// Shift_JIS or windows-1251 text is read as such instead of as windows-1252 mojibake. It still
/// answers windows-1252 for Western text, the old default; it is never asked about UTF-8,
/// which the caller has ruled out. A few stray bytes (an "ï" in English text) are no evidence
/// for any detector — one byte is as good a Latvian letter as a French one — so below
/// `MIN_EVIDENCE` non-ASCII bytes the web default stands.
fn guess_legacy_encoding(body: &[u8]) -> &'static Encoding {
    /// About a short sentence of non-Latin text, or two of Chinese.
    const MIN_EVIDENCE: usize = 16;
    if body.iter().filter(|b| !b.is_ascii()).count() < MIN_EVIDENCE {
        return WINDOWS_1252;
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(body, true);
    detector.guess(None, chardetng::Utf8Detection::Deny)
}

/// NUL is not allowed anywhere in XML, and quick-xml rejects the whole document for one
/// (CMS exports leave them in); dropping them loses nothing a reader would see.
fn without_nul(document: Cow<'_, str>) -> Cow<'_, str> {
    if memchr::memchr(0, document.as_bytes()).is_none() {
        return document;
    }
    Cow::Owned(document.replace('\0', ""))
}

/// UTF-16 recognised by its first character being an ASCII `<` followed by an ASCII one.
fn utf16_without_bom(body: &[u8]) -> Option<&'static Encoding> {
    match body {
        [b'<', 0, c, 0, ..] if c.is_ascii() && *c != 0 => Some(UTF_16LE),
        [0, b'<', 0, c, ..] if c.is_ascii() && *c != 0 => Some(UTF_16BE),
        _ => None,
    }
}

/// The `encoding` label of the XML declaration, if the document starts with one.
fn declared_encoding(body: &[u8]) -> Option<&[u8]> {
    let head = &body[..body.len().min(1024)];
    let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
    let head = &head[start..];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let declaration = &head[..memchr::memmem::find(head, b"?>")?];
    let at = memchr::memmem::find(declaration, b"encoding")?;
    let rest = &declaration[at + b"encoding".len()..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b"=")?
        .trim_ascii_start();
    let quote = *rest.first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let value = &rest[1..];
    Some(&value[..memchr::memchr(quote, value)?])
}

fn is_utf8_label(label: &[u8]) -> bool {
    label.eq_ignore_ascii_case(b"utf-8") || label.eq_ignore_ascii_case(b"utf8")
}

/// The `charset` parameter of a Content-Type header value.
fn charset_of(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches(|c| c == '"' || c == '\''))
    })
}

/// True when a document that fails UTF-8 validation still has more well-formed multi-byte
/// characters than malformed sequences: a UTF-8 feed with a stray Latin-1 byte, not a Latin-1
/// feed (whose accented letters are never well-formed UTF-8).
fn mostly_utf8(body: &[u8]) -> bool {
    let (mut good, mut bad) = (0usize, 0usize);
    for chunk in body.utf8_chunks() {
        good += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
        bad += usize::from(!chunk.invalid().is_empty());
    }
    good > bad
}

/// Replaces an XML declaration's encoding by UTF-8 (the text is UTF-8 now) and drops a
/// decoded BOM. feed-rs would otherwise decode the UTF-8 again as the declared encoding.
fn with_utf8_declaration(text: Cow<'_, str>) -> Cow<'_, str> {
    let bom = if text.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    let start = text.len() - text[bom..].trim_start().len();
    let declaration_end = text[start..]
        .starts_with("<?xml")
        .then(|| text[start..].find("?>"))
        .flatten()
        .filter(|end| text[start..start + end].contains("encoding"))
        .map(|end| start + end + "?>".len());
    match (declaration_end, text) {
        (Some(end), text) => {
            const UTF8_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
            let mut rewritten = String::with_capacity(UTF8_DECLARATION.len() + text.len() - end);
            rewritten.push_str(UTF8_DECLARATION);
            rewritten.push_str(&text[end..]);
            Cow::Owned(rewritten)
        }
        (None, Cow::Borrowed(text)) => Cow::Borrowed(&text[bom..]),
        (None, Cow::Owned(mut text)) => {
            text.drain(..bom);
            Cow::Owned(text)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Sniffing and dialect repairs
// ---------------------------------------------------------------------------------------------

/// What a document starts with, once the prolog (declaration, comments, doctype) is skipped.
#[derive(Debug)]
enum Root {
    /// `<name …>`; `tag` is where the whole start tag lies in the document.
    Element {
        name: String,
        tag: std::ops::Range<usize>,
    },
    Json,
}

fn sniff_root(document: &str) -> Option<Root> {
    let bytes = document.as_bytes();
    let mut at = 0;
    loop {
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == 0) {
            at += 1;
        }
        let rest = &bytes[at..];
        if rest.first() == Some(&b'{') {
            return Some(Root::Json);
        }
        if rest.first() != Some(&b'<') {
            return None;
        }
        if rest.starts_with(b"<?") {
            at += memchr::memmem::find(rest, b"?>")? + 2;
        } else if rest.starts_with(b"<!--") {
            at += memchr::memmem::find(rest, b"-->")? + 3;
        } else if rest.starts_with(b"<!") {
            at += doctype_end(rest)? + 1;
        } else {
            let name_length = rest[1..]
                .iter()
                .position(|b| b.is_ascii_whitespace() || matches!(b, b'>' | b'/'))
                .unwrap_or(rest.len() - 1);
            let tag_length = memchr::memchr(b'>', rest).map_or(rest.len(), |end| end + 1);
            return Some(Root::Element {
                name: document[at + 1..at + 1 + name_length].to_owned(),
                tag: at..at + tag_length,
            });
        }
    }
}

/// End of a `<!DOCTYPE …>`, which may hold an internal subset in brackets with `>` inside.
fn doctype_end(rest: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote = None;
    for (i, &b) in rest.iter().enumerate() {
        match (quote, b) {
            (Some(q), _) if q == b => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'[') => depth += 1,
            (None, b']') => depth = depth.saturating_sub(1),
            (None, b'>') if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

fn is_html_root(name: &str) -> bool {
    let local = name.rsplit(':').next().unwrap_or(name);
    ["html", "head", "body"]
        .iter()
        .any(|html| local.eq_ignore_ascii_case(html))
}

/// The RSS 0.90 namespace, which feed-rs does not know; the format is RSS 1.0's predecessor
/// with the same element names, so mapping it to RSS 1.0's namespace is exact.
const RSS_090_NAMESPACE: &str = "http://my.netscape.com/rdf/simple/0.9/";
const RSS_10_NAMESPACE: &str = "http://purl.org/rss/1.0/";

/// Rewrites the two dialects feed-rs rejects but real feeds use:
/// - `<rss>` with no `version` or an unknown one (`0.93`, `2.01`…): feed-rs only dispatches on
///   `2.0`, `0.91` and `0.92`; its RSS 2.0 reader is a superset of the others, so say `2.0`.
/// - RDF in the RSS 0.90 namespace (feed-rs finds no items in it).
fn repair_dialects<'a>(document: Cow<'a, str>, root: Option<&Root>) -> Cow<'a, str> {
    let Some(Root::Element { name, tag }) = root else {
        return document;
    };
    let start = tag.start;
    let tag = &document[tag.clone()];
    if name == "rss" {
        let version = attribute(tag, "version");
        if matches!(version, Some("2.0" | "0.91" | "0.92" | "")) {
            return document;
        }
        let mut repaired = String::with_capacity(document.len() + 16);
        repaired.push_str(&document[..start + "<rss".len()]);
        repaired.push_str(" version=\"2.0\"");
        let after_name = &document[start + "<rss".len()..];
        match version {
            // Drop the old attribute: a second `version` would be a duplicate attribute.
            Some(_) => {
                let attributes_end = tag.len() - "<rss".len();
                repaired.push_str(&remove_attribute(&after_name[..attributes_end], "version"));
                repaired.push_str(&after_name[attributes_end..]);
            }
            None => repaired.push_str(after_name),
        }
        return Cow::Owned(repaired);
    }
    if name.rsplit(':').next() == Some("RDF") && document.contains(RSS_090_NAMESPACE) {
        return Cow::Owned(document.replace(RSS_090_NAMESPACE, RSS_10_NAMESPACE));
    }
    document
}

/// A JSON Feed that feed-rs refuses, with what it can be forgiven repaired; None when there is
/// nothing to repair. Forgiven: a `version` missing, a bare number (`"1.0"`, `1.1`, as several
/// generators write it) or the spec's URL with `http:`; and item ids written as numbers, which
/// the spec tells readers to take as strings.
fn repair_json_feed(document: &str) -> Option<String> {
    use serde_json::Value;
    const V1: &str = "https://jsonfeed.org/version/1";
    const V1_1: &str = "https://jsonfeed.org/version/1.1";
    let mut feed: Value = serde_json::from_str(document).ok()?;
    let object = feed.as_object_mut()?;
    let written = match object.get("version") {
        None => Some(String::new()),
        Some(Value::String(version)) => Some(version.trim().to_owned()),
        Some(Value::Number(version)) => Some(version.to_string()),
        Some(_) => None,
    };
    let version = match written.as_deref() {
        Some("" | "1" | "1.0" | "http://jsonfeed.org/version/1") => Some(V1),
        Some("1.1" | "http://jsonfeed.org/version/1.1") => Some(V1_1),
        _ => None,
    };
    let mut repaired = false;
    if let Some(version) = version {
        object.insert("version".into(), Value::String(version.into()));
        repaired = true;
    }
    if let Some(Value::Array(items)) = object.get_mut("items") {
        for id in items.iter_mut().filter_map(|item| item.get_mut("id")) {
            if id.is_number() {
                *id = Value::String(id.to_string());
                repaired = true;
            }
        }
    }
    if !repaired {
        return None;
    }
    serde_json::to_string(&feed).ok()
}

/// The value of attribute `wanted` (case-insensitive name) in a start tag, undecoded.
fn attribute<'t>(tag: &'t str, wanted: &str) -> Option<&'t str> {
    attributes(tag)
        .find(|(name, _, _)| name.eq_ignore_ascii_case(wanted))
        .map(|(_, value, _)| value)
}

fn remove_attribute(attribute_text: &str, unwanted: &str) -> String {
    let mut kept = attribute_text.to_owned();
    if let Some((_, _, range)) =
        attributes(attribute_text).find(|(name, _, _)| name.eq_ignore_ascii_case(unwanted))
    {
        kept.replace_range(range, "");
    }
    kept
}

/// Iterates over `name="value"` pairs of a start tag (`<a x='1' y=2 z>`), yielding the name,
/// the raw value and the byte range of the whole attribute. Good enough for sniffing; not a
/// validating parser.
fn attributes(tag: &str) -> impl Iterator<Item = (&str, &str, std::ops::Range<usize>)> {
    let bytes = tag.as_bytes();
    // Skip `<name`.
    let mut at = if bytes.first() == Some(&b'<') {
        1 + bytes[1..]
            .iter()
            .position(|b| b.is_ascii_whitespace() || matches!(b, b'>' | b'/'))
            .unwrap_or(bytes.len() - 1)
    } else {
        0
    };
    std::iter::from_fn(move || {
        loop {
            while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'/') {
                at += 1;
            }
            if at >= bytes.len() || bytes[at] == b'>' {
                return None;
            }
            let name_start = at;
            while at < bytes.len()
                && !bytes[at].is_ascii_whitespace()
                && !matches!(bytes[at], b'=' | b'>' | b'/')
            {
                at += 1;
            }
            let name = &tag[name_start..at];
            while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            if bytes.get(at) != Some(&b'=') {
                if name.is_empty() {
                    at += 1;
                    continue;
                }
                return Some((name, "", name_start..at));
            }
            at += 1;
            while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            let value = match bytes.get(at) {
                Some(&quote @ (b'"' | b'\'')) => {
                    let value_start = at + 1;
                    let value_end = memchr::memchr(quote, &bytes[value_start..])
                        .map_or(bytes.len(), |end| value_start + end);
                    at = (value_end + 1).min(bytes.len());
                    &tag[value_start..value_end]
                }
                _ => {
                    let value_start = at;
                    while at < bytes.len() && !bytes[at].is_ascii_whitespace() && bytes[at] != b'>'
                    {
                        at += 1;
                    }
                    &tag[value_start..at]
                }
            };
            return Some((name, value, name_start..at));
        }
    })
}

/// The document with every `&` that does not start an entity or character reference written
/// as `&amp;`, or `None` if there is none. "Fish & Chips" in a title is the most common way a
/// real feed is not XML; quick-xml rightly rejects it. Only tried after a failed parse, since
/// it leaves CDATA sections and comments alone (a bare `&` is legal there) but still costs a
/// pass over the document.
fn escape_bare_ampersands(document: &str) -> Option<String> {
    let bytes = document.as_bytes();
    let mut repaired = String::new();
    let mut copied = 0;
    let mut at = 0;
    while let Some(offset) = memchr::memchr2(b'&', b'<', &bytes[at..]) {
        let found = at + offset;
        let rest = &bytes[found..];
        at = found + 1;
        if rest[0] == b'<' {
            let terminator: Option<&[u8]> = if rest.starts_with(b"<![CDATA[") {
                Some(b"]]>")
            } else if rest.starts_with(b"<!--") {
                Some(b"-->")
            } else {
                None
            };
            if let Some(terminator) = terminator {
                match memchr::memmem::find(rest, terminator) {
                    Some(end) => at = found + end,
                    // Unterminated, so it runs to the end of the document. Searching again from
                    // the next `<` would make a body of `<!--<!--<!--…` quadratic.
                    None => break,
                }
            }
            continue;
        }
        if !starts_with_reference(&rest[1..]) {
            repaired.push_str(&document[copied..found]);
            repaired.push_str("&amp;");
            copied = found + 1;
        }
    }
    if copied == 0 {
        return None;
    }
    repaired.push_str(&document[copied..]);
    Some(repaired)
}

/// Whether `text` (what follows an `&`) is `name;`, `#digits;` or `#xhex;`.
fn starts_with_reference(text: &[u8]) -> bool {
    let (body, valid): (&[u8], fn(&u8) -> bool) = match text {
        [b'#', b'x' | b'X', rest @ ..] => (rest, u8::is_ascii_hexdigit),
        [b'#', rest @ ..] => (rest, u8::is_ascii_digit),
        [first, ..] if first.is_ascii_alphabetic() || *first == b'_' => (text, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
        }),
        _ => return false,
    };
    let length = body.iter().take_while(|b| valid(b)).count();
    length > 0 && body.get(length) == Some(&b';')
}

/// An Atom or RSS document pasted whole into an HTML page (some blog engines serve their
/// feed wrapped in an XHTML template): the text from its root start tag to its end tag.
fn embedded_feed(html: &str) -> Option<&str> {
    [
        ("<feed", "</feed>"),
        ("<rss", "</rss>"),
        ("<rdf:RDF", "</rdf:RDF>"),
    ]
    .iter()
    .find_map(|(open, close)| {
        let start = memchr::memmem::find(html.as_bytes(), open.as_bytes())?;
        let after_name = html.as_bytes().get(start + open.len())?;
        if !after_name.is_ascii_whitespace() && *after_name != b'>' {
            return None;
        }
        let end = memchr::memmem::rfind(html.as_bytes(), close.as_bytes())? + close.len();
        (end > start).then(|| &html[start..end])
    })
}

/// The `<link rel="alternate" type="application/{rss,atom}+xml|feed+json" href>`s of an HTML
/// page, resolved against the page's URL, each once, in the page's order. At most
/// 16: a site offers a handful (posts, comments, a category), and a page of
/// thousands is not worth keeping.
fn find_feed_links(html: &str, page_url: &Url) -> Vec<String> {
    const MOST_FEED_LINKS: usize = 16;
    const FEED_TYPES: [&str; 3] = [
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
    ];
    let bytes = html.as_bytes();
    let mut links = Vec::new();
    let mut from = 0;
    while let Some(offset) = memchr::memchr(b'<', &bytes[from..]) {
        let at = from + offset;
        from = at + 1;
        if bytes.len() - at < 6
            || !bytes[at + 1..at + 5].eq_ignore_ascii_case(b"link")
            || !bytes[at + 5].is_ascii_whitespace()
        {
            continue;
        }
        let end = memchr::memchr(b'>', &bytes[at..]).map_or(bytes.len(), |end| at + end + 1);
        let tag = &html[at..end];
        // The next tag starts after this one ends: from the next `<` instead, a page of
        // `<link <link <link …` would read the same attributes again for each.
        from = end;
        let rel_is_alternate = attribute(tag, "rel").is_some_and(|rel| {
            rel.split_ascii_whitespace()
                .any(|token| token.eq_ignore_ascii_case("alternate"))
        });
        let type_is_feed = attribute(tag, "type").is_some_and(|kind| {
            FEED_TYPES
                .iter()
                .any(|feed| kind.trim().eq_ignore_ascii_case(feed))
        });
        if rel_is_alternate
            && type_is_feed
            && let Some(href) = attribute(tag, "href")
        {
            let href = html_escape::decode_html_entities(href.trim());
            if let Ok(feed) = page_url.join(&href) {
                // The href itself may name credentials; the message must not show them.
                let feed = without_credentials(&feed).to_string();
                if !links.contains(&feed) {
                    links.push(feed);
                }
                if links.len() == MOST_FEED_LINKS {
                    break;
                }
            }
        }
    }
    links
}

// ---------------------------------------------------------------------------------------------
// 3. Reading
// ---------------------------------------------------------------------------------------------

/// Reads a prepared document: the direct reader ([`direct`]) when the document is within
/// the shape it knows, feed-rs otherwise.
fn read_document(document: &str, url: &Url) -> Result<FeedFields, ParseError> {
    // feed-rs (through quick-xml) has asserted on inputs it did not expect; one bad document
    // must cost one feed's poll, never the daemon.
    let read = catch_unwind(AssertUnwindSafe(|| {
        direct::read(document, url).map_or_else(|| run_feed_rs(document, url), Ok)
    }));
    match read {
        Ok(read) => read,
        Err(panic) => Err(ParseError::Panicked(
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned()),
        )),
    }
}

fn run_feed_rs(document: &str, url: &Url) -> Result<FeedFields, ParseError> {
    feed_rs::parser::Builder::new()
        .base_uri(Some(url.as_str()))
        // feed-rs fills a missing id with a hash or a random UUID; an empty id lets us see that
        // the publisher gave none (see `dedup_key`).
        .id_generator(|_links, _title, _base| String::new())
        .timestamp_parser(read_timestamp)
        .build()
        .parse(document.as_bytes())
        .map(FeedFields::from)
        .map_err(|error| ParseError::Invalid(error.to_string()))
}

/// A feed's date: RFC 2822 (RSS) or RFC 3339 (Atom, JSON Feed) as chrono reads them, anything
/// else as feed-rs reads it. feed-rs's own reader runs each date through up to eight regular
/// expression rewrites (two for RFC 3339, then six for RFC 2822) before trying those same
/// parsers: 3% of a cold poll's instructions. It is private to feed-rs, so the rare date the
/// standard parsers refuse reaches it through a one-item document (several times the cost).
fn read_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    read_standard_timestamp(text).or_else(|| read_timestamp_leniently(text))
}

/// RFC 2822 or RFC 3339; also RFC 2822 with the zone written `UTC`, which chrono refuses but
/// feeds often write (feed-rs's first rewrite makes it `+0000`).
fn read_standard_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let rfc2822 = |text: &str| DateTime::parse_from_rfc2822(text).ok();
    rfc2822(text)
        .or_else(|| DateTime::parse_from_rfc3339(text).ok())
        .or_else(|| rfc2822(&format!("{} +0000", text.strip_suffix(" UTC")?)))
        .map(|date| date.with_timezone(&Utc))
}

fn read_timestamp_leniently(text: &str) -> Option<DateTime<Utc>> {
    let document = format!(
        "<rss version=\"2.0\"><channel><item><pubDate>{}</pubDate></item></channel></rss>",
        html_escape::encode_text(text)
    );
    feed_rs::parser::parse(document.as_bytes())
        .ok()?
        .entries
        .into_iter()
        .next()?
        .published
}

/// What normalisation reads of a parsed document, whichever reader produced it. Strings are
/// as the reader gives them (raw HTML, untrimmed where feed-rs leaves them untrimmed), so the
/// two readers can be compared field for field.
#[derive(Debug, Default, PartialEq)]
struct FeedFields {
    title: Option<String>,
    links: Vec<LinkFields>,
    ttl_minutes: Option<u32>,
    entries: Vec<EntryFields>,
}

/// A link a reader could follow: links feed-rs marks as comments pages or comment feeds are
/// left out.
#[derive(Debug, PartialEq)]
struct LinkFields {
    href: Href,
    rel: Option<String>,
}

/// A link's target as a reader gives it. The direct reader parses every link already (feed-rs's
/// `Link::new` does), and the URL it parsed is kept, so that [`pick_link`] need not parse the
/// same text again: URL parsing was about 6% of a cold poll's instructions, half of it this
/// second parse. Two targets are equal when their text is.
#[derive(Debug)]
enum Href {
    Parsed(Url),
    Text(String),
}

impl Href {
    fn as_str(&self) -> &str {
        match self {
            Href::Parsed(url) => url.as_str(),
            Href::Text(text) => text,
        }
    }
}

impl PartialEq for Href {
    fn eq(&self, other: &Href) -> bool {
        self.as_str() == other.as_str()
    }
}

#[derive(Debug, Default, PartialEq)]
struct EntryFields {
    /// The publisher's guid or id; empty when there is none.
    id: String,
    title: Option<String>,
    links: Vec<LinkFields>,
    /// Each author's name, or e-mail address when the name is blank, in document order.
    authors: Vec<String>,
    published: Option<DateTime<Utc>>,
    updated: Option<DateTime<Utc>>,
    summary: Option<String>,
    content: Option<String>,
}

impl From<feed_rs::model::Feed> for FeedFields {
    fn from(feed: feed_rs::model::Feed) -> FeedFields {
        FeedFields {
            title: feed.title.map(|title| title.content),
            links: link_fields(feed.links),
            ttl_minutes: feed.ttl,
            entries: feed
                .entries
                .into_iter()
                .map(|entry| EntryFields {
                    id: entry.id,
                    title: entry.title.map(|title| title.content),
                    links: link_fields(entry.links),
                    authors: entry
                        .authors
                        .into_iter()
                        .filter_map(|person| {
                            person
                                .name
                                .filter(|name| !name.trim().is_empty())
                                .or(person.email)
                        })
                        .collect(),
                    published: entry.published,
                    updated: entry.updated,
                    summary: entry.summary.map(|summary| summary.content),
                    content: entry.content.and_then(|content| content.body),
                })
                .collect(),
        }
    }
}

fn link_fields(links: Vec<feed_rs::model::Link>) -> Vec<LinkFields> {
    links
        .into_iter()
        .filter(|link| link.target.is_none())
        .map(|link| LinkFields {
            href: Href::Text(link.href),
            rel: link.rel,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 4. Normalisation
// ---------------------------------------------------------------------------------------------

fn normalise_feed(feed: FeedFields, document: &str, url: &Url) -> ParsedFeed {
    let now = Utc::now();
    let drafts: Vec<Draft> = feed
        .entries
        .into_iter()
        .filter_map(|entry| Draft::from_entry(entry, url, now))
        .collect();

    let mut guid_counts: HashMap<&str, u32> = HashMap::with_capacity(drafts.len());
    let mut link_counts: HashMap<&str, u32> = HashMap::with_capacity(drafts.len());
    for draft in &drafts {
        if let Some(guid) = &draft.guid {
            *guid_counts.entry(guid).or_default() += 1;
        }
        if let Some(canonical) = &draft.canonical_link {
            *link_counts.entry(canonical).or_default() += 1;
        }
    }
    let uniqueness: Vec<(bool, bool)> = drafts
        .iter()
        .map(|draft| {
            let guid_unique = draft
                .guid
                .as_deref()
                .is_some_and(|guid| guid_counts[guid] == 1);
            let link_unique = draft
                .canonical_link
                .as_deref()
                .is_some_and(|link| link_counts[link] == 1);
            (guid_unique, link_unique)
        })
        .collect();
    drop((guid_counts, link_counts));
    let entries = drafts
        .into_iter()
        .zip(uniqueness)
        .map(|(draft, (guid_unique, link_unique))| draft.finish(guid_unique, link_unique))
        .collect();

    ParsedFeed {
        title: feed
            .title
            .map(|title| capped_chars(html_to_text(&title), MAX_TITLE_CHARS))
            .filter(|t| !t.is_empty()),
        site_link: pick_link(&feed.links, url).map(String::from),
        update_hint: update_hint(feed.ttl_minutes, document),
        entries,
    }
}

/// An entry with its fields cleaned, before document-wide facts (uniqueness) are known.
struct Draft {
    guid: Option<String>,
    link: Option<Url>,
    canonical_link: Option<String>,
    title: Option<String>,
    author: Option<String>,
    published_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    summary: Option<String>,
    content: Option<String>,
}

impl Draft {
    /// `None` for an entry with nothing to show or identify it by (no guid, link or text).
    fn from_entry(entry: EntryFields, base: &Url, now: DateTime<Utc>) -> Option<Draft> {
        let guid = Some(capped_bytes(
            entry.id.replace('\0', "").trim().to_owned(),
            MAX_GUID_BYTES,
        ))
        .filter(|g| !g.is_empty());
        let link = pick_link(&entry.links, base).map(without_tracking_params);
        let text = |html: &str, cap: fn(String) -> String| {
            let mut text = cap(html_to_text(html));
            // Sized for the HTML, and held until the writer commits the entry (glibc
            // shrinks an allocation in place, without copying).
            text.shrink_to_fit();
            Some(text).filter(|t| !t.is_empty())
        };
        let draft = Draft {
            canonical_link: link.as_ref().map(canonical_link),
            link,
            guid,
            title: entry
                .title
                .and_then(|t| text(&t, |t| capped_chars(t, MAX_TITLE_CHARS))),
            author: entry
                .authors
                .iter()
                .find_map(|name| text(name, |t| capped_chars(t, MAX_AUTHOR_CHARS))),
            // Atom entries often carry only <updated>; it is the best publication time they give.
            published_at: entry
                .published
                .filter(|date| is_plausible(date, now))
                .or(entry.updated.filter(|date| is_plausible(date, now))),
            updated_at: entry.updated.filter(|date| is_plausible(date, now)),
            summary: entry
                .summary
                .and_then(|s| text(&s, |t| capped_bytes(t, MAX_BODY_BYTES))),
            content: entry
                .content
                .and_then(|body| text(&body, |t| capped_bytes(t, MAX_BODY_BYTES))),
        };
        let has_something = draft.guid.is_some()
            || draft.link.is_some()
            || draft.title.is_some()
            || draft.summary.is_some()
            || draft.content.is_some();
        has_something.then_some(draft)
    }

    fn finish(self, guid_unique: bool, link_unique: bool) -> ParsedEntry {
        let dedup_key = self.dedup_key(guid_unique, link_unique);
        let key_with_own_link = (!link_unique)
            .then(|| self.dedup_key(guid_unique, true))
            .filter(|own| *own != dedup_key);
        let mut entry = ParsedEntry {
            dedup_key,
            key_with_own_link,
            link: self.link.as_ref().map(|link| link.to_string()),
            link_unique_in_doc: link_unique,
            guid: self.guid,
            canonical_link: self.canonical_link,
            title: self.title,
            author: self.author,
            published_at: self.published_at,
            updated_at: self.updated_at,
            summary: self.summary,
            content: self.content,
            content_hash: String::new(),
        };
        entry.content_hash = crate::model::content_hash(entry.hashed_fields());
        entry
    }

    /// Identity within the feed, stable across polls:
    /// - `g:<guid>` — the publisher's guid, when no other entry of the document shares it;
    /// - `gl:<guid> <canonical link>` — a guid repeated in the document (CMS bugs give every
    ///   item the same guid) still identifies an entry together with its link;
    /// - `gh:<guid> <text hash>` — a repeated guid and no link of its own (none, or one shared
    ///   by other entries: CMSs that reuse one guid often point every item at the home page);
    /// - `l:<canonical link>[#fragment]` — no guid, and a link no other entry of the document
    ///   uses; with its [`identity_fragment`], since that may be all that tells this item from
    ///   the one the feed served before it;
    /// - `h:<text hash>` — no guid and no usable link: the reader-visible text is all we have.
    ///
    /// The prefixes keep the kinds from colliding (a guid that happens to equal a link).
    /// Canonical links (not raw ones) are used so rotating tracking parameters do not make
    /// the same item new on every poll.
    fn dedup_key(&self, guid_unique: bool, link_unique: bool) -> String {
        match (&self.guid, &self.canonical_link) {
            (Some(guid), _) if guid_unique => format!("g:{guid}"),
            (Some(guid), Some(link)) if link_unique => format!("gl:{guid} {link}"),
            (Some(guid), _) => format!("gh:{guid} {}", self.text_hash()),
            (None, Some(link)) if link_unique => {
                match self
                    .link
                    .as_ref()
                    .and_then(|l| identity_fragment(l.as_str()))
                {
                    Some(fragment) => format!("l:{link}#{fragment}"),
                    None => format!("l:{link}"),
                }
            }
            (None, _) => format!("h:{}", self.text_hash()),
        }
    }

    /// 128 bits of the text a reader sees, for identities; collisions at that size would need
    /// ~2^64 entries.
    fn text_hash(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for field in [&self.title, &self.summary, &self.content] {
            hasher.update(field.as_deref().unwrap_or_default().as_bytes());
            hasher.update(b"\x1f");
        }
        hasher.finalize().to_hex()[..32].to_owned()
    }
}

/// What every key `dedup_key` gives an entry known only by its text starts with, whatever the
/// text: `h:`, or `gh:<guid> `. None for keys that name the entry by its guid or link.
pub fn text_key_prefix(key: &str) -> Option<&str> {
    if key.starts_with("h:") {
        Some("h:")
    } else if key.starts_with("gh:") {
        // The text hash, last, holds no space; a guid may.
        key.rfind(' ').map(|space| &key[..=space])
    } else {
        None
    }
}

/// The link a reader would follow: the first plain or `alternate` link, else the first link
/// that is not the feed itself, an enclosure or a comments link. Only http(s) links count.
fn pick_link(links: &[LinkFields], base: &Url) -> Option<Url> {
    let resolve = |link: &LinkFields| {
        let href = link.href.as_str().trim();
        if href.is_empty() || href.len() > MAX_LINK_BYTES {
            return None;
        }
        match &link.href {
            // Joining a URL's own text to a base gives that URL back.
            Href::Parsed(url) => Some(url.clone()),
            Href::Text(_) => base.join(href).ok(),
        }
        .filter(|url| matches!(url.scheme(), "http" | "https"))
    };
    links
        .iter()
        .filter(|link| matches!(link.rel.as_deref(), None | Some("alternate")))
        .find_map(resolve)
        .or_else(|| {
            links
                .iter()
                .filter(|link| {
                    !matches!(
                        link.rel.as_deref(),
                        Some(
                            "self" | "enclosure" | "replies" | "edit" | "hub" | "next" | "previous"
                        )
                    )
                })
                .find_map(resolve)
        })
}

/// Dates before 1970 or more than two days ahead are placeholders or typos (`0001-01-01`,
/// `9999-12-31`); storing them would sort such entries first or last forever.
fn is_plausible(date: &DateTime<Utc>, now: DateTime<Utc>) -> bool {
    date.timestamp() > 0 && *date <= now + FUTURE_DATE_TOLERANCE
}

fn capped_chars(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => {
            let mut text = text;
            text.truncate(end);
            text.truncate(text.trim_end().len());
            text
        }
        None => text,
    }
}

fn capped_bytes(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.truncate(text.trim_end().len());
    }
    text
}

/// The publisher's statement of how often the feed changes: RSS `<ttl>` (minutes) and the
/// syndication module's `sy:updatePeriod` / `sy:updateFrequency`. feed-rs reads only `ttl`;
/// the `sy:` pair is found by a plain text search (two memmem scans, cheaper than another
/// XML pass). When both are given the longer wins: polling faster than either says is waste.
fn update_hint(ttl_minutes: Option<u32>, document: &str) -> Option<Duration> {
    let ttl = ttl_minutes
        .filter(|m| *m > 0)
        .map(|m| Duration::from_secs(u64::from(m) * 60));
    let syndication = element_text(document, "updatePeriod>").and_then(|period| {
        let seconds: u64 = match period.to_ascii_lowercase().as_str() {
            "hourly" => 3_600,
            "daily" => 86_400,
            "weekly" => 7 * 86_400,
            "monthly" => 30 * 86_400,
            "yearly" => 365 * 86_400,
            _ => return None,
        };
        let frequency = element_text(document, "updateFrequency>")
            .and_then(|f| f.parse::<u64>().ok())
            .filter(|f| *f > 0)
            .unwrap_or(1);
        Some(Duration::from_secs(seconds / frequency))
    });
    ttl.max(syndication)
}

/// The trimmed text after the first `…name>` opening tag of `document`.
fn element_text<'d>(document: &'d str, name_and_bracket: &str) -> Option<&'d str> {
    let at = memchr::memmem::find(document.as_bytes(), name_and_bracket.as_bytes())?
        + name_and_bracket.len();
    let rest = &document[at..];
    let end = rest.find('<').unwrap_or(rest.len()).min(64);
    rest.get(..end).map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_html_page_is_read_in_the_encoding_its_header_or_meta_tag_names() {
        let latin1 =
            b"<html><head><meta charset=\"iso-8859-1\"></head><body>Nestl\xe9</body></html>";
        assert!(super::decode_html(latin1, None).contains("Nestlé"));
        let http_equiv = b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1251\"><p>\xcf\xf0\xe8\xe2\xe5\xf2</p>";
        assert!(super::decode_html(http_equiv, None).contains("Привет"));
        let header_wins = b"<meta charset=\"windows-1251\"><p>Nestl\xe9</p>";
        assert!(
            super::decode_html(header_wins, Some("text/html; charset=latin1")).contains("Nestlé")
        );
        assert!(
            super::decode_html(
                "<p>Nestlé</p>".as_bytes(),
                Some("text/html; charset=latin1")
            )
            .contains("Nestlé")
        );
    }

    use std::time::Instant;

    use super::*;

    fn url() -> Url {
        Url::parse("https://news.example.com/feeds/main.xml").unwrap()
    }

    fn parse(document: &str) -> ParsedFeed {
        parse_feed(document.as_bytes(), None, &url()).unwrap()
    }

    fn rss(items: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title><link>https://news.example.com/</link>{items}</channel></rss>"#
        )
    }

    #[test]
    fn standard_dates_read_as_feed_rs_reads_them() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..2_000 {
            let date = DateTime::from_timestamp(rng.i64(0..4_102_444_800), 0).unwrap();
            let offset =
                chrono::FixedOffset::east_opt(rng.i32(-14..=14) * 3600 + rng.i32(0..2) * 1800)
                    .unwrap();
            let local = date.with_timezone(&offset);
            for text in [
                local.to_rfc2822(),
                local.to_rfc3339(),
                local.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                date.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            ] {
                assert_eq!(
                    read_timestamp(&text),
                    read_timestamp_leniently(&text),
                    "{text}"
                );
                assert!(read_timestamp(&text).is_some(), "{text}");
            }
        }
    }

    #[test]
    fn dates_the_standards_refuse_are_still_read_as_feed_rs_reads_them() {
        let at = |text: &str| read_timestamp(text).map(|d| d.to_rfc3339());
        let june_10 = Some("2003-06-10T04:00:00+00:00".to_string());
        for (text, expected) in [
            ("Tuesday, 10 June 2003 04:00:00 UTC", june_10.clone()),
            ("  Jun 10 2003 04:00:00 +0000 ", june_10.clone()),
            ("2003-06-10", Some("2003-06-10T00:00:00+00:00".to_string())),
        ] {
            assert_eq!(read_standard_timestamp(text.trim()), None, "{text}");
            assert_eq!(at(text), expected, "{text}");
        }
        // Common enough to keep off the slow path, and read as feed-rs reads it.
        let utc = "Tue, 10 Jun 2003 04:00:00 UTC";
        assert!(read_standard_timestamp(utc).is_some());
        assert_eq!(read_timestamp(utc), read_timestamp_leniently(utc));
        assert_eq!(at(utc), june_10);
        assert_eq!(at("Tue, 10 Jun 2003 04:00:00 & <soon>"), None);
        assert_eq!(at("yesterday"), None);
    }

    fn keys(feed: &ParsedFeed) -> Vec<&str> {
        feed.entries.iter().map(|e| e.dedup_key.as_str()).collect()
    }

    #[test]
    fn rss_item_fields_are_extracted_as_plain_text() {
        let feed = parse(&rss(r#"
            <item xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/">
              <title>Xiaomi &amp;amp; Samsung</title>
              <link>https://www.example.com/story/1/?utm_source=rss&amp;id=7</link>
              <guid isPermaLink="false">story-1</guid>
              <description><![CDATA[<p>Lei&nbsp;Jun <b>said</b></p><p>hello</p>]]></description>
              <content:encoded><![CDATA[<div>Full <script>x()</script>text</div>]]></content:encoded>
              <dc:creator>Jane Doe</dc:creator>
              <pubDate>Tue, 10 Jun 2025 04:00:00 GMT</pubDate>
            </item>"#));
        assert_eq!(feed.title.as_deref(), Some("T"));
        assert_eq!(feed.site_link.as_deref(), Some("https://news.example.com/"));
        let entry = &feed.entries[0];
        assert_eq!(entry.title.as_deref(), Some("Xiaomi & Samsung"));
        assert_eq!(entry.guid.as_deref(), Some("story-1"));
        assert_eq!(entry.dedup_key, "g:story-1");
        assert_eq!(
            entry.link.as_deref(),
            Some("https://www.example.com/story/1/?id=7")
        );
        assert_eq!(
            entry.canonical_link.as_deref(),
            Some("example.com/story/1?id=7")
        );
        assert!(entry.link_unique_in_doc);
        assert_eq!(entry.summary.as_deref(), Some("Lei Jun said hello"));
        assert_eq!(entry.content.as_deref(), Some("Full text"));
        assert_eq!(entry.author.as_deref(), Some("Jane Doe"));
        assert_eq!(
            entry.published_at.unwrap().to_rfc3339(),
            "2025-06-10T04:00:00+00:00"
        );
        assert_eq!(entry.content_hash.len(), 32);
    }

    #[test]
    fn an_entry_without_guid_gets_no_invented_guid_and_is_keyed_by_its_link() {
        let feed = parse(&rss(
            "<item><title>a</title><link>http://www.example.com/a/</link></item>",
        ));
        assert_eq!(feed.entries[0].guid, None);
        assert_eq!(feed.entries[0].dedup_key, "l:example.com/a");
    }

    #[test]
    fn atom_entry_without_id_gets_no_invented_guid() {
        let feed = parse(
            r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
            <entry><title>one</title><link href="/one"/></entry></feed>"#,
        );
        assert_eq!(feed.entries[0].guid, None);
        assert_eq!(
            feed.entries[0].link.as_deref(),
            Some("https://news.example.com/one")
        );
    }

    #[test]
    fn entries_with_neither_guid_nor_link_are_keyed_by_their_text() {
        let feed = parse(&rss(
            "<item><title>one</title></item><item><title>two</title></item><item><title>one</title></item>",
        ));
        let keys = keys(&feed);
        assert!(keys.iter().all(|k| k.starts_with("h:")), "{keys:?}");
        assert_ne!(keys[0], keys[1]);
        assert_eq!(keys[0], keys[2], "the same text is the same entry");
        let again = parse(&rss("<item><title>one</title></item>"));
        assert_eq!(again.entries[0].dedup_key, keys[0], "stable across polls");
    }

    #[test]
    fn a_guid_repeated_in_the_document_is_combined_with_the_link() {
        let feed = parse(&rss(
            "<item><guid>same</guid><link>https://example.com/1</link></item>\
             <item><guid>same</guid><link>https://example.com/2</link></item>\
             <item><guid>same</guid><title>no link</title></item>\
             <item><guid>other</guid><link>https://example.com/3</link></item>",
        ));
        assert_eq!(
            keys(&feed)[..2],
            ["gl:same example.com/1", "gl:same example.com/2"]
        );
        assert!(keys(&feed)[2].starts_with("gh:same "));
        assert_eq!(keys(&feed)[3], "g:other");
        assert!(feed.entries.iter().all(|e| e.guid.is_some()));
    }

    #[test]
    fn a_link_shared_by_several_entries_does_not_identify_them() {
        let feed = parse(&rss(
            "<item><title>a</title><link>https://example.com/</link></item>\
             <item><title>b</title><link>https://www.example.com</link></item>",
        ));
        assert!(feed.entries.iter().all(|e| !e.link_unique_in_doc));
        assert!(keys(&feed).iter().all(|k| k.starts_with("h:")));
        assert_ne!(keys(&feed)[0], keys(&feed)[1]);
    }

    #[test]
    fn a_link_key_keeps_a_fragment_that_can_name_an_item_and_drops_one_that_cannot() {
        let key = |link: &str| {
            let feed = parse(&rss(&format!(
                "<item><title>t</title><link>{link}</link></item>"
            )));
            feed.entries[0].dedup_key.clone()
        };
        assert_eq!(
            key("https://www.example.com/live/?utm_source=rss#update-2"),
            "l:example.com/live#update-2"
        );
        for link in [
            "https://example.com/live#",
            "https://example.com/live#xtor=RSS-3",
            "https://example.com/live#utm_medium=feed",
            "https://example.com/live#:~:text=Outage",
        ] {
            assert_eq!(key(link), "l:example.com/live", "{link}");
        }
        assert_eq!(identity_fragment("https://example.com/a#b#c"), Some("b#c"));
        assert_eq!(identity_fragment("https://example.com/a"), None);
    }

    #[test]
    fn key_kinds_cannot_collide() {
        // A guid that is literally a canonical link must not equal the link-derived key.
        let feed = parse(&rss(
            "<item><guid>example.com/a</guid></item><item><link>https://example.com/a</link><title>x</title></item>",
        ));
        assert_ne!(keys(&feed)[0], keys(&feed)[1]);
    }

    #[test]
    fn relative_links_are_resolved_against_xml_base_or_the_document_url() {
        let feed = parse(&rss(
            "<item><link>/2025/story</link></item><item><link>../other</link></item>",
        ));
        assert_eq!(
            feed.entries[0].link.as_deref(),
            Some("https://news.example.com/2025/story")
        );
        assert_eq!(
            feed.entries[1].link.as_deref(),
            Some("https://news.example.com/other")
        );
        let atom = parse(
            r#"<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example.org/posts/">
               <entry><id>1</id><link rel="alternate" href="hello.html"/><link rel="self" href="/x"/></entry></feed>"#,
        );
        assert_eq!(
            atom.entries[0].link.as_deref(),
            Some("https://blog.example.org/posts/hello.html")
        );
    }

    #[test]
    fn canonical_link_normalises_what_does_not_name_the_story() {
        let canonical = |s: &str| canonical_link(&Url::parse(s).unwrap());
        assert_eq!(
            canonical("https://WWW.Example.COM:443/a/b/?utm_source=x&id=7&fbclid=1#top"),
            "example.com/a/b?id=7"
        );
        assert_eq!(
            canonical("http://example.com/a/b?id=7"),
            "example.com/a/b?id=7"
        );
        assert_eq!(canonical("http://example.com:8080/"), "example.com:8080");
        assert_eq!(canonical("https://user:pw@example.com/x"), "example.com/x");
        assert_eq!(
            canonical(
                "https://example.com/p?gclid=1&mc_cid=2&mc_eid=3&igshid=4&_hsenc=5&_hsmi=6&yclid=7&ref_src=8&dclid=9&msclkid=0&UTM_Campaign=a"
            ),
            "example.com/p"
        );
        assert_eq!(
            canonical("https://example.com/p?b=2&a=1&ref=home"),
            "example.com/p?b=2&a=1&ref=home"
        );
        assert_eq!(
            canonical("https://www.heise.de/meldung/x-123.html?wt_mc=rss.ho.beitrag.rdf"),
            "heise.de/meldung/x-123.html"
        );
    }

    #[test]
    fn stored_links_lose_their_tracking_parameters_and_keep_the_rest() {
        let cleaned = |s: &str| without_tracking_params(Url::parse(s).unwrap()).to_string();
        assert_eq!(
            cleaned("https://www.example.com/a/?utm_source=rss&id=7&&fbclid=1&p=a%20b#update-2"),
            "https://www.example.com/a/?id=7&p=a%20b#update-2"
        );
        assert_eq!(
            cleaned("https://example.com/a?utm_source=rss&utm_medium=feed"),
            "https://example.com/a"
        );
        // Untouched without one, empty pairs and all: the link is the publisher's.
        assert_eq!(
            cleaned("https://example.com/a?b=2&&a=1&ref=home"),
            "https://example.com/a?b=2&&a=1&ref=home"
        );
        // Named in full: parameters the canonical link's prefixes catch may pick the page.
        assert_eq!(
            cleaned("https://example.com/a?pk_id=12&wt_id=3&_hsenc=x&pk_campaign=rss&wt_mc=feed"),
            "https://example.com/a?pk_id=12&wt_id=3"
        );
        // Every name removed from stored links is one the canonical link drops too.
        let prefixed = CLICK_TRACKING_PREFIXES.map(|prefix| format!("{prefix}x"));
        let removed = prefixed.iter().map(String::as_str);
        for name in removed.chain(CLICK_TRACKING_NAMES).chain(CLICK_IDS) {
            assert!(is_click_tracking_param(name), "{name}");
            assert!(is_tracking_param(name), "{name}");
        }
        for link in [
            "https://WWW.Example.COM:443/a/b/?utm_source=x&id=7&fbclid=1#top",
            "https://example.com/p?gclid=1&UTM_Campaign=a",
        ] {
            let url = Url::parse(link).unwrap();
            assert_eq!(
                canonical_link(&without_tracking_params(url.clone())),
                canonical_link(&url),
                "the canonical link, and so the dedup key, do not change"
            );
        }
    }

    #[test]
    fn absurd_fields_are_capped_and_nul_bytes_stripped() {
        let title = "x".repeat(1_000_000);
        let body = "y ".repeat(300_000);
        let feed = parse(&rss(&format!(
            "<item><guid>a\0b</guid><title>{title}</title><description>{body}</description><author>{}</author></item>",
            "z".repeat(5_000)
        )));
        let entry = &feed.entries[0];
        assert_eq!(
            entry.title.as_ref().unwrap().chars().count(),
            MAX_TITLE_CHARS
        );
        assert!(entry.summary.as_ref().unwrap().len() <= MAX_BODY_BYTES);
        assert_eq!(
            entry.author.as_ref().unwrap().chars().count(),
            MAX_AUTHOR_CHARS
        );
        assert_eq!(entry.guid.as_deref(), Some("ab"));
        assert_eq!(entry.dedup_key, "g:ab");
    }

    #[test]
    fn multibyte_text_is_truncated_on_a_character_boundary() {
        let capped = capped_bytes("小米".repeat(200_000), MAX_BODY_BYTES);
        assert!(capped.len() <= MAX_BODY_BYTES && capped.ends_with('米') || capped.ends_with('小'));
        assert_eq!(capped_chars("小米小米".to_owned(), 3), "小米小");
    }

    #[test]
    fn implausible_dates_are_dropped() {
        let feed = parse(&rss(
            "<item><guid>1</guid><pubDate>Fri, 31 Dec 9999 23:59:59 GMT</pubDate></item>\
             <item><guid>2</guid><pubDate>Mon, 01 Jan 1900 00:00:00 GMT</pubDate></item>\
             <item><guid>3</guid><pubDate>not a date</pubDate></item>\
             <item><guid>4</guid><pubDate>Wed, 02 Oct 2002 13:00:00 GMT</pubDate></item>",
        ));
        let dates: Vec<_> = feed
            .entries
            .iter()
            .map(|e| e.published_at.map(|d| d.timestamp()))
            .collect();
        assert_eq!(dates, [None, None, None, Some(1_033_563_600)]);
    }

    #[test]
    fn content_hash_changes_with_visible_text_only() {
        let one = parse(&rss(
            "<item><guid>1</guid><title>a</title><description>b</description><pubDate>Wed, 02 Oct 2002 13:00:00 GMT</pubDate></item>",
        ));
        let same = parse(&rss(
            "<item><guid>1</guid><title> a </title><description><![CDATA[<p>b</p>]]></description></item>",
        ));
        let edited = parse(&rss(
            "<item><guid>1</guid><title>a!</title><description>b</description></item>",
        ));
        let moved = parse(&rss("<item><guid>1</guid><title>ab</title></item>"));
        assert_eq!(one.entries[0].content_hash, same.entries[0].content_hash);
        assert_ne!(one.entries[0].content_hash, edited.entries[0].content_hash);
        assert_ne!(
            one.entries[0].content_hash, moved.entries[0].content_hash,
            "fields are separated"
        );
    }

    #[test]
    fn update_hint_comes_from_ttl_or_the_syndication_module() {
        let ttl = parse(&rss("<ttl>90</ttl>"));
        assert_eq!(ttl.update_hint, Some(Duration::from_secs(90 * 60)));
        let sy = parse(
            r#"<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"><channel>
               <sy:updatePeriod> daily </sy:updatePeriod><sy:updateFrequency>4</sy:updateFrequency></channel></rss>"#,
        );
        assert_eq!(sy.update_hint, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(parse(&rss("")).update_hint, None);
    }

    fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
        let mut bytes = Vec::new();
        let units = if bom { "\u{feff}" } else { "" }
            .encode_utf16()
            .chain(text.encode_utf16());
        for unit in units {
            bytes.extend(if big_endian {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            });
        }
        bytes
    }

    #[test]
    fn utf16_documents_parse_with_or_without_bom() {
        let document =
            rss("<item><guid>1</guid><title>小米 UTF-16</title></item>").replace("UTF-8", "UTF-16");
        for (big_endian, bom) in [(false, true), (true, true), (false, false), (true, false)] {
            let feed = parse_feed(&utf16(&document, big_endian, bom), None, &url())
                .unwrap_or_else(|e| panic!("big_endian={big_endian} bom={bom}: {e}"));
            assert_eq!(feed.entries[0].title.as_deref(), Some("小米 UTF-16"));
        }
    }

    fn encoded(encoding: &'static Encoding, text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = encoding.encode(text);
        assert!(!unmappable);
        bytes.into_owned()
    }

    #[test]
    fn declared_legacy_encodings_are_decoded() {
        let cases: [(&str, &'static Encoding, &str); 5] = [
            ("ISO-8859-1", encoding_rs::WINDOWS_1252, "Café Präsentation"),
            ("windows-1252", encoding_rs::WINDOWS_1252, "Euro € “quoted”"),
            ("windows-1251", encoding_rs::WINDOWS_1251, "Привет мир"),
            ("GB2312", encoding_rs::GBK, "小米发布新手机"),
            ("Shift_JIS", encoding_rs::SHIFT_JIS, "ソニーの新製品"),
        ];
        for (label, encoding, title) in cases {
            let document = rss(&format!(
                "<item><guid>1</guid><title>{title}</title></item>"
            ))
            .replace("UTF-8", label);
            let feed = parse_feed(&encoded(encoding, &document), None, &url())
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(feed.entries[0].title.as_deref(), Some(title), "{label}");
        }
    }

    #[test]
    fn undeclared_8bit_text_uses_the_http_charset_then_windows_1252() {
        let document = "<rss version=\"2.0\"><channel><item><guid>1</guid><title>Caf\u{e9} \u{2014} na\u{ef}ve</title></item></channel></rss>";
        let latin = encoded(encoding_rs::WINDOWS_1252, document);
        let feed = parse_feed(&latin, None, &url()).unwrap();
        assert_eq!(feed.entries[0].title.as_deref(), Some("Café — naïve"));

        let cyrillic = encoded(
            encoding_rs::KOI8_R,
            &document.replace("Caf\u{e9} \u{2014} na\u{ef}ve", "Привет"),
        );
        let feed = parse_feed(
            &cyrillic,
            Some("application/rss+xml; charset=\"KOI8-R\""),
            &url(),
        )
        .unwrap();
        assert_eq!(feed.entries[0].title.as_deref(), Some("Привет"));
    }

    #[test]
    fn a_utf8_document_with_a_wrong_declaration_is_read_as_utf8() {
        let document = rss("<item><guid>1</guid><title>소식 Café</title></item>")
            .replace("UTF-8", "ISO-8859-1");
        let feed = parse(&document);
        assert_eq!(feed.entries[0].title.as_deref(), Some("소식 Café"));
    }

    #[test]
    fn a_declared_utf8_document_with_latin1_bytes_is_read_as_windows_1252() {
        let mut document = rss("<item><guid>1</guid><title>Ana_s</title></item>").into_bytes();
        let at = document.windows(5).position(|w| w == b"Ana_s").unwrap() + 3;
        document[at] = 0xEF; // ï in ISO-8859-1
        let feed = parse_feed(&document, None, &url()).unwrap();
        assert_eq!(feed.entries[0].title.as_deref(), Some("Anaïs"));
    }

    #[test]
    fn rss_without_a_version_attribute_parses() {
        let feed = parse(
            "<rss><channel><title>T</title><item><guid>1</guid><title>x</title></item></channel></rss>",
        );
        assert_eq!(feed.entries.len(), 1);
        let odd_version =
            parse("<rss version=\"0.94\" ><channel><item><guid>1</guid></item></channel></rss>");
        assert_eq!(odd_version.entries.len(), 1);
    }

    #[test]
    fn rss_090_rdf_items_are_found() {
        let feed = parse(
            r#"<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://my.netscape.com/rdf/simple/0.9/">
               <channel><title>heise</title><link>https://www.heise.de/</link></channel>
               <item><title>One</title><link>https://www.heise.de/1</link></item>
               <item><title>Two</title><link>https://www.heise.de/2</link></item></rdf:RDF>"#,
        );
        assert_eq!(feed.title.as_deref(), Some("heise"));
        let titles: Vec<_> = feed
            .entries
            .iter()
            .map(|e| e.title.as_deref().unwrap())
            .collect();
        assert_eq!(titles, ["One", "Two"]);
    }

    #[test]
    fn json_feed_parses() {
        let feed = parse(
            r#"{"version":"https://jsonfeed.org/version/1.1","title":"J","items":[
               {"id":"1","url":"https://example.com/1","title":"One","content_html":"<p>Hi</p>"},
               {"id":"2","content_text":"Only text"}]}"#,
        );
        assert_eq!(feed.title.as_deref(), Some("J"));
        assert_eq!(feed.entries[0].dedup_key, "g:1");
        assert_eq!(feed.entries[0].content.as_deref(), Some("Hi"));
        assert_eq!(feed.entries[1].link, None);
    }

    #[test]
    fn a_json_feed_with_a_bare_version_number_or_none_is_read_as_version_1() {
        for version in [
            r#""version":"1.0","#,
            r#""version":" 1.1 ","#,
            r#""version":"1","#,
            r#""version":"","#,
            r#""version":1.0,"#,
            r#""version":1,"#,
            r#""version":"http://jsonfeed.org/version/1","#,
            "",
        ] {
            let feed = parse(&format!(
                r#"{{{version}"title":"J","items":[{{"id":"1","title":"One","content_text":"Hi"}}]}}"#
            ));
            assert_eq!(feed.entries.len(), 1, "{version}");
            assert_eq!(feed.entries[0].title.as_deref(), Some("One"));
        }
    }

    #[test]
    fn json_feed_item_ids_written_as_numbers_are_read_as_strings() {
        let feed = parse(
            r#"{"version":"https://jsonfeed.org/version/1.1","title":"J","items":[
               {"id":123,"title":"One","content_text":"Hi"},{"id":"124","title":"Two"}]}"#,
        );
        let keys: Vec<&str> = feed.entries.iter().map(|e| e.dedup_key.as_str()).collect();
        assert_eq!(keys, ["g:123", "g:124"]);
    }

    #[test]
    fn a_json_feed_the_version_repair_cannot_save_reports_what_is_wrong() {
        // A version we do not know is still refused, with feed-rs's reason.
        let refused = parse_feed(br#"{"version":"7.2","title":"J","items":[]}"#, None, &url());
        assert!(
            matches!(&refused, Err(ParseError::Invalid(reason)) if reason.contains("7.2")),
            "{refused:?}"
        );
        // With the version repaired, the error names what else is missing.
        let untitled = parse_feed(br#"{"version":"1.0","items":[]}"#, None, &url());
        assert!(
            matches!(&untitled, Err(ParseError::Invalid(reason)) if reason.contains("title")),
            "{untitled:?}"
        );
    }

    #[test]
    fn empty_documents_are_reported_as_empty() {
        for body in [
            &b""[..],
            b"  \r\n\t",
            b"\xEF\xBB\xBF \n",
            &utf16("  ", false, true),
        ] {
            assert!(
                matches!(parse_feed(body, None, &url()), Err(ParseError::Empty)),
                "{body:?}"
            );
        }
    }

    #[test]
    fn an_html_page_is_reported_with_its_advertised_feed() {
        let page = r#"<!DOCTYPE html><!-- hi --><HTML lang="en"><head>
            <link rel="stylesheet" href="/s.css">
            <link rel="alternate" type="application/json" href="/wp-json/wp/v2/pages/2">
            <LINK TYPE="application/rss+xml" REL="alternate" title="Feed" href="/feed/?a=1&amp;b=2">
            <link rel="alternate" type="application/atom+xml" href="https://u:p@news.example.com/comments.atom">
            <link rel="alternate" type="application/rss+xml" href="https://news.example.com/feed/?a=1&b=2">
            </head><body>x</body></html>"#;
        match parse_feed(page.as_bytes(), Some("text/html"), &url()) {
            Err(ParseError::HtmlPage { feed_links }) => {
                assert_eq!(
                    feed_links,
                    [
                        "https://news.example.com/feed/?a=1&b=2",
                        "https://news.example.com/comments.atom"
                    ],
                    "each once, in the page's order, without credentials"
                );
                assert_eq!(
                    ParseError::HtmlPage { feed_links }.to_string(),
                    "this is an HTML page; its feed may be at https://news.example.com/feed/?a=1&b=2"
                );
            }
            other => panic!("{other:?}"),
        }
        let no_feed = parse_feed(b"<html><body>nothing</body></html>", None, &url());
        assert!(matches!(
            no_feed,
            Err(ParseError::HtmlPage { feed_links }) if feed_links.is_empty()
        ));
    }

    #[test]
    fn a_feed_wrapped_in_an_html_page_is_parsed() {
        let page = r#"<?xml version="1.0"?><!DOCTYPE html><html xmlns="http://www.w3.org/1999/xhtml"><body>
            <feed xmlns="http://www.w3.org/2005/Atom"><title>Wrapped</title><entry><id>1</id></entry></feed>
            </body></html>"#;
        let feed = parse(page);
        assert_eq!(feed.title.as_deref(), Some("Wrapped"));
        assert_eq!(feed.entries.len(), 1);
    }

    #[test]
    fn bare_ampersands_are_tolerated_without_touching_cdata() {
        let feed = parse(&rss(
            "<item><guid>1</guid><title>Fish & Chips &amp; more &lt;3 &#38; R&D;</title>\
             <link><![CDATA[https://example.com/?a=1&b=2]]></link></item>",
        ));
        let entry = &feed.entries[0];
        assert_eq!(
            entry.title.as_deref(),
            Some("Fish & Chips & more <3 & R&D;")
        );
        assert_eq!(entry.link.as_deref(), Some("https://example.com/?a=1&b=2"));
    }

    #[test]
    fn unterminated_comments_and_cdata_end_the_ampersand_repair() {
        // 40,000 openers and no terminator: each used to search to the end (8 G bytes read).
        for opener in ["<!--", "<![CDATA["] {
            let body = format!("<rss>&{}", opener.repeat(40_000));
            assert!(matches!(
                parse_feed(body.as_bytes(), None, &url()),
                Err(ParseError::Invalid(_))
            ));
        }
        let repaired = escape_bare_ampersands("<t>A & B<!-- C & D").unwrap();
        assert_eq!(repaired, "<t>A &amp; B<!-- C & D");
    }

    #[test]
    fn link_tags_of_an_html_page_are_read_once_each() {
        // 50,000 `<link ` that never close, then with one `>` at the very end: each tag used
        // to be read to the end of the page, once per `<link`.
        for end in ["", ">"] {
            let page = format!("<html>{}{end}", "<link rel=x ".repeat(50_000));
            assert!(matches!(
                parse_feed(page.as_bytes(), None, &url()),
                Err(ParseError::HtmlPage { feed_links }) if feed_links.is_empty()
            ));
        }
    }

    #[test]
    fn credentials_in_the_feed_url_stay_out_of_resolved_links() {
        let with_credentials =
            Url::parse("https://reader:s3cret@news.example.com/feeds/main.xml").unwrap();
        let document = r#"<rss version="2.0"><channel><title>T</title><link>/</link>
            <item><guid>1</guid><link>/stories/1</link></item></channel></rss>"#;
        let feed = parse_feed(document.as_bytes(), None, &with_credentials).unwrap();
        assert_eq!(feed.site_link.as_deref(), Some("https://news.example.com/"));
        assert_eq!(
            feed.entries[0].link.as_deref(),
            Some("https://news.example.com/stories/1")
        );
        let page = r#"<html><head><link rel="alternate" type="application/rss+xml" href="rss.xml"></head></html>"#;
        match parse_feed(page.as_bytes(), None, &with_credentials) {
            Err(ParseError::HtmlPage { feed_links }) => assert_eq!(
                feed_links.first().map(String::as_str),
                Some("https://news.example.com/feeds/rss.xml")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for body in [
            &b"not xml at all"[..],
            b"<rss version=\"2.0\"><channel><item>",
            b"{\"oops\": ",
            b"<foo/>",
        ] {
            assert!(
                matches!(parse_feed(body, None, &url()), Err(ParseError::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn entity_expansion_bombs_are_not_expanded_and_return_quickly() {
        let mut doctype = String::from("<!DOCTYPE rss [<!ENTITY lol \"lol\">");
        doctype.push_str("<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">");
        for level in 2..=9 {
            let previous = format!("&lol{};", level - 1);
            doctype.push_str(&format!("<!ENTITY lol{level} \"{}\">", previous.repeat(10)));
        }
        doctype.push_str("<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>");
        let document = format!(
            "<?xml version=\"1.0\"?>{doctype}<rss version=\"2.0\"><channel><item><guid>1</guid><title>&lol9;</title><description>&xxe;</description></item></channel></rss>"
        );
        let started = Instant::now();
        let result = parse_feed(document.as_bytes(), None, &url());
        assert!(started.elapsed() < Duration::from_secs(1));
        let feed = result.unwrap();
        let entry = &feed.entries[0];
        assert_eq!(entry.title.as_deref(), Some("&lol9;"));
        assert_eq!(entry.summary.as_deref(), Some("&xxe;"));
    }

    #[test]
    fn ten_thousand_entries_parse() {
        let items: String = (0..10_000)
            .map(|i| format!("<item><link>https://example.com/{i}</link></item>"))
            .collect();
        let feed = parse(&rss(&items));
        assert_eq!(feed.entries.len(), 10_000);
        assert!(
            feed.entries
                .iter()
                .all(|e| e.dedup_key.starts_with("l:") && e.title.is_none())
        );
    }

    #[test]
    fn a_parser_panic_is_caught_and_reported() {
        // A declaration that is not at the very start (after a comment longer than quick-xml's
        // look-ahead) makes quick-xml switch encodings too late, which it asserts against.
        let document = format!(
            "<!--{}--><?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><rss version=\"2.0\"><channel></channel></rss>",
            "x".repeat(10_000)
        );
        match parse_feed(document.as_bytes(), None, &url()) {
            Err(ParseError::Panicked(message)) => {
                assert!(message.contains("set_encoding"), "{message}")
            }
            other => panic!("expected a caught panic, got {other:?}"),
        }
    }
}
