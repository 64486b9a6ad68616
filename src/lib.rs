//! feedhound watches news feeds for the companies its user tracks.
//!
//! The data flows one way:
//!
//! ```text
//! config ─▶ scheduler ─▶ fetch ─▶ parse ─▶ store (dedup) ─▶ matcher/flag ─▶ notify
//! ```
//!
//! [`config`] turns the TOML file into validated types; [`scheduler`] decides which feeds are due
//! and drives each through [`fetch`] (HTTP with conditional GET and limits) and [`parse`] (bytes
//! to normalised entries, text from HTML via [`text`]; run on the threads of [`parse_pool`]) into
//! [`store`], the only module that speaks SQL. [`model`] holds the plain data passed between
//! them. [`articles`] fetches the pages entries link to, for feeds that only tease their stories,
//! and hands their text to the store and the matcher. [`cli`] and [`demo`] are the user-facing
//! commands, and [`atom`] writes flagged stories as a feed for readers; [`discover`] finds a
//! site's feeds for the config; [`opml`] moves the feed list to and from other readers;
//! [`config_edit`] adds the feeds those two bring to the user's config file; [`daemon_lock`]
//! keeps a database to one daemon and its config.

pub mod articles;
pub mod atom;
pub mod cli;
pub mod config;
pub mod config_edit;
pub mod daemon_lock;
pub mod demo;
pub mod discover;
pub mod fetch;
pub mod matcher;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod opml;
pub mod parse;
pub mod parse_pool;
pub mod report_clock;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod text;
