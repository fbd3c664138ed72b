//! Starts and stops the real binary; small HTTP helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The fixture model at `name`, from the cache.
pub fn fixture(name: &str) -> PathBuf {
    let cache = std::env::var_os("YUNMO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/yunmo"));
    let dir = std::env::var_os("YUNMO_FIXTURES").map(PathBuf::from).unwrap_or_else(|| cache.join("fixtures"));
    let path = dir.join(name);
    assert!(path.exists(), "missing fixture {}: run scripts/test.sh, which fetches and builds the fixtures", path.display());
    path
}

/// The last `lines` lines of `data_dir/server.log`.
fn log_tail(data_dir: &Path, lines: usize) -> String {
    let log = std::fs::read_to_string(data_dir.join("server.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// A running `yunmo serve`.
pub struct TestServer {
    pub child: Child,
    pub url: String,
    pub address: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
}

impl TestServer {
    /// Starts the binary on port 0 with `data_dir`, and extra `YUNMO__*` environment.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        let ready_file = data_dir.join("ready.json");
        let _ = std::fs::remove_file(&ready_file);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("server.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_yunmo"));
        command
            .args(["serve", "--http-port", "0", "--grpc-port", "0", "--data-dir"])
            .arg(data_dir.join("data"))
            .arg("--ready-file")
            .arg(&ready_file)
            .stdout(Stdio::null())
            .stderr(log);
        // These tests are about serving; tenancy tests turn auth on by passing YUNMO__AUTH__ENABLED=true.
        command.env("YUNMO__AUTH__ENABLED", "false");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start yunmo");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready_file.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("yunmo exited early with {status}; the end of its log:\n{}", log_tail(data_dir, 20));
            }
            assert!(Instant::now() < deadline, "yunmo did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready: Value = serde_json::from_str(&std::fs::read_to_string(&ready_file).unwrap()).unwrap();
        let address = ready["http"].as_str().unwrap().to_string();
        yunmo_cli::install_tls_provider();
        TestServer { child, url: format!("http://{address}"), address, data_dir: data_dir.to_path_buf(), client: reqwest::Client::new() }
    }

    /// The last `lines` lines of the server's log, for a failing assertion's message.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.data_dir, lines)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "yunmo exited with {exit} after SIGTERM");
    }

    /// Kills the process with SIGKILL.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path}", self.url)).send().await.unwrap();
        parse(response).await
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self.client.get(format!("{}{path}", self.url)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Waits until `/metrics` has a line starting with `prefix` whose value passes `ok`.
    pub async fn wait_for_metric_value(&self, prefix: &str, ok: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, text) = self.get_text("/metrics").await;
            let value = |line: &str| line.rsplit(' ').next().and_then(|value| value.parse::<f64>().ok());
            if text.lines().any(|line| line.starts_with(prefix) && value(line).is_some_and(&ok)) {
                return;
            }
            assert!(Instant::now() < deadline, "no metric {prefix} after 30 s:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.client.post(format!("{}{path}", self.url)).json(body).send().await.unwrap();
        parse(response).await
    }

    pub async fn post_bytes(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.url)).body(body);
        for (key, value) in headers {
            request = request.header(*key, *value);
        }
        parse(request.send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.client.delete(format!("{}{path}", self.url)).send().await.unwrap().status().as_u16()
    }

    /// Creates a model (if needed) and uploads `fixture_name` as a version; returns the version JSON.
    pub async fn push(&self, model: &str, fixture_name: &str, query: &str) -> Value {
        let (status, _) = self.get(&format!("/api/v1/models/{model}")).await;
        if status == 404 {
            let (status, body) = self.post_json("/api/v1/models", &serde_json::json!({ "name": model })).await;
            assert_eq!(status, 201, "{body}");
        }
        let bytes = std::fs::read(fixture(fixture_name)).unwrap();
        let (status, body) = self.post_bytes(&format!("/api/v1/models/{model}/versions{query}"), bytes, &[]).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// One V2 JSON inference on the iris models (input X FP32[N,4]).
    pub async fn infer_iris(&self, path: &str) -> (u16, Value) {
        let body = serde_json::json!({
            "inputs": [{ "name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2] }]
        });
        self.post_json(path, &body).await
    }

    /// Names of the files in the staging area and the store.
    pub fn files(&self, folder: &str) -> Vec<String> {
        let dir = self.data_dir.join("data/artifacts").join(folder);
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }
}

async fn parse(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, value)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A failed test must not leave a server behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
