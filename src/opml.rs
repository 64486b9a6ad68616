//! OPML import and export: moving a subscription list between feedhound and other feed readers.
//!
//! Import reads an OPML file (as written by Feedly, Inoreader, Miniflux, NetNewsWire …) and
//! appends its new feeds to the config file as `[[feed]]` tables, through [`config_edit`]: the
//! rest of the file stays byte for byte, and it is replaced whole or not at all.
//!
//! Export writes the feeds of a validated [`Config`] as OPML 2.0; names become `text`/`title`,
//! tags a `category` attribute, so that exporting and importing again gives the same feeds.
//!
//! OPML is read with quick-xml (already compiled for feed-rs) rather than the `opml` crate, whose
//! strict schema rejects files real readers write: attribute case varies (`xmlUrl`, `xmlurl`),
//! `type` and `version` go missing, titles carry HTML entities. A streaming reader lets us accept
//! all of that and still report broken XML by line and column. quick-xml never expands entities
//! declared in a DTD, so a hostile file cannot pull a local file into the config.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use quick_xml::XmlVersion;
use quick_xml::events::attributes::{AttrError, Attribute};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use url::Url;

use crate::config::{Config, FeedConfig, fetched_document};
use crate::config_edit::{self, ConfigFile};

/// One feed outline read from an OPML file, before its URL is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpmlFeed {
    /// The `xmlUrl` attribute as written.
    pub url: String,
    /// From `title`, else `text`; `None` when both are empty or merely repeat the URL.
    pub name: Option<String>,
    /// Names of the enclosing folders, outermost first, then the `category` entries; no repeats
    /// (compared ignoring case).
    pub tags: Vec<String>,
}

/// Why an OPML file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OpmlError {
    #[error("malformed OPML at line {line}, column {column}: {message}")]
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("not an OPML file: expected an <opml> root element, found {found}")]
    NotOpml { found: String },
}

/// Why a feed of the OPML file was not added to the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The config already polls this URL (compared after URL normalisation).
    AlreadyInConfig,
    /// An earlier outline of the same OPML file has this URL.
    RepeatedInOpml,
    /// feedhound polls http and https only.
    NotHttp {
        scheme: String,
    },
    InvalidUrl {
        error: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::AlreadyInConfig => write!(f, "already in the config"),
            SkipReason::RepeatedInOpml => write!(f, "listed twice in the OPML file"),
            SkipReason::NotHttp { scheme } => {
                write!(f, "not an http(s) feed ({scheme}:)")
            }
            SkipReason::InvalidUrl { error } => write!(f, "not a valid URL ({error})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFeed {
    /// The URL as the OPML file wrote it.
    pub url: String,
    pub name: Option<String>,
    pub reason: SkipReason,
}

/// What an import added and what it left out, with reasons. `Display` is the summary printed by
/// `feedhound opml import`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// The new feeds, in OPML order, as they now stand in the config (no `interval`).
    pub added: Vec<FeedConfig>,
    pub skipped: Vec<SkippedFeed>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "added {} feed{}, skipped {}",
            self.added.len(),
            plural(self.added.len()),
            self.skipped.len()
        )?;
        for feed in &self.added {
            write!(f, "\n  + {}", feed.url)?;
            if let Some(name) = &feed.name {
                write!(f, "  {name:?}")?;
            }
            if !feed.tags.is_empty() {
                write!(f, "  [{}]", feed.tags.join(", "))?;
            }
        }
        for skipped in &self.skipped {
            write!(f, "\n  - {}: {}", skipped.url, skipped.reason)?;
        }
        Ok(())
    }
}

/// Adds the feeds of `opml_text` to the config file at `config_path` and saves it.
///
/// A missing config file is created. The file is left untouched when nothing is new, and the
/// import is refused when the config file is already invalid (fix it first, then import).
pub fn import(config_path: &Path, opml_text: &str) -> anyhow::Result<ImportReport> {
    let file = ConfigFile::read(config_path)?;
    let (updated, report) = plan_import(&file.text, config_path, opml_text)?;
    if !report.added.is_empty() {
        file.save(&updated)?;
    }
    Ok(report)
}

