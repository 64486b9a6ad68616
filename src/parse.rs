//! Feed documents → normalised entries. (interface draft — to be implemented)

use url::Url;

use crate::model::ParsedFeed;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the document is empty")]
    Empty,
    /// An HTML page where a feed was expected; `feed_link` is the page's
    /// `<link rel="alternate">` feed, when it has one.
    #[error("this is an HTML page, not a feed")]
    HtmlPage { feed_link: Option<String> },
    #[error("not a valid feed: {0}")]
    Invalid(String),
    #[error("the feed parser crashed on this document: {0}")]
    Panicked(String),
}

/// Parses one fetched document. `url` is where it was fetched from (base for relative links).
pub fn parse_feed(
    _body: &[u8],
    _content_type: Option<&str>,
    _url: &Url,
) -> Result<ParsedFeed, ParseError> {
    unimplemented!()
}

/// The canonical form of a story link (see `ParsedEntry::canonical_link`).
pub fn canonical_link(_link: &Url) -> String {
    unimplemented!()
}
