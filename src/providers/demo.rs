//! The built-in demo provider: deterministic answers in the exact shapes of the
//! OpenAI and Anthropic APIs, JSON and SSE, with no network and no key.
//!
//! The same shapes back the simulated provider (the `simulator` module) used by the
//! tests and load tests, so there is one place that knows what a provider says.

use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use promptgate_core::dialect::Endpoint;

mod extraction;
mod judge;
mod refusal;

/// Reads a request body as the real API would: the request, or the error body
/// of the 400 the API would answer (not JSON, a required field missing, a
/// field of the wrong type, empty `messages`, an unknown role).
pub fn read_request(endpoint: Endpoint, body: &[u8]) -> Result<Value, Value> {
    let request: Value = serde_json::from_slice(body).map_err(|_| refusal::unparsable(endpoint))?;
    match refusal::refusal(endpoint, &request) {
        Some(error) => Err(error),
        None => Ok(request),
    }
}

/// The content of one answer, independent of its wire shape.
#[derive(Debug, Clone)]
pub struct DemoAnswer {
    pub id: String,
    pub model: String,
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub embedding: Vec<f64>,
}

const CREATED: u64 = 1_735_689_600; // fixed so answers are reproducible

/// Computes the answer to a request body. Same body, same answer.
pub fn answer(endpoint: Endpoint, request: &Value) -> DemoAnswer {
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("demo")
        .to_owned();
    let prompt = prompt_text(request);
    let system = system_text(request);
    let digest = Sha256::digest(request.to_string().as_bytes());
    let id = hex::encode(&digest[..12]);
    let said: String = last_user_text(request).chars().take(200).collect();
    let text = match (endpoint, system) {
        (Endpoint::Embeddings, _) => String::new(),
        (_, Some(system)) if let Some(verdict) = judge::reply(system, &last_user_text(request)) => {
            verdict
        }
        (_, Some(system))
            if let Some(fields) = extraction::extract(system, &last_user_text(request)) =>
        {
            fields
        }
        (_, Some(system)) => {
            let system: String = system.chars().take(80).collect();
            format!(
                "Hello from the promptgate demo provider ({model}), following \"{system}\". You said: \"{said}\""
            )
        }
        (_, None) => {
            format!("Hello from the promptgate demo provider ({model}). You said: \"{said}\"")
        }
    };
    let dimensions = request
        .get("dimensions")
        .and_then(Value::as_u64)
        .unwrap_or(8)
        .clamp(1, 4096) as usize;
    let embedding = (0..dimensions)
        .map(|i| f64::from(digest[i % digest.len()]) / 255.0 - 0.5)
        .collect();
    DemoAnswer {
        id,
        model,
        input_tokens: estimate_tokens(&prompt) + estimate_tokens(system.unwrap_or("")),
        output_tokens: estimate_tokens(&text),
        text,
        embedding,
    }
}

/// About four characters a token, as providers' rules of thumb say; at least 1.
fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn prompt_text(request: &Value) -> String {
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        return messages
            .iter()
            .filter_map(|m| m.get("content"))
            .map(content_text)
            .collect::<Vec<_>>()
            .join("\n");
    }
    for field in ["prompt", "input"] {
        if let Some(value) = request.get(field) {
            return match value {
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| content_text(i), str::to_owned))
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => content_text(other),
            };
        }
    }
    String::new()
}

pub(crate) fn last_user_text(request: &Value) -> String {
    if let Some(messages) = request.get("messages").and_then(Value::as_array)
        && let Some(last) = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    {
        return last.get("content").map(content_text).unwrap_or_default();
    }
    prompt_text(request)
}

/// Anthropic's top-level `system`, or the first OpenAI system/developer message.
pub(crate) fn system_text(request: &Value) -> Option<&str> {
    if let Some(system) = request.get("system") {
        return match system {
            Value::String(s) => Some(s.as_str()),
            Value::Array(parts) => parts
                .first()
                .and_then(|p| p.get("text"))
                .and_then(Value::as_str),
            _ => None,
        };
    }
    request
        .get("messages")?
        .as_array()?
        .iter()
        .find(|m| {
            matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            )
        })
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
}

