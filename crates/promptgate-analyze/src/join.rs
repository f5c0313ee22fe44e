//! Joining feedback to requests by (client, `request_id`) in bounded memory:
//! a grace hash join. A request id is the caller's own when it sent
//! `x-request-id`, so it is only unique per client: feedback counts on the
//! request of the client that posted it, or — from a trusted outcome
//! reporter (`[feedback] trusted_clients`) — on the one request of that id,
//! whoever made it. Other feedback is excluded and counted, never joined.
//! Buckets are chosen by the id alone, so a request and all feedback on its
//! id meet in one bucket whatever the clients. While the request table streams by, every analysed request
//! (8-byte id hash + variant + 8-byte unit hash) and every served/shadow pair
//! goes to one of `BUCKETS` spill files chosen by the id hash; feedback
//! records go to the same buckets. Then each bucket is joined on its own, so
//! memory holds one bucket's feedback (1/64 of it) instead of all of it. Each
//! joined value carries its request's unit, so that the caller can spill it
//! again by unit (`units`) for the unit-level analysis.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};

use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::records::FeedbackRow;

/// Whether feedback from `client_id` is an outcome reporter's, joined to the
/// request of its id whoever made it: a client listed in `trusted`
/// (`[feedback] trusted_clients`, `--trusted-client`), or `promptgate judge`,
/// whose id no caller of the gateway can hold.
pub fn trusted_reporter(client_id: Option<&str>, trusted: &[String]) -> bool {
    client_id.is_some_and(|id| {
        id == promptgate_core::config::feedback::JUDGE_CLIENT_ID
            || trusted.iter().any(|listed| listed == id)
    })
}

pub(super) const BUCKETS: usize = 64;

/// One spill file per bucket, written once and read once.
pub(super) struct Spill {
    files: Vec<BufWriter<File>>,
    paths: Vec<std::path::PathBuf>,
}

impl Spill {
    pub(super) fn create(dir: &std::path::Path, name: &str) -> std::io::Result<Spill> {
        let mut files = Vec::with_capacity(BUCKETS);
        let mut paths = Vec::with_capacity(BUCKETS);
        for bucket in 0..BUCKETS {
            let path = dir.join(format!("{name}-{bucket:02}"));
            files.push(BufWriter::new(File::create(&path)?));
            paths.push(path);
        }
        Ok(Spill { files, paths })
    }

    pub(super) fn write(&mut self, hash: u64, record: &[u8]) -> std::io::Result<()> {
        self.files[(hash % BUCKETS as u64) as usize].write_all(record)
    }

    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        self.files.iter_mut().try_for_each(BufWriter::flush)
    }

    /// The fixed-size records of one bucket.
    pub(super) fn read<const N: usize>(&self, bucket: usize) -> std::io::Result<Vec<[u8; N]>> {
        let mut bytes = Vec::new();
        BufReader::new(File::open(&self.paths[bucket])?).read_to_end(&mut bytes)?;
        Ok(bytes
            .chunks_exact(N)
            .filter_map(|chunk| chunk.try_into().ok())
            .collect())
    }

    /// The fixed-size records of one bucket, one at a time: memory holds the
    /// reader's buffer, not the bucket.
    pub(super) fn stream<const N: usize>(
        &self,
        bucket: usize,
        mut on: impl FnMut([u8; N]),
    ) -> std::io::Result<()> {
        let mut reader = BufReader::with_capacity(1 << 16, File::open(&self.paths[bucket])?);
        let mut record = [0u8; N];
        loop {
            match reader.read_exact(&mut record) {
                Ok(()) => on(record),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

pub(super) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// `2026-11-26T10:00:02.123Z` → 20261126100002123, ordered like the time.
fn ts_key(ts: &str) -> u64 {
    ts.bytes()
        .filter(u8::is_ascii_digit)
        .take(17)
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
}

/// A pair's key and the boolean feedback of its served and shadow sides.
type PairHalves = (u32, Option<bool>, Option<bool>);

/// A metric's latest value on one request: (metric, value, time received).
type LatestValue = (u16, f64, u64);

/// Which client a request or feedback event came from, as a hash (0: none,
/// in open mode).
fn scope_of(client_id: Option<&str>) -> u64 {
    client_id.map_or(0, |id| xxh3_64_with_seed(id.as_bytes(), 2) | 1)
}

/// Feedback events left out of the join, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Excluded {
    /// Posted by a client that neither made the request nor is a trusted
    /// reporter.
    pub foreign_client: u64,
    /// Posted by a trusted reporter on an id that several clients used.
    pub ambiguous_request_id: u64,
}

/// What the join could not use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinSummary {
    /// Requests with feedback that were not among the analysed ones (nor a
    /// shadow of one).
    pub unmatched: u64,
    pub excluded: Excluded,
}

pub struct FeedbackJoin {
    _dir: tempfile::TempDir,
    requests: Spill,
    feedback: Spill,
    pairs: Spill,
    metrics: Vec<(String, bool)>,
    metric_ids: HashMap<String, u16>,
    next_pair: u64,
    pub feedback_records: u64,
}

/// What the join hands back, one event at a time.
pub enum Joined<'a> {
    /// The latest value of `metric` for a request of `variant` and `unit`.
    Value {
        variant: u16,
        unit: u64,
        /// The metric's index, in the order metrics were first read.
        metric_id: u16,
        metric: &'a str,
        boolean: bool,
        value: f64,
    },
    /// Both sides of a served/shadow pair have a boolean value for `metric`.
    Pair {
        key: u32,
        metric: &'a str,
        served: bool,
        shadow: bool,
    },
}

