//! Input that can hurt the gateway: odd `retry-after` values, a provider
//! streaming an endless line, running out of file descriptors, and a
//! connection dropped after the request was sent.

use crate::support;

use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use promptgate::exchange::Outcome;
use promptgate::simulator::{SimConfig, Simulator};
use support::*;

/// Every test config's start: no client keys, no file watcher.
const OPEN: &str = "[auth]\nopen = true\n[server]\nconfig_poll_ms = 0";

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const MESSAGES_STREAM: &str = r#"{"model":"claude-x","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

async fn simulator() -> Simulator {
    Simulator::start(SimConfig {
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

async fn post_with(client: &TestClient, url: &str, body: &str, fault: &str) -> Reply {
    send(
        client,
        Method::POST,
        url,
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
            ("x-sim-fault", fault),
        ],
        body.to_owned(),
    )
    .await
}

#[tokio::test]
async fn retry_after_values_no_duration_can_hold_are_answered_without_a_panic() {
    let sim = simulator().await;
    let gw = TestGateway::start(&standard_config(&sim)).await;
    let client = client();
    // (fault, attempts): a wait longer than any policy moves on at once (one
    // attempt, no retry); a value that is no wait is ignored (1 + 2 retries).
    let cases = [
        ("status=429;retry-after-ms=1e300", 1),
        ("status=429;retry-after-ms=inf", 1),
        ("status=503;retry-after=99999999999", 1),
        ("status=503;retry-after=18446744073709551615", 1),
        ("status=429;retry-after-ms=NaN", 3),
        ("status=429;retry-after-ms=-5", 3),
        ("status=503;retry-after=-1", 3),
    ];
    for (fault, attempts) in cases {
        let before = sim.received().len();
        let reply = post_with(&client, &gw.url("/v1/chat/completions"), CHAT, fault).await;
        assert_eq!(reply.error, None, "{fault}: the response broke");
        let status = fault[7..10].parse::<u16>().unwrap();
        assert_eq!(reply.status.as_u16(), status, "{fault}: {}", reply.text());
        assert_eq!(
            sim.received().len() - before,
            attempts,
            "{fault}: attempts made"
        );
    }
    // And the gateway still serves.
    let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_retry_after_beyond_the_total_timeout_moves_on_at_once() {
    let sim = simulator().await;
    let config = format!(
        r#"
{OPEN}
[providers.short]
kind = "openai"
base_url = "{openai}"
api_key_file = "{{dir}}/provider.key"
max_retries = 2
retry_max_ms = 60000
first_byte_timeout_ms = 1000
total_timeout_ms = 1500
[[routes]]
models = ["gpt-*"]
providers = ["short"]
"#,
        openai = sim.openai_base_url(),
    );
    let gw = TestGateway::start(&config).await;
    let started = Instant::now();
    let reply = post_with(
        &client(),
        &gw.url("/v1/chat/completions"),
        CHAT,
        "status=429;retry-after=30",
    )
    .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sim.received().len(), 1, "no retry after a 30 s wait");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// A provider that answers every request with a 200 event stream: one
/// well-formed event, then `JUNK_BYTES` without a newline; under the path
/// prefix `/split`, a chat stream whose first event is split across two
/// writes 200 ms apart.
struct HostileProvider {
    addr: SocketAddr,
    /// Junk bytes the gateway accepted before it let go of the stream.
    junk_sent: Arc<AtomicU64>,
    /// Streams that ended before their end because the gateway closed them.
    abandoned: Arc<AtomicU64>,
}

const JUNK_PIECE: usize = 64 << 10;
const JUNK_BYTES: u64 = 64 << 20;

impl HostileProvider {
    async fn start() -> HostileProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let junk_sent = Arc::new(AtomicU64::new(0));
        let abandoned = Arc::new(AtomicU64::new(0));
        let (sent, gone) = (junk_sent.clone(), abandoned.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (sent, gone) = (sent.clone(), gone.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<_>| {
                        let (sent, gone) = (sent.clone(), gone.clone());
                        async move {
                            let path = request.uri().path();
                            Ok::<_, Infallible>(if path.starts_with("/split/") {
                                split_answer()
                            } else {
                                hostile_answer(path.ends_with("/messages"), sent, gone)
                            })
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HostileProvider {
            addr,
            junk_sent,
            abandoned,
        }
    }
}

/// Reports on drop whether it was dropped before its end: hyper drops the
/// body when the connection goes away.
struct Junk {
    remaining: u64,
    sent: Arc<AtomicU64>,
    gone: Arc<AtomicU64>,
}

impl Drop for Junk {
    fn drop(&mut self) {
        if self.remaining > 0 {
            self.gone.fetch_add(1, Ordering::Release);
        }
    }
}

type AnswerBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn event_stream(body: AnswerBody) -> http::Response<AnswerBody> {
    let mut response = http::Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

const SPLIT_FIRST: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hel";
const SPLIT_REST: &[u8] = b"lo\"}}]}\n\ndata: [DONE]\n\n";

fn split_answer() -> http::Response<AnswerBody> {
    let pieces = futures_util::stream::unfold(0, |sent| async move {
        let piece = match sent {
            0 => SPLIT_FIRST,
            1 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                SPLIT_REST
            }
            _ => return None,
        };
        Some((Ok(Frame::data(Bytes::from_static(piece))), sent + 1))
    });
    event_stream(StreamBody::new(pieces).boxed())
}

fn hostile_answer(
    anthropic: bool,
    sent: Arc<AtomicU64>,
    gone: Arc<AtomicU64>,
) -> http::Response<AnswerBody> {
    let first: &'static [u8] = if anthropic {
        b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":3}}}\n\n"
    } else {
        b"data: {\"choices\":[{\"delta\":{\"content\":\"fine so far\"}}]}\n\n"
    };
    let junk = Junk {
        remaining: JUNK_BYTES,
        sent,
        gone,
    };
    let start = futures_util::stream::once(async move { Ok(Frame::data(Bytes::from(first))) });
    let rest = futures_util::stream::unfold(junk, |mut junk| async move {
        if junk.remaining == 0 {
            return None;
        }
        let piece = JUNK_PIECE.min(junk.remaining as usize);
        junk.remaining -= piece as u64;
        junk.sent.fetch_add(piece as u64, Ordering::Relaxed);
        let mut line = vec![b'x'; piece];
        line[..6].copy_from_slice(b"data: ");
        Some((Ok(Frame::data(Bytes::from(line))), junk))
    });
    event_stream(StreamBody::new(futures_util::StreamExt::chain(start, rest)).boxed())
}

#[tokio::test]
async fn an_endless_sse_line_is_cut_with_an_error_event_in_each_dialect_and_recorded() {
    let provider = HostileProvider::start().await;
    let config = format!(
        r#"
{OPEN}
[providers.hostile_openai]
kind = "openai"
base_url = "http://{addr}/v1"
max_retries = 0
[providers.hostile_anthropic]
kind = "anthropic"
base_url = "http://{addr}"
max_retries = 0
max_sse_event_bytes = 1048576
[[routes]]
models = ["gpt-*"]
providers = ["hostile_openai"]
[[routes]]
models = ["claude-*"]
providers = ["hostile_anthropic"]
[audit]
sink = "local"
local_dir = "{{dir}}/audit"
spool_dir = "{{dir}}/spool"
flush_interval_ms = 100
"#,
        addr = provider.addr
    );
    let gw = TestGateway::start(&config).await;
    let client = client();

    let openai = post(&client, &gw.url("/v1/chat/completions"), CHAT_STREAM).await;
    assert_eq!(openai.status, StatusCode::OK);
    assert_eq!(openai.error, None, "the stream must end cleanly");
    let text = openai.text();
    // The good event, then the error chunk the OpenAI SDKs raise on, and no junk.
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 2, "{}", &text[..text.len().min(400)]);
    assert!(events[0].contains("fine so far"));
    let error: serde_json::Value =
        serde_json::from_str(events[1].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "upstream_event_too_large");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4194304 bytes"),
        "{error}"
    );

    let anthropic = post(&client, &gw.url("/v1/messages"), MESSAGES_STREAM).await;
    assert_eq!(anthropic.status, StatusCode::OK);
    assert_eq!(anthropic.error, None);
    let text = anthropic.text();
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 2, "{}", &text[..text.len().min(400)]);
    assert!(events[0].starts_with("event: message_start\n"));
    let error = events[1]
        .strip_prefix("event: error\ndata: ")
        .expect("an Anthropic error event");
    let error: serde_json::Value = serde_json::from_str(error).unwrap();
    assert_eq!(error["type"], "error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1048576 bytes")
    );

    // The gateway let go of both streams long before their 64 MiB: what it
    // read is bounded by the limit plus what the sockets buffer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while provider.abandoned.load(Ordering::Acquire) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        provider.abandoned.load(Ordering::Acquire),
        2,
        "the gateway kept reading an endless line"
    );
    let sent = provider.junk_sent.load(Ordering::Relaxed);
    eprintln!("{} KiB of junk read for the two streams", sent >> 10);
    assert!(
        sent < 40 << 20,
        "{sent} junk bytes were read for two streams"
    );

    for exchange in gw.sink.wait_for(2).await {
        let Outcome::UpstreamBroken(reason) = &exchange.outcome else {
            panic!("{:?}", exchange.outcome);
        };
        assert!(reason.contains("max_sse_event_bytes"), "{reason}");
    }
    let records = wait_for_audit(&gw.dir.path().join("audit"), |r| r.len() >= 2).await;
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record["outcome"], "upstream_broken", "{record}");
        assert_eq!(record["error_class"], "upstream_broken", "{record}");
        assert!(
            record["error_message"]
                .as_str()
                .is_some_and(|m| m.contains("server-sent event longer than")),
            "{record}"
        );
    }
}

