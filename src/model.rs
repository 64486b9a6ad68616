//! Plain data that flows between the pipeline stages, and the content hash that tells an edited
//! entry from one served again (computed by `parse`, compared by `store`).
//!
//! `parse` produces [`ParsedFeed`]s, `matcher` produces [`Mention`]s, and `store` consumes both.
//! Keeping these types here, free of any I/O, is what lets `fetch`, `parse` and `matcher` stay
//! ignorant of SQL and of each other.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// One feed document, parsed and normalised.
#[derive(Debug, Clone, Default)]
pub struct ParsedFeed {
    /// The title the feed declares for itself.
    pub title: Option<String>,
    /// The site link the feed declares (`<link>` of the channel, Atom `rel="alternate"`).
    pub site_link: Option<String>,
    /// How often the publisher says the feed changes (RSS `<ttl>`, `sy:updatePeriod` and
    /// `sy:updateFrequency`); a hint for the scheduler, never a floor below `min_interval`.
    pub update_hint: Option<Duration>,
    pub entries: Vec<ParsedEntry>,
}

/// One item of a feed, with text already extracted from its HTML.
#[derive(Debug, Clone, Default)]
pub struct ParsedEntry {
    /// Identity of the entry within its feed; see `parse` for how it is derived. Stable across
    /// polls for the same item even when the item has no guid.
    pub dedup_key: String,
    /// The publisher's own guid/id, when the document had one (never an id the parser invented).
    pub guid: Option<String>,
    /// The entry's link, resolved against the document's base URL, without click-tracking
    /// query parameters (`utm_*`, `fbclid`…).
    pub link: Option<String>,
    /// `link` with scheme, `www.`, trailing slash, fragment and tracking parameters normalised
    /// away; two entries with the same canonical link are the same story.
    pub canonical_link: Option<String>,
    /// False when several entries of this document share `canonical_link` (feeds that point
    /// every item at their home page); such a link must not be used to identify the entry.
    pub link_unique_in_doc: bool,
    /// When the link is shared (above) and that changes the key: the key the entry would have
    /// if the link were its own. It was, if the entry was stored while alone with its link (a
    /// live blog's first update); the store finds that row by it.
    pub key_with_own_link: Option<String>,
    pub title: Option<String>,
    pub author: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// Plain text of the summary/description.
    pub summary: Option<String>,
    /// Plain text of the full content.
    pub content: Option<String>,
    /// [`content_hash`] of everything a reader sees (title, canonical link, summary, content);
    /// a change means the publisher edited the entry. Compare a stored one with
    /// [`ParsedEntry::has_content_hash`].
    pub content_hash: String,
}

impl ParsedEntry {
    /// Whether `stored`, a `content_hash` as the database holds it, is this entry's text.
    /// Entries stored before the hash became xxh3 carry a blake3 hash (64 hex digits); those
    /// are compared by computing that one too, so that an upgrade does not count every stored
    /// entry as edited.
    pub fn has_content_hash(&self, stored: &str) -> bool {
        stored == self.content_hash
            || (stored.len() == BLAKE3_HEX_LEN
                && stored == blake3_content_hash(self.hashed_fields()))
    }

    /// What [`content_hash`] covers.
    pub fn hashed_fields(&self) -> [Option<&str>; 4] {
        [
            self.title.as_deref(),
            self.canonical_link.as_deref(),
            self.summary.as_deref(),
            self.content.as_deref(),
        ]
    }
}

/// 32 hex digits of xxh3-128 over an entry's title, canonical link, summary and content. The
/// canonical link, so that rotating `utm_*` values are not an edit. Not cryptographic: it tells
/// an edit from a re-serve, and a publisher who wanted to hide an edit from us could simply not
/// publish it; accidental collisions need about 2^64 versions of one entry.
pub fn content_hash(fields: [Option<&str>; 4]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    feed_fields(fields, |bytes| hasher.update(bytes));
    format!("{:032x}", hasher.digest128())
}

fn feed_fields(fields: [Option<&str>; 4], mut update: impl FnMut(&[u8])) {
    for field in fields {
        // A unit separator cannot occur in the cleaned text, so fields cannot run into each
        // other ("ab"+"c" vs "a"+"bc").
        update(field.unwrap_or_default().as_bytes());
        update(b"\x1f");
    }
}

const BLAKE3_HEX_LEN: usize = 64;

/// The content hash as it was computed before xxh3 (blake3 over the same fields), kept to
/// recognise entries stored then.
fn blake3_content_hash(fields: [Option<&str>; 4]) -> String {
    let mut hasher = blake3::Hasher::new();
    feed_fields(fields, |bytes| {
        hasher.update(bytes);
    });
    hasher.finalize().to_hex().to_string()
}

/// The text fields of an entry a company can be mentioned in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Title,
    Summary,
    Content,
    /// The story's text on the page the entry links to, for a feed with `fetch_articles`.
    Article,
}

impl Field {
    pub const ALL: [Field; 4] = [Field::Title, Field::Summary, Field::Content, Field::Article];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Summary => "summary",
            Field::Content => "content",
            Field::Article => "article",
        }
    }
}

/// A tracked company found in an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// The company's configured `name`.
    pub company: Arc<str>,
    /// Fields that contain at least one counted hit, in `Field` order.
    pub fields: Vec<Field>,
    /// Number of counted hits over all fields.
    pub count: u32,
    /// A short excerpt of plain text around the first counted hit.
    pub snippet: String,
}
