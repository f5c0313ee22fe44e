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
//!
//! With `--shadows SHARE` (0–1, anywhere on the line), every record also
//! logs its bodies (the request's messages, the response and its text: one
//! of four support questions, `control` answering tersely and `treatment`
//! warmly) and that share of served requests gets a shadow record beside it
//! (`role = "shadow"`, `shadow_of` = the served id, the other variant, the
//! same partition), for `promptgate analyze`'s shadow comparison and
//! `promptgate judge`. The served records keep the latencies and feedback of
//! the log without the option; without it the output is unchanged.
//!
//!     cargo run --release --example synthetic_audit_log -- --shadows 0.5 DIR 1000000
//!
//! Objects hold 50,000 records, or 10,000 in a multi-day log or one with
//! bodies; `--records-per-object N` sets another number.

use promptgate_analyze::synthetic::{SyntheticLog, SyntheticVariant};

const DOC_TYPES: [&str; 4] = ["invoice", "receipt", "memo", "contract"];
/// The latency factor from the second day on.
const SLOWDOWN: f64 = 1.3;
/// Records per object of a multi-day log or one with bodies: a bigger log
/// has more objects, not bigger ones, as the gateway's bounded spool
/// segments make it (memory benchmarks then see the log's size, not the
/// object's). A segment is sealed after 5 minutes (`flush_interval_ms`), so
/// at a few million requests a day an object holds about this many records:
/// with bodies, about 13 MB of JSON (under 1 MB of gzip), where 50,000 would be
/// 64 MB, the most a segment holds (`flush_bytes`) and more than it reaches
/// in 5 minutes below about 15 million records a day.
const RECORDS_PER_OBJECT: usize = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: synthetic_audit_log [--shadows SHARE] [--records-per-object N] DIR UNITS [REQUESTS_PER_UNIT] [DAYS]";
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // An option and its value, anywhere on the line.
    let mut option = |name: &str| match args.iter().position(|a| a == name) {
        Some(at) => {
            let value = args.get(at + 1).cloned().ok_or(usage);
            args.drain(at..(at + 2).min(args.len()));
            value.map(Some)
        }
        None => Ok(None),
    };
    let shadow_share: Option<f64> = option("--shadows")?.map(|s| s.parse()).transpose()?;
    let per_object: Option<usize> = option("--records-per-object")?
        .map(|n| n.parse())
        .transpose()?;
    let mut args = args.into_iter();
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
            records_per_object: match per_object {
                Some(n) => n.max(1),
                None if days == 1 && shadow_share.is_none() => 50_000,
                None => RECORDS_PER_OBJECT,
            },
            seed: 1 + u64::from(day),
        };
        let root = std::path::Path::new(&dir);
        let tags = if days == 1 {
            serde_json::Value::Null
        } else {
            let doc_type = DOC_TYPES[usize::from(day) % DOC_TYPES.len()];
            serde_json::json!({ "doc_type": doc_type })
        };
        records += match shadow_share {
            Some(share) => log.write_with_shadows(root, &tags, share)?,
            None if days == 1 => log.write(root)?,
            None => log.write_tagged(root, &tags)?,
        };
    }
    println!("{records} request records under {dir}");
    Ok(())
}
