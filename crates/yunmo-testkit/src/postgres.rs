//! A PostgreSQL server (Debian's `postgresql` package) with its own data directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{free_port, run, stop, wait_for_port};

/// A running PostgreSQL on 127.0.0.1 whose superuser `yunmo` connects without a password.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Run as the `postgres` user when this process is root (PostgreSQL refuses to run as root).
    as_user: Option<String>,
}

impl Postgres {
    /// Creates a cluster in a temporary directory and starts it.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("yunmo-pg-").tempdir().expect("make a temporary directory");
        let as_user = is_root().then(|| "postgres".to_string());
        if as_user.is_some() {
            run(Command::new("chown").arg("postgres:").arg(dir.path()), "chown the PostgreSQL directory");
        }
        let mut postgres = Postgres { dir, bin, port: free_port(), child: None, as_user };
        let data = postgres.data_dir();
        run(
            postgres
                .command("initdb")
                .args(["-U", "yunmo", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions", "-D"])
                .arg(&data),
            "initdb",
        );
        postgres.resume();
        postgres
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match &self.as_user {
            Some(user) => {
                let mut command = Command::new("setpriv");
                command.args(["--reuid", user, "--regid", user, "--init-groups", "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://yunmo@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        run(self.command("createdb").args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "yunmo", name]), "createdb");
        self.url(name)
    }

    /// Stops the server (a fast shutdown: open connections are closed).
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "INT");
        }
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "PostgreSQL is already running");
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        wait_for_port(self.port, "postgres", &mut child, Duration::from_secs(30));
        // Accepting connections comes a moment after listening: wait until it answers.
        for _ in 0..200 {
            let ready = self.command("pg_isready").args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()]).status();
            if ready.is_ok_and(|status| status.success()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.pause();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

/// The newest installed PostgreSQL's `bin` directory.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|entry| entry.path().join("bin")).filter(|bin| bin.join("postgres").exists()).collect())
        .unwrap_or_default();
    found.sort_by_key(|path| path.parent().and_then(|version| version.file_name()).and_then(|v| v.to_str()?.parse::<u32>().ok()));
    found.pop().expect("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/postgres): run scripts/system-deps.sh")
}
