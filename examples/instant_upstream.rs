//! The instant upstream: a provider that is never the bottleneck of a load
//! test, so the figures measure the proxy in front of it.
//!
//! Multi-threaded (tokio, `--threads`), and every answer is computed once at
//! start-up: a request costs reading its body, one byte search for
//! `"stream": true`, and writing bytes that already exist. It answers
//! `POST /v1/chat/completions` (OpenAI) and `POST /v1/messages` (Anthropic) in
//! the demo provider's shapes (`promptgate::providers::demo`, the same as the
//! simulator's), JSON or SSE. A stream is `--chunks` content events plus the
//! frames around them (role, finish, usage and `[DONE]` for OpenAI; the
//! message and block events for Anthropic), one HTTP chunk each, all ready at
//! once. No faults, no pacing, no record of requests: the load tests keep the
//! simulator (`promptgate-sim`) for those.
//!
//! It prints `chat stream events: N` (the SSE events of one chat stream, so
//! CPU per streamed chunk can be computed) and then `listening on ADDR`.
//!
//! `cargo run --release --example instant_upstream -- --threads 2 --chunks 20`

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use clap::Parser;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use promptgate::providers::demo::{self, DemoAnswer};
use promptgate_core::dialect::Endpoint;
use serde_json::json;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    about = "An upstream that answers OpenAI and Anthropic requests instantly, for load tests"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Content events (one word each) in a streamed answer.
    #[arg(long, default_value_t = 20)]
    chunks: usize,
}

/// One endpoint's answers, as the bytes that go on the wire.
struct Answer {
    json: Bytes,
    sse_frames: Arc<[Bytes]>,
}

/// Everything the server says, computed before the first request.
struct Answers {
    chat: Answer,
    messages: Answer,
    not_found: Bytes,
}

impl Answers {
    fn new(chunks: usize) -> Answers {
        const WORDS: [&str; 9] = [
            "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog",
        ];
        let text = (0..chunks)
            .map(|i| WORDS[i % WORDS.len()])
            .collect::<Vec<_>>()
            .join(" ");
        let answer = DemoAnswer {
            id: "instant".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            input_tokens: 12,
            output_tokens: chunks as u64,
            text,
            embedding: Vec::new(),
        };
        // Usage in every stream, as callers that count tokens ask for it.
        let stream_request = json!({"stream": true, "stream_options": {"include_usage": true}});
        let answer_for = |endpoint| Answer {
            json: Bytes::from(demo::json_body(endpoint, &answer).to_string()),
            sse_frames: demo::sse_frames(endpoint, &answer, &stream_request).into(),
        };
        Answers {
            chat: answer_for(Endpoint::ChatCompletions),
            messages: answer_for(Endpoint::Messages),
            not_found: Bytes::from(
                json!({"error": {"message": "instant upstream: only POST /v1/chat/completions and /v1/messages", "type": "invalid_request_error"}})
                    .to_string(),
            ),
        }
    }
}

/// A precomputed SSE answer sent frame by frame (one HTTP chunk each, as a
/// provider sends them), sharing the frames instead of copying them.
struct SseBody {
    frames: Arc<[Bytes]>,
    next: usize,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(frame) = self.frames.get(self.next).cloned() else {
            return Poll::Ready(None);
        };
        self.next += 1;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.frames.len()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.frames.get(self.next..).unwrap_or_default();
        SizeHint::with_exact(rest.iter().map(|frame| frame.len() as u64).sum())
    }
}

type AnswerBody = Either<Full<Bytes>, SseBody>;

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    support::run_until_interrupted(args.threads, serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let answers = Arc::new(Answers::new(args.chunks));
    let listener = TcpListener::bind(args.listen).await?;
    println!("chat stream events: {}", answers.chat.sse_frames.len());
    // The line scripts wait for.
    println!("listening on {}", listener.local_addr()?);
    serve_on(listener, answers).await
}

