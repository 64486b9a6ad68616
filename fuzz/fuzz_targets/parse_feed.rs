//! `parse_feed` on arbitrary bytes: no panic may escape it (feed-rs panics are caught inside,
//! by design), and whatever it returns must obey the caps the store relies on.
#![no_main]

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use feedhound::parse::parse_feed;
use libfuzzer_sys::fuzz_target;
use url::Url;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// libfuzzer-sys installs a panic hook that aborts on *every* panic, including the feed-rs
/// panics `parse_feed` catches on purpose. Replace it by one that only records the message;
/// a panic that escapes `parse_feed` is still turned into a crash below.
fn quiet_caught_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            LAST_PANIC.with_borrow_mut(|last| *last = Some(info.to_string()));
        }));
    });
}

/// Content types a server may send; the first input byte picks one, so the charset fallback
/// paths are reached as well as the declaration and sniffing ones.
const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some("application/rss+xml"),
    Some("application/atom+xml; charset=utf-8"),
    Some("text/xml; charset=ISO-8859-1"),
    Some("text/html; charset=windows-1251"),
    Some("application/feed+json"),
    Some("text/xml; charset=\"Shift_JIS\""),
    Some("text/plain; charset=utf-16"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(choice) % CONTENT_TYPES.len()];
    let url = Url::parse("https://news.example.com/feeds/main.xml").unwrap();
    quiet_caught_panics();
    let result = catch_unwind(AssertUnwindSafe(|| parse_feed(body, content_type, &url)));
    let Ok(result) = result else {
        let message = LAST_PANIC.with_borrow_mut(Option::take);
        eprintln!(
            "a panic escaped parse_feed: {}",
            message.unwrap_or_default()
        );
        std::process::abort();
    };
    let Ok(feed) = result else {
        return;
    };
    if let Some(title) = &feed.title {
        assert!(title.chars().count() <= 1_000);
        assert!(!title.contains('\0'));
    }
    for entry in &feed.entries {
        assert!(!entry.dedup_key.is_empty());
        assert!(!entry.dedup_key.contains('\0'));
        assert!(
            entry
                .title
                .as_ref()
                .is_none_or(|t| t.chars().count() <= 1_000)
        );
        assert!(
            entry
                .author
                .as_ref()
                .is_none_or(|a| a.chars().count() <= 500)
        );
        for body in [&entry.summary, &entry.content].into_iter().flatten() {
            assert!(body.len() <= 256 * 1024);
        }
        for text in [
            &entry.title,
            &entry.summary,
            &entry.content,
            &entry.author,
            &entry.guid,
        ]
        .into_iter()
        .flatten()
        {
            assert!(!text.contains('\0'), "NUL in {text:?}");
        }
    }
});
