//! What the `promptgate analyze` tests share.

use promptgate_analyze::synthetic::{SyntheticLog, SyntheticVariant};
use promptgate_analyze::{DateRange, Options, Settings};

/// The command's defaults for `experiment` (intent to treat, no JSON
/// schema), with 200 bootstrap resamples: enough for assertions that are not
/// about latency intervals.
pub fn options(experiment: &str) -> Options {
    Options {
        experiment: experiment.into(),
        range: DateRange::default(),
        assignment_reasons: vec!["hash".into()],
        skip_corrupt: false,
        progress: false,
        json_schema: None,
        by: None,
        trusted_clients: Vec::new(),
        settings: Settings {
            confidence: 0.95,
            baseline: None,
            target_lift: 0.05,
            planned_units: 10_000,
            seed: 1,
            bootstrap_resamples: 200,
        },
    }
}

/// Experiment `exp` on `date`: one request per unit, every request with
/// feedback, 500 records per object.
pub fn synthetic_log(
    seed: u64,
    date: &str,
    variants: Vec<SyntheticVariant>,
    units: u64,
) -> SyntheticLog {
    SyntheticLog {
        experiment: "exp".into(),
        variants,
        units,
        requests_per_unit: 1,
        feedback_share: 1.0,
        date: date.into(),
        records_per_object: 500,
        seed,
    }
}