#[tokio::test]
async fn an_event_split_across_reads_reaches_the_caller_whole_and_unchanged() {
    let provider = HostileProvider::start().await;
    let config = format!(
        r#"
{OPEN}
[providers.split]
kind = "openai"
base_url = "http://{addr}/split/v1"
[[routes]]
models = ["gpt-*"]
providers = ["split"]
"#,
        addr = provider.addr
    );
    let gw = TestGateway::start(&config).await;
    let reply = post(&client(), &gw.url("/v1/chat/completions"), CHAT_STREAM).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, [SPLIT_FIRST, SPLIT_REST].concat());
    // The caller never holds half an event: the first half waited in the
    // gateway until the rest came.
    for (_, chunk) in &reply.chunks {
        assert!(
            chunk.ends_with(b"\n\n"),
            "a piece ends mid-event: {chunk:?}"
        );
    }
    assert!(reply.chunks[0].0 - reply.sent_at >= Duration::from_millis(190));
    let exchange = &gw.sink.wait_for(1).await[0];
    assert_eq!(exchange.outcome, Outcome::Completed);
    assert_eq!(exchange.captured.text, "hello");
}

fn dropped_after_send_config(sim: &Simulator, retry: bool) -> String {
    format!(
        r#"
{OPEN}
[providers.first]
kind = "openai"
base_url = "{openai}"
api_key_file = "{{dir}}/provider.key"
max_retries = 2
retry_base_ms = 5
retry_on_dropped_after_send = {retry}
[providers.second]
kind = "openai"
base_url = "{openai}"
api_key_file = "{{dir}}/provider.key"
max_retries = 0
[[routes]]
models = ["gpt-*"]
providers = ["first", "second"]
"#,
        openai = sim.openai_base_url(),
    )
}

