//! Inputs as the user gives them: label lists and JSONL files.

pub mod example;
pub mod jsonl;
pub mod labels;
pub mod text;
