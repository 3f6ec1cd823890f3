//! Encoder, head and model directory.

pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod gliznet;
pub mod head;
pub mod params;