/// The pure core of [`import`]: the new config text and the report, without touching the disk
/// (a dry run shows the report and discards the text). `config_path` is used in messages only.
pub fn plan_import(
    config_text: &str,
    config_path: &Path,
    opml_text: &str,
) -> anyhow::Result<(String, ImportReport)> {
    let outlines = parse_opml(opml_text)?;
    let config = config_edit::parse_for_adding(config_text, config_path)?;
    // Compared as the config's own check compares them, so every added URL loads.
    let in_config: HashSet<Url> = config
        .feeds
        .iter()
        .map(|f| fetched_document(&f.url))
        .collect();

    let mut report = ImportReport::default();
    let mut seen_in_opml = HashSet::new();
    for outline in outlines {
        let skip = |reason| SkippedFeed {
            url: outline.url.clone(),
            name: outline.name.clone(),
            reason,
        };
        // Same rule as the config's own check, so every added URL loads.
        let url = match Url::parse(outline.url.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
            Ok(url) => {
                let scheme = url.scheme().to_string();
                report.skipped.push(skip(SkipReason::NotHttp { scheme }));
                continue;
            }
            Err(err) => {
                let error = err.to_string();
                report.skipped.push(skip(SkipReason::InvalidUrl { error }));
                continue;
            }
        };
        let document = fetched_document(&url);
        if in_config.contains(&document) {
            report.skipped.push(skip(SkipReason::AlreadyInConfig));
        } else if !seen_in_opml.insert(document) {
            report.skipped.push(skip(SkipReason::RepeatedInOpml));
        } else {
            report.added.push(FeedConfig {
                url,
                name: outline.name,
                interval: None,
                tags: outline.tags,
                headers: None,
                fetch_articles: false,
            });
        }
    }
    if report.added.is_empty() {
        return Ok((config_text.to_string(), report));
    }
    let updated = config_edit::append_feeds(
        config_text,
        config_path,
        &config,
        &report.added,
        "feedhound opml import",
    )?;
    Ok((updated, report))
}

/// Reads an OPML file into text, honouring a byte order mark or the encoding its XML declaration
/// names (old exporters write ISO-8859-1); UTF-8 otherwise.
pub fn read_opml_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let encoding = encoding_rs::Encoding::for_bom(&bytes)
        .map(|(encoding, _)| encoding)
        .or_else(|| declared_encoding(&bytes))
        .unwrap_or(encoding_rs::UTF_8);
    // `decode` strips a BOM; malformed sequences become U+FFFD rather than failing the import.
    let (text, _, _) = encoding.decode(&bytes);
    Ok(text.into_owned())
}

/// The `encoding` of the XML declaration, when the file starts with one that names a known label.
fn declared_encoding(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let mut reader = Reader::from_reader(bytes);
    match reader.read_event_into(&mut Vec::new()) {
        Ok(Event::Decl(decl)) => {
            let label = decl.encoding()?.ok()?;
            encoding_rs::Encoding::for_label(label.trim().as_bytes())
        }
        _ => None,
    }
}

