//! The pieces of an audit line written by hand: the bytes `serde_json`'s
//! compact serialiser writes, without its per-field dispatch, `fmt`
//! machinery and byte-by-byte escaping (they were most of a record's cost,
//! issue 14). What is rare or subtle (floats, `Value` trees) still goes
//! through `serde_json` itself, so the output cannot drift from it; the
//! record tests compare every line with the reference encoder's.

use std::fmt::{self, Display, Write as _};

use serde_json::Value;
use serde_json::value::RawValue;

use promptgate_log::time::UtcTime;

/// A value that can write itself as JSON straight into a line.
pub(super) trait JsonValue {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
}

impl<T: JsonValue + ?Sized> JsonValue for &T {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        (**self).write_json(out)
    }
}

impl<T: JsonValue> JsonValue for Option<T> {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Some(value) => value.write_json(out),
            None => {
                out.extend_from_slice(b"null");
                Ok(())
            }
        }
    }
}

impl JsonValue for str {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        write_str(out, self);
        Ok(())
    }
}

impl JsonValue for String {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        write_str(out, self);
        Ok(())
    }
}

impl JsonValue for bool {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
        Ok(())
    }
}

macro_rules! integer_json {
    ($($int:ty),*) => {$(
        impl JsonValue for $int {
            fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
                Ok(())
            }
        }
    )*};
}
integer_json!(u16, u32, u64);

/// Floats are `serde_json`'s own (shortest round-trip digits, `null` when
/// not finite): the exact text is its formatter's, not re-derived here.
impl JsonValue for f64 {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }
}

impl JsonValue for Value {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }
}

/// A request's tags: an object with the keys in order, `null` when none.
impl JsonValue for promptgate_core::tags::Tags {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        if self.is_empty() {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        out.push(b'{');
        for (index, (key, value)) in self.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_str(out, key);
            out.push(b':');
            write_str(out, value);
        }
        out.push(b'}');
        Ok(())
    }
}

/// A string written through `Display`, escaped on the way, without a
/// `String` in between.
pub(super) struct Displayed<T>(pub T);

impl<T: Display> serde::Serialize for Displayed<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<T: Display> JsonValue for Displayed<T> {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        /// Escapes what `Display` writes into the line.
        struct Escaping<'o>(&'o mut Vec<u8>);
        impl fmt::Write for Escaping<'_> {
            fn write_str(&mut self, text: &str) -> fmt::Result {
                write_str_contents(self.0, text);
                Ok(())
            }
        }
        out.push(b'"');
        // Writing into a Vec cannot fail; a `Display` that reports an error
        // is a bug there, surfaced as a lost record rather than a bad line.
        write!(Escaping(out), "{}", self.0)
            .map_err(|_| <serde_json::Error as serde::ser::Error>::custom("Display failed"))?;
        out.push(b'"');
        Ok(())
    }
}

/// `2026-11-26T04:27:09.123Z`, digits written directly (three per record:
/// `fmt`'s padding machinery was a tenth of the encoder).
#[derive(Clone, Copy)]
pub(super) struct Timestamp(pub UtcTime);

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl JsonValue for Timestamp {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let t = self.0;
        let Ok(year) = u32::try_from(t.year) else {
            return Displayed(t).write_json(out);
        };
        if year > 9999 {
            return Displayed(t).write_json(out);
        }
        let mut text = *b"\"0000-00-00T00:00:00.000Z\"";
        let mut put = |at: usize, value: u32, width: usize| {
            let mut value = value;
            for slot in text[at..at + width].iter_mut().rev() {
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(1, year, 4);
        put(6, t.month, 2);
        put(9, t.day, 2);
        put(12, t.hour, 2);
        put(15, t.minute, 2);
        put(18, t.second, 2);
        put(21, t.millis, 3);
        out.extend_from_slice(&text);
        Ok(())
    }
}

/// A body kept as its JSON text: written with the whitespace between its
/// tokens dropped (a pretty-printed answer would otherwise break the JSON
/// Lines framing), straight into the line.
pub(super) struct CompactRaw<'a>(pub &'a RawValue);

