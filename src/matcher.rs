//! Company mention matching. (interface draft — to be implemented)

use crate::model::{Field, Mention};

/// One tracked company's rule, already validated by `config`
/// (non-empty unique names, no alias shared by two companies).
#[derive(Debug, Clone)]
pub struct CompanyRule {
    pub name: String,
    pub aliases: Vec<String>,
    pub case_sensitive: bool,
    /// Phrases that contain a name but do not mean the company ("apple pie").
    pub exclude: Vec<String>,
    /// When non-empty, the entry must also contain one of these for the company to count.
    pub require_any: Vec<String>,
    /// Fields searched; all of them when the config says nothing.
    pub fields: Vec<Field>,
}

/// Plain text of an entry's fields (empty string for a missing field).
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryText<'a> {
    pub title: &'a str,
    pub summary: &'a str,
    pub content: &'a str,
}

pub struct Matcher {}

impl Matcher {
    pub fn new(_rules: &[CompanyRule]) -> anyhow::Result<Matcher> {
        unimplemented!()
    }

    /// Every company the entry mentions, in configuration order.
    pub fn find(&self, _text: &EntryText<'_>) -> Vec<Mention> {
        unimplemented!()
    }
}
