//! `Config::parse` on arbitrary UTF-8 text: never a panic, and every rejection prints one
//! `file:line: key: message` line per issue, each starting with the file's path.
#![no_main]

use std::path::Path;

use feedhound::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/feedhound/feedhound.toml");
    if let Err(error) = Config::parse(text, path) {
        let message = error.to_string();
        let lines: Vec<&str> = message.split('\n').collect();
        assert_eq!(lines.len(), error.issues.len(), "{message:?}");
        for line in lines {
            assert!(
                line.starts_with("/etc/feedhound/feedhound.toml"),
                "{line:?}"
            );
        }
        for issue in &error.issues {
            if let Some(line) = issue.line {
                assert!(line >= 1 && line <= text.split('\n').count(), "{issue:?}");
            }
        }
    }
});
