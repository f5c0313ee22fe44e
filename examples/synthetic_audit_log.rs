//! Writes a synthetic audit log (the gateway's layout and schema) with a known
//! truth, for `loadtest/analyze-bench.sh` and for trying `promptgate analyze`
//! and `promptgate drift` without traffic:
//!
//!     cargo run --release --example synthetic_audit_log -- DIR UNITS [REQUESTS_PER_UNIT] [DAYS]
//!
//! Experiment `exp`: `control` (thumbs up 30 %, p50 300 ms) and `treatment`
//! (33 %, 280 ms), 50/50, every request with feedback, on 2026-11-20. With
//! DAYS > 1, that many days from 2026-11-20, UNITS units each, every request
//! tagged `doc_type` (invoice, receipt, memo, contract in turn by day), and
//! from the second day on both variants answer 30 % slower: a latency drift
//! for `promptgate drift --last-days 1 --until 2026-11-21` to find.

use promptgate_analyze::synthetic::{SyntheticLog, SyntheticVariant};

const DOC_TYPES: [&str; 4] = ["invoice", "receipt", "memo", "contract"];
/// The latency factor from the second day on.
const SLOWDOWN: f64 = 1.3;
/// Records per object of a multi-day log: a bigger log has more objects, not
/// bigger ones, as the gateway's bounded spool segments make it (memory
/// benchmarks then see the log's size, not the object's).
const MULTI_DAY_RECORDS_PER_OBJECT: usize = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: synthetic_audit_log DIR UNITS [REQUESTS_PER_UNIT] [DAYS]";
    let dir = args.next().ok_or(usage)?;
    let units: u64 = args.next().ok_or(usage)?.parse()?;
    let requests_per_unit: u64 = args.next().map_or(Ok(1), |n| n.parse())?;
    let days: u16 = args.next().map_or(Ok(1), |n| n.parse())?;
    let first_day = time::Date::from_calendar_date(2026, time::Month::November, 20)?;
    let mut records = 0;
    for day in 0..days {
        let slowdown = if day == 0 { 1.0 } else { SLOWDOWN };
        let variant = |name: &str, thumbs_up_rate, latency_median_ms: f64| SyntheticVariant {
            name: name.into(),
            weight: 50.0,
            thumbs_up_rate,
            latency_median_ms: latency_median_ms * slowdown,
            lost_share: 0.0,
        };
        let log = SyntheticLog {
            experiment: "exp".into(),
            variants: vec![
                variant("control", 0.30, 300.0),
                variant("treatment", 0.33, 280.0),
            ],
            units,
            requests_per_unit,
            feedback_share: 1.0,
            date: (first_day + time::Duration::days(i64::from(day))).to_string(),
            records_per_object: if days == 1 {
                50_000
            } else {
                MULTI_DAY_RECORDS_PER_OBJECT
            },
            seed: 1 + u64::from(day),
        };
        let root = std::path::Path::new(&dir);
        records += if days == 1 {
            log.write(root)?
        } else {
            let doc_type = DOC_TYPES[usize::from(day) % DOC_TYPES.len()];
            log.write_tagged(root, &serde_json::json!({ "doc_type": doc_type }))?
        };
    }
    println!("{records} request records under {dir}");
    Ok(())
}
