//! gliznet's side of the benchmark (bench/run.py): prediction throughput in one process, model
//! loaded once. Prints one JSON line per configuration.
//!
//!     throughput MODEL_DIR|builtin LABELS_FILE TEXTS_FILE... [--reps N] [--batches 16,1]
//!                [--device auto|cpu|cuda[:N]] [--quantize | --bf16] [--f32-kernel portable|avx2|avx512]
//!
//! `--f32-kernel` forces the f32 products' kernel (default: the one gliznet picks for this CPU).

use anyhow::{Context, Result};
use gliznet::classifier::{Classifier, LabelSet, Method};
use gliznet::model::checkpoint::ModelSource;
use gliznet::model::{F32Kernel, Quantization};
use gliznet::scoring::ScoreMode;
use std::time::Instant;

fn main() -> Result<()> {
    gliznet::tune_malloc();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let reps: usize = option("--reps").map_or(Ok(3), |r| r.parse())?;
    let batches: Vec<usize> = option("--batches")
        .map_or("16,1", |b| b.as_str())
        .split(',')
        .map(|b| b.parse().context("--batches: comma-separated batch sizes"))
        .collect::<Result<_>>()?;
    if let Some(name) = option("--f32-kernel") {
        F32Kernel::from_name(name)
            .and_then(F32Kernel::set)
            .with_context(|| {
                format!(
                    "--f32-kernel {name}: not one this CPU runs (it runs {:?})",
                    F32Kernel::available()
                )
            })?;
    }
    eprintln!(
        "{}: f32 kernels {} (this family's choice: {})",
        gliznet::model::CpuId::of_this_machine().describe(),
        F32Kernel::current().name(),
        F32Kernel::preferred().name()
    );
    let device = gliznet::device::select(option("--device").map_or("cpu", |d| d.as_str()))?.0;
    let positional: Vec<&String> = args.iter().take_while(|a| !a.starts_with("--")).collect();
    let [model, labels_file, texts @ ..] = positional.as_slice() else {
        anyhow::bail!(
            "usage: throughput MODEL_DIR LABELS_FILE TEXTS_FILE... [--reps N] [--batches B,..] [--device D] [--quantize | --bf16] [--f32-kernel K]"
        );
    };
    let mut classifier = Classifier::load(
        &ModelSource::resolve(Some(model.as_str()).filter(|m| *m != "builtin"))?,
        device,
    )?;
    let flag = |name: &str| args.iter().any(|a| a == name);
    match (flag("--quantize"), flag("--bf16")) {
        (true, true) => anyhow::bail!("--quantize and --bf16 exclude each other"),
        (true, false) => classifier.quantize(Quantization::Int8)?,
        (false, true) => classifier.quantize(Quantization::Bf16)?,
        (false, false) => {}
    }
    let all_labels =
        gliznet::data::labels::read_label_file(std::path::Path::new(labels_file.as_str()))?;
    for texts_file in texts.iter() {
        let texts: Vec<String> = std::fs::read_to_string(texts_file.as_str())?
            .lines()
            .map(|l| {
                Ok(serde_json::from_str::<serde_json::Value>(l)?["text"]
                    .as_str()
                    .context("text")?
                    .to_string())
            })
            .collect::<Result<_>>()?;
        for k in [5, 20, 50] {
            let labels: LabelSet = classifier.described_label_set(&all_labels[..k])?;
            for &batch in &batches {
                let mut rates = Vec::new();
                for _ in 0..reps {
                    let start = Instant::now();
                    for group in texts.chunks(batch) {
                        let items: Vec<(&str, &LabelSet)> =
                            group.iter().map(|t| (t.as_str(), &labels)).collect();
                        classifier.scores(
                            &items,
                            ScoreMode::MultiLabel { threshold: 0.5 },
                            Method::Gliznet,
                            batch,
                        )?;
                    }
                    rates.push(texts.len() as f64 / start.elapsed().as_secs_f64());
                }
                rates.sort_by(f64::total_cmp);
                println!(
                    "{}",
                    serde_json::json!({"texts": texts_file, "k": k, "batch": batch, "texts_per_second": rates[rates.len() / 2], "runs": rates})
                );
            }
        }
    }
    Ok(())
}
