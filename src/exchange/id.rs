//! Fresh request ids: UUIDv7, time-ordered to the millisecond.
//!
//! `uuid::Uuid::now_v7` keeps one process-wide context behind a mutex and
//! reads the kernel's random source (`getrandom(2)`) for every id, twice when
//! the millisecond changes: two system calls and a shared lock on every
//! request. The random bits here come from the thread's own generator
//! (`rand::rng()`, a CSPRNG seeded from the OS), so minting an id touches no
//! shared state. Ids made in the same millisecond are unordered among
//! themselves, which nothing relies on: the log orders records by time.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngExt;

/// A fresh UUIDv7 in its lower-case hyphenated form, on the stack.
pub fn fresh_request_id() -> RequestIdText {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let random: [u8; 10] = rand::rng().random();
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut text = RequestIdText([0; uuid::fmt::Hyphenated::LENGTH]);
    id.hyphenated().encode_lower(&mut text.0);
    text
}

/// The 36 ASCII characters of a hyphenated UUID.
pub struct RequestIdText([u8; uuid::fmt::Hyphenated::LENGTH]);

impl RequestIdText {
    pub fn as_str(&self) -> &str {
        // Only ever written by `encode_lower`: hex digits and hyphens.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_and_carry_the_current_millisecond() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let text = fresh_request_id();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let id = uuid::Uuid::parse_str(text.as_str()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(text.as_str(), id.hyphenated().to_string());
        let (seconds, nanos) = id.get_timestamp().unwrap().to_unix();
        let millis = u128::from(seconds) * 1000 + u128::from(nanos / 1_000_000);
        assert!((before.as_millis()..=after.as_millis()).contains(&millis));
    }

    #[test]
    fn ids_differ() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| fresh_request_id().as_str().to_owned())
            .collect();
        assert_eq!(ids.len(), 10_000);
    }
}
