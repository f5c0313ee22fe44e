//! Numbers as documents write them (`$1,234.50`, `1.234,50 €`, `(12.00)`,
//! `CHF 1'250`) → one canonical decimal text (`1234.5`, `-12`), so two
//! spellings of the same amount compare equal. Exact decimal arithmetic on
//! the digits, no floating point: `0.1` stays `0.1`.
//!
//! The rules (docs/eval.md, "Numbers"):
//! - surrounding whitespace is ignored; `(…)` around the whole amount means negative;
//! - one sign (`+`, `-`, U+2212 `−`) before the digits, before or after a currency;
//! - one currency: any character of Unicode category Sc (`$ € £ ¥ ₹ …`) or a
//!   three-letter upper-case code (`USD`), before or after the amount;
//! - the amount starts and ends with a digit (`.5` and `5.` are not numbers);
//! - group separators: space (also U+00A0, U+202F, U+2009), apostrophe
//!   (`'`, U+2019), and `.` or `,` when the other one is the decimal mark;
//!   groups after the first have exactly three digits (Indian `1,23,456` is
//!   not read as a number), and only one kind of group separator is allowed;
//! - decimal mark: when both `.` and `,` occur, the last one (which must occur
//!   once); when one of them occurs several times, it groups; when one occurs
//!   once: `.` is the decimal mark, and `,` is too unless exactly three digits
//!   follow it and one to three digits (not a leading zero) precede it —
//!   **ambiguous** `1,234` and `1.234` are read the English way (1234 and 1.234).

/// The canonical decimal text of a number written in a document, or `None`
/// when the text is not a number under the rules above.
pub fn normalize_number(text: &str) -> Option<String> {
    let mut rest = text.trim();
    let mut negative = false;
    if let Some(inner) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        negative = true;
        rest = inner.trim();
    }
    let mut sign_seen = false;
    let mut currency_seen = false;
    // Leading sign and currency, in either order.
    loop {
        if let Some(after) = strip_sign(rest) {
            if sign_seen || negative && after.1 {
                return None;
            }
            sign_seen = true;
            negative |= after.1;
            rest = after.0.trim_start();
        } else if let Some(after) = strip_currency_prefix(rest) {
            if currency_seen {
                return None;
            }
            currency_seen = true;
            rest = after.trim_start();
        } else {
            break;
        }
    }
    if let Some(before) = strip_currency_suffix(rest) {
        if currency_seen {
            return None;
        }
        rest = before.trim_end();
    }
    let (integer, fraction) = split_amount(rest)?;
    Some(canonical(negative, &integer, &fraction))
}

/// The canonical text of a JSON number (integers exactly; floats through
/// their shortest round-trip decimal, which Rust prints without an exponent).
pub fn json_number_text(number: &serde_json::Number) -> Option<String> {
    if let Some(integer) = number.as_i64() {
        return normalize_number(&integer.to_string());
    }
    if let Some(integer) = number.as_u64() {
        return normalize_number(&integer.to_string());
    }
    let float = number.as_f64()?;
    float
        .is_finite()
        .then(|| float.to_string())
        .and_then(|text| normalize_number(&text))
}

/// The sign at the start of `text`: the rest and whether it was a minus.
fn strip_sign(text: &str) -> Option<(&str, bool)> {
    let first = text.chars().next()?;
    let negative = match first {
        '+' => false,
        '-' | '\u{2212}' => true,
        _ => return None,
    };
    Some((&text[first.len_utf8()..], negative))
}

fn is_currency_symbol(c: char) -> bool {
    // Unicode category Sc; the std library has no general-category lookup,
    // and these are the blocks that hold every Sc character.
    matches!(c, '$' | '\u{a2}'..='\u{a5}' | '\u{58f}' | '\u{60b}' | '\u{7fe}' | '\u{7ff}'
        | '\u{9f2}' | '\u{9f3}' | '\u{9fb}' | '\u{af1}' | '\u{bf9}' | '\u{e3f}' | '\u{17db}'
        | '\u{20a0}'..='\u{20c0}' | '\u{a838}' | '\u{fdfc}' | '\u{fe69}' | '\u{ff04}'
        | '\u{ffe0}' | '\u{ffe1}' | '\u{ffe5}' | '\u{ffe6}' | '\u{11fdd}'..='\u{11fe0}'
        | '\u{1e2ff}' | '\u{1ecb0}')
}

