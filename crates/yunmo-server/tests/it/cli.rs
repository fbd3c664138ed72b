use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{TestServer, fixture};

/// Runs `yunmo ARGS --url URL` with `env`; returns success, stdout and stderr.
fn yunmo(url: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_yunmo"));
    command.args(args).args(["--url", url]).env_remove("YUNMO_API_KEY");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The commands users reach for, and how the CLI fails: clear messages, no panics, no backtraces.
#[tokio::test]
async fn the_cli_manages_sharing_loading_configs_tenants_and_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[("YUNMO__AUTH__ENABLED", "true")]).await;
    let admin_key = std::fs::read_to_string(dir.path().join("data/bootstrap-admin.key")).unwrap().trim().to_string();
    let key = [("YUNMO_API_KEY", admin_key.as_str())];
    // host:port without a scheme is http://host:port.
    let url = server.address.clone();
    let model = fixture("iris_mlp.onnx");

    let (ok, _, stderr) = yunmo(&url, &["models", "ls"], &[("RUST_BACKTRACE", "1")]);
    assert!(!ok);
    assert!(stderr.contains("--api-key") && stderr.contains("YUNMO_API_KEY"), "the missing key is explained: {stderr}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("stack backtrace") && !stderr.contains(" at "), "{stderr}");
    let (ok, _, stderr) = yunmo("ftp://example", &["models", "ls"], &key);
    assert!(!ok && stderr.contains("--url"), "{stderr}");

    for name in ["iris", "other"] {
        let (ok, _, stderr) = yunmo(&url, &["models", "push", model.to_str().unwrap(), "--name", name], &key);
        assert!(ok, "{stderr}");
    }
    // A reader that goes away early is no error and no panic.
    let mut piped = Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' models ls --url {url} | head -1", env!("CARGO_BIN_EXE_yunmo")))
        .env("YUNMO_API_KEY", &admin_key)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = piped.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(piped.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success() && !stderr.contains("panicked"), "{stderr}");

    let (ok, stdout, stderr) = yunmo(&url, &["tenants", "create", "acme"], &key);
    assert!(ok, "{stdout}{stderr}");
    let (ok, stdout, stderr) = yunmo(&url, &["models", "share", "iris", "--tenant", "acme"], &key);
    assert!(ok, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), json!({"public": false, "tenants": ["acme"]}));
    let (ok, _, stderr) = yunmo(&url, &["models", "share", "iris", "--tenant", "nobody"], &key);
    assert!(!ok && stderr.contains("there is no tenant 'nobody'") && stderr.contains("HTTP 400"), "{stderr}");

    let (ok, _, stderr) = yunmo(&url, &["models", "load", "iris"], &key);
    assert!(ok, "{stderr}");
    let version = server.client.get(format!("{}/api/v1/models/iris/versions/1", server.url)).bearer_auth(&admin_key).send().await.unwrap();
    assert_eq!(version.json::<Value>().await.unwrap()["loaded"], true);
    let (ok, _, stderr) = yunmo(&url, &["models", "unload", "iris", "--version", "1"], &key);
    assert!(ok && stderr.contains("unloaded"), "{stderr}");
    let (ok, stdout, stderr) = yunmo(&url, &["models", "config", "iris", "--set", r#"{"instance_count": 2}"#], &key);
    assert!(ok, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["instance_count"], 2);
    let (ok, stdout, _) = yunmo(&url, &["models", "config", "iris", "--version", "1"], &key);
    assert!(ok && serde_json::from_str::<Value>(&stdout).unwrap()["instance_count"] == 2, "{stdout}");

    let (ok, stdout, _) = yunmo(&url, &["whoami"], &key);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["scopes"], json!(["admin"]));
    let (ok, stdout, _) = yunmo(&url, &["audit", "--limit", "5"], &key);
    assert!(ok && stdout.contains("PUT /api/v1/models/iris/sharing"), "{stdout}");

    // Tenants: one that owns a model is deleted only with its models; its keys stop working at once.
    let (ok, acme_key, stderr) =
        yunmo(&url, &["keys", "create", "--tenant", "acme", "--scope", "models:write", "--scope", "models:read"], &key);
    assert!(ok, "{stderr}");
    let acme = [("YUNMO_API_KEY", acme_key.trim())];
    let (ok, _, stderr) = yunmo(&url, &["models", "push", model.to_str().unwrap(), "--name", "acme-model"], &acme);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = yunmo(&url, &["tenants", "rm", "acme"], &key);
    assert!(!ok && stderr.contains("owns 1 models (acme-model)") && stderr.contains("HTTP 409"), "{stderr}");
    let (ok, _, stderr) = yunmo(&url, &["tenants", "rm", "acme", "--delete-models"], &key);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = yunmo(&url, &["models", "ls"], &acme);
    assert!(!ok && stderr.contains("HTTP 401"), "the deleted tenant's key still works: {stderr}");
    let (ok, stdout, _) = yunmo(&url, &["models", "show", "iris"], &key);
    assert!(ok && serde_json::from_str::<Value>(&stdout).unwrap()["sharing"]["tenants"] == json!([]), "{stdout}");
    let (ok, _, stderr) = yunmo(&url, &["models", "show", "acme-model"], &key);
    assert!(!ok && stderr.contains("not found"), "{stderr}");
    let (ok, _, stderr) = yunmo(&url, &["tenants", "rm", "default"], &key);
    assert!(!ok && stderr.contains("cannot be deleted"), "{stderr}");
    server.stop();
}
