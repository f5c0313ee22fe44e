//! Offline evaluation: scorers that judge an answer against a golden case,
//! and the export of production traffic as golden-set candidates.

pub mod export;
pub mod scorers;
