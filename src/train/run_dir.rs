//! The output directory of a training run: checked before a new run starts in it, and locked
//! for the run's whole life so that two runs cannot interleave their logs and weights. The
//! lock is an advisory file lock ([`DirLock`]): it dies with its process, so a killed run
//! never leaves the directory stuck.

use crate::error::input_error;
use crate::files::{DirLock, LOCK_FILE};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Files and directories that mark a directory as a gliznet run's.
const CHECKPOINT_NAMES: [&str; 2] = ["checkpoint", "checkpoint.old"];
const RUN_NAMES: [&str; 2] = ["metrics.jsonl", "checkpoint.tmp"];

/// How the run starts in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run. With `force`, a directory holding other files or an earlier run is used
    /// anyway: the earlier run's checkpoint and log are deleted, other files of the names the
    /// run writes are replaced.
    Fresh { force: bool },
    /// Continue the run whose checkpoint the directory holds.
    Resume,
}

/// Why a new run may not start in a directory. The CLI words it with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The directory holds an earlier run's checkpoint.
    HoldsRun { dir: PathBuf },
    /// The directory is not empty and is not a gliznet run's (`entry` is one of its files).
    NotEmpty { dir: PathBuf, entry: String },
    /// The path exists and is not a directory.
    NotADirectory { dir: PathBuf },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::HoldsRun { dir } => {
                write!(f, "{} already holds a training run", dir.display())
            }
            Refusal::NotEmpty { dir, entry } => write!(
                f,
                "{} is not empty (it holds {entry}) and is not a gliznet run directory",
                dir.display()
            ),
            Refusal::NotADirectory { dir } => write!(f, "{} is not a directory", dir.display()),
        }
    }
}

impl std::error::Error for Refusal {}

/// A locked run directory; the lock is released when this is dropped.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    /// True when opening created the directory, and the lock file: if the run then ends
    /// before writing its log, both are removed again (no debris in a refused directory).
    created: bool,
    lock_created: bool,
    lock: Option<DirLock>,
}

impl RunDir {
    /// Creates `dir` if needed, locks it (an input error naming the holder's pid when another
    /// process has it), and for a fresh start checks what it holds (a [`Refusal`] otherwise).
    pub fn open(dir: &Path, start: Start) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(Refusal::NotADirectory {
                dir: dir.to_path_buf(),
            }
            .into());
        }
        let created = !dir.exists();
        std::fs::create_dir_all(dir)
            .map_err(|e| input_error(format!("cannot create {}: {e}", dir.display())))?;
        let mut run_dir = Self {
            dir: dir.to_path_buf(),
            created,
            lock_created: !dir.join(LOCK_FILE).exists(),
            lock: None,
        };
        run_dir.lock = Some(DirLock::acquire(dir)?);
        if let Start::Fresh { force } = start {
            let entries = run_dir.entries()?;
            let holds_run = entries
                .iter()
                .any(|e| CHECKPOINT_NAMES.contains(&e.as_str()));
            let is_run = holds_run || entries.iter().any(|e| RUN_NAMES.contains(&e.as_str()));
            if !force {
                if holds_run {
                    return Err(Refusal::HoldsRun {
                        dir: dir.to_path_buf(),
                    }
                    .into());
                }
                if !is_run {
                    if let Some(entry) = entries.first() {
                        return Err(Refusal::NotEmpty {
                            dir: dir.to_path_buf(),
                            entry: entry.clone(),
                        }
                        .into());
                    }
                }
            }
            // What an earlier run left: its checkpoint and log do not belong to the new run.
            for name in CHECKPOINT_NAMES.iter().chain(&RUN_NAMES) {
                let path = dir.join(name);
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else if path.exists() {
                    std::fs::remove_file(&path)
                } else {
                    Ok(())
                };
                removed.with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        Ok(run_dir)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The directory's entries other than the lock file, sorted.
    fn entries(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?
        {
            let entry = entry.with_context(|| format!("cannot read {}", self.dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != LOCK_FILE {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.lock.is_some() && self.lock_created && !self.dir.join(RUN_NAMES[0]).exists() {
            let _ = std::fs::remove_file(self.dir.join(LOCK_FILE));
            if self.created {
                let _ = std::fs::remove_dir(&self.dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_refuses_foreign_files_and_earlier_runs_unless_forced() {
        let root = tempfile::TempDir::new().unwrap();
        let dir = root.path().join("out");
        // Created for the run and removed again when nothing was written.
        drop(RunDir::open(&dir, Start::Fresh { force: false }).unwrap());
        assert!(!dir.exists());

        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), "backbone").unwrap();
        let err = RunDir::open(&dir, Start::Fresh { force: false }).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Refusal>(),
            Some(Refusal::NotEmpty { entry, .. }) if entry == "model.safetensors"
        ));
        assert!(
            !dir.join(LOCK_FILE).exists(),
            "a refused directory keeps no lock file"
        );
        drop(RunDir::open(&dir, Start::Fresh { force: true }).unwrap());
        assert!(dir.join("model.safetensors").exists());

        std::fs::create_dir(dir.join("checkpoint")).unwrap();
        std::fs::write(dir.join("metrics.jsonl"), "{}\n").unwrap();
        let err = RunDir::open(&dir, Start::Fresh { force: false }).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Refusal>(),
            Some(Refusal::HoldsRun { .. })
        ));
        drop(RunDir::open(&dir, Start::Resume).unwrap());
        assert!(dir.join("checkpoint").exists());
        drop(RunDir::open(&dir, Start::Fresh { force: true }).unwrap());
        assert!(!dir.join("checkpoint").exists() && !dir.join("metrics.jsonl").exists());

        // A run that never checkpointed may be started over without --force.
        std::fs::write(dir.join("metrics.jsonl"), "{}\n").unwrap();
        drop(RunDir::open(&dir, Start::Fresh { force: false }).unwrap());
        assert!(!dir.join("metrics.jsonl").exists());
    }

    #[test]
    fn a_locked_run_directory_names_the_holder() {
        let root = tempfile::TempDir::new().unwrap();
        let held = RunDir::open(root.path(), Start::Resume).unwrap();
        let err = RunDir::open(root.path(), Start::Resume).unwrap_err();
        assert!(crate::error::is_input_error(&err));
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        RunDir::open(root.path(), Start::Resume).unwrap();
    }
}
