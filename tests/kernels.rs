//! `GLIZNET_F32_KERNEL` forces each f32 kernel this CPU runs; every one gives the scores of
//! the kernels chosen for this CPU family (f32, up to summation order), and a kernel the CPU
//! lacks, or no kernel at all, is refused by name.

use gliznet::model::{Bf16Kernel, F32Kernel};
use serde_json::Value;
use std::process::{Command, Output};

mod support;
use support::{assert_input_error, assert_success, BIN};

fn predict(kernel: Option<&str>) -> Output {
    predict_with(kernel, "--f32")
}

/// `predict` at `precision` (`--f32`, `--bf16`, `--quantize`) with the f32 kernel forced.
fn predict_with(kernel: Option<&str>, precision: &str) -> Output {
    predict_forcing("GLIZNET_F32_KERNEL", kernel, precision)
}

/// `predict` at `precision` with the kernel variable `var` set to `kernel` (removed if `None`),
/// the other kernel variables removed.
fn predict_forcing(var: &str, kernel: Option<&str>, precision: &str) -> Output {
    let mut command = Command::new(BIN);
    command
        .env_remove("GLIZNET_F32_KERNEL")
        .env_remove("GLIZNET_BF16_KERNEL");
    command.args([
        "predict",
        precision,
        "--format",
        "jsonl",
        "--labels",
        "economy,sports,cooking,weather",
        "--text",
        "The central bank raised interest rates again",
        "--text",
        "Knead the dough, then let it rise in a warm place for an hour before baking",
    ]);
    if let Some(k) = kernel {
        command.env(var, k);
    }
    command.output().unwrap()
}

fn scores(out: &Output) -> Vec<f64> {
    assert_success(out);
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .flat_map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["score"].as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_f32_kernel_gives_the_same_scores() {
    let chosen = scores(&predict(None));
    assert_eq!(chosen.len(), 8);
    for kernel in F32Kernel::available() {
        let forced = scores(&predict(Some(kernel.name())));
        for (a, b) in chosen.iter().zip(&forced) {
            assert!((a - b).abs() < 1e-5, "{}: {a} vs {b}", kernel.name());
        }
    }
}

/// bf16 and int8 layers run their own kernels, but the attention products and the elementwise
/// kernels between them follow the f32 choice: forcing it moves a score by summation order,
/// which int8's dynamic quantization of activations can turn into a rounding step of an
/// activation (measured on the Intel Xeon, family 6 model 167, with the portable kernels: up
/// to 5.6e-3 on 2026-12-07 before the softmax's sums were regrouped, 1.2e-2 after, both on the
/// second text's "cooking"; int8 stays within 0.1 of f32 in hidden states). A wrong kernel moves
/// scores by tenths.
#[test]
fn every_f32_kernel_gives_the_same_scores_in_bf16_and_int8() {
    for (precision, tolerance) in [("--bf16", 2e-3), ("--quantize", 2e-2)] {
        let chosen = scores(&predict_with(None, precision));
        for kernel in F32Kernel::available() {
            let forced = scores(&predict_with(Some(kernel.name()), precision));
            for (a, b) in chosen.iter().zip(&forced) {
                assert!(
                    (a - b).abs() < tolerance,
                    "{precision} {}: {a} vs {b}",
                    kernel.name()
                );
            }
        }
    }
}

/// Each bf16 kernel this CPU runs (the tile unit, AVX512_BF16's `vdpbf16ps`, the f32 products
/// on rounded values) reads the same rounded weights and inputs: scores within the bf16
/// tolerance of the chosen one's, and of f32's.
#[test]
fn every_bf16_kernel_gives_the_same_scores() {
    let f32_scores = scores(&predict(None));
    let chosen = scores(&predict_with(None, "--bf16"));
    for kernel in Bf16Kernel::available() {
        let forced = scores(&predict_forcing(
            "GLIZNET_BF16_KERNEL",
            Some(kernel.name()),
            "--bf16",
        ));
        assert_eq!(forced.len(), 8, "{}", kernel.name());
        for ((a, b), f) in chosen.iter().zip(&forced).zip(&f32_scores) {
            assert!((a - b).abs() < 2e-3, "{}: {a} vs {b}", kernel.name());
            assert!(
                (f - b).abs() < 5e-3,
                "{} against f32: {f} vs {b}",
                kernel.name()
            );
        }
    }
}

#[test]
fn a_kernel_this_cpu_lacks_is_refused_by_name() {
    assert_input_error(
        &predict(Some("sse9")),
        &["GLIZNET_F32_KERNEL=sse9", "this CPU runs", "portable"],
    );
    let out = Command::new(BIN)
        .args(["predict", "--labels", "a,b", "--text", "x"])
        .env("GLIZNET_BF16_KERNEL", "tpu")
        .output()
        .unwrap();
    assert_input_error(&out, &["GLIZNET_BF16_KERNEL=tpu", "this CPU runs", "f32"]);
    if !F32Kernel::Avx512.is_available() {
        assert_input_error(&predict(Some("avx512")), &["GLIZNET_F32_KERNEL=avx512"]);
    }
}
