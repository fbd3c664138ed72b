use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::TestServer;

/// A small tmpfs mounted for the test's life (the test needs root, as CI and the test command run).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).status().unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn requests_in_report(server: &TestServer) -> (u16, u64) {
    let (status, body) = server.get("/api/v1/usage").await;
    let requests = body["rows"].as_array().map_or(0, |rows| rows.iter().map(|row| row["requests"].as_u64().unwrap()).sum());
    (status, requests)
}

async fn infer_n(server: &TestServer, n: usize) {
    for _ in 0..n {
        let (status, body) = server.infer_iris("/v2/models/iris/infer").await;
        assert_eq!(status, 200, "{body}");
    }
}

/// The data directory fills up and is freed again: usage writes that failed are kept and retried, a report
/// that would miss them is refused instead of under-counting, and no database connection is left broken.
#[tokio::test]
async fn usage_survives_a_full_disk_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = Tmpfs::mount(&data, "8m");
    let env = [("YUNMO__AUTH__USAGE_FLUSH_MS", "100")];
    let mut server = TestServer::start(dir.path(), &env).await;
    server.push("iris", "iris_mlp.onnx", "").await;
    infer_n(&server, 20).await;
    assert_eq!(requests_in_report(&server).await, (200, 20));

    // Fill the disk.
    let filler = data.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![7u8; 64 << 10];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
    drop(file);
    infer_n(&server, 30).await;
    // The report flushes first, which cannot write to the full disk.
    let (status, _) = requests_in_report(&server).await;
    assert_eq!(status, 503, "a report that would miss unwritten events is refused");

    // Free it: the kept events are written, and later ones too, on connections that work.
    std::fs::remove_file(&filler).unwrap();
    infer_n(&server, 25).await;
    // Ten flushes after the disk came back (a report flushes first), each on whatever pooled connection it
    // gets, between the writer's own every 100 ms: every one must work and count exactly.
    for flushed in 1..=10 {
        infer_n(&server, 1).await;
        assert_eq!(requests_in_report(&server).await, (200, 75 + flushed), "every request is counted once");
    }
    server.stop();
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(!log.contains("non-zero transaction depth"), "a pooled connection was left inside a failed transaction:\n{log}");
    assert!(log.contains("Cannot write usage events"), "the disk never filled: the test proves nothing");
    server = TestServer::start(dir.path(), &env).await;
    assert_eq!(requests_in_report(&server).await, (200, 85), "after a restart");
    server.stop();
}
