//! Deterministic, stateless assignment of units (users, API keys, ...) to
//! experiment variants.
//!
//! Every replica must put a unit in the same variant without coordinating,
//! and editing an experiment's weights must not reshuffle the people already
//! in it. So assignment is a pure function of (salt, unit key, variant names,
//! weights), with no state, clock or RNG:
//!
//! - Each draw hashes an unambiguous encoding of (salt, unit, label) with
//!   XXH3-64, whose output is fixed by its specification. std's
//!   `DefaultHasher` may change between Rust releases, which would silently
//!   reshuffle every user on a toolchain upgrade.
//! - Variants are chosen by weighted rendezvous (highest-random-weight)
//!   hashing: variant `i` gets the key `ln(u_i) / w_i`, where `u_i` is the
//!   draw for its *name*, and the highest key wins. `-ln(u_i) / w_i` is
//!   exponential with rate `w_i`, so the smallest of them (the highest key)
//!   belongs to variant `i` with probability `w_i / Σw`. Each key depends only
//!   on its own variant's name and weight, so raising `w_j` can only raise
//!   `j`'s key (units move only into `j`), lowering it only moves units out of
//!   `j`, and adding or removing a variant leaves every other key untouched.
//!   Because the draw is keyed by name rather than position, reordering the
//!   variants in the config moves nobody either.
//! - Enrolment is a separate draw under [`ENROLMENT_LABEL`], so being in the
//!   experiment says nothing about which variant a unit gets, and raising the
//!   percentage only ever adds units.
//!
//! Platform note: the hash and the hash-to-float mapping are exact integer and
//! power-of-two operations, identical everywhere. `f64::ln` comes from the
//! platform's libm, which may differ by an ulp between platforms; that could
//! only flip a choice whose two keys are within an ulp of each other, about a
//! 2^-50 chance per unit, so it is accepted rather than shipping our own `ln`.

use xxhash_rust::xxh3::{Xxh3Default, xxh3_64};

/// Label of the enrolment draw. The leading NUL byte keeps it from coinciding
/// with a variant name written in a config file, which would make enrolment
/// and that variant's draw the same number.
pub const ENROLMENT_LABEL: &str = "\0enrolment";

/// Label of the shadow-sampling draw: independent of enrolment and of every
/// variant's draw, so sampling shadows does not correlate with assignment.
pub const SHADOW_LABEL: &str = "\0shadow";

/// Uniform draw in (0, 1), exclusive at both ends, for (salt, unit, label).
///
/// This is the `u_i` of [`choose_variant`] when `label` is a variant name, and
/// the enrolment draw when it is [`ENROLMENT_LABEL`].
pub fn unit_draw(salt: &str, unit: &str, label: &str) -> f64 {
    open_unit(DrawHasher::new(salt, unit).hash(label))
}

/// Index of the variant `unit` is assigned to, or `None` when no weight is
/// positive.
///
/// Weights are expected to be finite and `>= 0` (config validation enforces
/// that); a weight that is not positive (including NaN) is never chosen.
/// Allocation-free.
pub fn choose_variant<'a>(
    salt: &str,
    unit: &str,
    variants: impl IntoIterator<Item = (&'a str, f64)>,
) -> Option<usize> {
    let mut hasher = DrawHasher::new(salt, unit);
    let mut best: Option<(usize, f64)> = None;
    for (index, (name, weight)) in variants.into_iter().enumerate() {
        if weight > 0.0 {
            // ln(u) is finite and negative because u is strictly inside (0, 1).
            let key = open_unit(hasher.hash(name)).ln() / weight;
            // Strict `>`: on an exact tie the lower index keeps the unit.
            if best.is_none_or(|(_, best_key)| key > best_key) {
                best = Some((index, key));
            }
        }
    }
    best.map(|(index, _)| index)
}

/// Whether `unit` falls inside the enrolment percentage (`0..=100`): 0 takes
/// nobody, 100 takes everybody, and a higher percentage takes a superset.
pub fn is_enrolled(salt: &str, unit: &str, percent: f64) -> bool {
    // Dividing the threshold (rather than scaling the draw) keeps 100% exact:
    // 100/100 is 1.0 and every draw is below it.
    unit_draw(salt, unit, ENROLMENT_LABEL) < percent / 100.0
}

