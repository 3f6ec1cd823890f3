//! Inputs as the user gives them: label lists, JSONL and Parquet files.

pub mod example;
pub mod jsonl;
pub mod labels;
pub mod parquet;
pub mod text;