/// Every feed outline of an OPML document, in document order.
///
/// An outline with an `xmlUrl` (any case) is a feed, whatever its `type`; an outline without one
/// is a folder, and its `text` becomes a tag of every feed inside it, at any depth.
pub fn parse_opml(text: &str) -> Result<Vec<OpmlFeed>, OpmlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    // A bare `&` in text (`<title>This & That</title>`) is common in hand-edited files and sits
    // in text we never read; a bare `&` in an attribute is handled in `attribute_value`.
    reader.config_mut().allow_dangling_amp = true;
    let malformed = |offset: u64, message: String| {
        let (line, column) = line_and_column(text, offset as usize);
        OpmlError::Malformed {
            line,
            column,
            message,
        }
    };
    // Names of the open elements, with their start offsets, to report what is left unclosed.
    let mut open_elements: Vec<(String, u64)> = Vec::new();
    // One entry per open <outline>: the folder name it gives the feeds inside it, if any.
    let mut folders: Vec<Option<String>> = Vec::new();
    let mut root_seen = false;
    let mut feeds = Vec::new();
    loop {
        let start_offset = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|err| malformed(reader.error_position(), err.to_string()))?;
        let (element, is_empty) = match event {
            Event::Start(element) => (element, false),
            Event::Empty(element) => (element, true),
            Event::End(element) => {
                open_elements.pop();
                if is_named(element.local_name().as_ref(), "outline") {
                    folders.pop();
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = element.local_name().as_ref().to_string();
        if !root_seen {
            if !name.eq_ignore_ascii_case("opml") {
                return Err(OpmlError::NotOpml {
                    found: format!("<{name}>"),
                });
            }
            root_seen = true;
        }
        if name.eq_ignore_ascii_case("outline") {
            let outline = read_outline(&element).map_err(|err| {
                // Attribute errors count from the byte after `<`.
                let (position, message) = describe_attribute_error(&err);
                malformed(start_offset + 1 + position as u64, message.to_string())
            })?;
            match outline.feed_url {
                Some(url) => {
                    let mut tags: Vec<String> = folders.iter().flatten().cloned().collect();
                    tags.extend(outline.categories);
                    // "Asia" as a folder and "/asia" as a category are one label; keep the first.
                    let mut unique = HashSet::new();
                    tags.retain(|tag| unique.insert(tag.to_lowercase()));
                    let name = outline.title.or(outline.text).filter(|name| *name != url);
                    feeds.push(OpmlFeed { url, name, tags });
                    // Outlines nested in a feed are unusual; they get the outer folders only.
                    if !is_empty {
                        folders.push(None);
                    }
                }
                None if !is_empty => folders.push(outline.text.or(outline.title)),
                None => {}
            }
        }
        if !is_empty {
            open_elements.push((name, start_offset));
        }
    }
    if let Some((name, offset)) = open_elements.last() {
        return Err(malformed(
            *offset,
            format!("<{name}> is never closed (the file ends first)"),
        ));
    }
    if !root_seen {
        return Err(OpmlError::NotOpml {
            found: "no element at all".to_string(),
        });
    }
    Ok(feeds)
}

/// The attributes of one `<outline>` that import cares about, trimmed, empty ones as `None`.
struct Outline {
    feed_url: Option<String>,
    title: Option<String>,
    text: Option<String>,
    categories: Vec<String>,
}

fn read_outline(element: &BytesStart<'_>) -> Result<Outline, AttrError> {
    let mut outline = Outline {
        feed_url: None,
        title: None,
        text: None,
        categories: Vec::new(),
    };
    for attribute in element.attributes() {
        let attribute = attribute?;
        let key = attribute.key.local_name();
        let key = key.as_ref();
        let slot = if is_named(key, "xmlUrl") {
            &mut outline.feed_url
        } else if is_named(key, "title") {
            &mut outline.title
        } else if is_named(key, "text") {
            &mut outline.text
        } else if is_named(key, "category") {
            // OPML 2.0: comma-separated categories, each a slash-delimited path ("/tech/asia").
            let value = attribute_value(&attribute);
            outline.categories = value
                .split([',', '/'])
                .map(str::trim)
                .filter(|tag| !tag.is_empty())
                .map(String::from)
                .collect();
            continue;
        } else {
            continue;
        };
        let value = attribute_value(&attribute);
        let value = value.trim();
        *slot = (!value.is_empty()).then(|| value.to_string());
    }
    Ok(outline)
}

/// Where in the element an attribute error is, and what it is in words (quick-xml's own message
/// gives a position relative to the element, which means nothing to a user).
fn describe_attribute_error(err: &AttrError) -> (usize, &'static str) {
    match *err {
        AttrError::ExpectedEq(at) => (at, "an attribute name must be followed by `=`"),
        AttrError::ExpectedValue(at) => (at, "`=` must be followed by a quoted value"),
        AttrError::UnquotedValue(at) => (at, "an attribute value must be in quotes"),
        AttrError::ExpectedQuote(at, _) => (at, "an attribute value is missing its closing quote"),
        AttrError::Duplicated(at, _) => (at, "this attribute is given twice"),
    }
}

/// The attribute's text with XML entities and character references resolved. Exporters that
/// write HTML entities (`&nbsp;`, `&eacute;`) or a bare `&` make this invalid XML; rather than
/// reject the whole file we read such a value as HTML, which is what its author meant.
fn attribute_value(attribute: &Attribute<'_>) -> String {
    match attribute.normalized_value(XmlVersion::Implicit1_0) {
        Ok(value) => value.into_owned(),
        Err(_) => html_escape::decode_html_entities(&attribute.value).into_owned(),
    }
}

fn is_named(name: &str, expected: &str) -> bool {
    name.eq_ignore_ascii_case(expected)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// The config's feeds as an OPML 2.0 document.
pub fn export(config: &Config) -> String {
    render_opml(&config.feeds, Utc::now())
}

fn render_opml(feeds: &[FeedConfig], created: DateTime<Utc>) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<opml version=\"2.0\">\n  <head>\n");
    out.push_str("    <title>feedhound subscriptions</title>\n");
    // OPML 2.0 dates are RFC 822 dates.
    out.push_str(&format!(
        "    <dateCreated>{}</dateCreated>\n",
        created.to_rfc2822()
    ));
    out.push_str("  </head>\n  <body>\n");
    for feed in feeds {
        // `text` is required by OPML; a feed without a name shows its URL.
        let url = feed.url.as_str();
        out.push_str("    <outline type=\"rss\"");
        push_attribute(&mut out, "text", feed.name.as_deref().unwrap_or(url));
        if let Some(name) = &feed.name {
            push_attribute(&mut out, "title", name);
        }
        push_attribute(&mut out, "xmlUrl", url);
        if !feed.tags.is_empty() {
            push_attribute(&mut out, "category", &feed.tags.join(","));
        }
        out.push_str("/>\n");
    }
    out.push_str("  </body>\n</opml>\n");
    out
}

