//! Calendar dates as documents write them → ISO 8601 `YYYY-MM-DD`, so
//! `05/03/2024`, `5 March 2024` and `2024-03-05` compare equal.
//!
//! The forms read (docs/eval.md, "Dates"), surrounding whitespace ignored:
//! - year first: `2024-03-05`, `2024/3/5`, `2024.03.05` (one separator kind),
//!   `20240305`, and an ISO date-time (`2024-03-05T10:00:00Z`, `2024-03-05 10:00`)
//!   whose date is taken as written (no time-zone conversion);
//! - numeric day and month: `05/03/2024`, `5-3-2024`, `05.03.24` — when one of
//!   the two is above 12 it is the day; when both are 12 or less the order is
//!   the scorer's `date_order` (`dmy`, the default, or `mdy`);
//! - English month names, full or abbreviated (`Sept` too), any case:
//!   `5 March 2024`, `5th of March, 2024`, `05-Mar-2024`, `March 5, 2024`,
//!   `Mar. 5 2024`, optionally after a weekday (`Tuesday, 5 March 2024`).
//!
//! Two-digit years follow POSIX `strptime %y`: 69–99 → 19xx, 00–68 → 20xx.
//! A date that does not exist (`2023-02-29`) is not a date.

use serde::Deserialize;
use time::{Date, Month};

/// How to read a numeric date whose day and month are both 12 or less.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateOrder {
    /// Day first (`05/03/2024` is 5 March), as in most of the world.
    #[default]
    Dmy,
    /// Month first (`05/03/2024` is May 3), as in the United States.
    Mdy,
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// The ISO form of a date written in a document, or `None` when the text is
/// not a date under the rules above.
pub fn normalize_date(text: &str, order: DateOrder) -> Option<String> {
    let text = text.trim();
    let date = year_first(text)
        .or_else(|| numeric_day_month(text, order))
        .or_else(|| with_month_name(text))?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

fn calendar_date(year: i32, month: u32, day: u32) -> Option<Date> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()
}

