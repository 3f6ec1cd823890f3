//! `gliznet serve` started for a test on 127.0.0.1 (an ephemeral port), a real HTTP client,
//! and the server killed when dropped. Include with `#[path = "support/server.rs"] mod server;`.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestServer {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl TestServer {
    /// Starts `gliznet serve --port 0 ARGS` and waits until `/health` answers 200.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gliznet"))
            .args(["serve", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let base = loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "no address");
            if let Some(address) = line.trim().strip_prefix("listening on ") {
                break address.to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let start = Instant::now();
        while agent
            .get(format!("{base}/health"))
            .call()
            .map_or(true, |r| r.status() != 200)
        {
            assert!(start.elapsed() < Duration::from_secs(30), "never ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, base, agent }
    }

    /// POST /v1/classify with `body`: the status and the answer's text.
    pub fn classify(&self, body: &Value) -> (u16, String) {
        let mut response = self
            .agent
            .post(format!("{}/v1/classify", self.base))
            .send_json(body)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
