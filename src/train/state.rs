//! Where a run stands ([`TrainerState`]) and the checkpoint that keeps it: the model, the
//! optimizer's moments and the state, swapped into the run directory whole (see
//! [`crate::train::run_dir`]) and read back when the run resumes.

use crate::config::TrainConfig;
use crate::error::input_error;
use crate::model::checkpoint;
use crate::train::run_dir::{RunDir, STATE_FILE};
use crate::train::setup::TrainableModel;
use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// The best validation so far: its step and its score on `early_stopping_metric`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: usize,
    pub metric: f64,
}

/// Where training stands; saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TrainerState {
    pub(crate) config: TrainConfig,
    pub(crate) epoch: usize,
    /// Optimizer steps already taken within `epoch`.
    pub(crate) step_in_epoch: usize,
    pub(crate) step: usize,
    pub(crate) best: Option<Best>,
    pub(crate) evals_without_improvement: usize,
    pub(crate) finished: bool,
    /// Training loss summed over the steps since the last log line, and their number.
    pub(crate) unlogged_loss: f64,
    pub(crate) unlogged_steps: usize,
}

impl TrainerState {
    pub(crate) fn new(config: TrainConfig) -> Self {
        Self {
            config,
            epoch: 0,
            step_in_epoch: 0,
            step: 0,
            best: None,
            evals_without_improvement: 0,
            finished: false,
            unlogged_loss: 0.0,
            unlogged_steps: 0,
        }
    }

    /// The state saved in the run directory's latest checkpoint, and that checkpoint. The
    /// config must be the one saved, but for where the run lives and what it runs on.
    pub(crate) fn resume(run_dir: &RunDir, config: &TrainConfig) -> Result<(Self, PathBuf)> {
        let dir = run_dir.latest_checkpoint()?;
        let state: TrainerState = read_json(&dir.join(STATE_FILE))?;
        // Where the run lives and what it runs on may change between sessions.
        let saved = TrainConfig {
            output_dir: config.output_dir.clone(),
            device: config.device.clone(),
            ..state.config.clone()
        };
        if saved != *config {
            return Err(input_error(format!(
                "the config differs from the one saved in {} in {}; resume with the same \
                 config",
                dir.display(),
                saved.differing_keys(config).join(", ")
            )));
        }
        Ok((state, dir))
    }

    /// Writes the checkpoint: the model, the optimizer's moments and this state.
    pub(crate) fn save_checkpoint(&self, run_dir: &RunDir, parts: &TrainableModel) -> Result<()> {
        run_dir.save_checkpoint(|tmp| {
            save_model(parts, tmp)?;
            candle_core::safetensors::save(&parts.optimizer.state(), tmp.join(OPTIMIZER_FILE))
                .with_context(|| format!("cannot write {}", tmp.join(OPTIMIZER_FILE).display()))?;
            std::fs::write(tmp.join(STATE_FILE), serde_json::to_string_pretty(self)?)
                .with_context(|| format!("cannot write {}", tmp.join(STATE_FILE).display()))
        })
    }
}

/// Loads the optimizer's moments saved in checkpoint `dir` into `parts`, `step` steps in.
pub(crate) fn load_optimizer(
    parts: &mut TrainableModel,
    dir: &Path,
    step: usize,
    device: &Device,
) -> Result<()> {
    let moments = candle_core::safetensors::load(dir.join(OPTIMIZER_FILE), device)
        .with_context(|| format!("cannot read {}", dir.join(OPTIMIZER_FILE).display()))?;
    parts.optimizer.load_state(&moments, step)?;
    Ok(())
}

/// Writes the model (weights, configs, tokenizer) into `dir`.
pub(crate) fn save_model(parts: &TrainableModel, dir: &Path) -> Result<()> {
    checkpoint::save(
        dir,
        &parts.encoder_config,
        &parts.model_config,
        &parts.tensors(),
        parts.tokenizer.inner(),
    )
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| input_error(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| input_error(format!("{}: {e}", path.display())))
}