/// The non-streamed response body.
pub fn json_body(endpoint: Endpoint, answer: &DemoAnswer) -> Value {
    let DemoAnswer {
        id,
        model,
        text,
        input_tokens,
        output_tokens,
        ..
    } = answer;
    match endpoint {
        Endpoint::ChatCompletions => json!({
            "id": format!("chatcmpl-{id}"),
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens
            }
        }),
        Endpoint::Completions => json!({
            "id": format!("cmpl-{id}"),
            "object": "text_completion",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens
            }
        }),
        Endpoint::Embeddings => json!({
            "object": "list",
            "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": answer.embedding}],
            "usage": {"prompt_tokens": input_tokens, "total_tokens": input_tokens}
        }),
        Endpoint::Responses => responses_object(answer, "completed"),
        Endpoint::Messages => json!({
            "id": format!("msg_{id}"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}
        }),
        Endpoint::CountTokens => json!({"input_tokens": input_tokens}),
        // Never forwarded: answered by the gateway itself.
        Endpoint::Models | Endpoint::Feedback => json!({"object": "list", "data": []}),
    }
}

fn responses_object(answer: &DemoAnswer, status: &str) -> Value {
    let DemoAnswer {
        id,
        model,
        text,
        input_tokens,
        output_tokens,
        ..
    } = answer;
    let done = status == "completed";
    json!({
        "id": format!("resp_{id}"),
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "model": model,
        "output": if done { json!([{
            "type": "message",
            "id": format!("msg_{id}"),
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]
        }]) } else { json!([]) },
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": if done { json!({
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}
        }) } else { Value::Null }
    })
}

/// Splits the text into the pieces a provider would stream: one word each,
/// with its following space.
pub fn text_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' {
            pieces.push(&text[start..=i]);
            start = i + 1;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