/// Whether `unit` falls inside the shadow sample (`0..=100` percent); like
/// enrolment, a higher percentage samples a superset.
pub fn is_shadow_sampled(salt: &str, unit: &str, percent: f64) -> bool {
    unit_draw(salt, unit, SHADOW_LABEL) < percent / 100.0
}

/// Maps a 64-bit hash into (0, 1), never reaching either end, so `ln` is
/// always finite. It keeps 52 bits rather than 53: with 53, the top value
/// `(2^53 - 1) + 0.5` is not representable and rounds (ties to even) up to
/// 2^53, which would map to exactly 1.0 and give a key of 0 whatever the
/// weight.
fn open_unit(hash: u64) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 52) as f64;
    ((hash >> 12) as f64 + 0.5) * SCALE
}

/// Bytes hashed inline; longer inputs fall back to the streaming hasher, which
/// gives the same XXH3-64 value for the same bytes.
const INLINE_LEN: usize = 256;
const LEN_PREFIX: usize = size_of::<u64>();

/// Hashes `len(salt) salt len(unit) unit len(label) label`, each length a u64
/// little-endian, so no two distinct triples share an encoding. The
/// (salt, unit) prefix is encoded once and reused for every label, which is
/// what keeps [`choose_variant`] cheap and allocation-free.
struct DrawHasher<'a> {
    salt: &'a str,
    unit: &'a str,
    buf: [u8; INLINE_LEN],
    /// End of the encoded (salt, unit) prefix in `buf`, when it fits.
    prefix_end: Option<usize>,
}

impl<'a> DrawHasher<'a> {
    fn new(salt: &'a str, unit: &'a str) -> Self {
        let mut buf = [0u8; INLINE_LEN];
        let fits = salt.len().saturating_add(unit.len()) <= INLINE_LEN - 2 * LEN_PREFIX;
        let prefix_end = fits.then(|| {
            let at = put_field(&mut buf, 0, salt);
            put_field(&mut buf, at, unit)
        });
        DrawHasher {
            salt,
            unit,
            buf,
            prefix_end,
        }
    }

    fn hash(&mut self, label: &str) -> u64 {
        match self.prefix_end {
            Some(at) if label.len() <= INLINE_LEN - LEN_PREFIX - at => {
                let end = put_field(&mut self.buf, at, label);
                xxh3_64(&self.buf[..end])
            }
            _ => {
                let mut hasher = Xxh3Default::new();
                for field in [self.salt, self.unit, label] {
                    hasher.update(&(field.len() as u64).to_le_bytes());
                    hasher.update(field.as_bytes());
                }
                hasher.digest()
            }
        }
    }
}

