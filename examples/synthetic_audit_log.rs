//! Writes a synthetic audit log (the gateway's layout and schema) with a known
//! truth, for `loadtest/analyze-bench.sh` and for trying `promptgate analyze`
//! without traffic:
//!
//!     cargo run --release --example synthetic_audit_log -- DIR UNITS [REQUESTS_PER_UNIT]
//!
//! Experiment `exp`: `control` (thumbs up 30 %, p50 300 ms) and `treatment`
//! (33 %, 280 ms), 50/50, every request with feedback.

use promptgate_analyze::synthetic::{SyntheticLog, SyntheticVariant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: synthetic_audit_log DIR UNITS [REQUESTS_PER_UNIT]";
    let dir = args.next().ok_or(usage)?;
    let units: u64 = args.next().ok_or(usage)?.parse()?;
    let requests_per_unit: u64 = args.next().map_or(Ok(1), |n| n.parse())?;
    let variant = |name: &str, thumbs_up_rate, latency_median_ms| SyntheticVariant {
        name: name.into(),
        weight: 50.0,
        thumbs_up_rate,
        latency_median_ms,
        lost_share: 0.0,
    };
    let records = SyntheticLog {
        experiment: "exp".into(),
        variants: vec![
            variant("control", 0.30, 300.0),
            variant("treatment", 0.33, 280.0),
        ],
        units,
        requests_per_unit,
        feedback_share: 1.0,
        date: "2026-11-20".into(),
        records_per_object: 50_000,
        seed: 1,
    }
    .write(std::path::Path::new(&dir))?;
    println!("{records} request records under {dir}");
    Ok(())
}
