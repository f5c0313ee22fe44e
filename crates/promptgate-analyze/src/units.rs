//! Unit-level (cluster) summaries in bounded memory. Randomisation is per
//! unit, so a unit's requests are not independent observations: every
//! mean/proportion metric is first averaged per unit, and variants are then
//! compared on those unit means. Holding every unit's running sums in memory
//! would grow with the number of units, so each observation (unit hash,
//! variant, metric, value: 20 bytes) is spilled to one of `BUCKETS` files
//! chosen by the unit hash; a unit's observations all land in the same
//! bucket, and each bucket is aggregated on its own (a map of 1/64 of the
//! units, or of a part of them when the bucket is above a fixed budget), its
//! unit means pushed into per-(variant, metric) moments.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

use super::spill::{BUCKETS, Spill, u16_at, u64_at};
use super::stats::means::Moments;

/// A metric analysed per unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    ErrorRate,
    ValidJson,
    SchemaCompliance,
    CostUsd,
    OutputTokens,
    Feedback(String),
}

/// Spill ids of the request metrics; feedback metrics follow from `FEEDBACK`.
pub const ERROR_RATE: u16 = 0;
pub const VALID_JSON: u16 = 1;
pub const SCHEMA_COMPLIANCE: u16 = 2;
pub const COST_USD: u16 = 3;
pub const OUTPUT_TOKENS: u16 = 4;
const FEEDBACK: u16 = 5;

/// One variant's metric at the unit level.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSummary {
    /// One value per unit: the mean of that unit's observations.
    pub means: Moments,
    /// The most observations any unit had: at most 1, the unit-level and the
    /// request-level analyses are the same.
    pub max_per_unit: u64,
}

/// A hasher with fixed keys: a bucket's units are then visited in the same
/// order on every run, and the floating-point sums of the report are
/// reproducible bit for bit.
type Fixed = BuildHasherDefault<DefaultHasher>;

/// Observations aggregated in memory at once (a map of at most 2^18 slots of
/// 33 bytes, under 10 MiB): the bucket count is fixed before the log's
/// size is known, so a big log splits its buckets rather than growing the
/// map a bucket takes.
const MAX_OBSERVATIONS_PER_PART: u64 = 1 << 17;

pub struct UnitSpill {
    _dir: tempfile::TempDir,
    spill: Spill,
    /// Feedback metric names by their join id.
    feedback_names: Vec<Option<String>>,
}

impl UnitSpill {
    pub fn new() -> std::io::Result<UnitSpill> {
        let dir = tempfile::Builder::new()
            .prefix("promptgate-analyze-units-")
            .tempdir()?;
        Ok(UnitSpill {
            spill: Spill::create(dir.path(), "units")?,
            _dir: dir,
            feedback_names: Vec::new(),
        })
    }

    /// One observation of a request metric (`ERROR_RATE`, …) for a unit.
    pub fn value(
        &mut self,
        unit: u64,
        variant: u16,
        metric: u16,
        value: f64,
    ) -> std::io::Result<()> {
        let mut record = [0u8; 20];
        record[..8].copy_from_slice(&unit.to_le_bytes());
        record[8..10].copy_from_slice(&variant.to_le_bytes());
        record[10..12].copy_from_slice(&metric.to_le_bytes());
        record[12..].copy_from_slice(&value.to_le_bytes());
        self.spill.write(unit, &record)
    }

    /// One feedback value joined to a request of `unit`; `id` is the join's
    /// id of the metric.
    pub fn feedback(
        &mut self,
        unit: u64,
        variant: u16,
        id: u16,
        name: &str,
        value: f64,
    ) -> std::io::Result<()> {
        let index = usize::from(id);
        if self.feedback_names.len() <= index {
            self.feedback_names.resize(index + 1, None);
        }
        if let Some(slot @ None) = self.feedback_names.get_mut(index) {
            *slot = Some(name.to_owned());
        }
        // Ids beyond the space left after the request metrics are folded into
        // the last one, as the join already does past u16::MAX metrics.
        self.value(unit, variant, FEEDBACK.saturating_add(id), value)
    }

    /// Aggregates bucket by bucket: per (variant index, metric), the moments
    /// of the unit means and the largest number of observations of a unit.
    /// A unit seen in two variants (its assignment changed) counts as one
    /// unit in each.
    pub fn summarise(self) -> std::io::Result<BTreeMap<(u16, Metric), UnitSummary>> {
        self.summarise_within(MAX_OBSERVATIONS_PER_PART)
    }

