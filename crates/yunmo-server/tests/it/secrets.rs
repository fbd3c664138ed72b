use std::process::Command;

use crate::harness::TestServer;

const KEY: &str = "ym_secret_Zq8vN2mB4xK7pL0wR5tY9uI3oE6aS1dF";

/// A bootstrap key given through the environment, as the README shows, reaches neither the log nor
/// `--print-config`, yet it works.
#[tokio::test]
async fn the_bootstrap_key_is_never_printed_or_logged() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_yunmo"))
        .args(["serve", "--print-config"])
        .env("YUNMO__AUTH__BOOTSTRAP_KEY", KEY)
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(!printed.contains(KEY) && !printed.contains("Zq8vN2mB"), "{printed}");
    assert!(printed.contains("\"bootstrap_key\": \"***\""), "{printed}");

    let env = [("YUNMO__AUTH__ENABLED", "true"), ("YUNMO__AUTH__BOOTSTRAP_KEY", KEY), ("YUNMO__TELEMETRY__LOG_LEVEL", "debug")];
    let server = TestServer::start(dir.path(), &env).await;
    let response = server.client.get(format!("{}/api/v1/whoami", server.url)).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(response.status(), 200, "the configured key is installed and works");
    server.stop();
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("Effective configuration"), "the configuration is logged: {log}");
    assert!(!log.contains("Zq8vN2mB"), "the key leaked into the log:\n{log}");
}
