//! A Redis server (Debian's `redis-server`) with its own directory and no persistence.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{free_port, stop, wait_for_port};

/// A running Redis on 127.0.0.1, without a password, that keeps nothing on disk.
pub struct Redis {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts one in a temporary directory.
    pub fn start() -> Redis {
        let dir = tempfile::Builder::new().prefix("yunmo-redis-").tempdir().expect("make a temporary directory");
        let mut redis = Redis { dir, port: free_port(), child: None };
        redis.resume();
        redis
    }

    /// Its URL (database 0).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops it at once (SIGKILL): what it held is lost, as when the limit store's host dies.
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "KILL");
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "Redis is already running");
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .expect("redis-server is not installed: run scripts/system-deps.sh");
        let mut child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_for_port(self.port, "redis-server", &mut child, Duration::from_secs(20));
        self.child = Some(child);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.pause();
    }
}
