//! How the operators' tools (the `reelq` CLI and the dashboard) write times: one place, so
//! the two say the same.

use std::time::{Duration, UNIX_EPOCH};

/// How long `ms` is, at a glance: `42 s`, `17 min`, `5 h`, `3 d`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// A unix-ms time in UTC to the second: `2026-12-01 18:04:05`.
pub fn utc(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms))
        .to_string()
        .trim_end_matches('Z')
        .replace('T', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_at_a_glance() {
        assert_eq!(
            [
                age(42_000),
                age(17 * 60_000),
                age(5 * 3_600_000),
                age(3 * 86_400_000)
            ],
            ["42 s", "17 min", "5 h", "3 d"]
        );
        assert_eq!(utc(1_764_612_245_000), "2025-12-01 18:04:05");
    }
}