/// Appends ` name="value"` with the value escaped for a double-quoted XML attribute. Tabs and
/// line breaks are written as character references because a parser would turn the raw
/// characters into spaces; characters XML 1.0 cannot carry at all are dropped.
fn push_attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => {}
        }
    }
    out.push('"');
}

/// The XML 1.0 `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG_PATH: &str = "/etc/feedhound/feedhound.toml";

    /// A config as a user leaves it: comments everywhere, odd spacing, a company after the feeds.
    const COMMENTED_CONFIG: &str = r#"# My feedhound setup — keep this comment!
[polling]
interval = "20m"   # trailing comment stays too

# Feeds I read every day
[[feed]]
url = "https://example.com/news/rss.xml"
name  =  "Example News"   # odd spacing on purpose
tags = [ "tech",  "asia" ]

# [[feed]]
# url = "https://disabled.example/rss"   (commented out, must survive)

[[company]]
name = "Xiaomi"
aliases = ["小米"]
# the end
"#;

    /// A Feedly-like export: folders, a feed the config already has (spelled differently), the
    /// same feed twice, lower-case `xmlurl`, a gopher feed and a URL that does not parse.
    const READER_EXPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head><title>Feedly export</title></head>
  <body>
    <outline text="Tech" title="Tech">
      <outline type="rss" text="Example" title="Example News" xmlUrl="HTTPS://Example.COM:443/news/rss.xml" htmlUrl="https://example.com"/>
      <outline type="rss" text="Ars" title="Ars Technica" xmlUrl="https://feeds.arstechnica.com/arstechnica/index" htmlUrl="https://arstechnica.com"/>
      <outline type="rss" text="Ars again" xmlUrl="https://feeds.arstechnica.com/arstechnica/index"/>
    </outline>
    <outline text="Podcast" xmlurl="http://podcast.example.org/feed.xml"/>
    <outline text="Gopher" xmlUrl="gopher://old.example/1/news"/>
    <outline text="Broken" xmlUrl="not a url"/>
  </body>
