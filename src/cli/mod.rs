//! Command-line interface: argument definitions and one module per subcommand. The library
//! below never sees clap types.

mod eval;
mod generate;
mod mine;
mod model_args;
pub mod output;
pub mod predict;
mod serve;
pub mod train;

use anyhow::Result;

/// The largest `--batch-size` accepted (sequences or strings per encoder pass). Far above what
/// helps throughput; it keeps a typo from asking for an allocation the machine cannot make.
pub const MAX_BATCH_SIZE: i64 = 1024;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "gliznet",
    version,
    long_version = gliznet::model::builtin::LONG_VERSION,
    about = "Zero-shot text classification: score any labels against a text in one encoder pass",
    long_about = "Zero-shot text classification. A text and any set of label names are packed \
                  into one encoder sequence, [CLS] text [SEP] label_1 [SEP] label_2 [SEP] …, \
                  and every label is scored in a single pass.\n\n\
                  Exit codes: 0 success, 2 bad usage or bad input, 1 any other failure."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Score labels for one or more texts
    Predict(predict::PredictArgs),
    /// Fine-tune a model on texts with positive and negative labels
    Train(train::TrainArgs),
    /// Score a labelled JSONL file and report accuracy, F1, AUC, thresholds and ranking
    Eval(eval::EvalArgs),
    /// Add hard (or random) negative labels to training examples
    MineNegatives(mine::MineArgs),
    /// Serve the classifier over HTTP, batching concurrent requests
    Serve(serve::ServeArgs),
    /// Make training examples with an LLM behind an OpenAI-compatible API (Ollama, Groq, …)
    Generate(generate::GenerateArgs),
}

/// Opens the device named by `spec` (`auto|cpu|cuda[:N]`), telling stderr when `auto` fell
/// back to the CPU; errors start with `place` (the flag or config key it came from).
fn open_device(spec: &str, place: &str) -> Result<candle_core::Device> {
    let (device, notice) = gliznet::device::select(spec)
        .map_err(|e| gliznet::error::input_error(format!("{place} {spec}: {e}")))?;
    if let Some(notice) = notice {
        eprintln!("notice: {notice}");
    }
    Ok(device)
}

/// The label list given to every text by `--labels` or `--labels-file`, with the flag it came
/// from (for errors about it); `None` when neither was given.
fn shared_labels(
    list: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<(Vec<gliznet::data::labels::Label>, &'static str)>> {
    use gliznet::data::labels::Label;
    Ok(match (list, file) {
        (Some(list), _) => Some((
            gliznet::data::labels::parse_label_list(list)
                .map_err(|e| gliznet::error::input_error(format!("--labels {e}")))?
                .into_iter()
                .map(Label::Name)
                .collect(),
            "--labels",
        )),
        (None, Some(path)) => Some((
            gliznet::data::labels::read_label_file(path)?,
            "--labels-file",
        )),
        (None, None) => None,
    })
}

/// A progress bar of `len` units drawn with `template`, on a terminal only.
fn progress_bar(len: u64, template: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// `GLIZNET_F32_KERNEL` forces the f32 products' kernels (`portable`, `avx2`, `avx512`)
/// instead of the ones chosen for this CPU family.
pub const F32_KERNEL_VAR: &str = "GLIZNET_F32_KERNEL";
/// `GLIZNET_BF16_KERNEL` forces the bf16 layers' kernel (`f32`, `avx512bf16`, `amx`).
pub const BF16_KERNEL_VAR: &str = "GLIZNET_BF16_KERNEL";

/// Applies the kernel `var` names, if it is set: `set` returns `None` for a kernel this CPU
/// lacks, and the error lists the `available` ones.
fn force_kernel<K>(
    var: &str,
    from_name: impl Fn(&str) -> Option<K>,
    set: impl Fn(K) -> Option<()>,
    available: &[&str],
) -> Result<()> {
    let Some(name) = std::env::var_os(var) else {
        return Ok(());
    };
    let name = name.to_string_lossy();
    from_name(&name).and_then(set).ok_or_else(|| {
        gliznet::error::input_error(format!(
            "{var}={name}: this CPU runs {}",
            available.join(", ")
        ))
    })
}

fn force_kernels() -> Result<()> {
    use gliznet::model::{Bf16Kernel, F32Kernel};
    let f32_kernels: Vec<&str> = F32Kernel::available().iter().map(|k| k.name()).collect();
    force_kernel(
        F32_KERNEL_VAR,
        F32Kernel::from_name,
        F32Kernel::set,
        &f32_kernels,
    )?;
    let bf16_kernels: Vec<&str> = Bf16Kernel::available().iter().map(|k| k.name()).collect();
    force_kernel(
        BF16_KERNEL_VAR,
        Bf16Kernel::from_name,
        Bf16Kernel::set,
        &bf16_kernels,
    )
}

pub fn run(cli: Cli) -> Result<()> {
    force_kernels()?;
    match cli.command {
        Command::Predict(args) => predict::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::MineNegatives(args) => mine::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Generate(args) => generate::run(args),
    }
}
