//! One pass over the audit log, summarised in constant memory per variant:
//! counts and streaming moments for every metric, a seeded reservoir sample
//! (bounded) for the rank tests and quantiles, distinct units as 64-bit
//! hashes, and shadow pairs, matched through a spill once the log is read
//! (`pairing`). Every observation of a mean/proportion metric is also spilled
//! by unit (`units`), for the unit-level analysis.

use std::collections::{BTreeMap, HashSet};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::join::{FeedbackJoin, JoinSummary, Joined};
use super::pairing::ShadowSpill;
use super::pairs::{ShadowPairs, Side};
use super::records::{FeedbackRow, RequestRow};
use super::stats::means::Moments;
use super::stats::proportions::Counts;
use super::units::{
    COST_USD, ERROR_RATE, Metric, OUTPUT_TOKENS, SCHEMA_COMPLIANCE, UnitSpill, UnitSummary,
    VALID_JSON,
};

/// Values kept per metric and variant for rank tests and quantiles: beyond
/// it, a uniform sample (Vitter's algorithm R).
pub const RESERVOIR_SIZE: usize = 20_000;

/// Distinct units remembered across all variants (8 bytes each, plus the
/// set's overhead). Beyond it, only units whose hash falls in a shrinking
/// share of the hash space are kept: a uniform sample of units, independent of
/// assignment (a different hash), on which the sample-ratio test stays exact.
pub const UNIT_SAMPLE_CAP: usize = 1 << 20;

/// The distinct units a slice's collector remembers (`--by`): an eighth of
/// the whole experiment's, so that up to `MAX_SLICES` slices cost at most a
/// few times one analysis, whatever the log's size. A slice's units beyond
/// it are sampled by hash as above.
pub const SLICE_UNIT_SAMPLE_CAP: usize = UNIT_SAMPLE_CAP / 8;

/// A uniform sample of a stream, of at most `N` values (numbers, or whole
/// shadow pairs: `pairs::PairDifferences`).
#[derive(Debug, Clone)]
pub struct Reservoir<T = f64, const N: usize = RESERVOIR_SIZE> {
    seen: u64,
    pub values: Vec<T>,
}

impl<T, const N: usize> Default for Reservoir<T, N> {
    fn default() -> Reservoir<T, N> {
        Reservoir {
            seen: 0,
            values: Vec::new(),
        }
    }
}

impl<T> Reservoir<T> {
    /// A sample of `RESERVOIR_SIZE` (other sizes: `Reservoir::default()`).
    pub(crate) fn new() -> Reservoir<T> {
        Reservoir::default()
    }
}

impl<T, const N: usize> Reservoir<T, N> {
    /// Keeps `x` while fewer than `N` were seen; beyond, in
    /// place of a uniformly drawn kept value with probability size/seen
    /// (the only use of `rng`, so a stream under the size draws nothing).
    pub(crate) fn push(&mut self, x: T, rng: &mut StdRng) {
        self.seen += 1;
        if self.values.len() < N {
            self.values.push(x);
        } else {
            let slot = rng.random_range(0..self.seen);
            if let Some(kept) = self.values.get_mut(slot as usize) {
                *kept = x;
            }
        }
    }

    /// Whether every value seen is in the sample (quantiles are then exact).
    pub fn complete(&self) -> bool {
        self.seen == self.values.len() as u64
    }

    /// Values offered, kept or not.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// A continuous metric: moments for means, a reservoir for ranks and quantiles.
#[derive(Debug, Clone)]
pub struct Continuous {
    pub moments: Moments,
    pub sample: Reservoir,
}

impl Continuous {
    fn new() -> Continuous {
        Continuous {
            moments: Moments::new(),
            sample: Reservoir::new(),
        }
    }