impl FeedbackJoin {
    pub fn new() -> std::io::Result<FeedbackJoin> {
        let dir = tempfile::Builder::new()
            .prefix("promptgate-analyze-")
            .tempdir()?;
        Ok(FeedbackJoin {
            requests: Spill::create(dir.path(), "requests")?,
            feedback: Spill::create(dir.path(), "feedback")?,
            pairs: Spill::create(dir.path(), "pairs")?,
            _dir: dir,
            metrics: Vec::new(),
            metric_ids: HashMap::new(),
            next_pair: 0,
            feedback_records: 0,
        })
    }

    /// An analysed served request of `client_id` and `unit` (a hash of its
    /// unit key).
    pub fn request(
        &mut self,
        request_id: &str,
        client_id: Option<&str>,
        variant: u16,
        unit: u64,
    ) -> std::io::Result<()> {
        let hash = xxh3_64(request_id.as_bytes());
        let mut record = [0u8; 26];
        record[..8].copy_from_slice(&hash.to_le_bytes());
        record[8..16].copy_from_slice(&scope_of(client_id).to_le_bytes());
        record[16..18].copy_from_slice(&variant.to_le_bytes());
        record[18..].copy_from_slice(&unit.to_le_bytes());
        self.requests.write(hash, &record)
    }

    /// A served/shadow pair of `client_id` (both sides are the served
    /// request's client), `key` naming its (served, shadow) variants.
    pub fn pair(
        &mut self,
        served_id: &str,
        shadow_id: &str,
        client_id: Option<&str>,
        key: u32,
    ) -> std::io::Result<()> {
        let number = self.next_pair;
        self.next_pair += 1;
        for (side, id) in [(0u8, served_id), (1u8, shadow_id)] {
            let hash = xxh3_64(id.as_bytes());
            let mut record = [0u8; 29];
            record[..8].copy_from_slice(&hash.to_le_bytes());
            record[8..16].copy_from_slice(&scope_of(client_id).to_le_bytes());
            record[16..24].copy_from_slice(&number.to_le_bytes());
            record[24..28].copy_from_slice(&key.to_le_bytes());
            record[28] = side;
            self.pairs.write(hash, &record)?;
        }
        Ok(())
    }

    /// A feedback event; `trusted`: its client is a trusted outcome reporter.
    pub fn feedback(&mut self, row: FeedbackRow, trusted: bool) -> std::io::Result<()> {
        let Some(value) = row.value_number.filter(|v| v.is_finite()) else {
            return Ok(());
        };
        self.feedback_records += 1;
        let metric = match self.metric_ids.get(&row.metric) {
            Some(&id) => id,
            None => {
                let id = u16::try_from(self.metrics.len()).unwrap_or(u16::MAX);
                self.metrics
                    .push((row.metric.clone(), row.value_type == "boolean"));
                self.metric_ids.insert(row.metric, id);
                id
            }
        };
        let hash = xxh3_64(row.request_id.as_bytes());
        let mut record = [0u8; 35];
        record[..8].copy_from_slice(&hash.to_le_bytes());
        record[8..16].copy_from_slice(&scope_of(row.client_id.as_deref()).to_le_bytes());
        record[16..18].copy_from_slice(&metric.to_le_bytes());
        record[18..26].copy_from_slice(&value.to_le_bytes());
        record[26..34].copy_from_slice(&ts_key(&row.ts_received).to_le_bytes());
        record[34] = u8::from(trusted);
        self.feedback.write(hash, &record)
    }

