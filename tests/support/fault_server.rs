//! tests/support/fault_server.py, the OpenAI-compatible server that misbehaves on purpose,
//! driven from a test. Include with `#[path = "support/fault_server.rs"] mod fault_server;`.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The fault server on a free port of 127.0.0.1, playing `script`: comma-separated behaviours
/// (`ok`, `429`, `slow`, … listed in fault_server.py), one per request in arrival order, the
/// last one repeating. Killed when dropped.
pub struct FaultServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl FaultServer {
    /// Starts it with its request log in `dir`.
    pub fn start(dir: &Path, script: &str) -> Self {
        let log = dir.join("server.log");
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fault_server.py"))
            .arg(script)
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the fault server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .expect("the fault server prints its port");
        Self { child, port, log }
    }

    /// The requests it has received so far, as it logged them.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
