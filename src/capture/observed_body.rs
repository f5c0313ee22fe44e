use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::ResponseCapture;
use crate::body::{BoxError, GatewayBody};
use crate::exchange::{ExchangeSink, ExchangeStart, FinishedExchange, Outcome, RecordAck};
use crate::respond::stream_error_event;
use crate::telemetry::ExchangeTelemetry;
use promptgate_core::error::GatewayError;
use promptgate_core::sse::EventTooLarge;

#[derive(Debug, thiserror::Error)]
#[error("the provider's total timeout ran out while the response was streaming")]
pub struct BodyTimeout;

/// The end of an answer whose record could not be made durable (strict mode).
#[derive(Debug, thiserror::Error)]
#[error("the audit record of this answer could not be made durable")]
pub struct AnswerNotDurable;

struct Pending {
    start: ExchangeStart,
    capture: ResponseCapture,
    first_byte: Option<Instant>,
    sink: Arc<dyn ExchangeSink>,
    /// Spans and metrics that end with this exchange.
    telemetry: ExchangeTelemetry,
}

impl Pending {
    fn exchange(self, outcome: Outcome) -> (FinishedExchange, Arc<dyn ExchangeSink>) {
        let exchange = FinishedExchange {
            first_byte_after: self.first_byte.map(|t| t - self.start.started),
            duration: self.start.started.elapsed(),
            outcome,
            captured: self.capture.finish(),
            start: self.start,
        };
        self.telemetry.finish(&exchange);
        (exchange, self.sink)
    }

    fn finish(self, outcome: Outcome) {
        let (exchange, sink) = self.exchange(outcome);
        sink.record(exchange);
    }

    /// Reports a completed exchange; the signal, if any, says once the write
    /// is settled whether its record is durable.
    fn complete(self) -> Option<oneshot::Receiver<RecordAck>> {
        let (exchange, sink) = self.exchange(Outcome::Completed);
        sink.record_durably(exchange)
    }
}

pin_project! {
    /// A response body that forwards every frame as soon as it arrives while a
    /// copy-free view of it feeds the capture, enforces the provider's total
    /// timeout, and reports the exchange exactly once: at the end, on error,
    /// or when dropped early because the caller disconnected. When the sink
    /// asks for it (strict audit durability), the last frame is held back
    /// until the exchange's record is on disk; if it cannot be made durable,
    /// an event stream ends with the dialect's error event instead, and any
    /// other body with `AnswerNotDurable` (see `release`).
    ///
    /// In an event stream, the bytes of an event not yet complete wait here
    /// for the rest of it (an SSE client acts on whole events only, so this
    /// delays nothing it could use), which is what lets an event longer than
    /// the limit be replaced by an error event the caller can read.
    pub struct ObservedBody {
        #[pin]
        inner: GatewayBody,
        deadline: Option<Pin<Box<Sleep>>>,
        pending: Option<Pending>,
        durable: Option<oneshot::Receiver<RecordAck>>,
        held: Option<Frame<Bytes>>,
        // For an event stream: what replaces its last bytes when the record
        // is not durable.
        failure_event: Option<Bytes>,
        // The sink promises durability and the body is not an event stream:
        // `release` reads it whole before the head goes out.
        holds_answer: bool,
        unfinished_event: BytesMut,
        // No more frames: the inner body ended or was cut.
        done: bool,
    }

    impl PinnedDrop for ObservedBody {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                pending.finish(Outcome::ClientDisconnected);
            }
        }
    }
}

impl ObservedBody {
    pub fn new(
        inner: GatewayBody,
        start: ExchangeStart,
        capture: ResponseCapture,
        deadline: Option<Pin<Box<Sleep>>>,
        sink: Arc<dyn ExchangeSink>,
    ) -> ObservedBody {
        let durable = sink.promises_durability();
        let failure_event = (durable && capture.is_event_stream()).then(|| {
            stream_error_event(start.endpoint.dialect(), &GatewayError::AuditBackpressure)
        });
        ObservedBody {
            inner,
            deadline,
            pending: Some(Pending {
                start,
                capture,
                first_byte: None,
                sink,
                telemetry: ExchangeTelemetry::default(),
            }),
            durable: None,
            held: None,
            holds_answer: durable && failure_event.is_none(),
            failure_event,
            unfinished_event: BytesMut::new(),
            done: false,
        }
    }

