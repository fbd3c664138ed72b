//! Child processes that stop with their owner, and waiting for a port.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago (the OS's choice of an ephemeral one).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1");
    listener.local_addr().expect("a bound socket has an address").port()
}

/// Waits until something accepts connections on `port` of 127.0.0.1; panics naming `what` after `timeout`.
pub(crate) fn wait_for_port(port: u16, what: &str, child: &mut Child, timeout: Duration) {
    if let Err(error) = try_wait_for_port(port, what, child, timeout) {
        panic!("{error}");
    }
}

/// Waits until something accepts connections on `port` of 127.0.0.1; the error names `what` and whether it
/// exited first (a port taken by another process between our choice and its bind) or took too long.
pub(crate) fn try_wait_for_port(port: u16, what: &str, child: &mut Child, timeout: Duration) -> Result<(), String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited ({status}) before it listened on port {port}"));
        }
        if started.elapsed() >= timeout {
            return Err(format!("{what} did not listen on port {port} within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command to completion; panics with its output if it fails.
pub(crate) fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{what}: cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Sends `signal` to a child and waits for it to exit.
pub(crate) fn stop(child: &mut Child, signal: &str) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
