//! Command-line interface: argument definitions and one module per subcommand. The library
//! below never sees clap types.

mod eval;
mod mine;
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
    long_version = crate::model::builtin::LONG_VERSION,
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
}

/// The device spec to open a model on: int8 kernels (`--quantize`) are CPU code, so `auto`
/// means the CPU then and a GPU is a usage error, whatever the machine has.
fn device_for(spec: &str, quantize: bool) -> Result<&str> {
    if !quantize || spec == "cpu" {
        return Ok(spec);
    }
    if spec == "auto" {
        return Ok("cpu");
    }
    Err(crate::error::input_error(format!(
        "--quantize runs on the CPU only (int8 kernels); it cannot be used with --device {spec}"
    )))
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Predict(args) => predict::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::MineNegatives(args) => mine::run(args),
        Command::Serve(args) => serve::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::device_for;

    #[test]
    fn quantize_keeps_to_the_cpu() {
        assert_eq!(device_for("auto", true).unwrap(), "cpu");
        assert_eq!(device_for("cpu", true).unwrap(), "cpu");
        assert_eq!(device_for("auto", false).unwrap(), "auto");
        assert_eq!(device_for("cuda:1", false).unwrap(), "cuda:1");
        for gpu in ["cuda", "cuda:0"] {
            let err = device_for(gpu, true).unwrap_err();
            assert!(crate::error::is_input_error(&err));
            assert!(
                err.to_string().contains("--quantize runs on the CPU only"),
                "{err}"
            );
        }
    }
}