fn is_currency_code(text: &str) -> bool {
    text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase())
}

fn strip_currency_prefix(text: &str) -> Option<&str> {
    let first = text.chars().next()?;
    if is_currency_symbol(first) {
        return Some(&text[first.len_utf8()..]);
    }
    let code = text.get(..3)?;
    let after = &text[3..];
    let separated = after
        .chars()
        .next()
        .is_some_and(|c| c.is_whitespace() || c.is_ascii_digit() || c == '-' || c == '+');
    (is_currency_code(code) && separated).then_some(after)
}

fn strip_currency_suffix(text: &str) -> Option<&str> {
    let last = text.chars().next_back()?;
    if is_currency_symbol(last) {
        return Some(&text[..text.len() - last.len_utf8()]);
    }
    let split = text.len().checked_sub(3)?;
    let code = text.get(split..)?;
    let before = &text[..split];
    let separated = before
        .chars()
        .next_back()
        .is_some_and(|c| c.is_whitespace() || c.is_ascii_digit());
    (is_currency_code(code) && separated).then_some(before)
}

fn is_space_separator(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}')
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}')
}

/// What a separator character is, as far as grouping goes: spaces and
/// apostrophes each form one kind.
fn separator_kind(c: char) -> Option<char> {
    if is_space_separator(c) {
        Some(' ')
    } else if is_apostrophe(c) {
        Some('\'')
    } else if c == '.' || c == ',' {
        Some(c)
    } else {
        None
    }
}

/// Splits an unsigned amount into integer and fraction digits.
fn split_amount(text: &str) -> Option<(String, String)> {
    if !text.starts_with(|c: char| c.is_ascii_digit())
        || !text.ends_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    if text
        .chars()
        .any(|c| !c.is_ascii_digit() && separator_kind(c).is_none())
    {
        return None;
    }
    let dots = text.matches('.').count();
    let commas = text.matches(',').count();
    let decimal_mark = match (dots, commas) {
        (0, 0) => None,
        (_, 0) | (0, _) => {
            let (mark, count) = if dots > 0 { ('.', dots) } else { (',', commas) };
            // Several marks group; so does a lone comma read the English way.
            let groups = count > 1 || mark == ',' && looks_like_a_thousands_group(text);
            (!groups).then_some(mark)
        }
        _ => {
            let last = text.rfind(['.', ','])?;
            let mark = if text[last..].starts_with('.') {
                '.'
            } else {
                ','
            };
            let count = if mark == '.' { dots } else { commas };
            if count > 1 {
                return None;
            }
            Some(mark)
        }
    };
    let (integer_part, fraction) = match decimal_mark {
        Some(mark) => text.split_once(mark)?,
        None => (text, ""),
    };
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let integer = ungroup(integer_part)?;
    Some((integer, fraction.to_owned()))
}

/// `1,234` and `12,345` (but not `0,123`, `1234,567` or `1 234,567`): a
/// lone comma that would group thousands under the English reading.
fn looks_like_a_thousands_group(text: &str) -> bool {
    let Some((before, after)) = text.split_once(',') else {
        return false;
    };
    let is_digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    after.len() == 3
        && is_digits(after)
        && (1..=3).contains(&before.len())
        && is_digits(before)
        && !before.starts_with('0')
}

/// The digits of an integer part, checking its grouping: one separator kind,
/// a first group of one to three digits, then groups of exactly three.
fn ungroup(integer_part: &str) -> Option<String> {
    let mut kinds = integer_part.chars().filter_map(separator_kind);
    let Some(kind) = kinds.next() else {
        return Some(integer_part.to_owned());
    };
    if kinds.any(|other| other != kind) {
        return None;
    }
    let mut groups = integer_part.split(|c: char| separator_kind(c) == Some(kind));
    let first = groups.next()?;
    if first.is_empty() || first.len() > 3 {
        return None;
    }
    let mut digits = first.to_owned();
    for group in groups {
        if group.len() != 3 || !group.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.push_str(group);
    }
    Some(digits)
}

