//! The output directory of a training run: checked before a new run starts in it, and locked
//! for the run's whole life so that two runs cannot interleave their logs and weights. The
//! lock is an advisory file lock ([`DirLock`]): it dies with its process, so a killed run
//! never leaves the directory stuck.
//!
//! ```text
//! OUTPUT/                 the best model so far (config.json, model.safetensors, tokenizer.json)
//! OUTPUT/metrics.jsonl    one line per log and per validation
//! OUTPUT/checkpoint/      the latest resumable state (written to checkpoint.tmp, then swapped
//!                         in through checkpoint.old, so a crash at any moment leaves one)
//! ```

use crate::error::input_error;
use crate::files::{write_atomically_at, DirLock, LOCK_FILE};
use crate::model::checkpoint::{CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The file a checkpoint is recognised by (written last, before the swap).
pub const STATE_FILE: &str = "trainer_state.json";

/// The model files a run writes into its directory (the best model so far).
const MODEL_NAMES: [&str; 3] = [WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE];

/// Files and directories that mark a directory as a gliznet run's.
const CHECKPOINT_NAMES: [&str; 2] = [CHECKPOINT_DIR, "checkpoint.old"];
const RUN_NAMES: [&str; 2] = [METRICS_FILE, "checkpoint.tmp"];

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
    /// A resumed run's directory holds no checkpoint.
    NoCheckpoint { dir: PathBuf },
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
            Refusal::NoCheckpoint { dir } => {
                write!(f, "{} has no checkpoint to resume from", dir.display())
            }
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
    /// A fresh start in the directory of an earlier run: that run's model files are its own
    /// and go too, once the new run has read what it starts from
    /// ([`RunDir::remove_earlier_model`]).
    earlier_model: bool,
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
            earlier_model: false,
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
            // In a directory that is not a run's, files of the model's names are the user's
            // (a backbone, say) and stay until the new run replaces them.
            run_dir.earlier_model = is_run;
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

    /// On a fresh start in an earlier run's directory, removes that run's model
    /// (`model.safetensors`, `config.json`, `tokenizer.json`), so that nobody loads the old
    /// model from the directory while the new run has not validated yet. Called once the new
    /// run has loaded its backbone (which may be that very model). Other files stay.
    pub fn remove_earlier_model(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.earlier_model) {
            return Ok(());
        }
        for name in MODEL_NAMES {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", path.display()))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The checkpoint to resume from: `checkpoint`, or `checkpoint.old` if a swap was cut
    /// short ([`Refusal::NoCheckpoint`] when there is neither).
    pub fn latest_checkpoint(&self) -> Result<PathBuf> {
        for name in CHECKPOINT_NAMES {
            let dir = self.dir.join(name);
            if dir.join(STATE_FILE).is_file() {
                return Ok(dir);
            }
        }
        Err(Refusal::NoCheckpoint {
            dir: self.dir.clone(),
        }
        .into())
    }

    /// Writes a checkpoint: `write` fills a fresh `checkpoint.tmp` (and must write
    /// [`STATE_FILE`]), which is synced and then swapped in, so that a crash or a failed write
    /// at any moment leaves a complete checkpoint (`checkpoint`, or `checkpoint.old` mid-swap).
    /// A failed write (a full disk) removes `checkpoint.tmp` again: no temporary file is left.
    pub fn save_checkpoint(&self, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let tmp = self.dir.join(RUN_NAMES[1]);
        let old = self.dir.join(CHECKPOINT_NAMES[1]);
        let current = self.dir.join(CHECKPOINT_DIR);
        remove_dir(&tmp)?;
        let swapped = std::fs::create_dir(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))
            .and_then(|()| write(&tmp))
            .and_then(|()| {
                sync_files(&tmp).with_context(|| format!("cannot sync {}", tmp.display()))
            })
            .and_then(|()| {
                if current.exists() {
                    remove_dir(&old)?;
                    std::fs::rename(&current, &old).with_context(|| {
                        format!("cannot move {} to {}", current.display(), old.display())
                    })?;
                }
                std::fs::rename(&tmp, &current).with_context(|| {
                    format!("cannot move {} to {}", tmp.display(), current.display())
                })
            });
        if let Err(e) = swapped {
            // Best effort: the error to report is the write's, not the cleanup's. The previous
            // checkpoint is still `checkpoint` (or `checkpoint.old`, found by
            // `latest_checkpoint`).
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        remove_dir(&old)
    }

    /// The metrics log, opened for appending.
    pub fn open_metrics_log(&self) -> Result<std::fs::File> {
        let path = self.dir.join(METRICS_FILE);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))
    }

    /// Drops log lines written after `step` (those of steps a resumed run will redo), so that
    /// the log reads as one run.
    pub fn truncate_metrics_log(&self, step: usize) -> Result<()> {
        let path = self.dir.join(METRICS_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s as usize <= step)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        write_atomically_at(&path, |tmp| Ok(std::fs::write(tmp, kept)?))
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

fn remove_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

fn sync_files(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        std::fs::File::open(entry?.path())?.sync_all()?;
    }
    Ok(())
}

