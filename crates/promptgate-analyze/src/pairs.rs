//! Served/shadow pairs: each side reduced to what the comparison needs, the
//! tally of one (served variant, shadow variant), and a uniform sample of
//! the pairs' differences for the paired tests. The collector (`collect`)
//! decides which records pair; this module says what a pair adds up to.

use std::collections::{BTreeMap, HashSet};

use rand::rngs::StdRng;
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use super::collect::{RESERVOIR_SIZE, Reservoir};
use super::join::scope_of;
use super::records::RequestRow;

/// Pairs whose differences are kept per (served variant, shadow variant):
/// all of them up to this many, then a uniform sample of this many. The
/// per-variant sample's size: at 20,000 pairs the signed-rank test already
/// detects a shift of about 0.02 standard deviations of the differences
/// (80 % power, α = 0.05), far below any latency, token or cost change worth
/// acting on, and the sample costs 48 bytes a pair (under 1 MB per variant
/// pair) however long the log.
pub const PAIR_SAMPLE_SIZE: usize = RESERVOIR_SIZE;

/// One side of a served/shadow pair, reduced to what the comparison needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Side {
    pub variant: String,
    pub succeeded: bool,
    exact: Option<u64>,
    normalized: Option<u64>,
    json_fields: Option<Vec<(u64, u64)>>,
    latency_ms: Option<f64>,
    tokens: Option<f64>,
    cost_usd: Option<f64>,
    /// Its request id's hash and its client's (`join::scope_of`): what the
    /// feedback join knows a request by.
    pub id: u64,
    pub scope: u64,
}

impl Side {
    pub(crate) fn of(row: &RequestRow) -> Side {
        let text = row.response_text.as_deref();
        let normalized = text.map(|t| {
            t.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(" ")
        });
        let json_fields = text
            .and_then(|t| serde_json::from_str::<Value>(t.trim()).ok())
            .and_then(|v| match v {
                Value::Object(map) => Some(
                    map.iter()
                        .map(|(k, v)| (xxh3_64(k.as_bytes()), xxh3_64(v.to_string().as_bytes())))
                        .collect(),
                ),
                _ => None,
            });
        Side {
            variant: row
                .served_variant
                .clone()
                .or_else(|| row.assigned_variant.clone())
                .unwrap_or_default(),
            succeeded: row.failed() == Some(false),
            exact: text.map(|t| xxh3_64(t.as_bytes())),
            normalized: normalized.map(|t| xxh3_64(t.as_bytes())),
            json_fields,
            latency_ms: row.latency_ms,
            tokens: match (row.input_tokens, row.output_tokens) {
                (None, None) => None,
                (i, o) => Some((i.unwrap_or(0) + o.unwrap_or(0)) as f64),
            },
            cost_usd: row.cost_usd,
            id: xxh3_64(row.request_id.as_bytes()),
            scope: scope_of(row.client_id.as_deref()),
        }
    }

    /// The side as bytes for the pairing spill (`pairing`), its variant as
    /// `variant`, an index the spill keeps the names by. Absent values take
    /// no room: a flag says which are there.
    pub(crate) fn encode(&self, variant: u16, out: &mut Vec<u8>) {
        let flags = u8::from(self.succeeded)
            | u8::from(self.exact.is_some()) << 1
            | u8::from(self.normalized.is_some()) << 2
            | u8::from(self.latency_ms.is_some()) << 3
            | u8::from(self.tokens.is_some()) << 4
            | u8::from(self.cost_usd.is_some()) << 5
            | u8::from(self.json_fields.is_some()) << 6;
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.scope.to_le_bytes());
        out.extend_from_slice(&variant.to_le_bytes());
        out.push(flags);
        for word in [self.exact, self.normalized].into_iter().flatten() {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for value in [self.latency_ms, self.tokens, self.cost_usd]
            .into_iter()
            .flatten()
        {
            out.extend_from_slice(&value.to_le_bytes());
        }
        if let Some(fields) = &self.json_fields {
            // More top-level fields than a u32 counts cannot fit in one
            // logged response (cut at 4 MiB).
            out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
            for (key, value) in fields {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }

    /// A side from `encode`'s bytes, its variant named by `variants`; `None`
    /// when the bytes are cut short.
    pub(crate) fn decode(bytes: &[u8], variants: &[String]) -> Option<Side> {
        let mut at = 0;
        let mut take = |n: usize| {
            let taken = bytes.get(at..at + n);
            at += n;
            taken
        };
        let word = |b: &[u8]| {
            let mut word = [0u8; 8];
            word.copy_from_slice(b);
            u64::from_le_bytes(word)
        };
        let id = word(take(8)?);
        let scope = word(take(8)?);
        let variant = take(2)?;
        let variant = variants
            .get(usize::from(u16::from_le_bytes([variant[0], variant[1]])))?
            .clone();
        let flags = take(1)?[0];
        let has = |bit: u8| flags & (1 << bit) != 0;
        let mut next_word = |present: bool| -> Option<Option<u64>> {
            Some(if present { Some(word(take(8)?)) } else { None })
        };
        let exact = next_word(has(1))?;
        let normalized = next_word(has(2))?;
        let latency_ms = next_word(has(3))?.map(f64::from_bits);
        let tokens = next_word(has(4))?.map(f64::from_bits);
        let cost_usd = next_word(has(5))?.map(f64::from_bits);
        let json_fields = if has(6) {
            let count = take(4)?;
            let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]);
            let mut fields = Vec::with_capacity(count.min(1 << 16) as usize);
            for _ in 0..count {
                let field = take(16)?;
                fields.push((word(&field[..8]), word(&field[8..])));
            }
            Some(fields)
        } else {
            None
        };
        Some(Side {
            variant,
            succeeded: has(0),
            exact,
            normalized,
            json_fields,
            latency_ms,
            tokens,
            cost_usd,
            id,
            scope,
        })
    }
}

