//! Encoder, head and model directory.

pub mod bert;
pub mod builtin;
pub mod checkpoint;
pub mod config;
pub mod gliznet;
pub mod head;
pub(crate) mod kernels;
pub mod params;

pub use kernels::{has_fast_int8_kernel, ParamGrads};