#[tokio::test]
async fn a_connection_dropped_after_send_is_retried_only_when_configured() {
    for (retry, attempts, status) in [
        // 3 tries on the first provider, 1 on the fallback, all closed.
        (true, 4, StatusCode::BAD_GATEWAY),
        // One try: neither a retry nor the fallback could be billed again.
        (false, 1, StatusCode::BAD_GATEWAY),
    ] {
        let sim = simulator().await;
        let gw = TestGateway::start(&dropped_after_send_config(&sim, retry)).await;
        let client = client();
        let reply = post_with(&client, &gw.url("/v1/chat/completions"), CHAT, "close").await;
        assert_eq!(reply.status, status, "retry = {retry}: {}", reply.text());
        assert_eq!(
            reply.json()["error"]["code"],
            "provider_unreachable",
            "retry = {retry}"
        );
        assert_eq!(sim.received().len(), attempts, "retry = {retry}");

        // A stream broken after its head is never retried, whatever the setting.
        let reply = post_with(
            &client,
            &gw.url("/v1/chat/completions"),
            CHAT_STREAM,
            "drop-after=2",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            reply.error.is_some(),
            "retry = {retry}: the break reaches the caller"
        );
        assert_eq!(sim.received().len(), attempts + 1, "retry = {retry}");
    }
}

