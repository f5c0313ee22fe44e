//! Watches responses on their way to the caller and reports, once per exchange,
//! what happened: status, timings, text and usage (`crate::exchange`). The
//! audit log and metrics consume these reports through an `ExchangeSink`; the
//! bytes themselves are forwarded untouched and undelayed.

mod extract;
mod observed_body;

pub use extract::{MAX_CAPTURED_BYTES, ResponseCapture};
pub use observed_body::{AnswerNotDurable, ObservedBody, release};