/// The differences (shadow − served) of one pair where both succeeded, kept
/// together so that a sample of pairs keeps all three of the same pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairDifferences {
    pub latency_ms: Option<f64>,
    pub tokens: Option<f64>,
    pub cost_usd: Option<f64>,
}

impl PairDifferences {
    pub fn latency_ms(&self) -> Option<f64> {
        self.latency_ms
    }

    pub fn tokens(&self) -> Option<f64> {
        self.tokens
    }

    pub fn cost_usd(&self) -> Option<f64> {
        self.cost_usd
    }
}

/// One difference over every pair that has it, sampled or not: the exact mean.
#[derive(Debug, Clone, Copy, Default)]
pub struct DifferenceTotal {
    pub pairs: u64,
    pub sum: f64,
}

impl DifferenceTotal {
    fn add(&mut self, value: Option<f64>) {
        if let Some(value) = value {
            self.pairs += 1;
            self.sum += value;
        }
    }
}

/// Paired served/shadow outcomes of one (served variant, shadow variant).
#[derive(Debug, Clone, Default)]
pub struct ShadowPairs {
    pub pairs: u64,
    pub shadow_failed: u64,
    pub compared_texts: u64,
    pub exact_agreements: u64,
    pub normalized_agreements: u64,
    pub json_pairs: u64,
    pub json_field_agreement_sum: f64,
    /// The pairs' differences: all of them up to `PAIR_SAMPLE_SIZE` pairs,
    /// then a uniform sample of pairs (one draw per pair).
    pub differences: Reservoir<PairDifferences, PAIR_SAMPLE_SIZE>,
    /// Latency, tokens and cost (in this order) over every pair, sampled or not.
    pub totals: [DifferenceTotal; 3],
    /// Per boolean feedback metric: (served true, shadow true) counts.
    pub paired_feedback: BTreeMap<String, [[u64; 2]; 2]>,
}

impl ShadowPairs {
    /// Adds one pair: its agreement and, when both succeeded, its differences.
    pub(crate) fn tally(&mut self, served: &Side, shadow: &Side, rng: &mut StdRng) {
        self.pairs += 1;
        if !shadow.succeeded {
            self.shadow_failed += 1;
        }
        if !(served.succeeded && shadow.succeeded) {
            return;
        }
        if let (Some(a), Some(b)) = (served.exact, shadow.exact) {
            self.compared_texts += 1;
            self.exact_agreements += u64::from(a == b);
            self.normalized_agreements += u64::from(served.normalized == shadow.normalized);
        }
        if let (Some(a), Some(b)) = (&served.json_fields, &shadow.json_fields) {
            self.json_pairs += 1;
            self.json_field_agreement_sum += field_agreement(a, b);
        }
        let difference = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        self.add_differences(
            PairDifferences {
                latency_ms: difference(served.latency_ms, shadow.latency_ms),
                tokens: difference(served.tokens, shadow.tokens),
                cost_usd: difference(served.cost_usd, shadow.cost_usd),
            },
            rng,
        );
    }

    /// Counts a pair's differences in the totals and offers the pair to the
    /// sample; a pair with none of them is left out of both.
    pub(crate) fn add_differences(&mut self, differences: PairDifferences, rng: &mut StdRng) {
        if differences == PairDifferences::default() {
            return;
        }
        for (total, value) in self.totals.iter_mut().zip([
            differences.latency_ms,
            differences.tokens,
            differences.cost_usd,
        ]) {
            total.add(value);
        }
        self.differences.push(differences, rng);
    }

    /// One difference of the sampled pairs (`PairDifferences::latency_ms`, …),
    /// in the order the pairs are kept.
    pub fn sampled(&self, pick: fn(&PairDifferences) -> Option<f64>) -> Vec<f64> {
        self.differences.values.iter().filter_map(pick).collect()
    }

    pub fn latency_differences(&self) -> Vec<f64> {
        self.sampled(PairDifferences::latency_ms)
    }
}

