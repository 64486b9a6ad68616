//! Integration tests: a real HTTP server on 127.0.0.1:0, a real SQLite file in a temp dir, and
//! the real binary where processes matter.

mod articles;
mod cli;
mod corpus;
mod crash;
mod discover;
mod email;
mod flags;
mod helpers;
mod hostile;
mod https;
mod matcher_eval;
mod parse_corpus;
mod pipeline;
mod props;
mod schedule;
mod service;
