//! Output checks made before any work (destinations, standard output), and the `--format`
//! values.

use anyhow::{bail, Result};
use clap::ValueEnum;
use gliznet::error::input_error;
use gliznet::files::{destination, same_file};
use gliznet::results::Format;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Checks output files before any work: each must be writable where it would land (see
/// [`gliznet::files::destination`]), and none may be the same file as an input (`-` is standard
/// input and never a file) or as another output. Messages name the flags.
pub fn check_outputs(outputs: &[(&str, &Path)], inputs: &[(&str, &Path)]) -> Result<()> {
    for (i, &(flag, path)) in outputs.iter().enumerate() {
        destination(path).map_err(|e| input_error(format!("{flag} {}: {e}", path.display())))?;
        for &(input_flag, input) in inputs {
            if input.as_os_str() != "-" && same_file(path, input) {
                return Err(input_error(format!(
                    "{flag} {} is the same file as {input_flag} {}; refusing to overwrite an input",
                    path.display(),
                    input.display()
                )));
            }
        }
        for &(other_flag, other) in &outputs[..i] {
            if same_file(path, other) {
                return Err(input_error(format!(
                    "{flag} {} and {other_flag} {} are the same file",
                    path.display(),
                    other.display()
                )));
            }
        }
    }
    Ok(())
}

/// Set (by the binary, before the Rust runtime starts) when standard output was closed at
/// start (`gliznet … >&-`): the runtime then quietly opens /dev/null in its place.
pub static STDOUT_CLOSED_AT_START: AtomicBool = AtomicBool::new(false);

/// Fails when standard output was closed when the program started: every result would be
/// lost, with exit code 0.
pub fn check_stdout() -> Result<()> {
    if STDOUT_CLOSED_AT_START.load(Ordering::Relaxed) {
        bail!(
            "standard output is closed; the results would be lost (redirect it to a file, or \
             to /dev/null to discard them)"
        );
    }
    Ok(())
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Table,
    Json,
    Jsonl,
}

impl From<FormatArg> for Format {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Table => Format::Table,
            FormatArg::Json => Format::Json,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}