/// Share of the union of top-level fields on which both objects agree.
fn field_agreement(a: &[(u64, u64)], b: &[(u64, u64)]) -> f64 {
    let keys: HashSet<u64> = a.iter().chain(b).map(|(k, _)| *k).collect();
    if keys.is_empty() {
        return 1.0;
    }
    let agree = a.iter().filter(|field| b.contains(field)).count();
    agree as f64 / keys.len() as f64
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// Pair `i`'s differences: latency i, tokens 2i, cost 3i (no cost for
    /// every fifth pair), so a kept pair's three values show it is one pair.
    fn differences(i: u64) -> PairDifferences {
        let i = i as f64;
        PairDifferences {
            latency_ms: Some(i),
            tokens: Some(2.0 * i),
            cost_usd: (i % 5.0 != 0.0).then_some(3.0 * i),
        }
    }

    #[test]
    fn every_pair_is_kept_up_to_the_cap_in_order() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut pairs = ShadowPairs::default();
        for i in 1..=10 {
            pairs.add_differences(differences(i), &mut rng);
        }
        assert!(pairs.differences.complete());
        assert_eq!(
            pairs.latency_differences(),
            (1..=10).map(|i| i as f64).collect::<Vec<_>>()
        );
        assert_eq!(pairs.sampled(PairDifferences::cost_usd).len(), 8);
        assert_eq!(pairs.totals[2].pairs, 8);
    }

    #[test]
    fn beyond_the_cap_a_uniform_sample_of_whole_pairs_is_kept() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut pairs = ShadowPairs::default();
        let n = PAIR_SAMPLE_SIZE as u64 * 5;
        for i in 1..=n {
            pairs.add_differences(differences(i), &mut rng);
        }
        // A pair with no difference at all is not a pair of the sample.
        pairs.add_differences(PairDifferences::default(), &mut rng);
        let kept = &pairs.differences.values;
        assert_eq!(kept.len(), PAIR_SAMPLE_SIZE);
        assert!(!pairs.differences.complete());
        assert_eq!(pairs.differences.seen(), n);
        // The three differences of each kept slot are those of one pair.
        for d in kept {
            let i = d.latency_ms.unwrap_or(f64::NAN);
            assert_eq!(d, &differences(i as u64));
        }
        // Uniform over 1..=n, not the first pairs: mean n/2, sd of the mean ≈ 204.
        let mean = pairs.latency_differences().iter().sum::<f64>() / kept.len() as f64;
        assert!((mean - n as f64 / 2.0).abs() < 1_500.0, "{mean}");
        // The totals count every pair.
        assert_eq!(pairs.totals[0].pairs, n);
        assert_eq!(pairs.totals[2].pairs, n - n / 5);
        assert_eq!(pairs.totals[0].sum, (n * (n + 1) / 2) as f64);
    }

    /// The report of one variant pair's `pairs`, as JSON and as the table.
    fn reported(pairs: ShadowPairs) -> (crate::report::ShadowReport, serde_json::Value, String) {
        use crate::report::{Header, ReadSummary, Settings, build};
        let mut collector = crate::collect::Collector::new("e", vec!["hash".into()], 1).unwrap();
        collector
            .shadows
            .insert(("served".into(), "shadow".into()), pairs);
        let header = Header {
            experiment: "e".into(),
            source: "test".into(),
            from: None,
            to: None,
            assignment_reasons: vec!["hash".into()],
            read: ReadSummary::default(),
        };
        let settings = Settings {
            confidence: 0.95,
            baseline: None,
            target_lift: 0.05,
            planned_units: 10_000,
            seed: 1,
            bootstrap_resamples: 10,
        };
        let report = build(header, &collector, &settings);
        let json = serde_json::to_value(&report).unwrap();
        let text = crate::render::table(&report);
        (report.shadows[0].clone(), json, text)
    }

    #[test]
    fn the_report_says_when_the_paired_tests_ran_on_a_sample() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut pairs = ShadowPairs::default();
        let n = PAIR_SAMPLE_SIZE as u64 + 5_000;
        for i in 1..=n {
            pairs.pairs += 1;
            pairs.add_differences(differences(i), &mut rng);
        }
        let (shadow, json, text) = reported(pairs);
        let latency = shadow.latency_ms.unwrap();
        assert_eq!(latency.pairs, PAIR_SAMPLE_SIZE as u64);
        assert_eq!(latency.sampled_from, Some(n));
        // The mean is over every pair, not the sample's.
        assert_eq!(latency.mean, (n + 1) as f64 / 2.0);
        assert_eq!(json["shadows"][0]["cost_usd"]["sampled_from"], n - n / 5);
        assert!(
            text.contains(&format!(
                "mean +{:.4} over {n} pairs, Wilcoxon p = <0.0001 (median and test on a uniform sample of {PAIR_SAMPLE_SIZE} of the {n} pairs)",
                (n + 1) as f64 / 2.0
            )),
            "{text}"
        );
    }

    #[test]
    fn under_the_cap_every_pair_is_tested_and_nothing_is_said() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut pairs = ShadowPairs::default();
        for i in 1..=100 {
            pairs.pairs += 1;
            pairs.add_differences(differences(i), &mut rng);
        }
        let (shadow, json, text) = reported(pairs);
        let latency = shadow.latency_ms.unwrap();
        assert_eq!((latency.pairs, latency.sampled_from), (100, None));
        assert!(
            json["shadows"][0]["latency_ms"]
                .get("sampled_from")
                .is_none()
        );
        assert!(!text.contains("uniform sample"), "{text}");
    }
}