</opml>
"#;

    fn config_path() -> &'static Path {
        Path::new(CONFIG_PATH)
    }

    fn parse_config(text: &str) -> Config {
        Config::parse(text, config_path()).unwrap_or_else(|err| panic!("{err}\n---\n{text}"))
    }

    /// Asserts that `updated` is `original` with one block of whole lines inserted, and returns
    /// that block.
    fn inserted_block(original: &str, updated: &str) -> String {
        let (old, new) = (original.as_bytes(), updated.as_bytes());
        assert!(new.len() > old.len(), "nothing was inserted");
        let inserted = new.len() - old.len();
        let common_prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
        // Where repeated text surrounds the insertion ("\n# "), several split points explain
        // the same edit; take the last one that starts a line.
        let at = (0..=common_prefix)
            .rev()
            .find(|&at| (at == 0 || old[at - 1] == b'\n') && new[at + inserted..] == old[at..])
            .unwrap_or_else(|| {
                panic!("the original text was changed, not only extended:\n{updated}")
            });
        String::from_utf8(new[at..at + inserted].to_vec()).unwrap()
    }

    fn urls(feeds: &[FeedConfig]) -> Vec<&str> {
        feeds.iter().map(|f| f.url.as_str()).collect()
    }

    fn feed(url: &str, name: Option<&str>, tags: &[&str]) -> FeedConfig {
        FeedConfig {
            url: Url::parse(url).unwrap(),
            name: name.map(String::from),
            interval: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            headers: None,
            fetch_articles: false,
        }
    }

    #[test]
    fn urls_that_differ_only_in_their_fragment_are_imported_once() {
        let config = "[[feed]]\nurl = \"https://a.example/rss\"\n";
        let opml = r#"<opml version="2.0"><body>
            <outline type="rss" xmlUrl="https://a.example/rss#top"/>
            <outline type="rss" xmlUrl="https://b.example/rss"/>
            <outline type="rss" xmlUrl="https://b.example/rss#latest"/>
            </body></opml>"#;
        let (updated, report) = plan_import(config, config_path(), opml).unwrap();
        assert_eq!(urls(&report.added), vec!["https://b.example/rss"]);
        let reasons: Vec<&SkipReason> = report.skipped.iter().map(|s| &s.reason).collect();
        assert_eq!(
            reasons,
            vec![&SkipReason::AlreadyInConfig, &SkipReason::RepeatedInOpml]
        );
        assert_eq!(parse_config(&updated).feeds.len(), 2);
    }

    #[test]
    fn import_keeps_every_byte_of_a_commented_config_and_adds_only_new_feeds() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("feedhound.toml");
        std::fs::write(&path, COMMENTED_CONFIG).unwrap();

        let report = import(&path, READER_EXPORT).unwrap();

        let updated = std::fs::read_to_string(&path).unwrap();
        let block = inserted_block(COMMENTED_CONFIG, &updated);
        // The inserted block holds exactly the new feeds, and is valid on its own.
        let block_feeds = parse_config(&block).feeds;
        assert_eq!(
            block_feeds,
            vec![
                feed(
                    "https://feeds.arstechnica.com/arstechnica/index",
                    Some("Ars Technica"),
                    &["Tech"]
                ),
                feed("http://podcast.example.org/feed.xml", Some("Podcast"), &[]),
            ]
        );
        assert_eq!(report.added, block_feeds);
        // New feeds go next to the existing ones, before the companies.
        assert!(
            updated.find("arstechnica").unwrap() < updated.find("[[company]]").unwrap(),
            "{updated}"
        );

        let loaded = Config::load(&path).unwrap();
        assert_eq!(
            urls(&loaded.feeds),
            vec![
                "https://example.com/news/rss.xml",
                "https://feeds.arstechnica.com/arstechnica/index",
                "http://podcast.example.org/feed.xml",
            ]
        );
        assert_eq!(loaded.companies.len(), 1);

        let reasons: Vec<(&str, &SkipReason)> = report
            .skipped
            .iter()
            .map(|s| (s.url.as_str(), &s.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (
                    "HTTPS://Example.COM:443/news/rss.xml",
                    &SkipReason::AlreadyInConfig
                ),
                (
                    "https://feeds.arstechnica.com/arstechnica/index",
                    &SkipReason::RepeatedInOpml
                ),
                (
                    "gopher://old.example/1/news",
                    &SkipReason::NotHttp {
                        scheme: "gopher".into()
                    }
                ),
                (
                    "not a url",
                    &SkipReason::InvalidUrl {
                        error: "relative URL without a base".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn the_report_names_what_was_added_and_why_the_rest_was_skipped() {
        let (_, report) = plan_import(COMMENTED_CONFIG, config_path(), READER_EXPORT).unwrap();
        let summary = report.to_string();
        assert!(
            summary.starts_with("added 2 feeds, skipped 4\n"),
            "{summary}"
        );
        assert!(
            summary.contains(
                "+ https://feeds.arstechnica.com/arstechnica/index  \"Ars Technica\"  [Tech]"
            ),
            "{summary}"
        );
        assert!(
            summary.contains("- HTTPS://Example.COM:443/news/rss.xml: already in the config"),
            "{summary}"
        );
        assert!(
            summary.contains(": listed twice in the OPML file"),
            "{summary}"
        );
        assert!(
            summary.contains("- gopher://old.example/1/news: not an http(s) feed (gopher:)"),
            "{summary}"
        );
        assert!(
            summary.contains("- not a url: not a valid URL (relative URL without a base)"),
            "{summary}"
        );
    }

    #[test]
    fn importing_the_same_file_twice_adds_nothing_and_leaves_the_file_alone() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("feedhound.toml");
        std::fs::write(&path, COMMENTED_CONFIG).unwrap();
        import(&path, READER_EXPORT).unwrap();
        let after_first = std::fs::read(&path).unwrap();

        let second = import(&path, READER_EXPORT).unwrap();

        assert!(second.added.is_empty(), "{second}");
        assert_eq!(second.skipped.len(), 6);
        assert_eq!(std::fs::read(&path).unwrap(), after_first);
    }

    #[test]
    fn import_creates_a_missing_config_file_that_loads() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("new.toml");
        let report = import(&path, READER_EXPORT).unwrap();
        assert_eq!(report.added.len(), 3);
        assert_eq!(Config::load(&path).unwrap().feeds, report.added);
        // Only the target remains in the folder: the temporary file was renamed, not left behind.
        let names: Vec<_> = std::fs::read_dir(folder.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["new.toml"]);
    }

    #[test]
    fn a_config_without_a_final_newline_gains_one_before_the_new_feeds() {
        let original = "[polling]\ninterval = \"1h\"\n\n[[feed]]\nurl = \"https://a.example/rss\"";
        let (updated, report) = plan_import(original, config_path(), READER_EXPORT).unwrap();
        assert_eq!(report.added.len(), 3);
        inserted_block(&format!("{original}\n"), &updated);
        assert_eq!(parse_config(&updated).feeds.len(), 4);
    }

    #[cfg(unix)]
    #[test]
    fn import_keeps_the_config_file_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("feedhound.toml");
        std::fs::write(&path, COMMENTED_CONFIG).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        import(&path, READER_EXPORT).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    /// As root, editing a service user's config must leave it theirs. Skipped (with a message)
    /// when not run as root, which cannot give a file away.
    #[cfg(unix)]
    #[test]
    fn import_as_root_keeps_the_config_file_owner() {
        use std::os::unix::fs::MetadataExt;
        if !crate::config::running_as_root() {
            eprintln!("SKIPPED: only root can give the config file to another user");
            return;
        }
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("feedhound.toml");
        std::fs::write(&path, COMMENTED_CONFIG).unwrap();
        let (service_uid, service_gid) = (65534, 65534);
        std::os::unix::fs::chown(&path, Some(service_uid), Some(service_gid)).unwrap();
        import(&path, READER_EXPORT).unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!((metadata.uid(), metadata.gid()), (service_uid, service_gid));
    }

    #[test]
    fn an_invalid_config_is_refused_and_left_untouched() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("feedhound.toml");
        let broken = "[polling]\nconcurrency = 0\n";
        std::fs::write(&path, broken).unwrap();
        let err = import(&path, READER_EXPORT).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("must be valid before"), "{message}");
        assert!(message.contains("polling.concurrency"), "{message}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    }

    #[test]
    fn feeds_written_as_an_inline_array_are_refused_clearly() {
        let original = "feed = [{ url = \"https://a.example/rss\" }]\n";
        let err = plan_import(original, config_path(), READER_EXPORT).unwrap_err();
        assert!(
            err.to_string().contains("not written as [[feed]] tables"),
            "{err}"
        );
    }

    #[test]
    fn nested_folders_and_categories_become_tags() {
        let opml = r#"<opml version="2.0"><head/><body>
            <outline text="News">
              <outline title="Asia">
                <outline text="SCMP" xmlUrl="https://scmp.example/rss" category="/tech/asia,markets, /News"/>
              </outline>
              <outline text="Wire" xmlUrl="https://wire.example/rss"/>
            </outline>
            <outline text="An empty folder"></outline>
            <outline text="Top" xmlUrl="https://top.example/rss"/>
        </body></opml>"#;
        let feeds = parse_opml(opml).unwrap();
        let tags: Vec<(&str, Vec<&str>)> = feeds
            .iter()
            .map(|f| (f.url.as_str(), f.tags.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            tags,
            vec![
                (
                    "https://scmp.example/rss",
                    vec!["News", "Asia", "tech", "markets"]
                ),
                ("https://wire.example/rss", vec!["News"]),
                ("https://top.example/rss", vec![]),
            ]
        );
    }

    #[test]
    fn quirks_of_real_reader_exports_are_accepted() {
        // BOM, no `type`, any case of `xmlUrl`, `title` preferred over `text`, character and
        // entity references, HTML entities and a bare `&` that strict XML would reject.
        let opml = "\u{feff}<?xml version=\"1.0\"?>\n<opml version=\"2.0\"><head/><body>\n\
            <outline text=\"Caf&#233; &amp; Bar\" xmlurl=\"https://cafe.example/feed\"/>\n\
            <outline title=\"AT&amp;T&nbsp;News\" text=\"ignored\" XMLURL=\"https://att.example/rss\" type=\"atom\"/>\n\
            <outline text=\"Tom & Jerry\" xmlUrl=\"https://tj.example/rss\" htmlUrl=\"https://tj.example/\"/>\n\
            <outline text=\"https://bare.example/rss\" xmlUrl=\"https://bare.example/rss\"/>\n\
            <outline text=\"A link, not a feed\" type=\"link\" url=\"https://example.com/\"/>\n\
            </body></opml>";
        let feeds = parse_opml(opml).unwrap();
        let names: Vec<(&str, Option<&str>)> = feeds
            .iter()
            .map(|f| (f.url.as_str(), f.name.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("https://cafe.example/feed", Some("Café & Bar")),
                ("https://att.example/rss", Some("AT&T\u{a0}News")),
                ("https://tj.example/rss", Some("Tom & Jerry")),
                // A name that only repeats the URL is no name.
                ("https://bare.example/rss", None),
            ]
        );
    }

    #[test]
    fn entities_declared_in_a_doctype_are_never_expanded() {
        let opml = r#"<?xml version="1.0"?>
<!DOCTYPE opml [
  <!ENTITY secret SYSTEM "file:///etc/passwd">
  <!ENTITY boom "BOOM">
]>
<opml version="2.0"><body>
  <outline text="x&secret;&boom;" xmlUrl="https://x.example/rss"/>
</body></opml>"#;
        let feeds = parse_opml(opml).unwrap();
        assert_eq!(feeds[0].name.as_deref(), Some("x&secret;&boom;"));
    }

    #[test]
    fn malformed_opml_reports_the_line_and_column() {
        let opml = "<opml version=\"2.0\">\n<body>\n  <outline text=\"a\" xmlUrl=\"https://a.example/\">\n  </body>\n</opml>\n";
        let err = parse_opml(opml).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("malformed OPML at line 4, column 3: "),
            "{message}"
        );
    }

    #[test]
    fn a_repeated_attribute_is_located_at_its_second_occurrence() {
        let opml = "<opml version=\"2.0\"><body>\n  <outline text=\"a\" xmlUrl=\"https://a.example/\" xmlUrl=\"x\"/>\n</body></opml>";
        let message = parse_opml(opml).unwrap_err().to_string();
        assert_eq!(
            message,
            "malformed OPML at line 2, column 49: this attribute is given twice"
        );
    }

    #[test]
    fn the_feed_validator_opml_cases_parse_or_fail_cleanly() {
        let folder = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/corpus/feeds/feedvalidator/opml"
        ));
        if !folder.is_dir() {
            eprintln!("skipped: {} is absent", folder.display());
            return;
        }
        let mut files = 0;
        for sub in ["clean", "errors", "rss"] {
            for entry in std::fs::read_dir(folder.join(sub)).unwrap() {
                // Any outcome but a panic is acceptable for the invalid cases.
                let _ = parse_opml(&read_opml_file(&entry.unwrap().path()).unwrap());
                files += 1;
            }
        }
        assert!(files > 30, "only {files} files found");

        let list = read_opml_file(&folder.join("clean/subscriptionList.opml")).unwrap();
        let (text, report) = plan_import("", config_path(), &list).unwrap();
        assert_eq!(report.added.len(), 13, "{report}");
        assert_eq!(parse_config(&text).feeds, report.added);

        let rss = read_opml_file(&folder.join("rss/twittergram.xml")).unwrap();
        assert!(matches!(parse_opml(&rss), Err(OpmlError::NotOpml { .. })));
        // A stray `&` in the head's title does not stop the import of the body.
        let stray = read_opml_file(&folder.join("errors/notwellformed.opml")).unwrap();
        assert_eq!(parse_opml(&stray).unwrap()[0].tags, ["Folder"]);
    }

    #[test]
    fn a_truncated_opml_file_names_the_element_left_open() {
        let opml = "<opml version=\"2.0\">\n<body>\n  <outline text=\"Folder\">\n    <outline xmlUrl=\"https://a.example/\"/>\n";
        let message = parse_opml(opml).unwrap_err().to_string();
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("<outline>"), "{message}");
    }

    #[test]
    fn a_feed_file_given_instead_of_opml_is_named_as_such() {
        let rss = "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel/></rss>";
        let message = parse_opml(rss).unwrap_err().to_string();
        assert_eq!(
            message,
            "not an OPML file: expected an <opml> root element, found <rss>"
        );
        assert!(matches!(parse_opml("  \n"), Err(OpmlError::NotOpml { .. })));
    }

    /// Feeds whose names and tags carry everything XML must escape.
    const TRICKY_CONFIG: &str = r#"
