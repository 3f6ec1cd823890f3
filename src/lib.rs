//! gliznet: zero-shot text classification. A text and any set of label names are packed into
//! one encoder sequence, `[CLS] text [SEP] label_1 [SEP] label_2 [SEP] …`, and every label is
//! scored in a single pass.

pub mod batch;
pub mod classifier;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod embed;
pub mod error;
pub mod eval;
pub mod mining;
pub mod model;
pub mod rng;
pub mod scoring;
pub mod testing;
pub mod tokenizer;
pub mod train;