/// Writes one length-prefixed field at `at` and returns where it ends; the
/// caller has checked that it fits.
fn put_field(buf: &mut [u8], at: usize, field: &str) -> usize {
    let start = at + LEN_PREFIX;
    let end = start + field.len();
    buf[at..start].copy_from_slice(&(field.len() as u64).to_le_bytes());
    buf[start..end].copy_from_slice(field.as_bytes());
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// Upper 0.1% quantiles of the chi-square distribution (alpha = 0.001),
    /// as tabulated e.g. in the NIST/SEMATECH e-Handbook, section 1.3.6.7.4.
    /// Both have closed forms that `chi_square_critical_values_match_closed_forms`
    /// checks: df=2 is 2·ln(1000), df=1 is the square of the normal 0.9995
    /// quantile (3.2905).
    const CHI2_CRIT_DF1_ALPHA_0_001: f64 = 10.828;
    const CHI2_CRIT_DF2_ALPHA_0_001: f64 = 13.816;

    type Variants = Vec<(String, f64)>;

    fn variants(list: &[(&str, f64)]) -> Variants {
        list.iter()
            .map(|&(name, weight)| (name.to_owned(), weight))
            .collect()
    }

    fn choose(salt: &str, unit: &str, variants: &Variants) -> Option<usize> {
        choose_variant(salt, unit, variants.iter().map(|(n, w)| (n.as_str(), *w)))
    }

    fn chosen_name(salt: &str, unit: &str, variants: &Variants) -> Option<String> {
        choose(salt, unit, variants).map(|i| variants[i].0.clone())
    }

    /// The encoding written out by hand, hashed in one shot: the reference
    /// that both code paths of `DrawHasher` must agree with.
    fn reference_hash(salt: &str, unit: &str, label: &str) -> u64 {
        let mut bytes = Vec::new();
        for field in [salt, unit, label] {
            bytes.extend_from_slice(&(field.len() as u64).to_le_bytes());
            bytes.extend_from_slice(field.as_bytes());
        }
        xxh3_64(&bytes)
    }

    fn draw_hash(salt: &str, unit: &str, label: &str) -> u64 {
        DrawHasher::new(salt, unit).hash(label)
    }

    fn units(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("user-{i}")).collect()
    }

    fn chi_square(observed: &[u64], expected_shares: &[f64]) -> f64 {
        let total: u64 = observed.iter().sum();
        let share_sum: f64 = expected_shares.iter().sum();
        observed
            .iter()
            .zip(expected_shares)
            .map(|(&o, &share)| {
                let e = total as f64 * share / share_sum;
                (o as f64 - e).powi(2) / e
            })
            .sum()
    }

    fn counts(salt: &str, unit_keys: &[String], variants: &Variants) -> Vec<u64> {
        let mut counts = vec![0u64; variants.len()];
        for unit in unit_keys {
            counts[choose(salt, unit, variants).expect("positive weights")] += 1;
        }
        counts
    }

    /// Chi-square statistic of independence for a 2x2 contingency table.
    fn chi_square_2x2(table: [[u64; 2]; 2]) -> f64 {
        let n: u64 = table.iter().flatten().sum();
        let rows = [table[0][0] + table[0][1], table[1][0] + table[1][1]];
        let cols = [table[0][0] + table[1][0], table[0][1] + table[1][1]];
        let mut stat = 0.0;
        for r in 0..2 {
            for c in 0..2 {
                let e = rows[r] as f64 * cols[c] as f64 / n as f64;
                stat += (table[r][c] as f64 - e).powi(2) / e;
            }
        }
        stat
    }

    // --- Golden vectors -------------------------------------------------
    //
    // These freeze the assignment of real users. If a change makes any of
    // them fail, it would move live users between variants mid-experiment:
    // do not update the values unless reshuffling everyone is intended.

    #[test]
    fn golden_xxh3_is_the_reference_algorithm() {
        // Known-answer values from the xxHash reference implementation.
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(xxh3_64(b"a"), 0xE6C6_32B6_1E96_4E1F);
    }

    #[test]
    fn golden_encoding_is_length_prefixed_le() {
        let expected: &[u8] = &[
            2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', //
            1, 0, 0, 0, 0, 0, 0, 0, b'c', //
            3, 0, 0, 0, 0, 0, 0, 0, b'x', b'y', b'z',
        ];
        assert_eq!(draw_hash("ab", "c", "xyz"), xxh3_64(expected));
        // The same concatenated bytes split differently must not collide.
        assert_ne!(draw_hash("ab", "c", "xyz"), draw_hash("a", "bc", "xyz"));
        assert_ne!(draw_hash("ab", "c", "xyz"), draw_hash("ab", "cx", "yz"));
        assert_ne!(draw_hash("", "", "a"), draw_hash("", "a", ""));
    }

    #[test]
    fn golden_unit_draws() {
        // (salt, unit, label, XXH3-64 of the encoding, draw). Cross-checked
        // against the C reference libxxhash with the encoding built by hand.
        let cases: [(&str, &str, &str, u64, f64); 10] = [
            (
                "exp-a",
                "user-1",
                "control",
                0xD04A_E931_BFB9_1507,
                0.8136430498559303,
            ),
            (
                "exp-a",
                "user-1",
                "treatment-a",
                0x5FE1_5342_9A82_D5AF,
                0.3745319402319284,
            ),
            (
                "exp-a",
                "user-2",
                "control",
                0x0CC9_02B9_A8F7_A654,
                0.04994217903819609,
            ),
            (
                "exp-b",
                "user-1",
                "control",
                0x213B_55A0_1616_1E48,
                0.12981162222248377,
            ),
            (
                "exp-b",
                "user-3",
                "treatment-b",
                0xA32E_B086_0BB9_D3BD,
                0.6374311759243264,
            ),
            (
                "exp-a",
                "user-1",
                ENROLMENT_LABEL,
                0x2DE3_1489_136C_AAF3,
                0.1792462191255476,
            ),
            (
                "exp-b",
                "user-7",
                ENROLMENT_LABEL,
                0x05C2_42FE_78CF_FD41,
                0.02249544823354188,
            ),
            ("", "", "", 0x743D_F94E_E4C7_8A2A, 0.45407064605822545),
            ("exp-a", "", "", 0xF12D_848E_47CD_56E9, 0.9421007964481779),
            (
                "prompt-v2",
                "api-key-42",
                "concise",
                0xBD9E_B885_5496_85EE,
                0.7407031369699216,
            ),
        ];
        for (salt, unit, label, hash, draw) in cases {
            assert_eq!(
                draw_hash(salt, unit, label),
                hash,
                "{salt}/{unit}/{label:?}"
            );
            assert_eq!(
                unit_draw(salt, unit, label).to_bits(),
                draw.to_bits(),
                "{salt}/{unit}/{label:?}"
            );
        }
    }

    #[test]
    fn the_shadow_draw_is_its_own_and_nested_by_percentage() {
        let units: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
        let sampled = |percent: f64| -> Vec<&String> {
            units
                .iter()
                .filter(|u| is_shadow_sampled("exp", u, percent))
                .collect()
        };
        let (ten, thirty) = (sampled(10.0), sampled(30.0));
        // Binomial(20000, p): sd ≈ 42 at 10%, 65 at 30%; ±5 sd.
        assert!((ten.len() as f64 - 2_000.0).abs() < 210.0, "{}", ten.len());
        assert!(
            (thirty.len() as f64 - 6_000.0).abs() < 325.0,
            "{}",
            thirty.len()
        );
        assert!(ten.iter().all(|u| thirty.contains(u)), "10% ⊂ 30%");
        assert!(sampled(0.0).is_empty());
        assert_eq!(sampled(100.0).len(), units.len());
        // Not the enrolment draw: being enrolled says nothing about being shadowed.
        let both = units
            .iter()
            .filter(|u| is_enrolled("exp", u, 30.0) && is_shadow_sampled("exp", u, 30.0))
            .count() as f64;
        assert!(
            (both - 1_800.0).abs() < 200.0,
            "{both} (independent: 9% of 20000)"
        );
    }

    #[test]
    fn golden_choices_for_50_30_20() {
        let split = variants(&[
            ("control", 50.0),
            ("treatment-a", 30.0),
            ("treatment-b", 20.0),
        ]);
        // user-1..user-8 under two salts.
        let expected: [(&str, [usize; 8]); 2] = [
            ("exp-a", [0, 1, 0, 0, 0, 1, 0, 2]),
            ("exp-b", [1, 0, 1, 0, 0, 1, 1, 0]),
        ];
        for (salt, want) in expected {
            let got: Vec<usize> = (1..=8)
                .map(|i| choose(salt, &format!("user-{i}"), &split).unwrap())
                .collect();
            assert_eq!(got, want, "salt {salt}");
        }
    }

    #[test]
    fn golden_enrolment() {
        // user-1..user-8 at 30% under two salts.
        let expected: [(&str, [bool; 8]); 2] = [
            (
                "exp-a",
                [true, true, true, false, false, false, false, false],
            ),
            (
                "exp-b",
                [false, false, false, false, false, true, true, false],
            ),
        ];
        for (salt, want) in expected {
            let got: Vec<bool> = (1..=8)
                .map(|i| is_enrolled(salt, &format!("user-{i}"), 30.0))
                .collect();
            assert_eq!(got, want, "salt {salt}");
        }
    }

    // --- Hashing and the float mapping ----------------------------------

    #[test]
    fn inline_and_streaming_paths_agree_around_the_buffer_limit() {
        let long = "s".repeat(INLINE_LEN + 10);
        let mut checked_streaming = 0;
        for salt_len in [0, 5, 120, INLINE_LEN - 16, INLINE_LEN - 15, INLINE_LEN + 10] {
            let salt = &long[..salt_len];
            for label_len in 0..=(INLINE_LEN + 10) {
                let label = &long[..label_len];
                assert_eq!(
                    draw_hash(salt, "user-1", label),
                    reference_hash(salt, "user-1", label),
                    "salt_len {salt_len} label_len {label_len}"
                );
                if salt_len + 6 + label_len + 3 * LEN_PREFIX > INLINE_LEN {
                    checked_streaming += 1;
                }
            }
        }
        assert!(checked_streaming > 100, "the streaming path was exercised");
        // A reused hasher must not leak one label's bytes into the next.
        let mut hasher = DrawHasher::new("salt", "user-1");
        assert_eq!(
            hasher.hash("a-long-label"),
            reference_hash("salt", "user-1", "a-long-label")
        );
        assert_eq!(hasher.hash("b"), reference_hash("salt", "user-1", "b"));
    }

    #[test]
    fn open_unit_never_reaches_zero_or_one() {
        for hash in [0, 1, 1 << 12, u64::MAX >> 1, u64::MAX - 1, u64::MAX] {
            let u = open_unit(hash);
            assert!(u > 0.0 && u < 1.0, "{hash:#x} -> {u}");
            assert!(u.ln().is_finite() && u.ln() < 0.0, "{hash:#x}");
        }
        // Why 52 bits: the 53-bit version maps the top hash to exactly 1.0.
        let with_53_bits = ((u64::MAX >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        assert_eq!(with_53_bits, 1.0);
    }

    // --- Edge cases -----------------------------------------------------

    #[test]
    fn zero_weight_is_never_chosen() {
        let split = variants(&[
            ("a", 1.0),
            ("off", 0.0),
            ("b", 2.0),
            ("nan", f64::NAN),
            ("neg", -3.0),
        ]);
        for unit in units(5_000) {
            let chosen = choose("salt", &unit, &split).unwrap();
            assert!(chosen == 0 || chosen == 2, "{unit} -> {chosen}");
        }
    }

    #[test]
    fn no_positive_weight_gives_none() {
        assert_eq!(choose_variant("salt", "user-1", []), None);
        let off = variants(&[("a", 0.0), ("b", 0.0)]);
        for unit in units(100) {
            assert_eq!(choose("salt", &unit, &off), None);
        }
    }

    #[test]
    fn single_variant_takes_everyone() {
        for weight in [1e-9, 1.0, 100.0] {
            let only = variants(&[("only", weight)]);
            for unit in units(1_000) {
                assert_eq!(choose("salt", &unit, &only), Some(0));
            }
        }
    }

    #[test]
    fn exact_ties_go_to_the_lower_index() {
        // Two variants with the same name draw the same u, so their keys tie.
        let twins = variants(&[("x", 1.0), ("x", 1.0)]);
        for unit in units(100) {
            assert_eq!(choose("salt", &unit, &twins), Some(0));
        }
    }

    #[test]
    fn variant_order_does_not_matter() {
        let forward = variants(&[("a", 5.0), ("b", 3.0), ("c", 2.0), ("d", 1.0)]);
        let mut reversed = forward.clone();
        reversed.reverse();
        for unit in units(5_000) {
            assert_eq!(
                chosen_name("s", &unit, &forward),
                chosen_name("s", &unit, &reversed)
            );
        }
    }

    #[test]
    fn enrolment_bounds() {
        for unit in units(2_000) {
            assert!(!is_enrolled("salt", &unit, 0.0));
            assert!(is_enrolled("salt", &unit, 100.0));
        }
    }

    // --- Movement properties --------------------------------------------

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Change {
        Increase,
        Decrease,
        Add,
        Remove,
    }

    #[derive(Default)]
    struct Movement {
        /// Units that moved in a way the change does not allow.
        violations: u64,
        /// Units that moved at all, per change kind, so a test can tell a
        /// vacuous pass (nothing moved) from a real one.
        movers: [u64; 4],
    }

    /// Applies 200 random sequences of weight changes to 3–5 variants and
    /// checks, for 2,000 units each, that every unit that changed variant
    /// moved in the one direction the change allows.
    fn check_movement(assign: impl Fn(&str, &str, &Variants) -> Option<String>) -> Movement {
        let unit_keys = units(2_000);
        let mut rng = StdRng::seed_from_u64(0x5EED_A55E);
        let mut movement = Movement::default();
        let mut next_name = 0;
        for sequence in 0..200 {
            let salt = format!("exp-{sequence}");
            let mut current: Variants = (0..rng.random_range(3..=5usize))
                .map(|_| {
                    next_name += 1;
                    (format!("v{next_name}"), rng.random_range(0.5..100.0))
                })
                .collect();
            let mut before: Vec<Option<String>> = unit_keys
                .iter()
                .map(|u| assign(&salt, u, &current))
                .collect();
            for _ in 0..5 {
                let mut change = match rng.random_range(0..4) {
                    0 => Change::Increase,
                    1 => Change::Decrease,
                    2 => Change::Add,
                    _ => Change::Remove,
                };
                // Keep between 2 and 6 variants so every kind stays meaningful.
                if current.len() <= 2 && change == Change::Remove {
                    change = Change::Add;
                } else if current.len() >= 6 && change == Change::Add {
                    change = Change::Remove;
                }
                let j = rng.random_range(0..current.len());
                let subject = match change {
                    Change::Increase => {
                        current[j].1 *= rng.random_range(1.05..4.0);
                        current[j].0.clone()
                    }
                    Change::Decrease => {
                        // Sometimes all the way to 0: switching a variant off.
                        current[j].1 *= if rng.random_bool(0.2) {
                            0.0
                        } else {
                            rng.random_range(0.25..0.95)
                        };
                        current[j].0.clone()
                    }
                    Change::Add => {
                        next_name += 1;
                        let name = format!("v{next_name}");
                        let at = rng.random_range(0..=current.len());
                        current.insert(at, (name.clone(), rng.random_range(0.5..100.0)));
                        name
                    }
                    Change::Remove => current.remove(j).0,
                };
                let after: Vec<Option<String>> = unit_keys
                    .iter()
                    .map(|u| assign(&salt, u, &current))
                    .collect();
                for (old, new) in before.iter().zip(&after) {
                    if old == new {
                        continue;
                    }
                    movement.movers[change as usize] += 1;
                    let allowed = match change {
                        Change::Increase | Change::Add => new.as_deref() == Some(subject.as_str()),
                        Change::Decrease | Change::Remove => {
                            old.as_deref() == Some(subject.as_str())
                        }
                    };
                    if !allowed {
                        movement.violations += 1;
                    }
                }
                before = after;
            }
        }
        movement
    }

    #[test]
    fn weight_changes_only_move_units_into_or_out_of_the_changed_variant() {
        let movement = check_movement(chosen_name);
        assert_eq!(movement.violations, 0);
        for (kind, movers) in ["increase", "decrease", "add", "remove"]
            .iter()
            .zip(movement.movers)
        {
            assert!(
                movers > 1_000,
                "{kind}: only {movers} units moved, the check is vacuous"
            );
        }
    }

    #[test]
    fn movement_check_catches_a_reshuffling_assigner() {
        // Cumulative-range bucketing: correct shares, but every change shifts
        // the boundaries of the ranges after it and drags bystanders along.
        let movement = check_movement(|salt, unit, v| {
            let total: f64 = v.iter().map(|(_, w)| w).sum();
            let mut point = unit_draw(salt, unit, "bucket") * total;
            for (name, weight) in v {
                if point < *weight {
                    return Some(name.clone());
                }
                point -= weight;
            }
            v.last().map(|(name, _)| name.clone())
        });
        assert!(
            movement.violations > 10_000,
            "only {} violations",
            movement.violations
        );
    }

    #[test]
    fn raising_enrolment_only_adds_units() {
        let unit_keys = units(2_000);
        let mut rng = StdRng::seed_from_u64(7);
        let mut added = 0;
        for sequence in 0..200 {
            let salt = format!("exp-{sequence}");
            let mut percent: f64 = rng.random_range(0.0..50.0);
            let mut enrolled: Vec<bool> = unit_keys
                .iter()
                .map(|u| is_enrolled(&salt, u, percent))
                .collect();
            for _ in 0..3 {
                percent = (percent + rng.random_range(0.0..25.0)).min(100.0);
                for (unit, was) in unit_keys.iter().zip(enrolled.iter_mut()) {
                    let now = is_enrolled(&salt, unit, percent);
                    assert!(
                        now || !*was,
                        "{unit} left {salt} when enrolment rose to {percent}"
                    );
                    added += u64::from(now && !*was);
                    *was = now;
                }
            }
        }
        assert!(added > 10_000, "only {added} units were added");
    }

    // --- Distribution ---------------------------------------------------

    #[test]
    fn chi_square_critical_values_match_closed_forms() {
        assert!((CHI2_CRIT_DF2_ALPHA_0_001 - 2.0 * 1000f64.ln()).abs() < 1e-3);
        assert!((CHI2_CRIT_DF1_ALPHA_0_001 - 3.290_527f64.powi(2)).abs() < 1e-3);
    }

    #[test]
    fn shares_follow_weights() {
        let unit_keys = units(100_000);
        for (salt, list) in [
            (
                "exp-uniformity",
                [("control", 50.0), ("a", 30.0), ("b", 20.0)],
            ),
            ("exp-skewed", [("control", 10.0), ("a", 10.0), ("b", 80.0)]),
        ] {
            let split = variants(&list);
            let observed = counts(salt, &unit_keys, &split);
            let weights: Vec<f64> = list.iter().map(|(_, w)| *w).collect();
            let stat = chi_square(&observed, &weights);
            assert!(
                stat < CHI2_CRIT_DF2_ALPHA_0_001,
                "{salt}: chi-square {stat:.2} for {observed:?} against {weights:?}"
            );
        }
    }

    #[test]
    fn share_check_detects_a_biased_split() {
        let split = variants(&[("control", 50.0), ("a", 30.0), ("b", 20.0)]);
        let observed = counts("exp-uniformity", &units(100_000), &split);
        // Grossly wrong expectation: far beyond the critical value.
        let gross = chi_square(&observed, &[60.0, 20.0, 20.0]);
        assert!(gross > 100.0 * CHI2_CRIT_DF2_ALPHA_0_001, "{gross}");
        // One percentage point off is still caught at this sample size.
        let subtle = chi_square(&observed, &[51.0, 29.0, 20.0]);
        assert!(subtle > CHI2_CRIT_DF2_ALPHA_0_001, "{subtle}");
    }

    #[test]
    fn salts_are_independent() {
        let split = variants(&[("control", 1.0), ("treatment", 1.0)]);
        let mut table = [[0u64; 2]; 2];
        for unit in units(100_000) {
            let a = choose("exp-a", &unit, &split).unwrap();
            let b = choose("exp-b", &unit, &split).unwrap();
            table[a][b] += 1;
        }
        let stat = chi_square_2x2(table);
        assert!(
            stat < CHI2_CRIT_DF1_ALPHA_0_001,
            "chi-square {stat:.2} for {table:?}"
        );
        // The same unit under the same salt always agrees: a fully dependent
        // table is what the statistic would flag.
        let same: [[u64; 2]; 2] = [
            [table[0][0] + table[0][1], 0],
            [0, table[1][0] + table[1][1]],
        ];
        assert!(chi_square_2x2(same) > 1_000.0 * CHI2_CRIT_DF1_ALPHA_0_001);
    }

    #[test]
    fn enrolment_is_independent_of_the_variant() {
        let split = variants(&[("control", 1.0), ("treatment", 1.0)]);
        let mut table = [[0u64; 2]; 2];
        for unit in units(100_000) {
            let enrolled = usize::from(is_enrolled("exp-a", &unit, 50.0));
            table[enrolled][choose("exp-a", &unit, &split).unwrap()] += 1;
        }
        let stat = chi_square_2x2(table);
        assert!(
            stat < CHI2_CRIT_DF1_ALPHA_0_001,
            "chi-square {stat:.2} for {table:?}"
        );
    }

    #[test]
    fn enrolment_share_matches_percentage() {
        let n: f64 = 100_000.0;
        let p: f64 = 0.30;
        let enrolled = units(100_000)
            .iter()
            .filter(|unit| is_enrolled("exp-enrol", unit, 30.0))
            .count() as f64;
        let standard_error = (n * p * (1.0 - p)).sqrt();
        assert!(
            (enrolled - n * p).abs() < 4.0 * standard_error,
            "{enrolled} enrolled, expected {} ± {:.0}",
            n * p,
            4.0 * standard_error
        );
    }
}
