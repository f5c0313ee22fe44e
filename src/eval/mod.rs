//! Offline evaluation: scorers that judge an answer against a golden case,
//! and the export of production traffic as golden-set candidates.
//!
//! `promptgate eval` (`evaluate`): a suite (`suite`) names an experiment's
//! variants, a golden set (`golden`), scorers and a gate; every case is
//! rendered and sent through the gateway's own providers (`run`, `call`,
//! answers cached on disk by `cache`), scored (`score`, the LLM `judge`),
//! gated with paired tests (`gate`) and reported (`report`: table, JSON,
//! HTML, JUnit).

pub mod cache;
pub mod call;
mod evaluate;
pub mod export;
pub mod gate;
pub mod golden;
pub mod html;
pub mod judge;
pub mod junit;
pub mod render;
pub mod report;
pub mod run;
pub mod score;
pub mod scorers;
pub mod suite;

pub use evaluate::{EvalError, EvalOptions, JUDGE_SCORER, evaluate};
