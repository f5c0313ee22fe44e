//! Pulls the text and token usage out of a provider response as it streams by,
//! for the audit log. Knows the OpenAI (chat, completions, embeddings, responses)
//! and Anthropic (messages) shapes, streamed or not.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use promptgate_core::dialect::Endpoint;
use promptgate_core::sse::{DEFAULT_MAX_EVENT_BYTES, EventTooLarge, SseDecoder, SseEvent};

use crate::exchange::{Captured, Usage};

/// Upper bound on the response bytes kept for the audit log; the caller still
/// receives every byte.
pub const MAX_CAPTURED_BYTES: usize = 4 * 1024 * 1024;

/// A provider's model name is kept up to this many bytes.
pub const MAX_MODEL_BYTES: usize = 256;

/// Keeps the first model a response names; later chunks repeat it.
fn note_model(captured: &mut Captured, model: Option<&str>) {
    if captured.model.is_some() {
        return;
    }
    if let Some(model) = model.filter(|m| !m.is_empty()) {
        let mut end = model.len().min(MAX_MODEL_BYTES);
        while !model.is_char_boundary(end) {
            end -= 1;
        }
        captured.model = Some(model[..end].to_owned());
    }
}

pub struct ResponseCapture {
    endpoint: Endpoint,
    sse: Option<SseDecoder>,
    captured: Captured,
    text_bytes: usize,
    /// The stream's last event (`[DONE]`, `message_stop`, a responses
    /// API's final `response.*`) has been seen.
    final_event_seen: bool,
    /// The answer's text and body are kept (for the audit log); without,
    /// only what metrics, limits and spans read: usage, model, stream errors.
    keeps_content: bool,
}

impl ResponseCapture {
    /// Whether the stream's last event has gone by: what follows is its end.
    pub fn saw_final_event(&self) -> bool {
        self.final_event_seen
    }

    /// Whether the response is read as server-sent events.
    pub fn is_event_stream(&self) -> bool {
        self.sse.is_some()
    }

    /// `event_stream`: the response's content type is `text/event-stream`.
    pub fn new(endpoint: Endpoint, event_stream: bool) -> ResponseCapture {
        ResponseCapture::with_event_limit(endpoint, event_stream, DEFAULT_MAX_EVENT_BYTES)
    }

    /// Like `new`, refusing server-sent events longer than `max_event_bytes`.
    pub fn with_event_limit(
        endpoint: Endpoint,
        event_stream: bool,
        max_event_bytes: usize,
    ) -> ResponseCapture {
        ResponseCapture {
            endpoint,
            sse: event_stream.then(|| SseDecoder::new(max_event_bytes)),
            captured: Captured::default(),
            text_bytes: 0,
            final_event_seen: false,
            keeps_content: true,
        }
    }

    /// Reads only the usage, the model and a stream's error, for sinks that
    /// read no answers (`ExchangeSink::reads_answers`): the answer's text is
    /// not assembled, its body is not kept, and the parts of each event that
    /// carry text are skipped unparsed.
    pub fn usage_only(mut self) -> ResponseCapture {
        self.keeps_content = false;
        self
    }

    /// Takes the next piece of the body. Returns how many of its bytes can
    /// go on to the caller now: all of them, except in an event stream, where
    /// an unfinished event's bytes wait for the rest of it (the caller could
    /// not use them earlier anyway). Fails once an event exceeds the limit.
    pub fn observe(&mut self, chunk: &[u8]) -> Result<usize, EventTooLarge> {
        match &mut self.sse {
            Some(decoder) => {
                let endpoint = self.endpoint;
                let captured = &mut self.captured;
                let mut text = self.keeps_content.then_some(&mut self.text_bytes);
                let final_event_seen = &mut self.final_event_seen;
                decoder.feed(chunk, &mut |event| {
                    *final_event_seen |= is_final_event(&event);
                    apply_event(endpoint, event, captured, text.as_deref_mut())
                })
            }
            None => {
                let room = MAX_CAPTURED_BYTES.saturating_sub(self.captured.body.len());
                if chunk.len() > room {
                    self.captured.truncated = true;
                }
                self.captured
                    .body
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
                Ok(chunk.len())
            }
        }
    }

