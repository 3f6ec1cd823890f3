//! Encoder, head and model directory.

pub mod bert;
pub mod builtin;
pub mod checkpoint;
pub mod config;
mod gelu;
pub mod gliznet;
pub mod head;
pub mod params;