fn canonical(negative: bool, integer: &str, fraction: &str) -> String {
    let integer = integer.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let integer = if integer.is_empty() { "0" } else { integer };
    let mut text = String::new();
    if negative && (integer != "0" || !fraction.is_empty()) {
        text.push('-');
    }
    text.push_str(integer);
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(fraction);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Option<String> {
        normalize_number(text)
    }

    #[test]
    fn thousands_separators_of_several_conventions() {
        assert_eq!(n("1,234,567.89").as_deref(), Some("1234567.89"));
        assert_eq!(n("1.234.567,89").as_deref(), Some("1234567.89"));
        assert_eq!(n("1 234 567,89").as_deref(), Some("1234567.89"));
        assert_eq!(n("1\u{202f}234,5").as_deref(), Some("1234.5"));
        assert_eq!(n("1'234.50").as_deref(), Some("1234.5"));
        assert_eq!(n("1.234.567").as_deref(), Some("1234567"));
        assert_eq!(
            n("1 234,567").as_deref(),
            Some("1234.567"),
            "grouped by spaces: the comma is decimal"
        );
    }

    #[test]
    fn a_single_separator_follows_the_documented_reading() {
        assert_eq!(n("12,5").as_deref(), Some("12.5"), "decimal comma");
        assert_eq!(
            n("0,123").as_deref(),
            Some("0.123"),
            "a leading zero cannot be grouped"
        );
        assert_eq!(
            n("1234,567").as_deref(),
            Some("1234.567"),
            "four digits before: not a group"
        );
        assert_eq!(
            n("1,234").as_deref(),
            Some("1234"),
            "ambiguous: English reading"
        );
        assert_eq!(
            n("1.234").as_deref(),
            Some("1.234"),
            "ambiguous: English reading"
        );
    }

    #[test]
    fn signs_currencies_and_parentheses() {
        assert_eq!(n("-$1,234.50").as_deref(), Some("-1234.5"));
        assert_eq!(n("$-1,234.50").as_deref(), Some("-1234.5"));
        assert_eq!(n("\u{2212}5").as_deref(), Some("-5"));
        assert_eq!(n("+5.00").as_deref(), Some("5"));
        assert_eq!(n("(1,234.00)").as_deref(), Some("-1234"));
        assert_eq!(n("1.234,50 €").as_deref(), Some("1234.5"));
        assert_eq!(n("USD 99").as_deref(), Some("99"));
        assert_eq!(n("99 EUR").as_deref(), Some("99"));
        assert_eq!(n("£0.50").as_deref(), Some("0.5"));
        assert_eq!(n("-0.00").as_deref(), Some("0"), "no negative zero");
    }

    #[test]
    fn what_is_not_a_number() {
        for text in [
            "",
            "abc",
            "1,23,456",
            "1.2.3,4,5",
            "--5",
            "$5$",
            "1 234'567",
            ".5",
            "5.",
            "12%",
            "1e3",
            "(-5)",
        ] {
            assert_eq!(n(text), None, "{text:?}");
        }
    }

    #[test]
    fn json_numbers_keep_their_exact_value() {
        let number = |text: &str| serde_json::from_str::<serde_json::Number>(text).unwrap();
        assert_eq!(
            json_number_text(&number("1234.50")).as_deref(),
            Some("1234.5")
        );
        assert_eq!(json_number_text(&number("0.1")).as_deref(), Some("0.1"));
        assert_eq!(json_number_text(&number("-7")).as_deref(), Some("-7"));
        assert_eq!(json_number_text(&number("1e3")).as_deref(), Some("1000"));
        assert_eq!(
            json_number_text(&number("18446744073709551615")).as_deref(),
            Some("18446744073709551615")
        );
    }
}
