//! UTC calendar fields from a `SystemTime`, for record timestamps and
//! partition keys, and the `YYYY-MM-DD` dates of partitions; the calendar is
//! the `time` crate's.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl UtcTime {
    /// A time before 1970 or beyond year 9999 (a clock gone wrong) reads as 1970-01-01.
    pub fn from_system(time: SystemTime) -> UtcTime {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let utc = i64::try_from(since.as_secs())
            .ok()
            .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        UtcTime {
            year: i64::from(utc.year()),
            month: u32::from(u8::from(utc.month())),
            day: u32::from(utc.day()),
            hour: u32::from(utc.hour()),
            minute: u32::from(utc.minute()),
            second: u32::from(utc.second()),
            millis: since.subsec_millis(),
        }
    }

    /// `2026-11-26T04:27:09.123Z`
    pub fn rfc3339_millis(&self) -> String {
        self.to_string()
    }

    /// `2026-11-26`, the `dt=` partition.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// `2026-11-26T04:27:09.123Z`: written straight into an audit line, with no
/// `String` in between.
impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

/// A `YYYY-MM-DD` date that exists in the calendar: `2025-02-31` and
/// `2025-02-29` do not, `2024-02-29` does.
pub fn parse_date(text: &str) -> Option<Date> {
    let number = |part: &str, len: usize| {
        (part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u16>().ok())
            .flatten()
    };
    let mut parts = text.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let month = Month::try_from(u8::try_from(number(month, 2)?).ok()?).ok()?;
    let day = u8::try_from(number(day, 2)?).ok()?;
    Date::from_calendar_date(i32::from(number(year, 4)?), month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> UtcTime {
        UtcTime::from_system(UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis))
    }

    #[test]
    fn known_instants() {
        // date -u -d @0 / @951782400 (leap day 2000) / @1795667229
        assert_eq!(at(0, 0).rfc3339_millis(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            at(951_782_400, 5).rfc3339_millis(),
            "2000-02-29T00:00:00.005Z"
        );
        assert_eq!(
            at(1_795_667_229, 123).rfc3339_millis(),
            "2026-11-26T04:27:09.123Z"
        );
        assert_eq!(
            at(4_102_444_799, 999).rfc3339_millis(),
            "2099-12-31T23:59:59.999Z"
        );
        assert_eq!(at(1_795_667_229, 0).date(), "2026-11-26");
    }

    #[test]
    fn every_day_for_ten_years_is_consecutive() {
        let mut previous = at(0, 0);
        for day in 1..3653u64 {
            let t = at(day * 86_400, 0);
            let next_expected = if previous.day < 28 {
                (previous.year, previous.month, previous.day + 1)
            } else {
                (t.year, t.month, t.day)
            };
            assert_eq!((t.year, t.month, t.day), next_expected);
            assert!(
                t.day == 1 || t.day == previous.day + 1,
                "{t:?} after {previous:?}"
            );
            previous = t;
        }
    }

    #[test]
    fn only_dates_of_the_calendar_parse() {
        for good in [
            "2026-11-26",
            "2024-02-29",
            "2000-02-29",
            "1970-01-01",
            "2099-12-31",
        ] {
            let date = parse_date(good).unwrap_or_else(|| panic!("{good}"));
            assert_eq!(date.to_string(), good);
        }
        for bad in [
            "2025-02-31",
            "2025-02-29",
            "1900-02-29",
            "2026-04-31",
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
            "2026-1-01",
            "26-11-01",
            "2026/11/01",
            "2026-11-01-",
            "+026-11-01",
            "",
            "yesterday",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_clock_before_1970_reads_as_the_epoch() {
        let before = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(
            UtcTime::from_system(before).rfc3339_millis(),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
