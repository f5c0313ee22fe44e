//! UTC calendar fields from a `SystemTime`, for record timestamps and
//! partition keys, without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

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
    pub fn from_system(time: SystemTime) -> UtcTime {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        UtcTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            millis: since.subsec_millis(),
        }
    }

    /// `2026-11-26T04:27:09.123Z`
    pub fn rfc3339_millis(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// `2026-11-26`, the `dt=` partition.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
}
