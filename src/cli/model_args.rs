//! The model flags that predict, eval, serve and mine-negatives share, and how they become a
//! loaded model: every subcommand resolves them the same way, with the same errors.

use anyhow::Result;
use candle_core::Device;
use clap::{Args, ValueEnum};
use gliznet::classifier::{Classifier, Method};
use gliznet::error::input_error;
use gliznet::model::checkpoint::{self, LoadedModel, ModelSource};
use gliznet::model::Quantization;

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory, or a Hugging Face repo id already in the local hub cache [default:
    /// the model built into gliznet]
    #[arg(long, value_name = "DIR|REPO")]
    pub model: Option<String>,

    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// [`ModelArgs`] with the options of the classifiers that score labels.
#[derive(Args, Debug, Clone)]
pub struct ClassifierArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Int8 encoder weights (CPU only): scores differ slightly from f32; see BENCHMARKS.md
    /// for the speed and MODEL.md for the accuracy change
    #[arg(long, conflicts_with = "bf16")]
    pub quantize: bool,

    /// bf16 encoder weights and inputs, products summed in f32 (CPU only): the default on
    /// CPUs with AMX (Intel Xeon since Sapphire Rapids), where it is fast; elsewhere no faster
    /// than f32. Scores differ slightly from f32; see BENCHMARKS.md for the speed and MODEL.md
    /// for the accuracy change
    #[arg(long)]
    pub bf16: bool,

    /// f32 encoder weights even where bf16 is the default (CPUs with AMX)
    #[arg(long, conflicts_with_all = ["quantize", "bf16"])]
    pub f32: bool,

    /// Subtract from each label's logit its logit with no text (the label's prior), so that a
    /// label the model favours whatever the text says does not win by default (GliZNet
    /// method; in multi-label mode the threshold then applies to the corrected score)
    #[arg(long)]
    pub subtract_label_prior: bool,

    /// Label vectors kept across batches and requests, for models whose labels see only
    /// themselves (the built-in model): at most this many labels (about 1.5 KB each for
    /// MiniLM); 0 encodes every batch's labels afresh
    #[arg(long, value_name = "LABELS", default_value_t = gliznet::label_cache::DEFAULT_CAPACITY)]
    pub label_cache: usize,
}

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Text and labels in one sequence, scored by the GliZNet head
    Gliznet,
    /// Cosine between separately mean-pooled text and label embeddings (baseline)
    BiEncoder,
}

impl From<MethodArg> for Method {
    fn from(method: MethodArg) -> Self {
        match method {
            MethodArg::Gliznet => Method::Gliznet,
            MethodArg::BiEncoder => Method::BiEncoder,
        }
    }
}

impl ModelArgs {
    fn source(&self) -> Result<ModelSource> {
        let source = ModelSource::resolve(self.model.as_deref())
            .map_err(|e| input_error(format!("--model {e}")))?;
        if source == ModelSource::Builtin && gliznet::model::builtin::FILES.is_none() {
            return Err(input_error(
                "this build has no built-in model: pass --model DIR (see README.md)",
            ));
        }
        Ok(source)
    }

    /// The model on the device the flags name (the CPU when `cpu_only`: `auto` then means the
    /// CPU and a GPU is a usage error, naming `cpu_only_flag`).
    fn open(&self, cpu_only: Option<&str>) -> Result<(ModelSource, Device)> {
        let spec = match cpu_only {
            Some(flag) => cpu_device(&self.device, flag)?,
            None => self.device.as_str(),
        };
        let device = super::open_device(spec, "--device")?;
        Ok((self.source()?, device))
    }

    /// The model as an encoder (mine-negatives embeds with it).
    pub fn load(&self) -> Result<(LoadedModel, Device)> {
        let (source, device) = self.open(None)?;
        Ok((checkpoint::load(&source, &device)?, device))
    }
}

impl ClassifierArgs {
    /// Checks the flags' combination without loading anything (serve binds its port first).
    pub fn check(&self) -> Result<()> {
        if let Some((_, flag)) = self.quantization() {
            cpu_device(&self.model.device, flag)?;
        }
        Ok(())
    }

    /// The weights' precision the flags ask for, with the flag that asked.
    fn quantization(&self) -> Option<(Quantization, &'static str)> {
        if self.quantize {
            Some((Quantization::Int8, "--quantize"))
        } else if self.bf16 {
            Some((Quantization::Bf16, "--bf16"))
        } else {
            None
        }
    }

    /// The classifier the flags ask for, warning on stderr where the scores will be poor (an
    /// untrained head that `method` would use) or slow (int8 without the VNNI kernel, bf16
    /// without AMX).
    pub fn open(&self, method: Method) -> Result<Classifier> {
        let quantization = self.quantization();
        let (source, device) = self.model.open(quantization.map(|(_, flag)| flag))?;
        let mut classifier = Classifier::load(&source, device)?;
        if !classifier.loaded.head_trained && method == Method::Gliznet {
            eprintln!(
                "warning: {} is a plain encoder with no trained GliZNet head; scores come from an \
                 untrained head (cosine similarity of the encoder's vectors)",
                classifier.loaded.name
            );
        }
        classifier.subtract_label_prior = self.subtract_label_prior;
        classifier.set_label_cache_capacity(self.label_cache);
        if quantization.is_none() && !self.f32 {
            if let Some(to) = gliznet::classifier::default_precision(&classifier.device) {
                classifier.quantize(to)?;
            }
        }
        match quantization {
            Some((to @ Quantization::Int8, _)) => {
                classifier.quantize(to)?;
                if !gliznet::model::has_fast_int8_kernel() {
                    eprintln!(
                        "warning: this CPU has no AVX-512 VNNI, so --quantize runs a portable \
                         int8 kernel that is several times slower than f32 (the scores are the \
                         same as on a VNNI CPU)"
                    );
                }
            }
            Some((to @ Quantization::Bf16, _)) => {
                classifier.quantize(to)?;
                if !gliznet::model::has_fast_bf16_kernel() {
                    eprintln!(
                        "warning: --bf16 runs the bf16-rounded values through the f32 products \
                         here (no AMX tile unit the process may use, or GLIZNET_BF16_KERNEL=f32): \
                         no faster than f32; the scores are the same as with AMX up to the order \
                         of summation (GLIZNET_BF16_KERNEL=avx512bf16 runs them on AVX512_BF16 \
                         where the CPU has it)"
                    );
                }
            }
            None => {}
        }
        Ok(classifier)
    }
}

/// The device spec for CPU-only work (the int8 and bf16 kernels are CPU code): `auto` means the CPU, and a
/// GPU is a usage error naming `flag`, whatever the machine has.
fn cpu_device<'a>(spec: &'a str, flag: &str) -> Result<&'a str> {
    match spec {
        "auto" | "cpu" => Ok("cpu"),
        _ => Err(input_error(format!(
            "{flag} runs on the CPU only (the int8 and bf16 kernels are CPU code); it cannot be used with --device {spec}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_device;

    #[test]
    fn quantize_keeps_to_the_cpu() {
        assert_eq!(cpu_device("auto", "--quantize").unwrap(), "cpu");
        assert_eq!(cpu_device("cpu", "--quantize").unwrap(), "cpu");
        for gpu in ["cuda", "cuda:0", "cuda:1"] {
            let err = cpu_device(gpu, "--quantize").unwrap_err();
            assert!(gliznet::error::is_input_error(&err));
            assert!(
                err.to_string().contains("--quantize runs on the CPU only"),
                "{err}"
            );
        }
    }
}
