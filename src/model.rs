//! Plain data that flows between the pipeline stages.
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
    /// The entry's link, resolved against the document's base URL.
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
    /// Hash of everything a reader sees (title, link, summary, content); a change means the
    /// publisher edited the entry.
    pub content_hash: String,
}

/// The text fields of an entry a company can be mentioned in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Title,
    Summary,
    Content,
}

impl Field {
    pub const ALL: [Field; 3] = [Field::Title, Field::Summary, Field::Content];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Summary => "summary",
            Field::Content => "content",
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
