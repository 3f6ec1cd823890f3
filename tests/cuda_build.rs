//! The CUDA build (`--features cuda`) on a machine without a GPU. CI builds it
//! (scripts/cuda-toolkit.sh) and points these tests at it: GLIZNET_CUDA_BIN is the binary,
//! GLIZNET_CUDA_STUB_LIB the folder of stub driver libraries that let it start. Without those
//! variables the tests say so and pass, unless GLIZNET_REQUIRE_CUDA_BIN=1 (as in CI).

use gliznet::model::head::Similarity;
use gliznet::testing::write_tiny_model;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

struct CudaBuild {
    bin: PathBuf,
    stub_lib: PathBuf,
    model: TempDir,
}

fn cuda_build() -> Option<CudaBuild> {
    let (bin, stub_lib) = match (
        std::env::var_os("GLIZNET_CUDA_BIN"),
        std::env::var_os("GLIZNET_CUDA_STUB_LIB"),
    ) {
        (Some(bin), Some(stub)) => (PathBuf::from(bin), PathBuf::from(stub)),
        _ => {
            assert!(
                std::env::var("GLIZNET_REQUIRE_CUDA_BIN").as_deref() != Ok("1"),
                "GLIZNET_REQUIRE_CUDA_BIN=1 but GLIZNET_CUDA_BIN or GLIZNET_CUDA_STUB_LIB is unset"
            );
            eprintln!("skipped: GLIZNET_CUDA_BIN and GLIZNET_CUDA_STUB_LIB are unset");
            return None;
        }
    };
    assert!(
        bin.is_file(),
        "GLIZNET_CUDA_BIN={} is not a file",
        bin.display()
    );
    assert!(
        stub_lib.join("libcuda.so.1").is_file(),
        "no libcuda.so.1 in GLIZNET_CUDA_STUB_LIB={}",
        stub_lib.display()
    );
    let model = TempDir::new().unwrap();
    write_tiny_model(model.path(), Similarity::Cosine, Some(16), 3).unwrap();
    Some(CudaBuild {
        bin,
        stub_lib,
        model,
    })
}

impl CudaBuild {
    fn predict(&self, extra: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(["predict", "--text", "a text", "--labels", "a,b", "--model"])
            .arg(self.model.path())
            .args(extra)
            .env("LD_LIBRARY_PATH", &self.stub_lib)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn it_is_a_cuda_build() {
    let Some(build) = cuda_build() else { return };
    let out = Command::new(&build.bin)
        .args([
            "predict", "--text", "t", "--labels", "a", "--device", "cuda:x",
        ])
        .env("LD_LIBRARY_PATH", &build.stub_lib)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A CPU build would say "this build has no CUDA support" for any cuda device.
    let out = build.predict(&["--device", "cuda"]);
    assert!(
        !stderr(&out).contains("no CUDA support"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn auto_falls_back_to_the_cpu_with_one_notice() {
    let Some(build) = cuda_build() else { return };
    let out = build.predict(&["--device", "auto", "--format", "jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let notices: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.contains("CUDA"))
        .map(str::to_string)
        .collect();
    assert_eq!(notices.len(), 1, "{}", stderr(&out));
    assert!(
        notices[0].starts_with("notice: no usable CUDA device was found")
            && notices[0].ends_with("running on the CPU"),
        "{}",
        notices[0]
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["labels"].as_array().unwrap().len(), 2);
}

#[test]
fn cuda_without_a_gpu_is_a_clear_input_error() {
    let Some(build) = cuda_build() else { return };
    for device in ["cuda", "cuda:0"] {
        let out = build.predict(&["--device", device]);
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{message}");
        assert!(
            message.contains(&format!(
                "--device {device}: no usable CUDA device was found"
            )),
            "{message}"
        );
        assert!(!message.contains("DriverError"), "{message}");
        assert!(!message.contains("panicked"), "{message}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn quantize_with_a_gpu_stays_a_usage_error() {
    let Some(build) = cuda_build() else { return };
    let out = build.predict(&["--device", "cuda", "--quantize"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--quantize runs on the CPU only"),
        "{}",
        stderr(&out)
    );
    // auto with --quantize is the CPU: no CUDA probe, no notice.
    let out = build.predict(&["--device", "auto", "--quantize"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("CUDA"), "{}", stderr(&out));
}