/// Appends one JSON line and flushes it.
pub fn append_line(log: &mut std::fs::File, line: &serde_json::Value) -> Result<()> {
    writeln!(log, "{line}")?;
    log.flush()?;
    Ok(())
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
        let mut forced = RunDir::open(&dir, Start::Fresh { force: true }).unwrap();
        // Not a run's directory: the model files are the user's, and stay.
        forced.remove_earlier_model().unwrap();
        drop(forced);
        assert!(dir.join("model.safetensors").exists());

        std::fs::create_dir(dir.join("checkpoint")).unwrap();
        std::fs::write(dir.join("metrics.jsonl"), "{}\n").unwrap();
        let err = RunDir::open(&dir, Start::Fresh { force: false }).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Refusal>(),
            Some(Refusal::HoldsRun { .. })
        ));
        let mut resumed = RunDir::open(&dir, Start::Resume).unwrap();
        resumed.remove_earlier_model().unwrap();
        drop(resumed);
        assert!(dir.join("checkpoint").exists() && dir.join("model.safetensors").exists());
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let mut forced = RunDir::open(&dir, Start::Fresh { force: true }).unwrap();
        assert!(!dir.join("checkpoint").exists() && !dir.join("metrics.jsonl").exists());
        // The earlier run's model goes when asked (after the backbone is read); the
        // user's other files stay.
        assert!(dir.join("model.safetensors").exists());
        forced.remove_earlier_model().unwrap();
        assert!(!dir.join("model.safetensors").exists());
        assert!(dir.join("notes.txt").exists());
        drop(forced);
        std::fs::remove_file(dir.join("notes.txt")).unwrap();

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

    fn write_state(dir: &Path, step: usize) -> Result<()> {
        std::fs::write(dir.join(STATE_FILE), format!("{{\"step\": {step}}}"))?;
        Ok(())
    }

    fn saved_step(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(STATE_FILE)).unwrap()
    }

    /// Saving swaps a complete checkpoint in; a failed save leaves the previous one whole; a
    /// swap cut short (only `checkpoint.old` left) is still found; with none, resuming is
    /// refused by name.
    #[test]
    fn checkpoints_are_swapped_in_whole_and_found_after_a_cut_swap() {
        let root = tempfile::TempDir::new().unwrap();
        let run = RunDir::open(root.path(), Start::Fresh { force: false }).unwrap();
        let err = run.latest_checkpoint().unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Refusal>(),
            Some(Refusal::NoCheckpoint { .. })
        ));

        run.save_checkpoint(|tmp| write_state(tmp, 1)).unwrap();
        run.save_checkpoint(|tmp| write_state(tmp, 2)).unwrap();
        let current = run.latest_checkpoint().unwrap();
        assert_eq!(current, root.path().join(CHECKPOINT_DIR));
        assert_eq!(saved_step(&current), "{\"step\": 2}");
        let names = run.entries().unwrap();
        assert_eq!(
            names,
            vec![CHECKPOINT_DIR.to_string()],
            "no tmp or old left"
        );

        let failed = run.save_checkpoint(|tmp| {
            write_state(tmp, 3)?;
            anyhow::bail!("disk full")
        });
        assert!(failed.is_err());
        assert_eq!(
            saved_step(&run.latest_checkpoint().unwrap()),
            "{\"step\": 2}"
        );
        // The next save starts from a clean temporary directory.
        run.save_checkpoint(|tmp| {
            assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
            write_state(tmp, 4)
        })
        .unwrap();

        // A crash between the two renames: only checkpoint.old holds the state.
        std::fs::rename(
            root.path().join(CHECKPOINT_DIR),
            root.path().join(CHECKPOINT_NAMES[1]),
        )
        .unwrap();
        let found = run.latest_checkpoint().unwrap();
        assert_eq!(found, root.path().join(CHECKPOINT_NAMES[1]));
        assert_eq!(saved_step(&found), "{\"step\": 4}");
        run.save_checkpoint(|tmp| write_state(tmp, 5)).unwrap();
        assert_eq!(run.entries().unwrap(), vec![CHECKPOINT_DIR.to_string()]);
    }

    /// Issue 35, defect 8: a save that fails (a full disk) leaves no `checkpoint.tmp` behind,
    /// whether it failed part-way or at once, and the previous checkpoint stays whole.
    #[test]
    fn a_failed_save_leaves_no_temporary_directory() {
        let root = tempfile::TempDir::new().unwrap();
        let run = RunDir::open(root.path(), Start::Fresh { force: false }).unwrap();
        run.save_checkpoint(|tmp| write_state(tmp, 1)).unwrap();
        let failed = run.save_checkpoint(|tmp| {
            std::fs::write(tmp.join("config.json"), "{}")?;
            std::fs::create_dir(tmp.join("part"))?;
            std::fs::write(tmp.join("part/x"), "y")?;
            anyhow::bail!("No space left on device")
        });
        assert!(failed.unwrap_err().to_string().contains("No space left"));
        assert!(
            !root.path().join(RUN_NAMES[1]).exists(),
            "checkpoint.tmp left"
        );
        assert_eq!(run.entries().unwrap(), vec![CHECKPOINT_DIR.to_string()]);
        assert_eq!(
            saved_step(&run.latest_checkpoint().unwrap()),
            "{\"step\": 1}"
        );
        // A write that fails before it writes anything leaves nothing either.
        assert!(run.save_checkpoint(|_| anyhow::bail!("disk full")).is_err());
        assert_eq!(run.entries().unwrap(), vec![CHECKPOINT_DIR.to_string()]);
    }

    /// Resuming at step N drops the log lines of later steps (the steps that will be redone).
    #[test]
    fn the_metrics_log_is_cut_back_to_the_resumed_step() {
        let root = tempfile::TempDir::new().unwrap();
        let run = RunDir::open(root.path(), Start::Fresh { force: false }).unwrap();
        let mut log = run.open_metrics_log().unwrap();
        for step in [10, 20, 30] {
            append_line(
                &mut log,
                &serde_json::json!({"event": "train", "step": step}),
            )
            .unwrap();
        }
        run.truncate_metrics_log(20).unwrap();
        let text = std::fs::read_to_string(root.path().join(METRICS_FILE)).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, vec![10, 20]);
    }
}
