use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::{Exchange, ExchangeSink, ExchangeStart, Outcome, RecordAck, ResponseCapture};
use crate::api::stream_error_event;
use crate::body::{BoxError, GatewayBody};
use crate::error::GatewayError;
use crate::telemetry::ExchangeTelemetry;

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
    fn exchange(self, outcome: Outcome) -> (Exchange, Arc<dyn ExchangeSink>) {
        let exchange = Exchange {
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
            holds_answer: durable && failure_event.is_none(),
            failure_event,
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
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            if let Some(pending) = this.pending.take() {
                pending.finish(Outcome::TimedOut);
            }
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            Some(Ok(frame)) => {
                if let (Some(data), Some(pending)) = (frame.data_ref(), this.pending.as_mut()) {
                    if pending.first_byte.is_none() && !data.is_empty() {
                        pending.first_byte = Some(Instant::now());
                    }
                    pending.capture.observe(data);
                }
                // A body of known length is not polled again after its last byte.
                this.inner.is_end_stream()
            }
            Some(Err(err)) => {
                if let Some(pending) = this.pending.take() {
                    pending.finish(Outcome::UpstreamBroken(err.to_string()));
                }
                false
            }
            None => true,
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
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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
