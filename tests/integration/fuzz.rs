//! Property-based fuzzing of what reads outside input: the request parser, the
//! SSE decoder (and the capture behind it), the audit spool's frame reader and
//! recovery, and the config loader. Properties: nothing panics, and where it
//! means something, two ways of reading agree (an SSE stream decodes the same
//! however it is split; frames written read back equal; a damaged segment
//! yields exactly the frames before the damage).
//!
//! This is the CI smoke run: a bounded number of cases per target, a few
//! seconds in all. Fuzz longer with `PROPTEST_CASES=100000 cargo test --release
//! --test fuzz`. Seeds in `tests/fuzz/corpus/<target>/` are replayed as plain
//! tests; failures proptest finds are saved in `tests/fuzz/regressions/` and
//! replayed first on every run: commit them.

use std::path::{Path, PathBuf};

use promptgate::audit::spool::{self, Frames, Segment, SpoolDirs};
use promptgate::capture::ResponseCapture;
use promptgate_core::config::{LoadOptions, load_file};
use promptgate_core::dialect::{Endpoint, parse_head};
use promptgate_core::sse::{SseDecoder, SseEvent};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// `cases` per run unless `PROPTEST_CASES` asks for more, with the target's
/// regression file.
fn runs(cases: u32, regressions: &'static str) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..ProptestConfig::default()
    }
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

// ---- dialect::parse_head-------------------------------------------------

/// When the parser accepts a body, a general JSON reader sees the same
/// object. (It may accept more than that reader: skipped values are not
/// built, so nesting beyond serde_json's 128 levels or a number beyond `f64`
/// pass; the provider judges those.)
fn check_parse_head(body: &[u8]) {
    for endpoint in [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Messages,
        Endpoint::CountTokens,
    ] {
        let Ok(head) = parse_head(endpoint, body) else {
            continue;
        };
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            assert_eq!(value["model"].as_str(), Some(head.model.as_str()));
            assert_eq!(value["stream"].as_bool().unwrap_or(false), head.stream);
        }
    }
}

/// Request-shaped JSON: objects with `model` and `stream` among other fields,
/// any of them of a surprising type.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("model".to_owned()),
                    Just("stream".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(runs(512, "tests/fuzz/regressions/parse_head.txt"))]

    #[test]
    fn parse_head_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_parse_head(&body);
    }

    #[test]
    fn parse_head_agrees_with_serde_json(value in json_value(), pad in "[ \t\r\n]{0,3}") {
        check_parse_head(format!("{pad}{value}{pad}").as_bytes());
    }
}

#[test]
fn parse_head_corpus() {
    for (path, body) in corpus("parse_head") {
        eprintln!("{}", path.display());
        check_parse_head(&body);
    }
}

// ---- capture::sse -------------------------------------------------------

type Events = Vec<(Option<String>, String)>;

