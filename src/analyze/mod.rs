//! Comparing variants from the audit log: `promptgate analyze`.
//!
//! `stats` holds the pure statistics (no I/O, clock or RNG beyond seeded
//! resampling), each checked against scipy/statsmodels reference values.

pub mod stats;