impl JsonValue for CompactRaw<'_> {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        write_compact(out, self.0.get());
        Ok(())
    }
}

/// Appends checked JSON text without the whitespace outside its strings.
/// Strings are copied whole (found by their closing quote with `memchr`);
/// only the short runs between them are looked at byte by byte. Bytes, not
/// chars: no byte of a multi-byte UTF-8 character is ASCII.
fn write_compact(out: &mut Vec<u8>, json: &str) {
    let bytes = json.as_bytes();
    out.reserve(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let run_end = memchr::memchr(b'"', &bytes[at..]).map_or(bytes.len(), |i| at + i);
        out.extend(
            bytes[at..run_end]
                .iter()
                .filter(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t')),
        );
        if run_end == bytes.len() {
            break;
        }
        // Inside a string from `run_end`: up to the quote that closes it.
        let mut end = run_end + 1;
        while let Some(i) = bytes
            .get(end..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            end += i + 1;
            if bytes[end - 1] == b'"' {
                break;
            }
            end += 1; // the escaped byte
        }
        let end = end.min(bytes.len());
        out.extend_from_slice(&bytes[run_end..end]);
        at = end;
    }
}

/// Whether `serde_json` escapes this byte in a string.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The index of the first byte of `bytes` to escape. Clean 16-byte blocks
/// are passed over with a test the compiler turns into vector instructions
/// (most text has nothing to escape).
fn next_escape(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 16;
    let mut at = 0;
    while at + BLOCK <= bytes.len() {
        let block = &bytes[at..at + BLOCK];
        if block.iter().fold(false, |any, &b| any | needs_escape(b)) {
            break;
        }
        at += BLOCK;
    }
    bytes[at..]
        .iter()
        .position(|&b| needs_escape(b))
        .map(|i| at + i)
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    write_str_contents(out, text);
    out.push(b'"');
}

/// `serde_json`'s escapes: `\"`, `\\`, the short forms of five control
/// characters, `\u00xx` (lower-case hex) for the others; nothing else.
fn write_str_contents(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = text.as_bytes();
    while let Some(i) = next_escape(rest) {
        out.extend_from_slice(&rest[..i]);
        let byte = rest[i];
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: JsonValue + ?Sized>(value: &T) -> String {
        let mut out = Vec::new();
        value.write_json(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Every byte value, in blocks long and short, escapes as `serde_json`
    /// escapes it.
    #[test]
    fn strings_escape_as_serde_json_does() {
        let every_ascii: String = (0u8..0x80).map(char::from).collect();
        let cases = [
            String::new(),
            "plain text longer than one sixteen-byte block, nothing to escape".into(),
            every_ascii.clone(),
            every_ascii.repeat(3),
            "Zoë ✓ \u{1F600} \"quoted\" back\\slash\u{7f}".into(),
            format!("{}\n", "x".repeat(31)),
        ];
        for text in &cases {
            assert_eq!(json(text.as_str()), serde_json::to_string(text).unwrap());
        }
    }

    #[test]
    fn numbers_and_options_as_serde_json_writes_them() {
        assert_eq!(json(&u64::MAX), u64::MAX.to_string());
        assert_eq!(json(&0u16), "0");
        assert_eq!(json(&Some(1.5f64)), "1.5");
        assert_eq!(json(&f64::NAN), "null");
        assert_eq!(json(&None::<u32>), "null");
        assert_eq!(json(&Some(true)), "true");
    }

    #[test]
    fn timestamps_are_rfc3339_with_millis() {
        let time = UtcTime {
            year: 2026,
            month: 1,
            day: 9,
            hour: 4,
            minute: 7,
            second: 0,
            millis: 5,
        };
        assert_eq!(json(&Timestamp(time)), "\"2026-01-09T04:07:00.005Z\"");
        assert_eq!(
            json(&Timestamp(time)),
            serde_json::to_string(&Timestamp(time)).unwrap()
        );
    }
}