    pub fn finish(mut self) -> Captured {
        match self.sse.take() {
            Some(mut decoder) => {
                let endpoint = self.endpoint;
                let captured = &mut self.captured;
                let mut text = self.keeps_content.then_some(&mut self.text_bytes);
                decoder.finish(&mut |event| {
                    apply_event(endpoint, event, captured, text.as_deref_mut())
                });
            }
            None if !self.keeps_content => {
                let body = std::mem::take(&mut self.captured.body);
                if let Ok(fields) = serde_json::from_slice::<UsageOnly<'_>>(&body) {
                    let model = fields
                        .model
                        .and_then(|model| serde_json::from_str::<Text<'_>>(model.get()).ok());
                    note_model(&mut self.captured, model.as_ref().map(|m| &*m.0));
                    if let Some(usage) = fields
                        .usage
                        .and_then(|usage| serde_json::from_str::<TokenUsage>(usage.get()).ok())
                    {
                        usage.merge_into(&mut self.captured.usage);
                    }
                }
            }
            None if !self.captured.truncated => {
                let body = std::mem::take(&mut self.captured.body);
                match serde_json::from_slice::<TypedBody<'_>>(&body) {
                    Ok(typed) => read_typed_body(self.endpoint, &typed, &mut self.captured),
                    // An unusual shape somewhere (a content array, a number
                    // where text was expected): the general reader takes
                    // what it can from it.
                    Err(_) => {
                        if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                            read_json_body(self.endpoint, &value, &mut self.captured);
                        }
                    }
                }
                self.captured.body = body;
            }
            None => {}
        }
        self.captured
    }
}

/// The model and usage of a non-streamed body; the rest is skipped
/// unparsed. Each is read on its own, so that one of an unusual type does
/// not hide the other (as with the general reader).
#[derive(Deserialize)]
struct UsageOnly<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

fn push_text(captured: &mut Captured, text_bytes: &mut usize, text: &str) {
    if *text_bytes + text.len() > MAX_CAPTURED_BYTES {
        captured.truncated = true;
        return;
    }
    *text_bytes += text.len();
    captured.text.push_str(text);
}

#[derive(Deserialize)]
struct OpenAiChunk<'a> {
    /// Parsed (`OpenAiChoice`) only when the text is kept.
    #[serde(borrow)]
    choices: Option<&'a RawValue>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<TokenUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct OpenAiChoice<'a> {
    #[serde(borrow)]
    delta: Option<OpenAiDelta<'a>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct OpenAiDelta<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
}

/// Token counts under the names used by OpenAI chat (`prompt_tokens`), OpenAI
/// responses and Anthropic (`input_tokens`).
#[derive(Deserialize, Default)]
struct TokenUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl TokenUsage {
    fn merge_into(&self, usage: &mut Usage) {
        if let Some(n) = self.prompt_tokens.or(self.input_tokens) {
            usage.input_tokens = Some(n);
        }
        if let Some(n) = self.completion_tokens.or(self.output_tokens) {
            usage.output_tokens = Some(n);
        }
    }
}

#[derive(Deserialize)]
struct TypedEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    message: Option<UsageHolder>,
    response: Option<UsageHolder>,
    /// Parsed (`EventDelta`) only when the text is kept.
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
    usage: Option<TokenUsage>,
    error: Option<Value>,
}

/// Anthropic's `message` (in `message_start`) and the responses API's `response`.
#[derive(Deserialize)]
struct UsageHolder {
    usage: Option<TokenUsage>,
    model: Option<String>,
}

/// Anthropic's `delta` is an object; the OpenAI responses API's is a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum EventDelta<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Object {
        #[serde(borrow)]
        text: Option<Cow<'a, str>>,
    },
}

/// The last event of a stream in each wire shape.
fn is_final_event(event: &SseEvent<'_>) -> bool {
    event.data == "[DONE]"
        || matches!(
            event.event,
            Some("message_stop" | "response.completed" | "response.failed" | "response.incomplete")
        )
}