    /// The clients (scopes) that made a request of each id in `wanted`, from
    /// the requests and pairs of one bucket.
    fn owners(
        &self,
        bucket: usize,
        wanted: &HashSet<u64>,
    ) -> std::io::Result<HashMap<u64, Vec<u64>>> {
        let mut owners: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut note = |hash: u64, scope: u64| {
            if wanted.contains(&hash) {
                let scopes = owners.entry(hash).or_default();
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
        };
        self.requests
            .stream::<26>(bucket, |r| note(u64_at(&r, 0), u64_at(&r, 8)))?;
        self.pairs
            .stream::<29>(bucket, |r| note(u64_at(&r, 0), u64_at(&r, 8)))?;
        Ok(owners)
    }

    /// Joins bucket by bucket; returns what could not be joined.
    pub fn join(mut self, mut on: impl FnMut(Joined<'_>)) -> std::io::Result<JoinSummary> {
        self.requests.flush()?;
        self.feedback.flush()?;
        self.pairs.flush()?;
        let mut summary = JoinSummary::default();
        // (pair number, metric) → (key, served value, shadow value): only pairs
        // whose sides both got boolean feedback ever complete.
        let mut halves: HashMap<(u64, u16), PairHalves> = HashMap::new();
        for bucket in 0..BUCKETS {
            let feedback = self.feedback.read::<35>(bucket)?;
            let wanted: HashSet<u64> = feedback.iter().map(|r| u64_at(r, 0)).collect();
            let owners = self.owners(bucket, &wanted)?;
            // Latest value per (request id, client, metric).
            let mut latest: HashMap<(u64, u64), Vec<LatestValue>> = HashMap::new();
            for record in feedback {
                let (hash, poster) = (u64_at(&record, 0), u64_at(&record, 8));
                let scope = match owners.get(&hash).map(Vec::as_slice) {
                    // No request of that id: unmatched, as before scoping.
                    None => poster,
                    Some(scopes) if scopes.contains(&poster) => poster,
                    Some(&[only]) if record[34] == 1 => only,
                    Some(_) if record[34] == 1 => {
                        summary.excluded.ambiguous_request_id += 1;
                        continue;
                    }
                    Some(_) => {
                        summary.excluded.foreign_client += 1;
                        continue;
                    }
                };
                let metric = u16_at(&record, 16);
                let value = f64::from_le_bytes(record[18..26].try_into().unwrap_or([0; 8]));
                let ts = u64_at(&record, 26);
                let values = latest.entry((hash, scope)).or_default();
                match values.iter_mut().find(|v| v.0 == metric) {
                    Some(kept) if kept.2 <= ts => *kept = (metric, value, ts),
                    Some(_) => {}
                    None => values.push((metric, value, ts)),
                }
            }
            let mut claimed = HashSet::new();
            let metrics = &self.metrics;
            self.requests.stream::<26>(bucket, |record| {
                let key = (u64_at(&record, 0), u64_at(&record, 8));
                let (variant, unit) = (u16_at(&record, 16), u64_at(&record, 18));
                if let Some(values) = latest.get(&key) {
                    claimed.insert(key);
                    for &(metric, value, _) in values {
                        let (name, boolean) = &metrics[usize::from(metric)];
                        on(Joined::Value {
                            variant,
                            unit,
                            metric_id: metric,
                            metric: name,
                            boolean: *boolean,
                            value,
                        });
                    }
                }
            })?;
            for record in self.pairs.read::<29>(bucket)? {
                let key = (u64_at(&record, 0), u64_at(&record, 8));
                let number = u64_at(&record, 16);
                let pair_key = u32::from_le_bytes(record[24..28].try_into().unwrap_or([0; 4]));
                let Some(values) = latest.get(&key) else {
                    continue;
                };
                claimed.insert(key);
                for &(metric, value, _) in values {
                    if !self.metrics[usize::from(metric)].1 {
                        continue;
                    }
                    let half = halves
                        .entry((number, metric))
                        .or_insert((pair_key, None, None));
                    if record[28] == 0 {
                        half.1 = Some(value != 0.0);
                    } else {
                        half.2 = Some(value != 0.0);
                    }
                }
            }
            summary.unmatched += latest.keys().filter(|k| !claimed.contains(k)).count() as u64;
        }
        for ((_, metric), (key, served, shadow)) in halves {
            if let (Some(served), Some(shadow)) = (served, shadow) {
                on(Joined::Pair {
                    key,
                    metric: &self.metrics[usize::from(metric)].0,
                    served,
                    shadow,
                });
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, metric: &str, value: f64, ts: &str) -> FeedbackRow {
        FeedbackRow {
            request_id: id.into(),
            client_id: None,
            ts_received: ts.into(),
            metric: metric.into(),
            value_type: "boolean".into(),
            value_number: Some(value),
        }
    }

    #[test]
    fn the_latest_value_joins_its_request_and_pairs_complete_across_buckets() {
        let mut join = FeedbackJoin::new().unwrap();
        for i in 0..1_000 {
            join.request(&format!("r{i}"), None, (i % 2) as u16, i / 10)
                .unwrap();
        }
        join.pair("r1", "s1", None, 7).unwrap();
        join.feedback(row("r0", "up", 0.0, "2026-11-26T10:00:01.000Z"), false)
            .unwrap();
        join.feedback(row("r0", "up", 1.0, "2026-11-26T10:00:02.000Z"), false)
            .unwrap();
        join.feedback(row("r1", "up", 1.0, "2026-11-26T10:00:02.000Z"), false)
            .unwrap();
        join.feedback(row("s1", "up", 0.0, "2026-11-26T10:00:02.000Z"), false)
            .unwrap();
        join.feedback(row("ghost", "up", 1.0, "2026-11-26T10:00:02.000Z"), false)
            .unwrap();
        let mut values = Vec::new();
        let mut pairs = Vec::new();
        let summary = join
            .join(|event| match event {
                Joined::Value {
                    variant,
                    unit,
                    value,
                    ..
                } => values.push((variant, unit, value)),
                Joined::Pair {
                    key,
                    served,
                    shadow,
                    ..
                } => pairs.push((key, served, shadow)),
            })
            .unwrap();
        values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(
            values,
            vec![(0, 0, 1.0), (1, 0, 1.0)],
            "r0's later value wins, with its unit"
        );
        assert_eq!(pairs, vec![(7, true, false)]);
        assert_eq!(
            summary.unmatched, 1,
            "only `ghost`: the shadow s1 is claimed by its pair"
        );
    }

    #[test]
    fn feedback_counts_only_from_the_requesting_client_or_a_trusted_reporter() {
        let mut join = FeedbackJoin::new().unwrap();
        // Two clients used the same caller-chosen id; `c` made `solo`.
        join.request("shared", Some("a"), 0, 1).unwrap();
        join.request("shared", Some("b"), 1, 2).unwrap();
        join.request("solo", Some("c"), 0, 3).unwrap();
        let from = |id: &str, client: &str, value: f64| FeedbackRow {
            client_id: Some(client.into()),
            ..row(id, "up", value, "2026-11-26T10:00:02.000Z")
        };
        join.feedback(from("shared", "a", 1.0), false).unwrap();
        join.feedback(from("shared", "b", 0.0), false).unwrap();
        join.feedback(from("solo", "a", 0.0), false).unwrap();
        join.feedback(from("solo", "reporter", 1.0), true).unwrap();
        join.feedback(from("shared", "reporter", 1.0), true)
            .unwrap();
        let mut values = Vec::new();
        let summary = join
            .join(|event| {
                if let Joined::Value {
                    variant,
                    unit,
                    value,
                    ..
                } = event
                {
                    values.push((variant, unit, value));
                }
            })
            .unwrap();
        values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(
            values,
            vec![(0, 1, 1.0), (0, 3, 1.0), (1, 2, 0.0)],
            "each client's own value on `shared`, the reporter's on `solo`"
        );
        assert_eq!(
            summary.excluded,
            Excluded {
                foreign_client: 1,
                ambiguous_request_id: 1
            }
        );
        assert_eq!(summary.unmatched, 0);
    }
}
