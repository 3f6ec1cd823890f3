//! The default model, compiled into the binary from assets/default-model (see MODEL.md).

pub struct BuiltinFiles {
    pub config: &'static [u8],
    pub weights: &'static [u8],
    pub tokenizer: &'static [u8],
}

/// The name `--version` and `predict --format json` report for the built-in model.
pub const NAME: &str = "gliznet-minilm-l6-cosine-v2";

/// `gliznet --version`: the program's version and the built-in model.
#[cfg(gliznet_builtin_model)]
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nbuilt-in model: gliznet-minilm-l6-cosine-v2 (see MODEL.md)"
);
#[cfg(not(gliznet_builtin_model))]
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nbuilt-in model: none (this build needs --model)"
);

#[cfg(gliznet_builtin_model)]
pub const FILES: Option<BuiltinFiles> = Some(BuiltinFiles {
    config: include_bytes!("../../assets/default-model/config.json"),
    weights: include_bytes!("../../assets/default-model/model.safetensors"),
    tokenizer: include_bytes!("../../assets/default-model/tokenizer.json"),
});

#[cfg(not(gliznet_builtin_model))]
pub const FILES: Option<BuiltinFiles> = None;