/// `text_bytes`: the text assembled so far, when the text is kept.
fn apply_event(
    endpoint: Endpoint,
    event: SseEvent<'_>,
    captured: &mut Captured,
    text_bytes: Option<&mut usize>,
) {
    let data = event.data;
    if data == "[DONE]" {
        return;
    }
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Completions => {
            let Ok(chunk) = serde_json::from_str::<OpenAiChunk<'_>>(data) else {
                return;
            };
            if let Some(error) = chunk.error {
                captured.stream_error = Some(error.to_string());
            }
            note_model(captured, chunk.model.as_deref());
            if let (Some(text_bytes), Some(choices)) = (text_bytes, chunk.choices)
                && let Ok(choices) = serde_json::from_str::<Vec<OpenAiChoice<'_>>>(choices.get())
                && let Some(choice) = choices.first()
            {
                if let Some(text) = choice.delta.as_ref().and_then(|d| d.content.as_deref()) {
                    push_text(captured, text_bytes, text);
                }
                if let Some(text) = choice.text.as_deref() {
                    push_text(captured, text_bytes, text);
                }
            }
            if let Some(usage) = chunk.usage {
                usage.merge_into(&mut captured.usage);
            }
        }
        _ => {
            let Ok(typed) = serde_json::from_str::<TypedEvent<'_>>(data) else {
                return;
            };
            match typed.kind.as_ref() {
                // Anthropic
                "message_start" => {
                    if let Some(message) = typed.message {
                        note_model(captured, message.model.as_deref());
                        if let Some(usage) = message.usage {
                            usage.merge_into(&mut captured.usage);
                        }
                    }
                }
                "content_block_delta" | "response.output_text.delta" => {
                    let delta = typed.delta.zip(text_bytes).and_then(|(delta, text_bytes)| {
                        Some((
                            serde_json::from_str::<EventDelta<'_>>(delta.get()).ok()?,
                            text_bytes,
                        ))
                    });
                    if let Some((
                        EventDelta::Text(text) | EventDelta::Object { text: Some(text) },
                        text_bytes,
                    )) = delta
                    {
                        push_text(captured, text_bytes, &text);
                    }
                }
                // Anthropic's `output_tokens` here is cumulative: the last one wins.
                "message_delta" => {
                    if let Some(usage) = typed.usage {
                        usage.merge_into(&mut captured.usage);
                    }
                }
                "response.created" => {
                    if let Some(response) = typed.response {
                        note_model(captured, response.model.as_deref());
                    }
                }
                "response.completed" | "response.failed" | "response.incomplete" => {
                    if let Some(response) = typed.response {
                        note_model(captured, response.model.as_deref());
                        if let Some(usage) = response.usage {
                            usage.merge_into(&mut captured.usage);
                        }
                    }
                }
                "error" => {
                    captured.stream_error = Some(
                        typed
                            .error
                            .map_or_else(|| data.to_owned(), |e| e.to_string()),
                    );
                }
                _ => {}
            }
        }
    }
}

/// The parts of a non-streamed body the capture reads, borrowed. Building a
/// `Value` of the whole body (an embeddings answer is mostly numbers) cost
/// more than the rest of the capture; unknown fields are skipped unparsed.
/// Deserialising fails on any shape not foreseen here, and then the general
/// `Value` reader runs instead, so both give the same result.
#[derive(Deserialize)]
struct TypedBody<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<TokenUsage>,
    /// OpenAI chat and completions.
    #[serde(default, borrow)]
    choices: Vec<BodyChoice<'a>>,
    /// Anthropic messages.
    #[serde(default, borrow)]
    content: Vec<TextPart<'a>>,
    /// OpenAI responses.
    #[serde(default, borrow)]
    output: Vec<OutputItem<'a>>,
}

#[derive(Deserialize)]
struct BodyChoice<'a> {
    #[serde(borrow)]
    message: Option<BodyMessage<'a>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BodyMessage<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TextPart<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct OutputItem<'a> {
    #[serde(borrow)]
    content: Option<Vec<TextPart<'a>>>,
}

fn read_typed_body(endpoint: Endpoint, body: &TypedBody<'_>, captured: &mut Captured) {
    note_model(captured, body.model.as_deref());
    if let Some(usage) = &body.usage {
        usage.merge_into(&mut captured.usage);
    }
    let mut text = String::new();
    let parts = |parts: &[TextPart<'_>], text: &mut String| {
        for part in parts {
            text.push_str(part.text.as_deref().unwrap_or_default());
        }
    };
    match endpoint {
        Endpoint::ChatCompletions => {
            if let Some(content) = body
                .choices
                .first()
                .and_then(|c| c.message.as_ref())
                .and_then(|m| m.content.as_deref())
            {
                text.push_str(content);
            }
        }
        Endpoint::Completions => {
            if let Some(content) = body.choices.first().and_then(|c| c.text.as_deref()) {
                text.push_str(content);
            }
        }
        Endpoint::Messages => parts(&body.content, &mut text),
        Endpoint::Responses => {
            for item in &body.output {
                parts(item.content.as_deref().unwrap_or_default(), &mut text);
            }
        }
        Endpoint::Embeddings | Endpoint::CountTokens | Endpoint::Models | Endpoint::Feedback => {}
    }
    captured.text = text;
}

