//! Which records pair: every shadow record with the served request it names
//! (`shadow_of`, scoped by client), wherever in the log either one is. Both
//! go through a spill bucketed by the served request's id (each side reduced
//! to what the comparison needs, `pairs::Side`), so a shadow and its served
//! request land in one bucket; each bucket is paired on its own once the log
//! is read, and a bucket above a fixed budget is split into parts first, so
//! memory holds one part's sides whatever the log's size.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64;

use super::pairs::Side;
use super::records::RequestRow;
use super::spill::{BUCKETS, Spill, frames, u64_at};

/// Spilled bytes of sides paired in memory at once (the part's bytes plus
/// an index of its served sides, about 40 bytes each): a bigger bucket is
/// split into parts first.
const MAX_BYTES_PER_PART: u64 = 8 << 20;

/// What a spilled side is, its first byte.
const SERVED: u8 = 0;
const SHADOW: u8 = 1;

pub(crate) struct ShadowSpill {
    _dir: tempfile::TempDir,
    spill: Spill,
    /// The sides' variant names, by the index their records carry.
    variants: Vec<String>,
    /// Shadow records spilled: with none, there is nothing to pair.
    shadows: u64,
    /// One side's bytes, reused.
    record: Vec<u8>,
}

impl ShadowSpill {
    pub(crate) fn new() -> std::io::Result<ShadowSpill> {
        let dir = tempfile::Builder::new()
            .prefix("promptgate-analyze-shadows-")
            .tempdir()?;
        Ok(ShadowSpill {
            spill: Spill::create(dir.path(), "sides")?,
            _dir: dir,
            variants: Vec::new(),
            shadows: 0,
            record: Vec::new(),
        })
    }

    /// A served request of the population, which shadows may name.
    pub(crate) fn served(&mut self, row: &RequestRow) -> std::io::Result<()> {
        self.side(SERVED, xxh3_64(row.request_id.as_bytes()), &Side::of(row))
    }

    /// A shadow record of the served request `of` (of the shadow's client:
    /// a shadow record carries its served request's).
    pub(crate) fn shadow(&mut self, row: &RequestRow, of: &str) -> std::io::Result<()> {
        self.shadows += 1;
        self.side(SHADOW, xxh3_64(of.as_bytes()), &Side::of(row))
    }

    fn side(&mut self, kind: u8, served_id: u64, side: &Side) -> std::io::Result<()> {
        let variant = match self.variants.iter().position(|v| *v == side.variant) {
            Some(index) => index,
            None => {
                self.variants.push(side.variant.clone());
                self.variants.len() - 1
            }
        };
        // Past u16::MAX variant names, the last one stands for the rest.
        let variant = u16::try_from(variant).unwrap_or(u16::MAX);
        self.record.clear();
        self.record.push(kind);
        side.encode(variant, &mut self.record);
        self.spill.write_framed(served_id, &self.record)
    }

    /// Calls `on(served, shadow)` for every shadow whose served request was
    /// spilled (several shadows may name one served request; of two served
    /// records of one id, the later one counts), bucket by bucket, each in
    /// the order the shadows were read. Returns how many shadows found no
    /// served request.
    pub(crate) fn pair(self, on: impl FnMut(&Side, &Side)) -> std::io::Result<u64> {
        self.pair_within(MAX_BYTES_PER_PART, on)
    }