    /// Spans to end (with status, outcome and usage) and metrics to record
    /// when the exchange is reported.
    pub fn with_telemetry(mut self, telemetry: ExchangeTelemetry) -> ObservedBody {
        if let Some(pending) = self.pending.as_mut() {
            pending.telemetry = telemetry;
        }
        self
    }

    /// Whether `release` has to read this answer whole before its head.
    pub fn holds_answer(&self) -> bool {
        self.holds_answer
    }

    /// Reports the exchange as abandoned by the gateway and drops the body.
    pub fn abandon(self) {
        self.end_early(Outcome::Abandoned);
    }

    /// Reports the exchange as ended early for `outcome` and drops the body.
    pub fn end_early(mut self, outcome: Outcome) {
        if let Some(pending) = self.pending.take() {
            pending.finish(outcome);
        }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(durable) = this.durable.as_mut() {
            let ack = ready!(Pin::new(durable).poll(cx)).unwrap_or(RecordAck::NotDurable);
            *this.durable = None;
            let held = this.held.take();
            return Poll::Ready(match (ack, this.failure_event.take()) {
                (RecordAck::Durable, _) => held.map(Ok),
                (RecordAck::NotDurable, Some(event)) => Some(Ok(Frame::data(event))),
                (RecordAck::NotDurable, None) => Some(Err(Box::new(AnswerNotDurable))),
            });
        }
        if let Some(frame) = this.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if *this.done {
            return Poll::Ready(None);
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            if let Some(pending) = this.pending.take() {
                pending.finish(Outcome::TimedOut);
            }
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        let (frame, ended) = loop {
            let frame = ready!(this.inner.as_mut().poll_frame(cx));
            break match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        // A body of known length is not polled again after its last byte.
                        let mut ended = this.inner.is_end_stream();
                        let Some(pending) = this.pending.as_mut() else {
                            break (Some(Ok(Frame::data(data))), ended);
                        };
                        if pending.first_byte.is_none() && !data.is_empty() {
                            pending.first_byte = Some(Instant::now());
                        }
                        let ready = match pending.capture.observe(&data) {
                            Ok(ready) => ready,
                            Err(too_large) => {
                                *this.unfinished_event = BytesMut::new();
                                *this.done = true;
                                let event = this
                                    .pending
                                    .take()
                                    .map_or_else(Bytes::new, |p| cut_short(p, &too_large));
                                return Poll::Ready(Some(Ok(Frame::data(event))));
                            }
                        };
                        // A stream's end comes as a poll after its last bytes,
                        // too late to hold them: in strict mode its final event
                        // is the end.
                        if this.failure_event.is_some() && pending.capture.saw_final_event() {
                            ended = true;
                        }
                        let data = if ended {
                            take_all(this.unfinished_event, data)
                        } else {
                            take_complete(this.unfinished_event, data, ready)
                        };
                        if data.is_empty() && !ended {
                            continue;
                        }
                        (Some(Ok(Frame::data(data))), ended)
                    }
                    // Trailers: whatever the events left unfinished goes first.
                    Err(trailers) if !this.unfinished_event.is_empty() => {
                        *this.held = Some(trailers);
                        let rest = this.unfinished_event.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                    Err(trailers) => (Some(Ok(trailers)), this.inner.is_end_stream()),
                },
                Some(Err(err)) => {
                    if let Some(pending) = this.pending.take() {
                        pending.finish(Outcome::UpstreamBroken(err.to_string()));
                    }
                    (Some(Err(err)), false)
                }
                None => {
                    // The inner body is not polled again: some panic if polled after their end.
                    *this.done = true;
                    // An unterminated last event still goes out, as the capture counts it.
                    let rest = (!this.unfinished_event.is_empty())
                        .then(|| Ok(Frame::data(this.unfinished_event.split().freeze())));
                    (rest, true)
                }
            };
        };
        if ended && let Some(durable) = this.pending.take().and_then(Pending::complete) {
            *this.durable = Some(durable);
            *this.held = frame.and_then(Result::ok);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(frame)
    }