async fn serve_on(listener: TcpListener, answers: Arc<Answers>) -> std::io::Result<()> {
    support::accept_each(listener, |stream| {
        let answers = answers.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(answers.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    })
    .await
}

async fn respond(
    answers: Arc<Answers>,
    request: Request<Incoming>,
) -> Result<Response<AnswerBody>, hyper::Error> {
    let answer = match Endpoint::from_request(request.method(), request.uri().path()) {
        Ok(Endpoint::ChatCompletions) => &answers.chat,
        Ok(Endpoint::Messages) => &answers.messages,
        _ => {
            return Ok(full_response(
                StatusCode::NOT_FOUND,
                "application/json",
                answers.not_found.clone(),
            ));
        }
    };
    let body = request.into_body().collect().await?.to_bytes();
    if !asks_to_stream(&body) {
        return Ok(full_response(
            StatusCode::OK,
            "application/json",
            answer.json.clone(),
        ));
    }
    let mut response = Response::new(Either::Right(SseBody {
        frames: answer.sse_frames.clone(),
        next: 0,
    }));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn full_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<AnswerBody> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Whether a request body has the member `"stream": true`, found by a byte
/// search instead of a JSON parse so the upstream spends next to nothing per
/// request. It does not know about nesting, so a `"stream": true` inside a
/// message's text would count too: the load tests' bodies have none.
fn asks_to_stream(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"stream\"";
    let mut rest = body;
    while let Some(at) = rest.windows(KEY.len()).position(|window| window == KEY) {
        rest = &rest[at + KEY.len()..];
        let after_key = rest.trim_ascii_start();
        if let Some(value) = after_key.strip_prefix(b":") {
            return value.trim_ascii_start().starts_with(b"true");
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use serde_json::Value;

    #[test]
    fn finds_stream_true_however_it_is_spaced() {
        assert!(asks_to_stream(br#"{"model":"m","stream":true}"#));
        assert!(asks_to_stream(br#"{"stream" :  true, "model":"m"}"#));
        assert!(asks_to_stream(b"{\n  \"stream\":\n\ttrue\n}"));
        assert!(!asks_to_stream(br#"{"model":"m","stream":false}"#));
        assert!(!asks_to_stream(br#"{"model":"m"}"#));
        // `stream_options` is another member; a string value "stream" is no key.
        assert!(!asks_to_stream(
            br#"{"stream_options":{"include_usage":true}}"#
        ));
        assert!(!asks_to_stream(br#"{"model":"stream","n":1}"#));
        assert!(asks_to_stream(br#"{"model":"stream","stream":true}"#));
        assert!(!asks_to_stream(b""));
    }

    /// The server on port 0 and a client to it.
    async fn start(chunks: usize) -> (SocketAddr, Client<HttpConnector, Full<Bytes>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_on(listener, Arc::new(Answers::new(chunks))));
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        (addr, client)
    }

    async fn post(
        client: &Client<HttpConnector, Full<Bytes>>,
        url: String,
        body: &'static str,
    ) -> (StatusCode, String, String) {
        let request = Request::post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    fn sse_data(body: &str) -> Vec<&str> {
        body.split("\n\n")
            .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_openai_json_and_streams_with_the_chunks_asked_for() {
        let (addr, client) = start(5).await;
        let url = format!("http://{addr}/v1/chat/completions");

        let (status, content_type, body) =
            post(&client, url.clone(), r#"{"model":"m","messages":[]}"#).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::OK, "application/json")
        );
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["object"], "chat.completion");
        assert_eq!(
            answer["choices"][0]["message"]["content"],
            "The quick brown fox jumps"
        );
        assert_eq!(answer["usage"]["completion_tokens"], 5);

        let (status, content_type, body) =
            post(&client, url, r#"{"model":"m","stream":true,"messages":[]}"#).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::OK, "text/event-stream")
        );
        let data = sse_data(&body);
        assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "The quick brown fox jumps");
        // Role, 5 content events, finish, usage.
        assert_eq!(chunks.len(), 8, "{body}");
        assert_eq!(chunks[7]["usage"]["completion_tokens"], 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_anthropic_messages_and_refuses_other_paths() {
        let (addr, client) = start(3).await;
        let url = format!("http://{addr}/v1/messages");

        let (status, _, body) = post(&client, url.clone(), r#"{"model":"m"}"#).await;
        assert_eq!(status, StatusCode::OK);
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["type"], "message");
        assert_eq!(answer["content"][0]["text"], "The quick brown");

        let (_, content_type, body) = post(&client, url, r#"{"model":"m","stream":true}"#).await;
        assert_eq!(content_type, "text/event-stream");
        let events: Vec<&str> = body
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("event: "))
            .map(|event| event.lines().next().unwrap_or_default())
            .collect();
        assert_eq!(events.first(), Some(&"message_start"), "{body}");
        assert_eq!(events.last(), Some(&"message_stop"), "{body}");
        assert_eq!(
            events
                .iter()
                .filter(|e| **e == "content_block_delta")
                .count(),
            3
        );

        let (status, _, body) = post(
            &client,
            format!("http://{addr}/v1/embeddings"),
            r#"{"model":"m"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
}