    pub(crate) fn push(&mut self, x: f64, rng: &mut StdRng) {
        if self.moments.push(x).is_ok() {
            self.sample.push(x, rng);
        }
    }
}

/// What a variant's served requests add up to.
#[derive(Debug, Clone)]
pub struct VariantData {
    pub requests: u64,
    units: HashSet<u64>,
    /// successes = failed requests.
    pub errors: Counts,
    pub latency_ms: Continuous,
    pub ttfb_ms: Continuous,
    pub input_tokens: Moments,
    pub output_tokens: Moments,
    pub cost_usd: Moments,
    /// Responses that parse as JSON, among those whose text was logged.
    pub valid_json: Counts,
    /// Responses valid against the `--json-schema`, among those logged.
    pub schema_valid: Counts,
    pub feedback: BTreeMap<String, FeedbackData>,
    pub per_day: BTreeMap<String, u64>,
    /// Recorded share of the weights (the latest seen) and whether it changed.
    pub share: Option<f64>,
    pub share_changed: bool,
    /// Per metric, its unit means (filled by `Collector::finish`).
    pub unit_level: BTreeMap<Metric, UnitSummary>,
}

#[derive(Debug, Clone)]
pub struct FeedbackData {
    pub boolean: bool,
    pub counts: Counts,
    pub moments: Moments,
}

impl VariantData {
    fn new() -> VariantData {
        VariantData {
            requests: 0,
            units: HashSet::new(),
            errors: Counts {
                successes: 0,
                trials: 0,
            },
            latency_ms: Continuous::new(),
            ttfb_ms: Continuous::new(),
            input_tokens: Moments::new(),
            output_tokens: Moments::new(),
            cost_usd: Moments::new(),
            valid_json: Counts {
                successes: 0,
                trials: 0,
            },
            schema_valid: Counts {
                successes: 0,
                trials: 0,
            },
            feedback: BTreeMap::new(),
            per_day: BTreeMap::new(),
            share: None,
            share_changed: false,
            unit_level: BTreeMap::new(),
        }
    }

    pub fn units(&self) -> u64 {
        self.units.len() as u64
    }
}

/// Why served requests were left out of the intent-to-treat population.
pub type Exclusions = BTreeMap<String, u64>;

pub struct Collector {
    experiment: String,
    /// What a JSON answer must look like (`--json-schema`).
    pub schema: Option<jsonschema::Validator>,
    include_reasons: Vec<String>,
    rng: StdRng,
    pub variants: BTreeMap<String, VariantData>,
    pub excluded: Exclusions,
    /// Analysed requests and pairs, spilled for the feedback join.
    join: FeedbackJoin,
    /// Observations of the per-unit metrics, spilled by unit.
    units: UnitSpill,
    /// Variant names by the index the join knows them by.
    variant_names: Vec<String>,
    /// (served, shadow) variant pairs by the index the join knows them by.
    pair_keys: Vec<(String, String)>,
    spill_error: Option<std::io::Error>,
    pub shadows: BTreeMap<(String, String), ShadowPairs>,
    /// Units are kept when their hash is at most this (halved when the sets fill).
    unit_threshold: u64,
    /// `UNIT_SAMPLE_CAP`, or `SLICE_UNIT_SAMPLE_CAP` for a slice.
    unit_cap: usize,
    remembered_units: usize,
    /// How many times the threshold was halved: units are sampled at 2^-halvings.
    pub unit_halvings: u32,
    /// Served requests of the population and shadow records, spilled to be
    /// paired by `finish` (taken then).
    pairing: Option<ShadowSpill>,
    /// Shadow records whose served request could not be paired: outside the
    /// population, or not in the log read (counted by `finish`).
    pub unpaired_shadows: u64,
    /// Analysed requests whose record has no `unit_key_hash` (logs not
    /// written by the gateway): units of their own, left out of the unit
    /// counts and the sample-ratio check.
    pub requests_without_unit_key: u64,
}

/// Whether a request of this assignment reason is in the population analysed.
fn reason_group(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason)
}

impl Collector {
    pub fn new(
        experiment: &str,
        include_reasons: Vec<String>,
        seed: u64,
    ) -> std::io::Result<Collector> {
        Ok(Collector {
            schema: None,
            experiment: experiment.to_owned(),
            include_reasons,
            rng: StdRng::seed_from_u64(seed),
            variants: BTreeMap::new(),
            excluded: BTreeMap::new(),
            join: FeedbackJoin::new()?,
            units: UnitSpill::new()?,
            variant_names: Vec::new(),
            pair_keys: Vec::new(),
            spill_error: None,
            shadows: BTreeMap::new(),
            unit_threshold: u64::MAX,
            unit_cap: UNIT_SAMPLE_CAP,
            remembered_units: 0,
            unit_halvings: 0,
            pairing: Some(ShadowSpill::new()?),
            unpaired_shadows: 0,
            requests_without_unit_key: 0,
        })
    }

