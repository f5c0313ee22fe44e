//! The sample-ratio check of a report: the units each variant received
//! against the shares the log recorded (Pearson's χ², `stats::srm`), with
//! the warnings that say what it assumed, or why it could not run.

use super::collect::{Collector, VariantData};
use super::report::SrmReport;
use super::stats::srm::sample_ratio_mismatch;

/// The check, or `None` when it cannot run (one variant of unknown or
/// whole share, no unit keys, no units); what it assumed or could not do
/// goes to `warnings`.
pub fn check(collector: &Collector, warnings: &mut Vec<String>) -> Option<SrmReport> {
    let variants = &collector.variants;
    if variants.len() < 2 && variants.values().all(|v| v.share.is_none_or(|s| s >= 1.0)) {
        return None;
    }
    let analysed: u64 = variants.values().map(|v| v.requests).sum();
    let keyless = collector.requests_without_unit_key;
    if keyless > 0 && keyless >= analysed {
        warnings.push("no analysed request has a unit_key_hash (a log not written by promptgate, or rewritten): the sample-ratio check counts units per variant, so it was not run and a broken split would go unnoticed; each request is analysed as a unit of its own".into());
        return None;
    }
    if keyless > 0 {
        warnings.push(format!("{keyless} of {analysed} analysed requests have no unit_key_hash (a log not written by promptgate, or rewritten): they are left out of the units per variant and of the sample-ratio check, which runs on the other requests' units"));
    }
    let recorded = variants.values().all(|v| v.share.is_some());
    let mut names: Vec<String> = variants.keys().cloned().collect();
    let mut observed: Vec<u64> = variants.values().map(VariantData::units).collect();
    let mut weights: Vec<f64> = if recorded {
        variants.values().map(|v| v.share.unwrap_or(0.0)).collect()
    } else {
        warnings.push("the log has no variant_share for some variants (records written before it existed): the sample-ratio check assumes equal weights".into());
        vec![1.0; names.len()]
    };
    if variants.values().any(|v| v.share_changed) {
        warnings.push("variant weights changed within the analysed window: the sample-ratio check uses the latest, and the comparison mixes periods with different splits — analyse each period on its own".into());
    }
    let missing = 1.0 - weights.iter().sum::<f64>();
    if recorded && missing > 1e-6 {
        // A variant with weight that received no unit at all: the loudest mismatch.
        names.push("(variants never seen)".into());
        observed.push(0);
        weights.push(missing);
    }
    let result = sample_ratio_mismatch(&observed, &weights).ok()?;
    let total: f64 = weights.iter().sum();
    Some(SrmReport {
        observed_units: names.iter().cloned().zip(observed).collect(),
        unit_sample_rate: 0.5f64.powi(collector.unit_halvings as i32),
        expected_share: names
            .into_iter()
            .zip(weights.iter().map(|w| w / total))
            .collect(),
        weights: if recorded {
            "recorded"
        } else {
            "assumed_equal"
        },
        statistic: result.statistic,
        df: result.df,
        p_value: result.p_value,
        mismatch: result.mismatch,
    })
}
