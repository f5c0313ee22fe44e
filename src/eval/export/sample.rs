//! Deterministic stratified sampling in bounded memory.
//!
//! Every record gets a key, a seeded hash of its request id; a stratum keeps
//! the records with the `capacity` smallest keys (bottom-k sampling). That is
//! a uniform sample without replacement, the same whatever order the log is
//! read in, and the same for the same `--seed`; memory holds `capacity`
//! records per stratum, not the log.

use std::collections::{BTreeMap, BinaryHeap};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// One record in a stratum's sample, ordered by its key (then by where it
/// was read, for records that share a request id).
struct Entry<T> {
    key: u64,
    position: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.position) == (other.key, other.position)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.key, self.position).cmp(&(other.key, other.position))
    }
}

pub struct Sampler<T> {
    seed: u64,
    capacity: usize,
    /// Per stratum, the kept entries: a max-heap, so the largest key is the
    /// one to drop.
    strata: BTreeMap<String, BinaryHeap<Entry<T>>>,
}

impl<T> Sampler<T> {
    pub fn new(seed: u64, capacity: usize) -> Sampler<T> {
        Sampler {
            seed,
            capacity,
            strata: BTreeMap::new(),
        }
    }

    /// Offers a record of `stratum`; `position` says where it was read, so
    /// records with the same request id keep a fixed order.
    pub fn offer(&mut self, stratum: &str, request_id: &str, position: u64, item: T) {
        let entry = Entry {
            key: xxh3_64_with_seed(request_id.as_bytes(), self.seed),
            position,
            item,
        };
        if !self.strata.contains_key(stratum) {
            self.strata.insert(stratum.to_owned(), BinaryHeap::new());
        }
        let Some(kept) = self.strata.get_mut(stratum) else {
            return;
        };
        if kept.len() < self.capacity {
            kept.push(entry);
        } else if kept.peek().is_some_and(|largest| entry < *largest) {
            kept.pop();
            kept.push(entry);
        }
    }

    /// The first `quota[stratum]` records of each stratum by key (all kept
    /// ones for a stratum without a quota), by stratum name.
    pub fn take(self, quota: &BTreeMap<String, usize>) -> Vec<(String, T)> {
        let mut taken = Vec::new();
        for (name, kept) in self.strata {
            let limit = quota.get(&name).copied().unwrap_or(usize::MAX);
            taken.extend(
                kept.into_sorted_vec()
                    .into_iter()
                    .take(limit)
                    .map(|entry| (name.clone(), entry.item)),
            );
        }
        taken
    }

    /// Sizes of the kept samples, by stratum.
    pub fn kept(&self) -> BTreeMap<String, usize> {
        self.strata
            .iter()
            .map(|(name, kept)| (name.clone(), kept.len()))
            .collect()
    }
}

/// Splits `total` across strata as equally as their sizes allow: each round
/// gives every stratum that still has records an equal share (at least one),
/// and what a small stratum cannot use goes to the others. Leftover units of
/// a round go to strata in name order.
pub fn allocate(available: &BTreeMap<String, usize>, total: usize) -> BTreeMap<String, usize> {
    let mut quota: BTreeMap<String, usize> =
        available.keys().map(|name| (name.clone(), 0)).collect();
    let mut remaining = total;
    loop {
        let open: Vec<&String> = available
            .iter()
            .filter(|(name, size)| quota.get(*name).is_some_and(|given| given < size))
            .map(|(name, _)| name)
            .collect();
        if open.is_empty() || remaining == 0 {
            return quota;
        }
        let share = (remaining / open.len()).max(1);
        for name in open {
            let (Some(given), Some(size)) = (quota.get_mut(name), available.get(name)) else {
                continue;
            };
            let take = share.min(size - *given).min(remaining);
            *given += take;
            remaining -= take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(order: impl Iterator<Item = u64>, seed: u64) -> Vec<u64> {
        let mut sampler = Sampler::new(seed, 10);
        for i in order {
            sampler.offer("all", &format!("req-{i}"), i, i);
        }
        let mut ids: Vec<u64> = sampler
            .take(&BTreeMap::new())
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn the_sample_depends_on_the_seed_not_on_the_reading_order() {
        let forward = sample(0..1_000, 7);
        assert_eq!(forward.len(), 10);
        assert_eq!(sample((0..1_000).rev(), 7), forward);
        assert_ne!(sample(0..1_000, 8), forward);
    }

    #[test]
    fn the_sample_is_spread_over_the_whole_log() {
        // Bottom-k by hash is uniform: over many seeds, each decile of the
        // log gets about a tenth of the picks.
        let mut deciles = [0u32; 10];
        for seed in 0..200 {
            for i in sample(0..1_000, seed) {
                deciles[(i / 100) as usize] += 1;
            }
        }
        for count in deciles {
            assert!((150..=250).contains(&count), "{deciles:?}");
        }
    }

    #[test]
    fn allocation_is_equal_and_passes_on_what_small_strata_cannot_use() {
        let sizes =
            |pairs: &[(&str, usize)]| pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        let quota = allocate(&sizes(&[("a", 100), ("b", 100), ("c", 100)]), 10);
        assert_eq!(quota.values().copied().collect::<Vec<_>>(), [4, 3, 3]);
        let quota = allocate(&sizes(&[("a", 1), ("b", 100), ("c", 2)]), 10);
        assert_eq!(quota.values().copied().collect::<Vec<_>>(), [1, 7, 2]);
        let quota = allocate(&sizes(&[("a", 1), ("b", 2)]), 10);
        assert_eq!(
            quota.values().copied().collect::<Vec<_>>(),
            [1, 2],
            "fewer records than asked"
        );
    }
}
