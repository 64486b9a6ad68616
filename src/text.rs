//! HTML → plain text. (interface draft — to be implemented)

/// Tags dropped, entities decoded, whitespace collapsed to single spaces.
pub fn html_to_text(_html: &str) -> String {
    unimplemented!()
}
