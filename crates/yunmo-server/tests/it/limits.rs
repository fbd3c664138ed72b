use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::TestServer;

/// A connection that sent `head` (and `body`), with reads that give up after `timeout`.
fn send(address: &str, head: &str, body: &[u8], timeout: Duration) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream
}

/// The status and body of the response on `stream`, or `None` when the server closed it without one.
fn response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => {
                bytes.extend_from_slice(&chunk[..read]);
                let text = String::from_utf8_lossy(&bytes);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end].lines().find_map(|line| {
                        line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                    });
                    if length.is_some_and(|length| bytes.len() >= end + 4 + length) {
                        break;
                    }
                }
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

/// Whether the server has closed `stream` (end of stream or reset), waiting at most the read timeout.
fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

async fn admin_key(server: &TestServer, scopes: &[&str]) -> String {
    let bootstrap = std::fs::read_to_string(server.data_dir.join("data/bootstrap-admin.key")).unwrap();
    let response = server
        .client
        .post(format!("{}/api/v1/keys", server.url))
        .bearer_auth(bootstrap.trim())
        .json(&json!({ "scopes": scopes }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<serde_json::Value>().await.unwrap()["key"].as_str().unwrap().to_string()
}

/// Management JSON bodies are refused before they are read: by scope first, then by declared length, then
/// while reading; an upload's declared length past max_upload_bytes likewise.
#[tokio::test]
async fn oversized_and_unauthorized_bodies_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("YUNMO__AUTH__ENABLED", "true"), ("YUNMO__SERVER__MAX_JSON_BYTES", "4096"), ("YUNMO__SERVER__MAX_UPLOAD_BYTES", "100000")];
    let server = TestServer::start(dir.path(), &env).await;
    let infer_only = admin_key(&server, &["infer"]).await;
    let writer = admin_key(&server, &["models:write", "models:read"]).await;
    let timeout = Duration::from_secs(5);

    // 400 MiB declared, 10 bytes sent: the 403 comes at once, without waiting for the rest.
    let head = |key: &str, path: &str, length: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    for path in ["/api/v1/models", "/api/v1/keys", "/api/v1/tenants"] {
        let started = Instant::now();
        let mut stream = send(&server.address, &head(&infer_only, path, 400 << 20), b"{\"name\": ", timeout);
        let (status, text) = response(&mut stream).expect("an answer before the body is sent");
        assert_eq!(status, 403, "{path}: {text}");
        assert!(text.contains("permission_denied"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(3), "{path} waited for the body");
    }
    let mut stream = send(&server.address, &head(&writer, "/api/v1/models", 400 << 20), b"{", timeout);
    let (status, text) = response(&mut stream).expect("an answer before the body is sent");
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("server.max_json_bytes = 4096"), "{text}");

    // Without a declared length, the limit applies while reading.
    let big = json!({ "name": "m", "description": "x".repeat(8000) }).to_string();
    let response_big = server
        .client
        .post(format!("{}/api/v1/models", server.url))
        .bearer_auth(&writer)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunked(big.into_bytes())))
        .send()
        .await
        .unwrap();
    assert_eq!(response_big.status(), 413);

    let (status, body) = server.post_json("/api/v1/models", &json!({"name": "m"})).await;
    assert_eq!(status, 401, "{body}");
    let created =
        server.client.post(format!("{}/api/v1/models", server.url)).bearer_auth(&writer).json(&json!({"name": "m"})).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let upload_head = format!(
        "POST /api/v1/models/m/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {writer}\r\nContent-Type: application/octet-stream\r\nContent-Length: 200000\r\n\r\n"
    );
    let mut stream = send(&server.address, &upload_head, b"", timeout);
    let (status, text) = response(&mut stream).expect("an answer before the upload is sent");
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_upload_bytes = 100000"), "{text}");
    assert!(server.files("staging").is_empty());
    server.stop();
}

/// A body sent as a stream of chunks, so that no Content-Length is declared.
fn chunked(bytes: Vec<u8>) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures::stream::iter(bytes.chunks(1000).map(|chunk| Ok(chunk.to_vec())).collect::<Vec<_>>())
}

/// Request bytes held across requests stay under max_inflight_bytes: a request past it gets 429 with
/// Retry-After, and room comes back when the holder finishes.
#[tokio::test]
async fn request_bytes_in_flight_are_bounded_by_one_budget() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("YUNMO__SERVER__MAX_BODY_BYTES", "1000000"), ("YUNMO__SERVER__MAX_INFLIGHT_BYTES", "1500000")];
    let server = TestServer::start(dir.path(), &env).await;
    server.push("iris", "iris_mlp.onnx", "").await;
    let head = |length: usize| {
        format!("POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n")
    };
    // A holds 900 kB of an unfinished body.
    let mut holder = send(&server.address, &head(1_000_000), &vec![b' '; 900_000], Duration::from_secs(5));
    // The server holds A's bytes once /metrics says so.
    server.wait_for_metric_value("yunmo_inflight_request_bytes ", |held| held >= 900_000.0).await;
    // A small request still fits.
    let (status, body) = server.infer_iris("/v2/models/iris/infer").await;
    assert_eq!(status, 200, "{body}");
    // 700 kB more does not.
    let (status, body) = server.post_bytes("/v2/models/iris/infer", vec![b' '; 700_000], &[]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("server.max_inflight_bytes = 1500000"), "{body}");
    // A finishes (a malformed body: 400); its bytes are given back.
    holder.write_all(&vec![b' '; 100_000]).unwrap();
    let (status, _) = response(&mut holder).unwrap();
    assert_eq!(status, 400);
    let (status, body) = server.post_bytes("/v2/models/iris/infer", vec![b' '; 700_000], &[]).await;
    assert_eq!(status, 400, "after the holder finished, the budget has room again: {body}");
    server.stop();
}