    fn pair_within(
        mut self,
        max_bytes: u64,
        mut on: impl FnMut(&Side, &Side),
    ) -> std::io::Result<u64> {
        if self.shadows == 0 {
            return Ok(0);
        }
        self.spill.flush()?;
        let variants = &self.variants;
        let mut unpaired = 0;
        for bucket in 0..BUCKETS {
            self.spill
                .for_each_framed_part(bucket, max_bytes, |spill, part| {
                    let bytes = spill.read_bytes(part)?;
                    // A side's scope follows its kind byte and its own id.
                    let key = |hash: u64, body: &[u8]| (hash, u64_at(body, 9));
                    let mut served: HashMap<(u64, u64), &[u8]> = HashMap::new();
                    for (hash, body) in frames(&bytes) {
                        if body.len() > 17 && body[0] == SERVED {
                            served.insert(key(hash, body), &body[1..]);
                        }
                    }
                    for (hash, body) in frames(&bytes) {
                        if body.len() <= 17 || body[0] != SHADOW {
                            continue;
                        }
                        let pair = served.get(&key(hash, body)).and_then(|served| {
                            Some((
                                Side::decode(served, variants)?,
                                Side::decode(&body[1..], variants)?,
                            ))
                        });
                        match pair {
                            Some((served, shadow)) => on(&served, &shadow),
                            None => unpaired += 1,
                        }
                    }
                    Ok(())
                })?;
        }
        Ok(unpaired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, client: &str, variant: &str, latency: f64) -> RequestRow {
        RequestRow {
            record_type: "request".into(),
            request_id: id.into(),
            client_id: Some(client.into()),
            role: "served".into(),
            served_variant: Some(variant.into()),
            status: Some(200),
            latency_ms: Some(latency),
            response_text: Some(format!("{{\"answer\": \"{id}\", \"n\": 1}}")),
            ..RequestRow::default()
        }
    }

    /// Served requests of three clients, most with a shadow (some with two),
    /// shadows naming no request, and an id two clients used.
    fn mixed() -> ShadowSpill {
        let mut spill = ShadowSpill::new().unwrap();
        let client = |i: u64| ["a", "b", "c"][(i % 3) as usize];
        for i in 0..3_000u64 {
            let served = row(&format!("r{i}"), client(i), "control", i as f64);
            if i % 2 == 0 {
                spill.served(&served).unwrap();
            }
            for copy in 0..(1 + u64::from(i % 10 == 0)) {
                if i % 4 != 3 {
                    let shadow = row(&format!("s{i}-{copy}"), client(i), "treatment", 1.0);
                    spill.shadow(&shadow, &format!("r{i}")).unwrap();
                }
            }
            if i % 2 == 1 {
                spill.served(&served).unwrap();
            }
        }
        // Another client's shadow of an id client `a` used: no pair.
        spill
            .shadow(&row("foreign", "b", "treatment", 1.0), "r0")
            .unwrap();
        spill
            .shadow(&row("orphan", "a", "treatment", 1.0), "nobody")
            .unwrap();
        spill
    }

    type Pairs = Vec<(String, u64, String, u64)>;

    fn outcome(spill: ShadowSpill, max_bytes: Option<u64>) -> (Pairs, u64) {
        let mut pairs = Vec::new();
        let on = |served: &Side, shadow: &Side| {
            assert_eq!(served.scope, shadow.scope);
            pairs.push((
                served.variant.clone(),
                served.id,
                shadow.variant.clone(),
                shadow.id,
            ));
        };
        let unpaired = match max_bytes {
            None => spill.pair(on),
            Some(max_bytes) => spill.pair_within(max_bytes, on),
        }
        .unwrap();
        (pairs, unpaired)
    }

    #[test]
    fn every_shadow_pairs_with_its_served_request_wherever_it_was_read() {
        let (pairs, unpaired) = outcome(mixed(), None);
        // 3,000 served, 3 in 4 with a shadow, every tenth with two.
        let shadowed = (0..3_000u64).filter(|i| i % 4 != 3);
        let expected: u64 = shadowed.map(|i| 1 + u64::from(i % 10 == 0)).sum();
        assert_eq!(pairs.len() as u64, expected);
        assert_eq!(unpaired, 2, "the foreign client's and the orphan");
        let served = xxh3_64(b"r8");
        let of_r8: Vec<_> = pairs.iter().filter(|p| p.1 == served).collect();
        assert_eq!(of_r8.len(), 1);
        assert_eq!(of_r8[0].3, xxh3_64(b"s8-0"));
        assert_eq!((&*of_r8[0].0, &*of_r8[0].2), ("control", "treatment"));
    }

    #[test]
    fn split_buckets_pair_exactly_as_whole_ones() {
        let whole = outcome(mixed(), None);
        // About 4 KiB of sides per bucket: parts of at most 1 KiB split
        // every bucket into several.
        let split = outcome(mixed(), Some(1 << 10));
        assert_eq!(split.1, whole.1);
        assert_ne!(split.0, whole.0, "parts come part by part");
        // The same pairs, in another order (fixed too: the budget is).
        let mut sorted = (whole.0, split.0);
        sorted.0.sort();
        sorted.1.sort();
        assert_eq!(sorted.0, sorted.1);
    }

    #[test]
    fn a_side_survives_the_spill() {
        let mut served = row("r1", "a", "control", 12.5);
        served.input_tokens = Some(3);
        served.cost_usd = Some(0.25);
        let mut failed = row("r2", "b", "x", 1.0);
        failed.status = Some(500);
        failed.latency_ms = None;
        failed.response_text = Some("plain text".into());
        let variants = vec!["x".to_owned(), "control".to_owned()];
        for (side, variant) in [(Side::of(&served), 1), (Side::of(&failed), 0)] {
            let mut bytes = Vec::new();
            side.encode(variant, &mut bytes);
            assert_eq!(Side::decode(&bytes, &variants), Some(side));
            assert_eq!(Side::decode(&bytes[..bytes.len() - 1], &variants), None);
        }
    }
}