#[tokio::test]
async fn a_connect_error_is_retried_even_when_drops_after_send_are_not() {
    let config = &format!(
        r#"
{OPEN}
[providers.dead]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
max_retries = 1
retry_base_ms = 5
connect_timeout_ms = 500
retry_on_dropped_after_send = false
[providers.demo]
kind = "demo"
[[routes]]
models = ["gpt-*"]
providers = ["dead", "demo"]
"#
    );
    let gw = TestGateway::start(config).await;
    let reply = post(&client(), &gw.url("/v1/chat/completions"), CHAT).await;
    // Nothing was sent to the dead provider: the fallback answers.
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(gw.sink.wait_for(1).await[0].start.attempts, 3);
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; the fields after it do not.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of the line; the third and later after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn out_of_file_descriptors_the_listeners_back_off_and_serve_again() {
    let config = &format!(
        r#"
{OPEN}
[providers.demo]
kind = "demo"
[[routes]]
models = ["*"]
providers = ["demo"]
"#
    );
    let gateway = support::process::spawn(config, "").expect("the gateway starts");
    let pid = gateway.child.id();
    assert_eq!(get_status(&gateway.admin_addr, "/healthz"), Some(200));
    let limit = open_fds(pid) + 8;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success());

    // Idle connections hold a descriptor each until the gateway runs out;
    // the rest wait in the backlog, as does one for the admin listener.
    let mut held: Vec<TcpStream> = (0..24)
        .map(|_| TcpStream::connect(&gateway.addr).unwrap())
        .collect();
    wait_until(
        "the gateway to run out of descriptors",
        Duration::from_secs(10),
        || open_fds(pid) >= limit,
    );
    held.push(TcpStream::connect(&gateway.admin_addr).unwrap());
    wait_until(
        "both listeners to log a failed accept",
        Duration::from_secs(10),
        || {
            let log = gateway.log();
            log.contains("accept failed") && log.contains("\"admin\"") && log.contains("\"client\"")
        },
    );

    // A listener retrying at once would use a core; backing off uses next to nothing.
    let window = Duration::from_secs(2);
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    let used = cpu_ticks(pid) - before;
    eprintln!("{used} ticks of CPU in {window:?} while out of descriptors");
    let ticks_per_second = 100; // USER_HZ on Linux
    assert!(
        used < ticks_per_second * 2 / 5,
        "{used} ticks of CPU in {window:?} while out of descriptors"
    );
    let failures_logged = gateway.log().matches("accept failed").count();
    assert!(
        failures_logged <= 2,
        "one line per listener and burst, got {failures_logged}:\n{}",
        gateway.log()
    );

    drop(held);
    wait_until(
        "the client listener to serve again",
        Duration::from_secs(10),
        || get_status(&gateway.addr, "/v1/models") == Some(200),
    );
    wait_until(
        "the admin listener to serve again",
        Duration::from_secs(10),
        || get_status(&gateway.admin_addr, "/healthz") == Some(200),
    );
    assert!(gateway.log().contains("accepting connections again"));
    gateway.stop();
}
