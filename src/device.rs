//! Run-time device choice: `auto`, `cpu`, `cuda` or `cuda:N`.

use crate::error::input_error;
use anyhow::Result;
use candle_core::Device;

/// The device to run on, and a notice for stderr when `auto` fell back to the CPU.
pub fn select(spec: &str) -> Result<(Device, Option<String>)> {
    match spec {
        "cpu" => Ok((Device::Cpu, None)),
        "auto" => {
            if !cfg!(feature = "cuda") {
                return Ok((Device::Cpu, None));
            }
            match Device::new_cuda(0) {
                Ok(device) => Ok((device, None)),
                Err(e) => Ok((
                    Device::Cpu,
                    Some(format!("no usable CUDA device ({e}); running on the CPU")),
                )),
            }
        }
        _ => {
            let ordinal = match spec.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| bad_spec(spec))?,
                None => return Err(bad_spec(spec)),
            };
            if !cfg!(feature = "cuda") {
                return Err(input_error(format!(
                    "--device {spec}: this build has no CUDA support (rebuild with --features cuda)"
                )));
            }
            let device = Device::new_cuda(ordinal)
                .map_err(|e| input_error(format!("--device {spec}: {e}")))?;
            Ok((device, None))
        }
    }
}

/// [`select`], telling stderr when `auto` fell back to the CPU.
pub fn choose(spec: &str) -> Result<Device> {
    let (device, notice) = select(spec)?;
    if let Some(notice) = notice {
        eprintln!("notice: {notice}");
    }
    Ok(device)
}

fn bad_spec(spec: &str) -> anyhow::Error {
    input_error(format!(
        "--device {spec:?}: expected auto, cpu, cuda or cuda:N"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert!(select("cpu").unwrap().0.is_cpu());
        assert!(select("auto").is_ok());
        for bad in ["gpu", "cuda:", "cuda:x", "cuda0"] {
            let err = select(bad).unwrap_err();
            assert!(crate::error::is_input_error(&err), "{bad}");
        }
        if !cfg!(feature = "cuda") {
            assert!(select("cuda:1")
                .unwrap_err()
                .to_string()
                .contains("no CUDA support"));
        }
    }
}
