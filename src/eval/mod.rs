//! Evaluation metrics over scored (text, label) pairs.

pub mod metrics;
pub mod report;