    // Claims the end only once the exchange is reported (and durable, when
    // asked), so the server polls to the end even for bodies of known length.
    fn is_end_stream(&self) -> bool {
        self.pending.is_none()
            && self.durable.is_none()
            && self.held.is_none()
            && self.unfinished_event.is_empty()
            && (self.done || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The bytes of `data` that end complete events (the first `ready`), after
/// any held from earlier pieces; the rest is held. Copies only what is held.
fn take_complete(unfinished: &mut BytesMut, mut data: Bytes, ready: usize) -> Bytes {
    // The usual case: providers write whole events.
    if unfinished.is_empty() && ready == data.len() {
        return data;
    }
    if unfinished.is_empty() {
        let rest = data.split_off(ready);
        unfinished.extend_from_slice(&rest);
        return data;
    }
    unfinished.extend_from_slice(&data[..ready]);
    let out = if ready == 0 {
        Bytes::new()
    } else {
        unfinished.split().freeze()
    };
    unfinished.extend_from_slice(&data[ready..]);
    out
}

/// Everything held and `data`: the body's last piece.
fn take_all(unfinished: &mut BytesMut, data: Bytes) -> Bytes {
    if unfinished.is_empty() {
        return data;
    }
    unfinished.extend_from_slice(&data);
    unfinished.split().freeze()
}

/// Reports the exchange as broken by an event over the limit, and returns the
/// error event that ends the caller's stream in its dialect.
fn cut_short(pending: Pending, too_large: &EventTooLarge) -> Bytes {
    let message = too_large.to_string();
    let dialect = pending.start.endpoint.dialect();
    pending.finish(Outcome::UpstreamBroken(message.clone()));
    stream_error_event(dialect, &GatewayError::from(*too_large))
}

/// Hands a delivered response on. A held answer (strict audit mode, not an
/// event stream) is read to its end first, so its record is durable before
/// its head is sent, and a record that could not be made durable becomes a
/// 503 instead of a success; an answer that broke or timed out while held
/// becomes the matching provider error. Any other body streams as before.
pub async fn release(
    response: http::Response<ObservedBody>,
    provider: &str,
    total_timeout: std::time::Duration,
) -> Result<http::Response<GatewayBody>, GatewayError> {
    use http_body_util::BodyExt;

    if !response.body().holds_answer() {
        return Ok(response.map(BodyExt::boxed_unsync));
    }
    let (parts, body) = response.into_parts();
    match body.collect().await {
        Ok(collected) => Ok(http::Response::from_parts(
            parts,
            crate::body::full(collected.to_bytes()),
        )),
        Err(error) if error.is::<AnswerNotDurable>() => Err(GatewayError::AuditBackpressure),
        Err(error) if error.is::<BodyTimeout>() => Err(GatewayError::ProviderTimeout {
            provider: provider.to_owned(),
            timeout: total_timeout,
        }),
        Err(_) => Err(GatewayError::ProviderProtocol {
            provider: provider.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use http_body_util::{BodyExt, StreamBody};

    use super::*;
    use crate::respond::error_response;
    use promptgate_core::dialect::{Dialect, Endpoint};

    /// A sink that promises durability and settles every record as told.
    struct SettlesAs(Option<RecordAck>);

    impl ExchangeSink for SettlesAs {
        fn record(&self, _exchange: FinishedExchange) {}

        fn record_durably(
            &self,
            _exchange: FinishedExchange,
        ) -> Option<oneshot::Receiver<RecordAck>> {
            let (ack, acked) = oneshot::channel();
            // `None`: the writer went away without answering.
            if let Some(settled) = self.0 {
                let _ = ack.send(settled);
            }
            Some(acked)
        }

        fn promises_durability(&self) -> bool {
            true
        }
    }

    fn observed(
        endpoint: Endpoint,
        frames: &[&'static str],
        event_stream: bool,
        sink: Arc<dyn ExchangeSink>,
    ) -> http::Response<ObservedBody> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = frames
            .iter()
            .map(|f| Ok(Frame::data(Bytes::from_static(f.as_bytes()))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        let start = start(endpoint, event_stream);
        let capture = ResponseCapture::new(endpoint, event_stream);
        http::Response::new(ObservedBody::new(body, start, capture, None, sink))
    }

    /// Keeps every exchange reported, to count the reports.
    #[derive(Default)]
    struct Reports(std::sync::Mutex<Vec<FinishedExchange>>);

    impl ExchangeSink for Reports {
        fn record(&self, exchange: FinishedExchange) {
            self.0.lock().unwrap().push(exchange);
        }
    }

    impl Reports {
        fn outcomes(&self) -> Vec<Outcome> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|e| e.outcome.clone())
                .collect()
        }
    }

    /// An event stream that sends `frames` `gap` apart and then stays open.
    fn paced_body(frames: &'static [&'static str], gap: Duration) -> GatewayBody {
        let paced = futures_util::stream::unfold(0, move |sent| async move {
            if sent > 0 {
                tokio::time::sleep(gap).await;
            }
            let Some(frame) = frames.get(sent) else {
                return std::future::pending().await;
            };
            Some((
                Ok(Frame::data(Bytes::from_static(frame.as_bytes()))),
                sent + 1,
            ))
        });
        StreamBody::new(paced).boxed_unsync()
    }

    fn start(endpoint: Endpoint, stream: bool) -> ExchangeStart {
        ExchangeStart {
            request_id: "req-1".into(),
            client_id: None,
            tags: Default::default(),
            config_version: "test".into(),
            endpoint,
            provider: "demo".into(),
            model: "demo".into(),
            upstream_model: "demo".into(),
            request_body: Bytes::new(),
            stream,
            status: 200,
            attempts: 1,
            started_at: SystemTime::now(),
            started: Instant::now(),
            head_after: Duration::ZERO,
            experiment: None,
            trace_id: None,
        }
    }

    const EVENTS: &[&str] = &[
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n",
    ];

    #[tokio::test(start_paused = true)]
    async fn the_total_timeout_ends_a_stream_mid_body_and_reports_it_once() {
        let reports = Arc::new(Reports::default());
        let deadline = Box::pin(tokio::time::sleep(Duration::from_secs(30)));
        let capture = ResponseCapture::new(Endpoint::ChatCompletions, true);
        let mut body = ObservedBody::new(
            paced_body(EVENTS, Duration::from_secs(10)),
            start(Endpoint::ChatCompletions, true),
            capture,
            Some(deadline),
            reports.clone(),
        );
        let started = tokio::time::Instant::now();
        // Both events pass (at 0 s and 10 s); then the provider goes quiet.
        for event in EVENTS {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), event.as_bytes());
        }
        assert!(reports.outcomes().is_empty(), "reported before its end");
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.is::<BodyTimeout>(), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        drop(body);
        assert_eq!(reports.outcomes(), [Outcome::TimedOut]);
        let exchange = &reports.0.lock().unwrap()[0];
        assert_eq!(exchange.captured.text, "ab");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_leaving_is_reported_once_with_the_first_byte_it_got() {
        // Gone before the first byte: no first byte in the report.
        let reports = Arc::new(Reports::default());
        let body = ObservedBody::new(
            paced_body(EVENTS, Duration::from_secs(1)),
            start(Endpoint::ChatCompletions, true),
            ResponseCapture::new(Endpoint::ChatCompletions, true),
            None,
            reports.clone(),
        );
        drop(body);
        assert_eq!(reports.outcomes(), [Outcome::ClientDisconnected]);
        assert!(reports.0.lock().unwrap()[0].first_byte_after.is_none());

        // Gone mid-stream, after the first event and before the second.
        let reports = Arc::new(Reports::default());
        let mut body = ObservedBody::new(
            paced_body(EVENTS, Duration::from_secs(1)),
            start(Endpoint::ChatCompletions, true),
            ResponseCapture::new(Endpoint::ChatCompletions, true),
            None,
            reports.clone(),
        );
        body.frame().await.unwrap().unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(500), body.frame()).await;
        assert!(waiting.is_err(), "the second event came early");
        drop(body);
        let exchanges = reports.0.lock().unwrap();
        assert_eq!(exchanges.len(), 1, "reported more than once");
        assert_eq!(exchanges[0].outcome, Outcome::ClientDisconnected);
        assert!(exchanges[0].first_byte_after.is_some());
        assert_eq!(exchanges[0].captured.text, "a");
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_is_reported_once_as_completed() {
        let reports = Arc::new(Reports::default());
        let response = observed(
            Endpoint::ChatCompletions,
            &["{\"a\":", "1}"],
            false,
            reports.clone(),
        );
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.unwrap();
        }
        assert!(body.is_end_stream());
        drop(body);
        assert_eq!(reports.outcomes(), [Outcome::Completed]);
    }

    async fn text(body: GatewayBody) -> String {
        let bytes = body.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_held_json_answer_goes_out_whole_once_its_record_is_durable() {
        let sink = Arc::new(SettlesAs(Some(RecordAck::Durable)));
        let response = observed(Endpoint::ChatCompletions, &["{\"a\":", "1}"], false, sink);
        assert!(response.body().holds_answer());
        let released = release(response, "demo", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(text(released.into_body()).await, "{\"a\":1}");
    }

    #[tokio::test]
    async fn a_json_answer_whose_record_is_not_durable_becomes_a_503_in_each_dialect() {
        for (settled, endpoint, expected) in [
            (
                Some(RecordAck::NotDurable),
                Endpoint::ChatCompletions,
                "audit_unavailable",
            ),
            (None, Endpoint::Messages, "overloaded_error"),
        ] {
            let sink = Arc::new(SettlesAs(settled));
            let response = observed(endpoint, &["{\"a\":1}"], false, sink);
            let error = release(response, "demo", Duration::from_secs(1))
                .await
                .unwrap_err();
            assert!(
                matches!(error, GatewayError::AuditBackpressure),
                "{error:?}"
            );
            let response = error_response(endpoint.dialect(), &error);
            assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
            let body = text(response.into_body()).await;
            assert!(body.contains(expected), "{body}");
        }
    }

    #[tokio::test]
    async fn a_stream_whose_record_is_not_durable_ends_with_the_dialects_error_event() {
        let cases = [
            (
                Endpoint::ChatCompletions,
                ["data: {\"choices\":[]}\n\n", "data: [DONE]\n\n"],
                "data: {\"error\":",
            ),
            (
                Endpoint::Messages,
                [
                    "event: message_start\ndata: {}\n\n",
                    "event: message_stop\ndata: {}\n\n",
                ],
                "event: error\ndata: {\"error\":{\"message\"",
            ),
        ];
        for (endpoint, frames, error_event) in cases {
            let sink = Arc::new(SettlesAs(Some(RecordAck::NotDurable)));
            let response = observed(endpoint, &frames, true, sink);
            assert!(!response.body().holds_answer(), "streams are not held");
            let released = release(response, "demo", Duration::from_secs(1))
                .await
                .unwrap();
            let body = text(released.into_body()).await;
            let (first, rest) = body.split_at(frames[0].len());
            assert_eq!(first, frames[0]);
            assert!(rest.starts_with(error_event), "{body}");
            assert!(
                !rest.contains(frames[1]),
                "the last bytes are replaced: {body}"
            );
            let dialect_type = match endpoint.dialect() {
                Dialect::OpenAi => "audit_unavailable",
                Dialect::Anthropic => "overloaded_error",
            };
            assert!(rest.contains(dialect_type), "{body}");
        }
    }

    #[tokio::test]
    async fn without_a_durability_promise_nothing_is_held() {
        let response = observed(
            Endpoint::ChatCompletions,
            &["{\"a\":1}"],
            false,
            Arc::new(crate::exchange::NoSink),
        );
        assert!(!response.body().holds_answer());
        let released = release(response, "demo", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(text(released.into_body()).await, "{\"a\":1}");
    }
}