fn data_frame(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn event_frame(event: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {value}\n\n"))
}

/// The streamed response as complete SSE frames, in order. `request` decides
/// options such as OpenAI's `stream_options.include_usage`.
pub fn sse_frames(endpoint: Endpoint, answer: &DemoAnswer, request: &Value) -> Vec<Bytes> {
    let DemoAnswer {
        id,
        model,
        text,
        input_tokens,
        output_tokens,
        ..
    } = answer;
    let pieces = text_pieces(text);
    let mut frames = Vec::with_capacity(pieces.len() + 8);
    let usage = json!({
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens
    });
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match endpoint {
        Endpoint::ChatCompletions => {
            let chunk = |delta: Value, finish: Value| {
                json!({
                    "id": format!("chatcmpl-{id}"),
                    "object": "chat.completion.chunk",
                    "created": CREATED,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
                })
            };
            frames.push(data_frame(&chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )));
            for piece in pieces {
                frames.push(data_frame(&chunk(json!({"content": piece}), Value::Null)));
            }
            frames.push(data_frame(&chunk(json!({}), json!("stop"))));
            if include_usage {
                frames.push(data_frame(&json!({
                    "id": format!("chatcmpl-{id}"),
                    "object": "chat.completion.chunk",
                    "created": CREATED,
                    "model": model,
                    "choices": [],
                    "usage": usage
                })));
            }
            frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        Endpoint::Completions => {
            for piece in pieces {
                frames.push(data_frame(&json!({
                    "id": format!("cmpl-{id}"),
                    "object": "text_completion",
                    "created": CREATED,
                    "model": model,
                    "choices": [{"index": 0, "text": piece, "logprobs": null, "finish_reason": null}]
                })));
            }
            if include_usage {
                frames.push(data_frame(&json!({
                    "id": format!("cmpl-{id}"), "object": "text_completion", "created": CREATED,
                    "model": model, "choices": [], "usage": usage
                })));
            }
            frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        Endpoint::Responses => {
            // The full event sequence: the SDK's stream helper checks that every
            // delta belongs to an announced output item and content part.
            let mut seq = 0u64;
            let mut event = |name: &str, mut body: Value| {
                seq += 1;
                body["type"] = json!(name);
                body["sequence_number"] = json!(seq);
                event_frame(name, &body)
            };
            let item_id = format!("msg_{id}");
            let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
            let item = |status: &str, content: Value| json!({"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content});
            let at = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
            let with = |extra: Value| {
                let mut value = at.clone();
                for (k, v) in extra.as_object().into_iter().flatten() {
                    value[k] = v.clone();
                }
                value
            };
            frames.push(event(
                "response.created",
                json!({"response": responses_object(answer, "in_progress")}),
            ));
            frames.push(event(
                "response.in_progress",
                json!({"response": responses_object(answer, "in_progress")}),
            ));
            frames.push(event(
                "response.output_item.added",
                json!({"output_index": 0, "item": item("in_progress", json!([]))}),
            ));
            frames.push(event(
                "response.content_part.added",
                with(json!({"part": part("")})),
            ));
            for piece in pieces {
                frames.push(event(
                    "response.output_text.delta",
                    with(json!({"delta": piece, "logprobs": []})),
                ));
            }
            frames.push(event(
                "response.output_text.done",
                with(json!({"text": text, "logprobs": []})),
            ));
            frames.push(event(
                "response.content_part.done",
                with(json!({"part": part(text)})),
            ));
            frames.push(event(
                "response.output_item.done",
                json!({"output_index": 0, "item": item("completed", json!([part(text)]))}),
            ));
            frames.push(event(
                "response.completed",
                json!({"response": responses_object(answer, "completed")}),
            ));
        }
        Endpoint::Messages => {
            frames.push(event_frame(
                "message_start",
                &json!({
                    "type": "message_start",
                    "message": {
                        "id": format!("msg_{id}"), "type": "message", "role": "assistant",
                        "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1}
                    }
                }),
            ));
            frames.push(event_frame(
                "content_block_start",
                &json!({
                    "type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}
                }),
            ));
            frames.push(event_frame("ping", &json!({"type": "ping"})));
            for piece in pieces {
                frames.push(event_frame(
                    "content_block_delta",
                    &json!({
                        "type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": piece}
                    }),
                ));
            }
            frames.push(event_frame(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            frames.push(event_frame(
                "message_delta",
                &json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": output_tokens}
                }),
            ));
            frames.push(event_frame(
                "message_stop",
                &json!({"type": "message_stop"}),
            ));
        }
        // Not streamable: a single JSON document.
        Endpoint::Embeddings | Endpoint::CountTokens | Endpoint::Models | Endpoint::Feedback => {
            frames.push(Bytes::from(json_body(endpoint, answer).to_string()));
        }
    }
    frames
}

/// Whether an endpoint answers with SSE when asked to stream.
pub fn streams(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::Responses
            | Endpoint::Messages
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::ResponseCapture;

    fn chat_request() -> Value {
        json!({"model": "demo-chat", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi there"}
        ], "stream": true, "stream_options": {"include_usage": true}})
    }

    #[test]
    fn answers_are_deterministic_and_echo_the_user() {
        let a = answer(Endpoint::ChatCompletions, &chat_request());
        let b = answer(Endpoint::ChatCompletions, &chat_request());
        assert_eq!(a.text, b.text);
        assert_eq!(a.id, b.id);
        assert!(a.text.contains("You said: \"Hi there\""), "{}", a.text);
        assert!(a.text.contains("Be brief."), "{}", a.text);
    }

    #[test]
    fn streamed_and_json_forms_carry_the_same_text_and_usage() {
        for (endpoint, request) in [
            (Endpoint::ChatCompletions, chat_request()),
            (
                Endpoint::Completions,
                json!({"model": "m", "prompt": "say hi", "stream_options": {"include_usage": true}}),
            ),
            (
                Endpoint::Responses,
                json!({"model": "m", "input": "say hi"}),
            ),
            (
                Endpoint::Messages,
                json!({"model": "claude", "system": "Be brief.", "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}),
            ),
        ] {
            let answer = answer(endpoint, &request);
            let mut streamed = ResponseCapture::new(endpoint, true);
            for frame in sse_frames(endpoint, &answer, &request) {
                streamed.observe(&frame).expect("demo events are small");
            }
            let streamed = streamed.finish();
            let mut whole = ResponseCapture::new(endpoint, false);
            whole
                .observe(json_body(endpoint, &answer).to_string().as_bytes())
                .expect("a JSON body is not an event stream");
            let whole = whole.finish();
            assert_eq!(streamed.text, answer.text, "{endpoint:?}");
            assert_eq!(whole.text, answer.text, "{endpoint:?}");
            assert_eq!(
                streamed.usage.output_tokens,
                Some(answer.output_tokens),
                "{endpoint:?}"
            );
            assert_eq!(whole.usage, streamed.usage, "{endpoint:?}");
        }
    }

    #[test]
    fn pieces_rebuild_the_text() {
        let text = "a bb  ccc é";
        assert_eq!(text_pieces(text).concat(), text);
    }
}