/// Slow request heads and idle connections are closed; a request in flight is not, however long it takes.
#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("YUNMO__SERVER__HEADER_READ_TIMEOUT_SECONDS", "1"),
        ("YUNMO__SERVER__IDLE_TIMEOUT_SECONDS", "1"),
        ("YUNMO__BACKENDS__ONNX__INTRA_OP_THREADS", "1"),
    ];
    let server = TestServer::start(dir.path(), &env).await;
    server.push("slow", "slow.onnx", "").await;
    let read = Duration::from_millis(100);
    // Slowloris: 30 connections that never finish their head.
    let mut slow: Vec<TcpStream> =
        (0..30).map(|_| send(&server.address, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"", read)).collect();
    // HTTP/2 (prior knowledge) that opens and then sends nothing.
    let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
    let mut idle_h2 = send(&server.address, preface, &settings, read);
    // What is under test is time itself: 0.3 s in, well before the 1 s header timeout, all are open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open_now = |stream: &mut TcpStream| {
        stream.set_nonblocking(true).unwrap();
        let open = !closed(stream);
        stream.set_nonblocking(false).unwrap();
        open
    };
    assert!(slow.iter_mut().all(open_now), "closed before the header timeout");
    // Each read blocks until the server closes the connection (about 1 s in), or fails the test at 4 s.
    for stream in &mut slow {
        stream.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
        assert!(closed(stream), "a connection that never finished its head is still open");
    }
    idle_h2.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut drained = Vec::new();
    let _ = idle_h2.read_to_end(&mut drained);
    assert!(closed(&mut idle_h2), "an idle HTTP/2 connection is still open");

    // A request that computes for about 3 s on a connection idle-timed at 1 s is answered.
    let rows = 2048;
    let body = json!({"inputs": [{"name": "x", "shape": [rows, 1], "datatype": "FP32", "data": vec![1.0f32; rows]}]});
    let started = Instant::now();
    // On a new connection: the client's pooled one from the upload may be closing as idle right now.
    let response = reqwest::Client::new().post(format!("{}/v2/models/slow/infer", server.url)).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let response_body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{response_body}");
    assert!(started.elapsed() > Duration::from_millis(1500), "the slow model was fast: the test proves nothing");
    server.stop();
}

/// `yunmo_connections` as `GET /metrics` on `stream` (kept alive) reports it.
fn connections_gauge(stream: &mut TcpStream) -> Option<f64> {
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, length) = loop {
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "the server closed the metrics connection");
        bytes.extend_from_slice(&chunk[..read]);
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .expect("a content-length")
                .trim()
                .parse::<usize>()
                .unwrap();
            break (end + 4, length);
        }
    };
    while bytes.len() < head_end + length {
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "the server closed the metrics connection");
        bytes.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&bytes[head_end..head_end + length]).into_owned();
    text.lines().find(|line| line.starts_with("yunmo_connections ")).and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// At max_connections new connections wait (with a warning in the log) until one closes; the open-file
/// limit is raised to its maximum at start.
#[tokio::test]
async fn connections_past_the_limit_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[("YUNMO__SERVER__MAX_CONNECTIONS", "3")]).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let open_files: Vec<&str> = limits.lines().find(|line| line.starts_with("Max open files")).unwrap().split_whitespace().collect();
    assert_eq!(open_files[3], open_files[4], "the soft open-file limit is raised to the hard one: {limits}");

    // Two connections that send nothing, and a third that reads the connections gauge until the server
    // shows all three accepted (each holding its slot); it stays open too.
    let mut held: Vec<TcpStream> = (0..2).map(|_| send(&server.address, "", b"", Duration::from_secs(1))).collect();
    let mut watcher = send(&server.address, "", b"", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    while connections_gauge(&mut watcher) != Some(3.0) {
        assert!(Instant::now() < deadline, "the server never showed 3 connections");
    }
    held.push(watcher);
    let client = reqwest::Client::builder().timeout(Duration::from_millis(800)).build().unwrap();
    let waiting = client.get(format!("{}/v2/health/live", server.url)).send().await;
    assert!(waiting.is_err(), "a fourth connection was served: {waiting:?}");
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("Connection limit reached"), "{log}");
    drop(held);
    let served = reqwest::Client::new().get(format!("{}/v2/health/live", server.url)).send().await.unwrap();
    assert_eq!(served.status(), 200, "a slot came free when the held connections closed");
    server.stop();
}
