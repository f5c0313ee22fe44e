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
//! memory holds one bucket's feedback (1/64 of it) instead of all of it; a
//! bucket above a fixed budget is split into parts first, so memory does not
//! grow with the log either. Pair halves meet again in a spill of their own,
//! bucketed by pair number. Each
//! joined value carries its request's unit, so that the caller can spill it
//! again by unit (`units`) for the unit-level analysis.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::records::FeedbackRow;
use super::spill::{BUCKETS, Spill, parts_for, u16_at, u64_at};

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
pub(crate) fn scope_of(client_id: Option<&str>) -> u64 {
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
    dir: tempfile::TempDir,
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
            dir,
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

    /// A served/shadow pair, each side by its request id's hash, `scope`
    /// its served request's client (`scope_of`; both sides have it), `key`
    /// naming its (served, shadow) variants.
    pub(crate) fn pair(
        &mut self,
        served_id: u64,
        shadow_id: u64,
        scope: u64,
        key: u32,
    ) -> std::io::Result<()> {
        let number = self.next_pair;
        self.next_pair += 1;
        for (side, hash) in [(0u8, served_id), (1u8, shadow_id)] {
            let mut record = [0u8; 29];
            record[..8].copy_from_slice(&hash.to_le_bytes());
            record[8..16].copy_from_slice(&scope.to_le_bytes());
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

    /// Joins bucket by bucket; returns what could not be joined.
    pub fn join(self, on: impl FnMut(Joined<'_>)) -> std::io::Result<JoinSummary> {
        self.join_within(MAX_FEEDBACK_PER_PART, MAX_HALVES_PER_PART, on)
    }

    /// `join`, holding at most about `max_feedback` feedback events and
    /// `max_halves` pair halves in memory at once: a bucket with more is
    /// split into parts first.
    fn join_within(
        mut self,
        max_feedback: u64,
        max_halves: u64,
        mut on: impl FnMut(Joined<'_>),
    ) -> std::io::Result<JoinSummary> {
        self.requests.flush()?;
        self.feedback.flush()?;
        self.pairs.flush()?;
        let mut summary = JoinSummary::default();
        // One record per side and boolean metric of a pair: the two sides
        // have different ids, hence different buckets, and meet again in a
        // spill of their own, bucketed by pair number.
        let mut halves = Spill::create(self.dir.path(), "halves")?;
        for bucket in 0..BUCKETS {
            let parts = parts_for(self.feedback.records::<35>(bucket)?, max_feedback);
            if parts == 1 {
                let whole = Tables {
                    requests: &self.requests,
                    feedback: &self.feedback,
                    pairs: &self.pairs,
                };
                whole.join_bucket(bucket, &self.metrics, &mut halves, &mut summary, &mut on)?;
                continue;
            }
            // Requests and pairs are split like the feedback, so that each
            // part holds every record of its ids.
            let (requests, feedback, pairs) = (
                self.requests.split::<26>(bucket, parts)?,
                self.feedback.split::<35>(bucket, parts)?,
                self.pairs.split::<29>(bucket, parts)?,
            );
            let split = Tables {
                requests: &requests,
                feedback: &feedback,
                pairs: &pairs,
            };
            for part in 0..parts {
                split.join_bucket(part, &self.metrics, &mut halves, &mut summary, &mut on)?;
            }
        }
        halves.flush()?;
        // Only pairs whose sides both got boolean feedback complete.
        for bucket in 0..BUCKETS {
            halves.for_each_part::<16>(bucket, max_halves, |spill, part| {
                let mut sides: HashMap<(u64, u16), PairHalves> = HashMap::new();
                spill.stream::<16>(part, |half| {
                    let key = u32::from_le_bytes(half[10..14].try_into().unwrap_or([0; 4]));
                    let sides = sides
                        .entry((u64_at(&half, 0), u16_at(&half, 8)))
                        .or_insert((key, None, None));
                    if half[14] == 0 {
                        sides.1 = Some(half[15] == 1);
                    } else {
                        sides.2 = Some(half[15] == 1);
                    }
                })?;
                for ((_, metric), (key, served, shadow)) in sides {
                    if let (Some(served), Some(shadow)) = (served, shadow) {
                        on(Joined::Pair {
                            key,
                            metric: &self.metrics[usize::from(metric)].0,
                            served,
                            shadow,
                        });
                    }
                }
                Ok(())
            })?;
        }
        Ok(summary)
    }
}

/// Feedback events joined in memory at once (the latest-value map holds
/// about a hundred bytes per event): a bucket with more is split into parts.
/// The bucket count is fixed before the log's size is known, so a big log
/// splits its buckets rather than growing the memory they take.
const MAX_FEEDBACK_PER_PART: u64 = 1 << 16;

/// Pair halves gathered in memory at once when pairs are completed.
const MAX_HALVES_PER_PART: u64 = 1 << 18;

/// The three spills of one bucket's join, or of one part of it.
struct Tables<'s> {
    requests: &'s Spill,
    feedback: &'s Spill,
    pairs: &'s Spill,
}

impl Tables<'_> {
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

    /// Joins one bucket: values go to `on`, pair halves to `halves`.
    fn join_bucket(
        &self,
        bucket: usize,
        metrics: &[(String, bool)],
        halves: &mut Spill,
        summary: &mut JoinSummary,
        on: &mut impl FnMut(Joined<'_>),
    ) -> std::io::Result<()> {
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
        let mut written = Ok(());
        self.pairs.stream::<29>(bucket, |record| {
            let key = (u64_at(&record, 0), u64_at(&record, 8));
            let Some(values) = latest.get(&key) else {
                return;
            };
            claimed.insert(key);
            let number = u64_at(&record, 16);
            for &(metric, value, _) in values {
                if !metrics[usize::from(metric)].1 || written.is_err() {
                    continue;
                }
                // (pair number, metric, pair key, side, value)
                let mut half = [0u8; 16];
                half[..8].copy_from_slice(&number.to_le_bytes());
                half[8..10].copy_from_slice(&metric.to_le_bytes());
                half[10..14].copy_from_slice(&record[24..28]);
                half[14] = record[28];
                half[15] = u8::from(value != 0.0);
                written = halves.write(number, &half);
            }
        })?;
        written?;
        summary.unmatched += latest.keys().filter(|k| !claimed.contains(k)).count() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FeedbackJoin::pair` of the requests with these ids, of `client_id`.
    fn pair(
        join: &mut FeedbackJoin,
        served: &str,
        shadow: &str,
        client_id: Option<&str>,
        key: u32,
    ) {
        let id = |id: &str| xxh3_64(id.as_bytes());
        join.pair(id(served), id(shadow), scope_of(client_id), key)
            .unwrap();
    }

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
        pair(&mut join, "r1", "s1", None, 7);
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

    /// Requests of three clients, served/shadow pairs and feedback of every
    /// kind (own, foreign, trusted, on unknown ids, boolean and numeric).
    fn mixed_join() -> FeedbackJoin {
        let mut join = FeedbackJoin::new().unwrap();
        let client = |i: u64| ["a", "b", "c"][(i % 3) as usize];
        for i in 0..3_000u64 {
            join.request(&format!("r{i}"), Some(client(i)), (i % 2) as u16, i / 7)
                .unwrap();
        }
        for i in 0..400u64 {
            pair(
                &mut join,
                &format!("r{i}"),
                &format!("s{i}"),
                Some(client(i)),
                (i % 3) as u32,
            );
        }
        for i in 0..6_000u64 {
            let target = match i % 5 {
                0 | 1 => format!("r{}", (i * 7) % 3_000),
                2 => format!("s{}", (i * 3) % 400),
                3 => format!("r{}", i % 400),
                _ => format!("ghost{i}"),
            };
            let poster = if i % 11 == 0 {
                "reporter"
            } else {
                client(i * 13 % 7)
            };
            let (metric, kind) = if i % 2 == 0 {
                ("up", "boolean")
            } else {
                ("score", "number")
            };
            let ts = format!("2026-11-26T10:{:02}:{:02}.000Z", i / 60 % 60, i % 60);
            let row = FeedbackRow {
                request_id: target,
                client_id: Some(poster.into()),
                ts_received: ts,
                metric: metric.into(),
                value_type: kind.into(),
                value_number: Some((i % 4) as f64 / 3.0),
            };
            join.feedback(row, poster == "reporter").unwrap();
        }
        // Both sides of most pairs judged by their own client.
        for i in (0..400u64).filter(|i| i % 7 != 0) {
            for (side, value) in [("r", i % 2), ("s", i / 2 % 2)] {
                let row = FeedbackRow {
                    request_id: format!("{side}{i}"),
                    client_id: Some(client(i).into()),
                    ..row(side, "up", value as f64, "2026-11-26T11:00:00.000Z")
                };
                join.feedback(row, false).unwrap();
            }
        }
        join
    }

    type Outcome = (
        Vec<(u16, u64, u16, u64)>,
        Vec<(u32, String, bool, bool)>,
        JoinSummary,
    );

    fn outcome(join: FeedbackJoin, budgets: Option<(u64, u64)>) -> Outcome {
        let (mut values, mut pairs) = (Vec::new(), Vec::new());
        let on = |event: Joined<'_>| match event {
            Joined::Value {
                variant,
                unit,
                metric_id,
                value,
                ..
            } => values.push((variant, unit, metric_id, value.to_bits())),
            Joined::Pair {
                key,
                metric,
                served,
                shadow,
            } => pairs.push((key, metric.to_owned(), served, shadow)),
        };
        let summary = match budgets {
            None => join.join(on),
            Some((feedback, halves)) => join.join_within(feedback, halves, on),
        }
        .unwrap();
        values.sort_unstable();
        pairs.sort_unstable();
        (values, pairs, summary)
    }

    #[test]
    fn buckets_split_into_parts_join_exactly_as_whole_ones() {
        let whole = outcome(mixed_join(), None);
        assert!(
            whole.0.len() > 1_000 && whole.1.len() > 20,
            "the data exercises the join: {} values, {} pairs",
            whole.0.len(),
            whole.1.len()
        );
        assert!(whole.2.unmatched > 0 && whole.2.excluded.foreign_client > 0);
        // About 100 feedback events and 20 halves per bucket: parts of at
        // most 7 and 3 split every bucket, and some parts twice as deep.
        let split = outcome(mixed_join(), Some((7, 3)));
        assert_eq!(split, whole);
    }
}
