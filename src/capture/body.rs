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

use super::sse::EventTooLarge;
use super::{Exchange, ExchangeSink, ExchangeStart, Outcome, ResponseCapture};
use crate::body::{BoxError, GatewayBody};
use crate::telemetry::ExchangeTelemetry;

#[derive(Debug, thiserror::Error)]
#[error("the provider's total timeout ran out while the response was streaming")]
pub struct BodyTimeout;

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

    /// Reports a completed exchange; the signal, if any, fires once its record is durable.
    fn complete(self) -> Option<oneshot::Receiver<()>> {
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
    /// until the exchange's record is on disk.
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
        durable: Option<oneshot::Receiver<()>>,
        held: Option<Frame<Bytes>>,
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
            // Whether the record was written or the sink gave up, the caller gets its end.
            let _ = ready!(Pin::new(durable).poll(cx));
            *this.durable = None;
            return Poll::Ready(this.held.take().map(Ok));
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
                        let ended = this.inner.is_end_stream();
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
    crate::api::stream_error_event(dialect, "upstream_event_too_large", &message)
}
