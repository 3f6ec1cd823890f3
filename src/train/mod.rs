//! Training: loss, optimizer and the loop.

pub mod distill;
pub mod loss;
pub mod micro_batch;
pub mod optim;
pub mod run_dir;
pub mod setup;
pub mod state;
pub mod trainer;
pub mod validation;