    /// Keeps the first spill failure; `finish` reports it.
    fn spilled(&mut self, result: std::io::Result<()>) {
        if let Err(error) = result {
            self.spill_error.get_or_insert(error);
        }
    }

    pub fn add(&mut self, mut row: RequestRow) {
        if !self.counts(&row) {
            return;
        }
        if row.role == "shadow" {
            if let (Some(of), Some(pairing)) = (row.shadow_of.take(), &mut self.pairing) {
                let spilled = pairing.shadow(&row, &of);
                self.spilled(spilled);
            }
            return;
        }
        let reason = row.assignment_reason.as_deref().unwrap_or("unknown");
        if !self.in_population(&row) {
            *self
                .excluded
                .entry(reason_group(reason).to_owned())
                .or_default() += 1;
            return;
        }
        let Some(variant) = row.assigned_variant.clone() else {
            return;
        };
        if let Some(pairing) = &mut self.pairing {
            let spilled = pairing.served(&row);
            self.spilled(spilled);
        }
        if !self.variants.contains_key(&variant) {
            self.variant_names.push(variant.clone());
        }
        let index = self
            .variant_names
            .iter()
            .position(|v| *v == variant)
            .unwrap_or(0);
        let index = index as u16;
        // A request without a unit key is a unit of its own (a seed of its
        // own keeps its hash apart from every unit key's).
        let unit = row.unit_key_hash.as_deref().map_or_else(
            || xxh3_64_with_seed(row.request_id.as_bytes(), 1),
            |key| xxh3_64(key.as_bytes()),
        );
        self.requests_without_unit_key += u64::from(row.unit_key_hash.is_none());
        let spilled = self
            .join
            .request(&row.request_id, row.client_id.as_deref(), index, unit);
        self.spilled(spilled);
        let data = self
            .variants
            .entry(variant)
            .or_insert_with(VariantData::new);
        data.requests += 1;
        if row.unit_key_hash.is_some() && unit <= self.unit_threshold && data.units.insert(unit) {
            self.remembered_units += 1;
        }
        let mut observations = Vec::new();
        if let Some(failed) = row.failed() {
            data.errors.trials += 1;
            data.errors.successes += u64::from(failed);
            observations.push((ERROR_RATE, f64::from(u8::from(failed))));
        }
        if let Some(share) = row.variant_share {
            data.share_changed |= data.share.is_some_and(|s| (s - share).abs() > 1e-9);
            data.share = Some(share);
        }
        *data.per_day.entry(row.date().to_owned()).or_default() += 1;
        self.bound_units();
        self.add_outcomes(&row, &mut observations);
        for (metric, value) in observations {
            let spilled = self.units.value(unit, index, metric, value);
            self.spilled(spilled);
        }
    }

    /// Adds a successful request's outcomes to its variant, and lists them
    /// in `observations` for the unit-level spill.
    fn add_outcomes(&mut self, row: &RequestRow, observations: &mut Vec<(u16, f64)>) {
        let Some(data) = row
            .assigned_variant
            .as_ref()
            .and_then(|v| self.variants.get_mut(v))
        else {
            return;
        };
        if row.failed() == Some(false) {
            if let Some(latency) = row.latency_ms {
                data.latency_ms.push(latency, &mut self.rng);
            }
            if let (true, Some(ttfb)) = (row.stream, row.ttfb_ms) {
                data.ttfb_ms.push(ttfb, &mut self.rng);
            }
            if let Some(tokens) = row.input_tokens {
                let _ = data.input_tokens.push(tokens as f64);
            }
            for (moments, value, metric) in [
                (
                    &mut data.output_tokens,
                    row.output_tokens.map(|t| t as f64),
                    OUTPUT_TOKENS,
                ),
                (&mut data.cost_usd, row.cost_usd, COST_USD),
            ] {
                // A value the moments refuse (not finite) is left out of both.
                if let Some(value) = value
                    && moments.push(value).is_ok()
                {
                    observations.push((metric, value));
                }
            }
            if let Some(text) = &row.response_text {
                let json = is_json(text);
                data.valid_json.trials += 1;
                data.valid_json.successes += u64::from(json);
                observations.push((VALID_JSON, f64::from(u8::from(json))));
                if let Some(schema) = &self.schema {
                    let valid = serde_json::from_str::<Value>(text.trim())
                        .is_ok_and(|value| schema.is_valid(&value));
                    data.schema_valid.trials += 1;
                    data.schema_valid.successes += u64::from(valid);
                    observations.push((SCHEMA_COMPLIANCE, f64::from(u8::from(valid))));
                }
            }
        }
    }