fn read_json_body(endpoint: Endpoint, body: &Value, captured: &mut Captured) {
    note_model(captured, body.get("model").and_then(Value::as_str));
    if let Some(usage) = body.get("usage")
        && let Ok(usage) = TokenUsage::deserialize(usage)
    {
        usage.merge_into(&mut captured.usage);
    }
    let mut text = String::new();
    match endpoint {
        Endpoint::ChatCompletions => {
            if let Some(content) = body
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str)
            {
                text.push_str(content);
            }
        }
        Endpoint::Completions => {
            if let Some(content) = body.pointer("/choices/0/text").and_then(Value::as_str) {
                text.push_str(content);
            }
        }
        Endpoint::Messages => {
            for block in body
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(t) = block.get("text").and_then(Value::as_str) {
                    text.push_str(t);
                }
            }
        }
        Endpoint::Responses => {
            for item in body
                .get("output")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                        text.push_str(t);
                    }
                }
            }
        }
        Endpoint::Embeddings | Endpoint::CountTokens | Endpoint::Models | Endpoint::Feedback => {}
    }
    captured.text = text;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full capture of `body` fed in pieces of `piece` bytes, after
    /// checking that a usage-only capture of it reads the same usage, model
    /// and stream error, and keeps no text or body.
    fn capture(endpoint: Endpoint, sse: bool, body: &str, piece: usize) -> Captured {
        let run = |capture: ResponseCapture| {
            let mut capture = capture;
            for chunk in body.as_bytes().chunks(piece) {
                capture.observe(chunk).expect("the test events are small");
            }
            capture.finish()
        };
        let full = run(ResponseCapture::new(endpoint, sse));
        let usage_only = run(ResponseCapture::new(endpoint, sse).usage_only());
        assert_eq!(usage_only.usage, full.usage, "{body}");
        assert_eq!(usage_only.model, full.model, "{body}");
        assert_eq!(usage_only.stream_error, full.stream_error, "{body}");
        assert!(usage_only.text.is_empty() && usage_only.body.is_empty());
        full
    }

    #[test]
    fn openai_stream_text_and_usage_chunk() {
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\\"w\\u00f6rld\\\"\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n",
            "data: [DONE]\n\n"
        );
        for piece in [1, 5, 64, body.len()] {
            let c = capture(Endpoint::ChatCompletions, true, body, piece);
            assert_eq!(c.text, "Hello \"wörld\"");
            assert_eq!(
                c.usage,
                Usage {
                    input_tokens: Some(7),
                    output_tokens: Some(3)
                }
            );
            assert!(c.stream_error.is_none());
        }
    }

    #[test]
    fn anthropic_stream_with_cumulative_output_tokens_and_ping() {
        let body = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"there\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":2}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        let c = capture(Endpoint::Messages, true, body, 3);
        assert_eq!(c.text, "Hi there");
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: Some(12),
                output_tokens: Some(5)
            }
        );
    }

    #[test]
    fn the_answering_model_is_read_from_each_shape() {
        let chat = r#"{"model":"gpt-4o-mini-2024-07-18","choices":[]}"#;
        let c = capture(Endpoint::ChatCompletions, false, chat, 7);
        assert_eq!(c.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        let stream = "data: {\"model\":\"gpt-x-1\",\"choices\":[]}\n\ndata: {\"model\":\"other\",\"choices\":[]}\n\ndata: [DONE]\n\n";
        let c = capture(Endpoint::ChatCompletions, true, stream, 5);
        assert_eq!(c.model.as_deref(), Some("gpt-x-1"), "the first one wins");
        let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-3-5\",\"usage\":{\"input_tokens\":1}}}\n\n";
        let c = capture(Endpoint::Messages, true, anthropic, 3);
        assert_eq!(c.model.as_deref(), Some("claude-3-5"));
        assert_eq!(c.usage.input_tokens, Some(1));
        let responses = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-r\"}}\n\n";
        let c = capture(Endpoint::Responses, true, responses, 9);
        assert_eq!(c.model.as_deref(), Some("gpt-r"));
        let long = format!(r#"{{"model":"{}"}}"#, "é".repeat(300));
        let c = capture(Endpoint::Messages, false, &long, 64);
        let model = c.model.unwrap();
        assert!(model.len() <= MAX_MODEL_BYTES && model.starts_with('é'));
        assert!(
            capture(Endpoint::Embeddings, false, "{}", 1)
                .model
                .is_none()
        );
    }

    #[test]
    fn anthropic_error_event_after_200() {
        let body = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let c = capture(Endpoint::Messages, true, body, 7);
        assert!(c.stream_error.unwrap().contains("overloaded_error"));
    }

    #[test]
    fn the_typed_reader_agrees_with_the_general_one_on_unusual_shapes() {
        let bodies = [
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m\u00e9","choices":[{"message":{"content":null,"tool_calls":[{"id":"x"}]}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
            ),
            // A content array: the typed reader refuses it, the general one
            // still finds the usage.
            (
                Endpoint::ChatCompletions,
                r#"{"choices":[{"message":{"content":[{"type":"text","text":"parts"}]}}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
            ),
            (
                Endpoint::Messages,
                r#"{"model":"claude","content":[{"type":"tool_use","id":"t","input":{}},{"type":"text","text":"a\nb"}],"usage":{"input_tokens":5,"output_tokens":6}}"#,
            ),
            (
                Endpoint::Responses,
                r#"{"output":[{"type":"reasoning"},{"type":"message","content":[{"type":"output_text","text":"r"}]}],"usage":{"input_tokens":1,"output_tokens":1}}"#,
            ),
            (
                Endpoint::Completions,
                r#"{"model":7,"choices":[{"text":"t"}],"usage":{"prompt_tokens":1}}"#,
            ),
        ];
        for (endpoint, body) in bodies {
            let fast = capture(endpoint, false, body, 7);
            let mut general = Captured::default();
            let value: Value = serde_json::from_str(body).expect("test body is JSON");
            read_json_body(endpoint, &value, &mut general);
            assert_eq!(
                (&fast.text, fast.usage, &fast.model),
                (&general.text, general.usage, &general.model),
                "{body}"
            );
            assert!(fast.usage.input_tokens.is_some(), "{body}");
            assert_eq!(fast.body, body.as_bytes());
        }
    }

    #[test]
    fn json_bodies_of_each_endpoint() {
        let chat = r#"{"choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":4,"completion_tokens":1}}"#;
        let c = capture(Endpoint::ChatCompletions, false, chat, 10);
        assert_eq!(
            (c.text.as_str(), c.usage.input_tokens, c.usage.output_tokens),
            ("ok", Some(4), Some(1))
        );
        assert_eq!(c.body, chat.as_bytes());

        let messages = r#"{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"usage":{"input_tokens":9,"output_tokens":2}}"#;
        let c = capture(Endpoint::Messages, false, messages, 10);
        assert_eq!(
            (c.text.as_str(), c.usage.input_tokens, c.usage.output_tokens),
            ("ab", Some(9), Some(2))
        );

        let responses = r#"{"output":[{"type":"message","content":[{"type":"output_text","text":"r"}]}],"usage":{"input_tokens":3,"output_tokens":1}}"#;
        let c = capture(Endpoint::Responses, false, responses, 10);
        assert_eq!((c.text.as_str(), c.usage.output_tokens), ("r", Some(1)));

        let embeddings =
            r#"{"data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":5,"total_tokens":5}}"#;
        let c = capture(Endpoint::Embeddings, false, embeddings, 10);
        assert_eq!((c.text.as_str(), c.usage.input_tokens), ("", Some(5)));
    }

    #[test]
    fn responses_api_stream() {
        let body = concat!(
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":2,\"output_tokens\":1}}}\n\n"
        );
        let c = capture(Endpoint::Responses, true, body, 4);
        assert_eq!(c.text, "Hi");
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: Some(2),
                output_tokens: Some(1)
            }
        );
    }
}