/// Decodes `bytes` split at `cuts`, also through a `ResponseCapture` of every
/// endpoint. Returns the events, or `None` when an event exceeded `limit`.
/// Checks on the way that the bytes reported as complete events decode, on
/// their own, to exactly the events dispatched so far.
fn decode_split(bytes: &[u8], cuts: &[usize], limit: usize) -> Option<Events> {
    let mut decoder = SseDecoder::new(limit);
    let mut events: Events = Vec::new();
    let mut start = 0;
    let mut failed = false;
    for end in cuts.iter().copied().chain([bytes.len()]) {
        let end = end.clamp(start, bytes.len());
        let mut collect =
            |e: SseEvent<'_>| events.push((e.event.map(str::to_owned), e.data.to_owned()));
        match decoder.feed(&bytes[start..end], &mut collect) {
            Ok(complete) => {
                if complete > 0 {
                    let complete_until = start + complete;
                    assert_eq!(
                        decode_whole(&bytes[..complete_until]),
                        events,
                        "the bytes up to {complete_until} hold exactly the events dispatched"
                    );
                }
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
        start = end;
    }
    for endpoint in [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Responses,
        Endpoint::Messages,
    ] {
        let mut capture = ResponseCapture::with_event_limit(endpoint, true, limit);
        let mut start = 0;
        for end in cuts.iter().copied().chain([bytes.len()]) {
            let end = end.clamp(start, bytes.len());
            if capture.observe(&bytes[start..end]).is_err() {
                break;
            }
            start = end;
        }
        capture.finish();
    }
    if failed {
        return None;
    }
    decoder.finish(&mut |e: SseEvent<'_>| {
        events.push((e.event.map(str::to_owned), e.data.to_owned()))
    });
    Some(events)
}

fn decode_whole(bytes: &[u8]) -> Events {
    let mut events = Vec::new();
    let mut decoder = SseDecoder::new(usize::MAX);
    let mut collect =
        |e: SseEvent<'_>| events.push((e.event.map(str::to_owned), e.data.to_owned()));
    decoder
        .feed(bytes, &mut collect)
        .expect("no limit to exceed");
    decoder.finish(&mut collect);
    events
}

/// SSE-like text: field names, separators, every line terminator, JSON-ish
/// data, multi-byte characters (split by the cuts) and stray bytes.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data:".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"id: 1".to_vec()),
        Just(b":".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(br#"{"type":"content_block_delta","delta":{"text":"hi"}}"#.to_vec()),
        Just(br#"{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#.to_vec()),
        Just("é😀".as_bytes().to_vec()),
        "[a-z ]{1,8}".prop_map(String::into_bytes),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(token, 0..48).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(runs(512, "tests/fuzz/regressions/sse.txt"))]

    #[test]
    fn sse_decoding_does_not_depend_on_how_the_bytes_are_split(
        bytes in sse_bytes(),
        mut cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.drain(..).map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = decode_whole(&bytes);
        prop_assert_eq!(decode_split(&bytes, &cuts, usize::MAX), Some(whole.clone()));
        let one_by_one: Vec<usize> = (1..bytes.len()).collect();
        prop_assert_eq!(decode_split(&bytes, &one_by_one, usize::MAX), Some(whole));
    }

    #[test]
    fn sse_limit_is_all_or_nothing(
        bytes in sse_bytes(),
        limit in 1usize..64,
        mut cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.drain(..).map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        // Within the limit: the same events as without one. Over it: an error,
        // whichever way the bytes were split.
        let limited = decode_split(&bytes, &cuts, limit);
        let in_one_piece = decode_split(&bytes, &[], limit);
        prop_assert_eq!(limited.is_some(), in_one_piece.is_some());
        if let Some(events) = limited {
            prop_assert_eq!(events, decode_whole(&bytes));
        }
    }

    #[test]
    fn sse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(bytes.len() + 1);
        decode_split(&bytes, &[cut], 128);
    }
}

#[test]
fn sse_corpus() {
    for (path, bytes) in corpus("sse") {
        eprintln!("{}", path.display());
        let whole = decode_whole(&bytes);
        let every_byte: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(decode_split(&bytes, &every_byte, usize::MAX), Some(whole));
    }
}

// ---- audit::spool -------------------------------------------------------

/// Writes `payloads` as one open segment; returns the spool and the segment.
fn write_segment(payloads: &[Vec<u8>]) -> (tempfile::TempDir, SpoolDirs, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dirs = SpoolDirs::create(root.path()).unwrap();
    let mut segment = Segment::create(&dirs).unwrap();
    for payload in payloads {
        segment.append(payload).unwrap();
    }
    segment.write_through().unwrap();
    let path = spool::segments_in(&dirs.open).unwrap().remove(0);
    (root, dirs, path)
}

fn read_frames(path: &Path) -> (Vec<Vec<u8>>, Frames) {
    let mut frames = Frames::open(path).unwrap();
    let mut read = Vec::new();
    while let Some(payload) = frames.next_payload().unwrap() {
        read.push(payload.to_vec());
    }
    (read, frames)
}

/// How many frames lie wholly before byte `offset` of a segment of `payloads`.
fn frames_before(payloads: &[Vec<u8>], offset: u64) -> usize {
    let mut end = 0u64;
    payloads
        .iter()
        .take_while(|p| {
            end += 8 + p.len() as u64;
            end <= offset
        })
        .count()
}

/// Reading and recovering a damaged segment: exactly the frames before the
/// damage come back, the rest is quarantined byte for byte.
fn check_damaged(payloads: &[Vec<u8>], damaged: &[u8], first_bad_frame: usize) {
    let (_root, dirs, path) = write_segment(&[]);
    std::fs::write(&path, damaged).unwrap();
    let (read, frames) = read_frames(&path);
    assert_eq!(read, payloads[..first_bad_frame]);
    let good_bytes: usize = payloads[..first_bad_frame]
        .iter()
        .map(|p| 8 + p.len())
        .sum();
    assert_eq!(frames.valid_len(), good_bytes as u64);
    let recovered = spool::recover_open_segments(&dirs).unwrap();
    assert_eq!(recovered, first_bad_frame as u64);
    let quarantined: Vec<Vec<u8>> = std::fs::read_dir(&dirs.quarantine)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let valid = frames.valid_len() as usize;
    if valid < damaged.len() {
        assert_eq!(quarantined, vec![damaged[valid..].to_vec()]);
    } else {
        assert!(quarantined.is_empty());
    }
    if first_bad_frame > 0 {
        let sealed = spool::segments_in(&dirs.sealed).unwrap();
        assert_eq!(read_frames(&sealed[0]).0, payloads[..first_bad_frame]);
    }
}

fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)
}

