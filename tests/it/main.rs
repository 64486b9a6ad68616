//! Integration tests.
mod parse_corpus;