    /// Feedback rows, once every request was added.
    pub fn add_feedback(&mut self, row: FeedbackRow, trusted: bool) {
        let spilled = self.join.feedback(row, trusted);
        self.spilled(spilled);
    }

    /// Pairs shadows with their served requests, then joins the feedback to
    /// the analysed requests and pairs; returns how many feedback records
    /// were read and how many requests with feedback were not analysed.
    pub fn finish(&mut self) -> std::io::Result<(u64, JoinSummary)> {
        if let Some(error) = self.spill_error.take() {
            return Err(error);
        }
        if let Some(pairing) = self.pairing.take() {
            // Before the join: it joins feedback to the pairs found here.
            self.unpaired_shadows += pairing.pair(|served, shadow| self.pair(served, shadow))?;
            if let Some(error) = self.spill_error.take() {
                return Err(error);
            }
        }
        let join = std::mem::replace(&mut self.join, FeedbackJoin::new()?);
        let mut units = std::mem::replace(&mut self.units, UnitSpill::new()?);
        let mut unit_error = None;
        let records = join.feedback_records;
        let (names, variants, keys, shadows) = (
            &self.variant_names,
            &mut self.variants,
            &self.pair_keys,
            &mut self.shadows,
        );
        let summary = join.join(|joined| match joined {
            Joined::Value {
                variant,
                unit,
                metric_id,
                metric,
                boolean,
                value,
            } => {
                if let Err(error) = units.feedback(unit, variant, metric_id, metric, value) {
                    unit_error.get_or_insert(error);
                }
                let Some(data) = names
                    .get(usize::from(variant))
                    .and_then(|n| variants.get_mut(n))
                else {
                    return;
                };
                let entry = data
                    .feedback
                    .entry(metric.to_owned())
                    .or_insert(FeedbackData {
                        boolean,
                        counts: Counts {
                            successes: 0,
                            trials: 0,
                        },
                        moments: Moments::new(),
                    });
                entry.counts.trials += 1;
                entry.counts.successes += u64::from(value != 0.0);
                let _ = entry.moments.push(value);
            }
            Joined::Pair {
                key,
                metric,
                served,
                shadow,
            } => {
                if let Some(pairs) = keys.get(key as usize).and_then(|k| shadows.get_mut(k)) {
                    let table = pairs.paired_feedback.entry(metric.to_owned()).or_default();
                    table[usize::from(served)][usize::from(shadow)] += 1;
                }
            }
        })?;
        if let Some(error) = unit_error {
            return Err(error);
        }
        for ((variant, metric), summary) in units.summarise()? {
            if let Some(data) = names
                .get(usize::from(variant))
                .and_then(|n| variants.get_mut(n))
            {
                data.unit_level.insert(metric, summary);
            }
        }
        Ok((records, summary))
    }

    /// A collector of one slice (`--by`): remembers at most
    /// `SLICE_UNIT_SAMPLE_CAP` distinct units.
    pub fn for_slice(mut self) -> Collector {
        self.unit_cap = SLICE_UNIT_SAMPLE_CAP;
        self
    }

    /// Keeps the distinct-unit sets under the collector's cap by halving the
    /// share of the hash space they sample.
    fn bound_units(&mut self) {
        while self.remembered_units > self.unit_cap {
            self.unit_threshold >>= 1;
            self.unit_halvings += 1;
            let threshold = self.unit_threshold;
            self.remembered_units = 0;
            for data in self.variants.values_mut() {
                data.units.retain(|&h| h <= threshold);
                self.remembered_units += data.units.len();
            }
        }
    }

