//! Run-time device choice: `auto`, `cpu`, `cuda` or `cuda:N`. Errors say what is wrong with
//! the spec; the caller names where it came from (a flag, a config key).

use crate::error::input_error;
use anyhow::Result;
use candle_core::Device;

/// The device to run on, and a notice for the user when `auto` fell back to the CPU.
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
                    Some(format!(
                        "no usable CUDA device was found ({}); running on the CPU",
                        cuda_cause(&e)
                    )),
                )),
            }
        }
        _ => {
            let ordinal = match spec.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(bad_spec)?,
                None => return Err(bad_spec()),
            };
            if !cfg!(feature = "cuda") {
                return Err(input_error(
                    "this build has no CUDA support (rebuild with --features cuda)",
                ));
            }
            let device = Device::new_cuda(ordinal).map_err(|e| {
                input_error(format!(
                    "no usable CUDA device was found ({})",
                    cuda_cause(&e)
                ))
            })?;
            Ok((device, None))
        }
    }
}

/// The driver's reason in words: candle passes cudarc's errors on as debug strings such as
/// `DriverError(CUDA_ERROR_NO_DEVICE, "no CUDA-capable device is detected")`.
fn cuda_cause(error: &candle_core::Error) -> String {
    let text = error.to_string();
    let quoted = text
        .split_once('"')
        .and_then(|(_, rest)| rest.rsplit_once('"'))
        .map(|(inside, _)| inside.to_string())
        // "<Failure when calling cuGetErrorString()>": the driver could not name its error.
        .filter(|reason| !reason.is_empty() && !reason.starts_with('<'));
    let code = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|word| word.starts_with("CUDA_ERROR_"));
    match (quoted, code) {
        (Some(reason), Some(code)) => format!("{reason}, {code}"),
        (Some(reason), None) => reason,
        (None, Some(code)) => code.to_string(),
        (None, None) => text,
    }
}

fn bad_spec() -> anyhow::Error {
    input_error("expected auto, cpu, cuda or cuda:N")
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

    #[test]
    fn cuda_errors_read_as_words() {
        let driver = candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_STUB_LIBRARY, \"CUDA driver is a stub library\")".into(),
        );
        assert_eq!(
            cuda_cause(&driver),
            "CUDA driver is a stub library, CUDA_ERROR_STUB_LIBRARY"
        );
        let unnamed = candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_STUB_LIBRARY, \"<Failure when calling cuGetErrorString()>\")"
                .into(),
        );
        assert_eq!(cuda_cause(&unnamed), "CUDA_ERROR_STUB_LIBRARY");
        let plain = candle_core::Error::Msg("something else".into());
        assert_eq!(cuda_cause(&plain), "something else");
    }
}