[[feed]]
url = "https://example.com/rss?a=1&b=2"
name = "Tom & Jerry's <\"News\"> — Économie 日本語 🚀"
tags = ["économie", "a&b", "<x>", "it's \"quoted\""]

[[feed]]
url = "https://unnamed.example/feed.xml"

[[feed]]
url = "http://tabs.example/rss"
name = "Column\tone\nline two"
tags = ["solo"]
"#;

    #[test]
    fn export_then_import_into_an_empty_config_preserves_every_feed() {
        let config = parse_config(TRICKY_CONFIG);
        let opml = export(&config);

        let (text, report) = plan_import("", config_path(), &opml).unwrap();

        assert!(report.skipped.is_empty(), "{report}");
        assert_eq!(parse_config(&text).feeds, config.feeds);
    }

    #[test]
    fn exported_opml_is_well_formed_and_escaped() {
        let config = parse_config(TRICKY_CONFIG);
        let created = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let opml = render_opml(&config.feeds, created);

        let mut reader = Reader::from_str(&opml);
        let mut elements = Vec::new();
        let mut texts = Vec::new();
        loop {
            match reader.read_event().expect("export must be well-formed XML") {
                Event::Start(e) | Event::Empty(e) => {
                    for attribute in e.attributes() {
                        let attribute = attribute.expect("attributes must be well-formed");
                        assert!(!attribute.value.contains(['<', '\n', '\t']), "{opml}");
                        attribute
                            .normalized_value(XmlVersion::Explicit1_0)
                            .expect("every entity in an attribute must be a valid XML one");
                    }
                    elements.push(e.local_name().as_ref().to_string());
                }
                Event::Text(t) => texts.push(t.xml10_content().into_owned()),
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(
            elements,
            [
                "opml",
                "head",
                "title",
                "dateCreated",
                "body",
                "outline",
                "outline",
                "outline"
            ]
        );
        assert!(opml.contains("<opml version=\"2.0\">"), "{opml}");
        assert!(
            texts.iter().any(|t| t == "Mon, 23 Nov 2026 10:00:00 +0000"),
            "{texts:?}"
        );
        assert!(
            opml.contains(
                r#"<outline type="rss" text="https://unnamed.example/feed.xml" xmlUrl="https://unnamed.example/feed.xml"/>"#
            ),
            "{opml}"
        );
        assert!(
            opml.contains(r#"xmlUrl="https://example.com/rss?a=1&amp;b=2" category="économie,a&amp;b,&lt;x&gt;,it's &quot;quoted&quot;""#),
            "{opml}"
        );
    }

    #[test]
    fn characters_xml_cannot_carry_are_dropped_from_the_export() {
        let config = parse_config(
            "[[feed]]\nurl = \"https://a.example/rss\"\nname = \"bell\\u0007 here\"\n",
        );
        let opml = export(&config);
        assert!(opml.contains("text=\"bell here\""), "{opml}");
        assert_eq!(
            parse_opml(&opml).unwrap()[0].name.as_deref(),
            Some("bell here")
        );
    }

    #[test]
    fn an_iso_8859_1_opml_file_is_decoded_by_its_declaration() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("old.opml");
        let mut bytes = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<opml version=\"1.1\"><body><outline text=\"Caf".to_vec();
        bytes.push(0xE9); // é in ISO-8859-1
        bytes.extend_from_slice(b"\" xmlUrl=\"https://cafe.example/rss\"/></body></opml>");
        std::fs::write(&path, bytes).unwrap();

        let text = read_opml_file(&path).unwrap();

        assert_eq!(parse_opml(&text).unwrap()[0].name.as_deref(), Some("Café"));
    }

    #[test]
    fn a_utf16_opml_file_with_a_bom_is_decoded() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("utf16.opml");
        let source = "<opml version=\"2.0\"><body><outline text=\"日本\" xmlUrl=\"https://jp.example/rss\"/></body></opml>";
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(source.encode_utf16().flat_map(u16::to_le_bytes));
        std::fs::write(&path, bytes).unwrap();

        let text = read_opml_file(&path).unwrap();

        assert_eq!(parse_opml(&text).unwrap()[0].name.as_deref(), Some("日本"));
    }
}