    fn pair(&mut self, served: &Side, shadow: &Side) {
        let key = (served.variant.clone(), shadow.variant.clone());
        let index = match self.pair_keys.iter().position(|k| *k == key) {
            Some(index) => index,
            None => {
                self.pair_keys.push(key.clone());
                self.pair_keys.len() - 1
            }
        };
        self.shadows
            .entry(key)
            .or_default()
            .tally(served, shadow, &mut self.rng);
        let spilled = self
            .join
            .pair(served.id, shadow.id, served.scope, index as u32);
        self.spilled(spilled);
    }

    /// A request record of this experiment that stands for a request: an
    /// `abandoned` record is a failed first attempt the gateway replaced (by
    /// the fallback variant's answer, recorded under the same request id).
    fn counts(&self, row: &RequestRow) -> bool {
        row.record_type == "request"
            && row.experiment.as_deref() == Some(&self.experiment)
            && row.outcome.as_deref() != Some("abandoned")
    }

    fn in_population(&self, row: &RequestRow) -> bool {
        let reason = row.assignment_reason.as_deref().unwrap_or("unknown");
        self.include_reasons
            .iter()
            .any(|r| r == reason_group(reason))
    }
}

fn is_json(text: &str) -> bool {
    let trimmed = text.trim();
    // A bare number or word is JSON too, but not what "answers in JSON" means.
    (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(trimmed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, variant: &str, reason: &str) -> RequestRow {
        RequestRow {
            record_type: "request".into(),
            request_id: id.into(),
            role: "served".into(),
            ts_start: "2026-11-26T10:00:00.000Z".into(),
            experiment: Some("e".into()),
            assigned_variant: Some(variant.into()),
            served_variant: Some(variant.into()),
            assignment_reason: Some(reason.into()),
            variant_share: Some(0.5),
            unit_key_hash: Some(format!("unit-{id}")),
            status: Some(200),
            latency_ms: Some(100.0),
            response_text: Some("{\"a\": 1, \"b\": 2}".into()),
            ..RequestRow::default()
        }
    }

    #[test]
    fn intent_to_treat_keeps_hash_assignments_and_counts_the_rest() {
        let mut collector = Collector::new("e", vec!["hash".into()], 1).unwrap();
        collector.add(row("1", "a", "hash"));
        collector.add(row("2", "b", "override"));
        collector.add(row("3", "b", "flag:beta"));
        collector.add(row("4", "b", "flag:beta"));
        let mut other = row("5", "a", "hash");
        other.experiment = Some("other".into());
        collector.add(other);
        assert_eq!(collector.variants["a"].requests, 1);
        assert!(!collector.variants.contains_key("b"));
        assert_eq!(collector.excluded["override"], 1);
        assert_eq!(collector.excluded["flag"], 2);
    }

    #[test]
    fn feedback_joins_by_request_id_latest_value_wins() {
        let mut collector = Collector::new("e", vec!["hash".into()], 1).unwrap();
        collector.add(row("1", "a", "hash"));
        for (id, value, ts) in [
            ("1", 0.0, "2026-11-26T10:00:02"),
            ("1", 1.0, "2026-11-26T10:00:03"),
            ("nobody", 1.0, "2026-11-26T10:00:03"),
        ] {
            collector.add_feedback(
                FeedbackRow {
                    request_id: id.into(),
                    ts_received: ts.into(),
                    metric: "thumbs".into(),
                    value_type: "boolean".into(),
                    value_number: Some(value),
                    ..FeedbackRow::default()
                },
                false,
            );
        }
        let (records, joined) = collector.finish().unwrap();
        assert_eq!((records, joined.unmatched), (3, 1));
        let thumbs = &collector.variants["a"].feedback["thumbs"];
        assert_eq!((thumbs.counts.successes, thumbs.counts.trials), (1, 1));
    }

    fn shadow(id: &str, of: &str, variant: &str) -> RequestRow {
        let mut shadow = row(id, variant, "hash");
        shadow.role = "shadow".into();
        shadow.shadow_of = Some(of.into());
        shadow
    }

    #[test]
    fn shadows_pair_with_their_served_request() {
        let mut collector = Collector::new("e", vec!["hash".into()], 1).unwrap();
        let mut shadow = shadow("s1", "1", "cand");
        shadow.latency_ms = Some(130.0);
        shadow.response_text = Some("{\"b\": 2, \"a\": 9}".into());
        collector.add(shadow);
        collector.add(row("1", "a", "hash"));
        collector.finish().unwrap();
        let pairs = &collector.shadows[&("a".to_owned(), "cand".to_owned())];
        assert_eq!(pairs.pairs, 1);
        assert_eq!(pairs.exact_agreements, 0);
        assert!((pairs.json_field_agreement_sum - 0.5).abs() < 1e-12);
        assert_eq!(pairs.latency_differences(), vec![30.0]);
        // A shadow is not a served request: no variant "cand" in the population.
        assert!(!collector.variants.contains_key("cand"));
    }

    #[test]
    fn a_shadow_pairs_with_its_served_request_in_another_hour_and_is_counted_once() {
        let mut collector = Collector::new("e", vec!["hash".into()], 1).unwrap();
        let mut served = row("1", "a", "hash");
        served.ts_start = "2026-11-26T10:59:59.900Z".into();
        collector.add(served);
        // Many partitions later (the next day), beside other requests.
        for i in 2..1_000 {
            let mut other = row(&i.to_string(), "a", "hash");
            other.ts_start = "2026-11-27T00:00:00.000Z".into();
            collector.add(other);
        }
        let mut late = shadow("s1", "1", "cand");
        late.ts_start = "2026-11-26T11:00:00.100Z".into();
        collector.add(late);
        collector.add(shadow("s2", "1", "cand"));
        // Outside the population, or another client's id: not paired.
        collector.add(row("x", "a", "override"));
        collector.add(shadow("s3", "x", "cand"));
        let mut foreign = shadow("s4", "1", "cand");
        foreign.client_id = Some("other".into());
        collector.add(foreign);
        collector.finish().unwrap();
        let pairs = &collector.shadows[&("a".to_owned(), "cand".to_owned())];
        assert_eq!(pairs.pairs, 2);
        assert_eq!(collector.unpaired_shadows, 2);
    }

    #[test]
    fn schema_compliance_counts_answers_valid_against_the_schema() {
        let mut collector = Collector::new("e", vec!["hash".into()], 1).unwrap();
        let schema = serde_json::json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}});
        collector.schema = Some(jsonschema::validator_for(&schema).unwrap());
        for (id, text) in [
            ("1", "{\"a\": 1}"),
            ("2", "{\"a\": \"x\"}"),
            ("3", "not json"),
            ("4", " {\"a\": 2, \"b\": 0} "),
        ] {
            let mut r = row(id, "v", "hash");
            r.response_text = Some(text.into());
            collector.add(r);
        }
        let counts = collector.variants["v"].schema_valid;
        assert_eq!((counts.successes, counts.trials), (2, 4));
        assert_eq!(collector.variants["v"].valid_json.successes, 3);
    }

    #[test]
    fn an_abandoned_first_attempt_is_not_a_request() {
        let mut collector = Collector::new("e", vec!["hash".into()], 1).unwrap();
        let mut abandoned = row("1", "a", "hash");
        abandoned.outcome = Some("abandoned".into());
        abandoned.status = Some(503);
        collector.add(abandoned);
        collector.add(row("1", "a", "hash"));
        let a = &collector.variants["a"];
        assert_eq!(a.requests, 1);
        assert_eq!(a.errors.successes, 0);
    }

    #[test]
    fn the_reservoir_is_bounded_and_uniform() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut reservoir = Reservoir::new();
        for i in 0..(RESERVOIR_SIZE as u64 * 5) {
            reservoir.push(i as f64, &mut rng);
        }
        assert_eq!(reservoir.values.len(), RESERVOIR_SIZE);
        assert!(!reservoir.complete());
        let mean = reservoir.values.iter().sum::<f64>() / RESERVOIR_SIZE as f64;
        // Uniform over 0..100000: mean 50000, sd of the mean ≈ 204.
        assert!((mean - 50_000.0).abs() < 1_500.0, "{mean}");
    }
}
