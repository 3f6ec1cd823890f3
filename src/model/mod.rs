//! Encoder, head and model directory.

pub mod bert;
pub mod builtin;
pub mod checkpoint;
pub mod config;
pub mod gliznet;
pub mod head;
pub(crate) mod kernels;
pub mod mpnet;
pub mod params;

pub use kernels::{
    has_fast_bf16_kernel, has_fast_int8_kernel, on_kernel_threads, Bf16Kernel, CpuId, F32Kernel,
    ParamGrads, Vendor,
};

/// Lower-precision encoder weights for CPU inference (`--quantize`, `--bf16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantization {
    /// Weights int8 per output, inputs uint8 per row, products summed in i32.
    Int8,
    /// Weights and inputs rounded to bfloat16, products summed in f32.
    Bf16,
}

impl Quantization {
    pub fn name(self) -> &'static str {
        match self {
            Quantization::Int8 => "int8",
            Quantization::Bf16 => "bf16",
        }
    }
}