fn digits(text: &str, lengths: std::ops::RangeInclusive<usize>) -> Option<u32> {
    (lengths.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn year_first(text: &str) -> Option<Date> {
    if text.len() == 8 && text.bytes().all(|b| b.is_ascii_digit()) {
        let year = digits(text.get(..4)?, 4..=4)?;
        return calendar_date(
            year as i32,
            digits(text.get(4..6)?, 2..=2)?,
            digits(text.get(6..)?, 2..=2)?,
        );
    }
    // An ISO date-time: the date part, as written.
    let date_part = match text.get(10..11) {
        Some("T" | " ") if text.len() > 11 => &text[..10],
        _ => text,
    };
    let separator = date_part.get(4..5)?;
    if !matches!(separator, "-" | "/" | ".") {
        return None;
    }
    let mut parts = date_part.split(separator);
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || (date_part.len() < text.len() && separator != "-") {
        return None;
    }
    calendar_date(
        digits(year, 4..=4)? as i32,
        digits(month, 1..=2)?,
        digits(day, 1..=2)?,
    )
}

fn year_of(text: &str) -> Option<i32> {
    let year = digits(text, 2..=4)?;
    match text.len() {
        4 => Some(year as i32),
        2 if year >= 69 => Some(1900 + year as i32),
        2 => Some(2000 + year as i32),
        _ => None,
    }
}

fn numeric_day_month(text: &str, order: DateOrder) -> Option<Date> {
    let separator = text.chars().find(|c| !c.is_ascii_digit())?;
    if !matches!(separator, '/' | '-' | '.') {
        return None;
    }
    let mut parts = text.split(separator);
    let (first, second, year) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (first, second, year) = (
        digits(first, 1..=2)?,
        digits(second, 1..=2)?,
        year_of(year)?,
    );
    let (day, month) = match (first > 12, second > 12) {
        (true, true) => return None,
        (true, false) => (first, second),
        (false, true) => (second, first),
        (false, false) => match order {
            DateOrder::Dmy => (first, second),
            DateOrder::Mdy => (second, first),
        },
    };
    calendar_date(year, month, day)
}

fn month_number(word: &str) -> Option<u32> {
    let word = word.trim_end_matches('.');
    if word.len() < 3 {
        return None;
    }
    let index = MONTHS.iter().position(|month| {
        *month == word || (word.len() == 3 || word == "sept") && month.starts_with(word)
    })?;
    Some(index as u32 + 1)
}

fn is_weekday(word: &str) -> bool {
    let word = word.trim_end_matches('.');
    WEEKDAYS
        .iter()
        .any(|day| *day == word || word.len() == 3 && day.starts_with(word))
}

fn day_of(word: &str) -> Option<u32> {
    let digits_end = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let (number, suffix) = word.split_at(digits_end);
    matches!(suffix, "" | "st" | "nd" | "rd" | "th")
        .then(|| digits(number, 1..=2))
        .flatten()
}

fn with_month_name(text: &str) -> Option<Date> {
    let lower = text.to_lowercase().replace(',', " ");
    let mut words: Vec<&str> = lower
        .split([' ', '-', '\t'])
        .filter(|word| !word.is_empty())
        .collect();
    if words.first().is_some_and(|word| is_weekday(word)) {
        words.remove(0);
    }
    words.retain(|word| *word != "of");
    let [first, second, year] = words.as_slice() else {
        return None;
    };
    let (day, month, year) = if let Some(month) = month_number(second) {
        (day_of(first)?, month, year_of(year)?)
    } else {
        // Month first: only with a four-digit year (`Mar 5 24` is too vague).
        (
            day_of(second)?,
            month_number(first)?,
            digits(year, 4..=4)? as i32,
        )
    };
    calendar_date(year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(text: &str) -> Option<String> {
        normalize_date(text, DateOrder::Dmy)
    }

    #[test]
    fn year_first_forms() {
        for text in [
            "2024-03-05",
            "2024/3/5",
            "2024.03.05",
            "20240305",
            "2024-03-05T23:59:59-08:00",
            "2024-03-05 10:00",
        ] {
            assert_eq!(iso(text).as_deref(), Some("2024-03-05"), "{text:?}");
        }
        assert_eq!(iso("2024-03/05"), None, "mixed separators");
        assert_eq!(iso("2024/03/05T10:00"), None, "a date-time is ISO only");
    }

    #[test]
    fn numeric_day_and_month_follow_the_value_then_the_declared_order() {
        assert_eq!(iso("25/12/2024").as_deref(), Some("2024-12-25"));
        assert_eq!(
            normalize_date("12/25/2024", DateOrder::Dmy).as_deref(),
            Some("2024-12-25")
        );
        assert_eq!(
            normalize_date("05/03/2024", DateOrder::Dmy).as_deref(),
            Some("2024-03-05")
        );
        assert_eq!(
            normalize_date("05/03/2024", DateOrder::Mdy).as_deref(),
            Some("2024-05-03")
        );
        assert_eq!(iso("5.3.24").as_deref(), Some("2024-03-05"));
        assert_eq!(iso("31-12-99").as_deref(), Some("1999-12-31"));
        assert_eq!(
            iso("01-01-68").as_deref(),
            Some("2068-01-01"),
            "POSIX %y pivot"
        );
        assert_eq!(iso("13/13/2024"), None);
    }

    #[test]
    fn month_names_in_english() {
        for text in [
            "5 March 2024",
            "5th of March, 2024",
            "05-Mar-2024",
            "05-MAR-24",
            "March 5, 2024",
            "Mar. 5 2024",
            "5 Sept 2024",
            "Tuesday, 5 March 2024",
        ] {
            let expected = if text.contains("Sept") {
                "2024-09-05"
            } else {
                "2024-03-05"
            };
            assert_eq!(iso(text).as_deref(), Some(expected), "{text:?}");
        }
    }

    #[test]
    fn what_is_not_a_date() {
        for text in [
            "",
            "2023-02-29",
            "31 April 2024",
            "March 2024",
            "5 Marc 2024",
            "Mar 5 24",
            "2024-3",
            "yesterday",
            "5 ma 2024",
        ] {
            assert_eq!(iso(text), None, "{text:?}");
        }
        assert_eq!(
            iso("29 Feb 2024").as_deref(),
            Some("2024-02-29"),
            "a leap day"
        );
    }
}
