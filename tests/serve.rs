//! `gliznet serve` end to end: the real binary on 127.0.0.1 (an ephemeral port), a real HTTP
//! client (ureq), a tiny seeded model.

use gliznet::model::head::Similarity;
use gliznet::testing::write_tiny_model;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_gliznet");

struct Server {
    child: Child,
    base: String,
    stderr: Mutex<mpsc::Receiver<String>>,
    _model: TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let model = TempDir::new().unwrap();
        write_tiny_model(model.path(), Similarity::Cosine, Some(16), 3).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--port", "0", "--model"])
            .arg(model.path())
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let base = loop {
            let line = stderr
                .recv_timeout(Duration::from_secs(30))
                .expect("the server printed no address");
            if let Some(address) = line.strip_prefix("listening on ") {
                break address.to_string();
            }
        };
        let server = Self {
            child,
            base,
            stderr: Mutex::new(stderr),
            _model: model,
        };
        let start = Instant::now();
        while server.get("/health").0 != 200 {
            assert!(start.elapsed() < Duration::from_secs(30), "never ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let response = Self::agent()
            .get(format!("{}{path}", self.base))
            .call()
            .unwrap();
        read(response)
    }

    fn post(&self, body: &str) -> (u16, String) {
        self.post_with(body, None).0
    }

    /// POST /v1/classify; also returns the Retry-After header.
    fn post_with(&self, body: &str, key: Option<&str>) -> ((u16, String), Option<String>) {
        let mut request = Self::agent()
            .post(format!("{}/v1/classify", self.base))
            .header("Content-Type", "application/json");
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let response = request.send(body).unwrap();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (read(response), retry)
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the metric reaches `value`; fails after `within` saying `what`.
    fn wait_for_metric(&self, name: &str, value: f64, within: Duration, what: &str) {
        let start = Instant::now();
        while self.metric(name) < value {
            assert!(start.elapsed() < within, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn terminate(&mut self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(response: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response.into_body().read_to_string().unwrap_or_default();
    (status, body)
}

fn predict(model: &Path, texts: &[&str], extra: &[&str]) -> String {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut file = std::fs::File::create(&input).unwrap();
    for t in texts {
        writeln!(file, "{}", json!({ "text": t })).unwrap();
    }
    let out = Command::new(BIN)
        .args([
            "predict",
            "--format",
            "json",
            "--batch-size",
            "32",
            "--model",
        ])
        .arg(model)
        .arg("--input")
        .arg(&input)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const TEXTS: [&str; 5] = [
    "the team won the final match",
    "rates rose again at the central bank",
    "a short one",
    "slow cooked beans with garlic and a long list of other things in a pot",
    "the team won the final match",
];

#[test]
fn classify_answers_what_predict_prints_byte_for_byte() {
    let server = Server::start(&[]);
    let model = server._model.path().to_path_buf();
    let (status, body) =
        server.post(&json!({"texts": TEXTS, "labels": ["sports", "economy", "food"]}).to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        predict(&model, &TEXTS, &["--labels", "sports,economy,food"])
    );

    let (status, body) = server.post(
        &json!({"texts": TEXTS, "labels": ["sports", "economy", "food"], "multi_label": false})
            .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        predict(
            &model,
            &TEXTS,
            &["--labels", "sports,economy,food", "--single-label"]
        )
    );

    let (status, body) = server.post(
        &json!({"text": TEXTS[0], "labels": ["sports", "food"], "threshold": 0.9}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        predict(
            &model,
            &TEXTS[..1],
            &["--labels", "sports,food", "--threshold", "0.9"]
        )
    );

    // Per-text labels, in the request's order.
    let (status, body) = server.post(
        &json!({"texts": [{"text": "x y", "labels": ["b", "a"]}, "z"], "labels": ["c"]})
            .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let names = |i: usize| -> Vec<String> {
        answer[i]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["label"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(0), ["b", "a"]);
    assert_eq!(names(1), ["c"]);
    assert_eq!(answer[1]["text"], "z");
}

#[test]
fn concurrent_requests_each_get_their_own_answers() {
    let server = Server::start(&["--max-wait-ms", "50"]);
    let request = |i: usize| {
        let texts: Vec<String> = (0..1 + i % 5)
            .map(|j| format!("text {i} part {j} {}", "word ".repeat(i % 7)))
            .collect();
        let labels: Vec<String> = (0..2 + i % 4).map(|k| format!("label {i} {k}")).collect();
        json!({"texts": texts, "labels": labels}).to_string()
    };
    // Each request alone first: the reference answers.
    let alone: Vec<Value> = (0..64)
        .map(|i| {
            let (status, body) = server.post(&request(i));
            assert_eq!(status, 200, "{body}");
            serde_json::from_str(&body).unwrap()
        })
        .collect();
    let batches_before = server.metric("gliznet_batch_texts_count");
    let together: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let server = &server;
                let body = request(i);
                scope.spawn(move || {
                    let (status, body) = server.post(&body);
                    assert_eq!(status, 200, "{body}");
                    serde_json::from_str::<Value>(&body).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let batches = server.metric("gliznet_batch_texts_count") - batches_before;
    assert!(
        batches < 64.0,
        "64 concurrent requests ran in {batches} batches: none were batched together"
    );
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        assert_eq!(a.len(), b.len(), "request {i}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x["text"], y["text"], "request {i}");
            let (xl, yl) = (
                x["labels"].as_array().unwrap(),
                y["labels"].as_array().unwrap(),
            );
            assert_eq!(xl.len(), yl.len());
            for (p, q) in xl.iter().zip(yl) {
                assert_eq!(p["label"], q["label"], "request {i}");
                let (p, q) = (p["score"].as_f64().unwrap(), q["score"].as_f64().unwrap());
                assert!((p - q).abs() <= 1e-6, "request {i}: {p} vs {q}");
            }
        }
    }
}

#[test]
fn bad_input_gets_a_4xx_that_names_the_field() {
    let server = Server::start(&["--max-labels", "4", "--max-request-bytes", "2000"]);
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "not valid JSON"),
        ("[1, 2]".into(), 400, "must be a JSON object"),
        (
            json!({"texts": "one", "labels": ["a"]}).to_string(),
            400,
            "texts: expected a list",
        ),
        (
            json!({"texts": [1], "labels": ["a"]}).to_string(),
            400,
            "texts[0]: expected a string",
        ),
        (
            json!({"texts": [], "labels": ["a"]}).to_string(),
            400,
            "texts: the list is empty",
        ),
        (
            json!({"text": "t", "labels": "a"}).to_string(),
            400,
            "labels: expected a list of strings",
        ),
        (
            json!({"text": "t", "labels": ["a", 3]}).to_string(),
            400,
            "labels[1]: expected a string",
        ),
        (
            json!({"text": "t", "labels": []}).to_string(),
            400,
            "labels",
        ),
        (
            json!({"text": "t", "labels": ["a", "a"]}).to_string(),
            400,
            "labels",
        ),
        (
            json!({"text": "t", "labels": ["a", " "]}).to_string(),
            400,
            "labels",
        ),
        (
            json!({"text": " ", "labels": ["a"]}).to_string(),
            400,
            "text: the text is empty",
        ),
        (json!({"text": "t"}).to_string(), 400, "text: no labels"),
        (
            json!({"texts": [{"text": "t", "labels": ["a", "a"]}]}).to_string(),
            400,
            "texts[0].labels",
        ),
        (
            json!({"texts": [{"txt": "t"}], "labels": ["a"]}).to_string(),
            400,
            "texts[0]: unknown field \"txt\"",
        ),
        (
            json!({"text": "t", "labels": ["a"], "colour": 1}).to_string(),
            400,
            "unknown field \"colour\"",
        ),
        (
            json!({"text": "t", "labels": ["a"], "threshold": 2}).to_string(),
            400,
            "threshold: 2 is outside",
        ),
        (
            json!({"text": "t", "labels": ["a"], "threshold": "x"}).to_string(),
            400,
            "threshold: expected a number",
        ),
        (
            json!({"text": "t", "labels": ["a"], "multi_label": "yes"}).to_string(),
            400,
            "multi_label: expected true or false",
        ),
        (
            json!({"text": "t", "labels": ["a"], "multi_label": false, "threshold": 0.5})
                .to_string(),
            400,
            "threshold applies to multi-label",
        ),
        (
            json!({"text": "t", "texts": ["u"], "labels": ["a"]}).to_string(),
            400,
            "not both",
        ),
        (
            json!({"text": "t", "labels": ["a", "b", "c", "d", "e"]}).to_string(),
            413,
            "labels: 5 labels are more than one text may have",
        ),
        (
            json!({"text": "t".repeat(3000), "labels": ["a"]}).to_string(),
            413,
            "larger than 2000 bytes",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, answer) = server.post(&body);
        assert_eq!(got, status, "{body}: {answer}");
        let error: Value = serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{answer}"));
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
        assert!(error["error"]["type"].is_string());
    }
    let (status, body) = server.get("/no/such/route");
    assert_eq!(status, 404);
    assert!(body.contains("not_found"));
    let (status, _) = server.get("/v1/classify");
    assert_eq!(status, 405);
    // Still serving after all that.
    assert_eq!(
        server
            .post(&json!({"text": "t", "labels": ["a"]}).to_string())
            .0,
        200
    );
    assert!(server.metric("gliznet_requests_total{route=\"/v1/classify\",status=\"400\"}") >= 19.0);
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    // The first request waits in the batcher for up to 3 s, holding both queue places.
    let server = Server::start(&["--max-queue", "2", "--max-wait-ms", "3000"]);
    std::thread::scope(|scope| {
        let first =
            scope.spawn(|| server.post(&json!({"texts": ["a", "b"], "labels": ["x"]}).to_string()));
        server.wait_for_metric(
            "gliznet_queue_texts",
            2.0,
            Duration::from_secs(3),
            "the first request never queued",
        );
        let ((status, body), retry) =
            server.post_with(&json!({"text": "c", "labels": ["x"]}).to_string(), None);
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("queue is full"), "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(first.join().unwrap().0, 200);
    });
    // More texts than the queue can ever hold is a request too large, not an overload.
    let (status, body) =
        server.post(&json!({"texts": ["a", "b", "c"], "labels": ["x"]}).to_string());
    assert_eq!(status, 413, "{body}");
}

#[test]
fn an_api_key_guards_every_route_but_health() {
    let server = Server::start_with_env(
        &["--api-key-env", "GLIZNET_TEST_KEY"],
        &[("GLIZNET_TEST_KEY", "s3cret")],
    );
    let body = json!({"text": "t", "labels": ["a"]}).to_string();
    assert_eq!(server.post_with(&body, None).0 .0, 401);
    assert_eq!(server.post_with(&body, Some("wrong")).0 .0, 401);
    assert_eq!(server.post_with(&body, Some("s3cre")).0 .0, 401);
    assert_eq!(server.post_with(&body, Some("s3cret")).0 .0, 200);
    assert_eq!(server.get("/health").0, 200);
    for path in ["/info", "/metrics", "/v1/models", "/openapi.json"] {
        assert_eq!(server.get(path).0, 401, "{path}");
    }

    let out = Command::new(BIN)
        .args([
            "serve",
            "--port",
            "0",
            "--api-key-env",
            "GLIZNET_TEST_NO_SUCH_VARIABLE",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GLIZNET_TEST_NO_SUCH_VARIABLE"));
}

/// Issue 35, defect 11: the scheme of `Authorization` is case-insensitive (RFC 7235).
#[test]
fn the_authorization_scheme_is_matched_without_regard_to_case() {
    let server = Server::start_with_env(
        &["--api-key-env", "GLIZNET_TEST_KEY"],
        &[("GLIZNET_TEST_KEY", "s3cret")],
    );
    let body = json!({"text": "t", "labels": ["a"]}).to_string();
    let post = |authorization: &str| {
        let response = Server::agent()
            .post(format!("{}/v1/classify", server.base))
            .header("Content-Type", "application/json")
            .header("Authorization", authorization)
            .send(&body)
            .unwrap();
        read(response).0
    };
    for good in [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER s3cret",
        "bEaReR  s3cret",
    ] {
        assert_eq!(post(good), 200, "{good}");
    }
    for bad in [
        "Basic s3cret",
        "bearers3cret",
        "bearer s3cre",
        "bearer S3CRET",
        "s3cret",
        "Bearer",
    ] {
        assert_eq!(post(bad), 401, "{bad}");
    }
}

#[test]
fn info_metrics_and_openapi_describe_the_server() {
    let server = Server::start(&[]);
    let (status, info) = server.get("/info");
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    for field in [
        "model",
        "threshold",
        "max_length",
        "quantized",
        "device",
        "version",
    ] {
        assert!(!info[field].is_null(), "/info lacks {field}: {info}");
    }
    assert_eq!(info["device"], "cpu");
    assert_eq!(info["quantized"], false);
    let default_precision = if gliznet::model::has_fast_bf16_kernel() {
        "bf16"
    } else {
        "f32"
    };
    assert_eq!(info["precision"], default_precision, "{info}");
    let (_, models) = server.get("/v1/models");
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"][0]["id"], info["model"]);

    assert_eq!(
        server
            .post(&json!({"text": "t", "labels": ["a", "b"]}).to_string())
            .0,
        200
    );
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "gliznet_requests_total{route=\"/v1/classify\",status=\"200\"} 1",
        "gliznet_request_duration_seconds_bucket",
        "gliznet_batch_texts_bucket",
        "gliznet_batch_tokens_bucket",
        "gliznet_queue_texts 0",
        "gliznet_texts_scored_total 1",
    ] {
        assert!(metrics.contains(name), "no {name} in:\n{metrics}");
    }

    let (status, openapi) = server.get("/openapi.json");
    assert_eq!(status, 200);
    let openapi: Value = serde_json::from_str(&openapi).unwrap();
    for route in gliznet::serve::ROUTES {
        assert!(
            openapi["paths"][route].is_object(),
            "{route} is not in /openapi.json"
        );
    }
    assert_eq!(
        openapi["paths"].as_object().unwrap().len(),
        gliznet::serve::ROUTES.len()
    );
}

#[test]
fn sigterm_answers_requests_in_flight_then_exits_0() {
    let mut server = Server::start(&["--max-wait-ms", "1500"]);
    let base = server.base.clone();
    let in_flight = std::thread::spawn(move || {
        let response = Server::agent()
            .post(format!("{base}/v1/classify"))
            .send(json!({"texts": ["a", "b"], "labels": ["x", "y"]}).to_string())
            .unwrap();
        read(response)
    });
    server.wait_for_metric(
        "gliznet_queue_texts",
        2.0,
        Duration::from_secs(1),
        "the request never queued",
    );
    server.terminate();
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let exit = server.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    let stderr = server.stderr.lock().unwrap();
    let said: Vec<String> =
        std::iter::from_fn(|| stderr.recv_timeout(Duration::from_secs(5)).ok()).collect();
    assert!(said.iter().any(|l| l.contains("shutting down")), "{said:?}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(BIN)
        .args(["serve", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

#[test]
fn a_client_that_goes_away_frees_its_work() {
    let server = Server::start(&["--max-wait-ms", "1500"]);
    let address = server.base.trim_start_matches("http://").to_string();
    let body = json!({"texts": ["a", "b", "c"], "labels": ["x"]}).to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST /v1/classify HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    server.wait_for_metric(
        "gliznet_queue_texts",
        3.0,
        Duration::from_secs(1),
        "the request never queued",
    );
    drop(stream);
    server.wait_for_metric(
        "gliznet_cancelled_texts_total",
        3.0,
        Duration::from_secs(5),
        "the abandoned texts were scored anyway",
    );
    assert_eq!(server.metric("gliznet_texts_scored_total"), 0.0);
    assert_eq!(server.metric("gliznet_queue_texts"), 0.0);
}

/// Sends `request` on a fresh connection (then shuts down the sending side when `half_close`),
/// and reads until the server closes or `wait` passes. Returns the time to the first byte of
/// the answer (or to the end) and everything read.
fn raw_exchange(
    server: &Server,
    request: &[u8],
    half_close: bool,
    wait: Duration,
) -> (Duration, String) {
    use std::io::Read;
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let start = Instant::now();
    stream.write_all(request).unwrap();
    if half_close {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut answer = Vec::new();
    let mut first_byte = None;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                first_byte.get_or_insert_with(|| start.elapsed());
                answer.extend_from_slice(&buf[..n]);
            }
        }
    }
    (
        first_byte.unwrap_or_else(|| start.elapsed()),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

// Issue 35, defect 4: a request whose Content-Length is over --max-request-bytes is answered
// 413 at once, from the header (it waited 40 s and more for a body it would refuse); a chunked
// body that grows past the limit is 413 too; a body that stops arriving is cut with 408 after
// --request-timeout-s, and headers that stop arriving close the connection.
#[test]
fn issue35_d04_a_body_over_the_limit_is_refused_at_once_and_a_stalled_one_cut() {
    let server = Server::start(&["--max-request-bytes", "2000", "--request-timeout-s", "2"]);
    let wait = Duration::from_secs(10);
    for length in ["2001", "2000000", "99999999999"] {
        let head = format!(
            "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        let (took, answer) = raw_exchange(&server, head.as_bytes(), false, wait);
        assert!(answer.starts_with("HTTP/1.1 413 "), "{length}: {answer}");
        assert!(
            answer.contains("larger than 2000 bytes (--max-request-bytes)"),
            "{answer}"
        );
        assert!(
            took < Duration::from_secs(1),
            "Content-Length {length}: answered after {took:?}"
        );
    }
    let chunk = "x".repeat(3000);
    let chunked = format!(
        "POST /v1/classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (took, answer) = raw_exchange(&server, chunked.as_bytes(), false, wait);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        took < Duration::from_secs(1),
        "chunked: answered after {took:?}"
    );

    let stalled =
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"text\": ";
    let (took, answer) = raw_exchange(&server, stalled, false, wait);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("--request-timeout-s"), "{answer}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "a stalled body was cut after {took:?}"
    );
    let (took, answer) = raw_exchange(
        &server,
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n",
        false,
        wait,
    );
    assert_eq!(answer, "", "headers that never end");
    assert!(
        took < Duration::from_secs(6),
        "the connection was held {took:?}"
    );

    // Still serving, and a body within the limit is read whole.
    let body = json!({"text": "the team won", "labels": ["sports"]}).to_string();
    assert_eq!(server.post(&body).0, 200);
    assert!(server.metric("gliznet_requests_total{route=\"/v1/classify\",status=\"413\"}") >= 4.0);
    assert!(server.metric("gliznet_requests_total{route=\"/v1/classify\",status=\"408\"}") >= 1.0);
}

// Issue 35, defect 12: a client that sends its last request (HTTP/1.0, or Connection: close)
// and shuts down its sending side still reads the answer (it got nothing). On a keep-alive
// connection the end of input still means the client went away (see
// a_client_that_goes_away_frees_its_work).
#[test]
fn issue35_d12_a_half_closed_client_still_reads_the_answer() {
    let server = Server::start(&[]);
    let body = json!({"text": "the team won", "labels": ["sports", "politics"]}).to_string();
    let (status, expected) = server.post(&body);
    assert_eq!(status, 200);
    for (version, connection) in [("1.0", ""), ("1.1", "Connection: close\r\n")] {
        let request = format!(
            "POST /v1/classify HTTP/{version}\r\nHost: x\r\n{connection}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (_, answer) = raw_exchange(&server, request.as_bytes(), true, Duration::from_secs(10));
        assert!(
            answer.starts_with(&format!("HTTP/{version} 200 ")),
            "HTTP/{version}: {answer:?}"
        );
        assert!(answer.ends_with(&expected), "HTTP/{version}: {answer}");
    }
}