    /// `summarise`, aggregating at most about `max_observations` in memory at
    /// once: a bucket with more is split into parts by unit first.
    fn summarise_within(
        mut self,
        max_observations: u64,
    ) -> std::io::Result<BTreeMap<(u16, Metric), UnitSummary>> {
        self.spill.flush()?;
        let mut by_id: BTreeMap<(u16, u16), UnitSummary> = BTreeMap::new();
        for bucket in 0..BUCKETS {
            self.spill
                .for_each_part::<20>(bucket, max_observations, |spill, part| {
                    // (unit, variant << 16 | metric) → (sum, observations).
                    let mut units: HashMap<(u64, u32), (f64, u64), Fixed> = HashMap::default();
                    spill.stream::<20>(part, |record| {
                        let key =
                            (u32::from(u16_at(&record, 8)) << 16) | u32::from(u16_at(&record, 10));
                        let mut value = [0u8; 8];
                        value.copy_from_slice(&record[12..20]);
                        let entry = units.entry((u64_at(&record, 0), key)).or_default();
                        entry.0 += f64::from_le_bytes(value);
                        entry.1 += 1;
                    })?;
                    for ((_, key), (sum, n)) in units {
                        let summary = by_id
                            .entry(((key >> 16) as u16, (key & 0xffff) as u16))
                            .or_default();
                        // Values were finite when spilled; a sum that overflows
                        // is left out rather than poisoning the moments.
                        let _ = summary.means.push(sum / n as f64);
                        summary.max_per_unit = summary.max_per_unit.max(n);
                    }
                    Ok(())
                })?;
        }
        Ok(by_id
            .into_iter()
            .filter_map(|((variant, id), summary)| {
                let metric = match id {
                    ERROR_RATE => Metric::ErrorRate,
                    VALID_JSON => Metric::ValidJson,
                    SCHEMA_COMPLIANCE => Metric::SchemaCompliance,
                    COST_USD => Metric::CostUsd,
                    OUTPUT_TOKENS => Metric::OutputTokens,
                    _ => Metric::Feedback(
                        self.feedback_names
                            .get(usize::from(id - FEEDBACK))?
                            .clone()?,
                    ),
                };
                Some(((variant, metric), summary))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_are_averaged_per_unit_before_the_moments() {
        let mut spill = UnitSpill::new().unwrap();
        // Unit 1: three errors out of four requests; unit 2: none of two.
        for (unit, failed) in [(1, 1.0), (1, 1.0), (1, 0.0), (1, 1.0), (2, 0.0), (2, 0.0)] {
            spill.value(unit, 0, ERROR_RATE, failed).unwrap();
        }
        spill.feedback(3, 1, 0, "thumbs", 1.0).unwrap();
        let summary = spill.summarise().unwrap();
        let errors = summary[&(0, Metric::ErrorRate)];
        assert_eq!(errors.means.count(), 2);
        assert!((errors.means.mean().unwrap() - 0.375).abs() < 1e-12);
        assert_eq!(errors.max_per_unit, 4);
        let thumbs = summary[&(1, Metric::Feedback("thumbs".into()))];
        assert_eq!((thumbs.means.count(), thumbs.max_per_unit), (1, 1));
    }

    #[test]
    fn buckets_split_into_parts_summarise_as_whole_ones() {
        let spill = || {
            let mut spill = UnitSpill::new().unwrap();
            for i in 0..20_000u64 {
                let unit = i % 1_500;
                spill
                    .value(
                        unit,
                        (unit % 2) as u16,
                        ERROR_RATE,
                        (i % 3 == 0) as u8 as f64,
                    )
                    .unwrap();
                spill
                    .value(unit, (unit % 2) as u16, COST_USD, (i % 17) as f64)
                    .unwrap();
            }
            spill
        };
        let whole = spill().summarise().unwrap();
        // About 600 observations per bucket: parts of at most 50.
        let split = spill().summarise_within(50).unwrap();
        assert_eq!(whole.len(), 4);
        for (key, summary) in &whole {
            let parted = &split[key];
            assert_eq!(parted.means.count(), summary.means.count(), "{key:?}");
            assert_eq!(parted.max_per_unit, summary.max_per_unit, "{key:?}");
            let (a, b) = (parted.means.mean().unwrap(), summary.means.mean().unwrap());
            assert!((a - b).abs() < 1e-12, "{key:?}: {a} vs {b}");
        }
    }
}
