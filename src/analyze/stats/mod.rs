//! Statistical tests for comparing variants.