proptest! {
    #![proptest_config(runs(96, "tests/fuzz/regressions/spool.txt"))]

    #[test]
    fn spool_frames_written_read_back_equal(payloads in payloads()) {
        let (_root, _dirs, path) = write_segment(&payloads);
        let (read, frames) = read_frames(&path);
        prop_assert_eq!(read, payloads);
        prop_assert!(frames.is_intact());
    }

    #[test]
    fn spool_truncated_segments_keep_their_whole_frames(payloads in payloads(), cut in any::<prop::sample::Index>()) {
        let (_root, _dirs, path) = write_segment(&payloads);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(cut.index(bytes.len() + 1));
        let whole = frames_before(&payloads, bytes.len() as u64);
        check_damaged(&payloads, &bytes, whole);
    }

    #[test]
    fn spool_a_corrupt_byte_stops_reading_at_its_frame(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..8),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (_root, _dirs, path) = write_segment(&payloads);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = at.index(bytes.len());
        bytes[at] ^= flip;
        // CRC-32 detects every error within one byte, so the frame holding
        // `at` (and all after it) is rejected.
        check_damaged(&payloads, &bytes, frames_before(&payloads, at as u64));
    }

    #[test]
    fn spool_reader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let (_root, _dirs, path) = write_segment(&[]);
        std::fs::write(&path, &bytes).unwrap();
        let (read, frames) = read_frames(&path);
        prop_assert!(frames.valid_len() <= bytes.len() as u64);
        prop_assert!(read.len() <= bytes.len() / 8);
    }
}

#[test]
fn spool_corpus() {
    for (path, bytes) in corpus("spool") {
        eprintln!("{}", path.display());
        let (_root, dirs, segment) = write_segment(&[]);
        std::fs::write(&segment, &bytes).unwrap();
        let (read, frames) = read_frames(&segment);
        let recovered = spool::recover_open_segments(&dirs).unwrap();
        assert_eq!(recovered, read.len() as u64);
        assert!(frames.valid_len() <= bytes.len() as u64);
    }
}

// ---- config -------------------------------------------------------------

/// Loads `text` as a config file: never a panic, and every problem names a
/// line of the file (or none).
fn check_config(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    if let Err(error) = load_file(&path, &LoadOptions::default()) {
        let lines = text.lines().count().max(1);
        for problem in error.problems() {
            assert!(!problem.message.is_empty(), "{problem:?}");
            if let Some(line) = problem.line {
                assert!(
                    (1..=lines + 1).contains(&line),
                    "{problem:?} in {lines} lines"
                );
            }
        }
    }
}

const EXAMPLE: &str = include_str!("../../config/example.toml");

/// The example config with lines dropped, repeated or given another value.
fn mutated_example() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("\"\"".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1e400".to_owned()),
        Just("nan".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("\"*\"".to_owned()),
        Just("\"http://[::1\"".to_owned()),
        "\"[a-z*/:.]{0,10}\"",
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    let edit = (any::<prop::sample::Index>(), 0u8..3, value);
    prop::collection::vec(edit, 1..6).prop_map(|edits| {
        let mut lines: Vec<String> = EXAMPLE.lines().map(str::to_owned).collect();
        for (at, kind, value) in edits {
            let at = at.index(lines.len());
            match kind {
                0 => {
                    lines.remove(at);
                }
                1 => {
                    let line = lines[at].clone();
                    lines.insert(at, line);
                }
                _ => {
                    if let Some((key, _)) = lines[at].split_once('=') {
                        lines[at] = format!("{key}= {value}");
                    }
                }
            }
        }
        lines.join("\n")
    })
}

proptest! {
    #![proptest_config(runs(128, "tests/fuzz/regressions/config.txt"))]

    #[test]
    fn config_loader_never_panics_on_text(text in "(\\[[a-z.]{0,12}\\]\n|[a-z_]{1,12} = [-0-9a-z\"\\[\\]{},.]{0,12}\n){0,12}") {
        check_config(&text);
    }

    #[test]
    fn config_loader_never_panics_on_a_mutated_example(text in mutated_example()) {
        check_config(&text);
    }
}

#[test]
fn config_corpus() {
    for (path, bytes) in corpus("config") {
        eprintln!("{}", path.display());
        check_config(&String::from_utf8_lossy(&bytes));
    }
}
