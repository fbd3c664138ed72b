use serde_json::json;

use crate::harness::TestServer;

fn versions(body: &serde_json::Value) -> Vec<u64> {
    body["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn models_and_versions_through_the_management_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]).await;
    let created = json!({
        "name": "iris", "description": "Iris species", "task": "classification",
        "labels": {"team": "botany"}, "metadata": {"dataset": "iris", "rows": 150}
    });
    let (status, body) = server.post_json("/api/v1/models", &created).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version_policy"], json!({"kind": "latest"}));

    let v5 = server.push("iris", "iris_logreg.onnx", "?version=5").await;
    assert_eq!(v5["version"], 5);
    assert_eq!(v5["loaded"], false, "versions load lazily");
    assert_eq!(v5["inputs"], json!([{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]));
    let v6 = server.push("iris", "iris_mlp.onnx", "?config=%7B%22instance_count%22%3A2%7D").await;
    assert_eq!(v6["version"], 6, "the next number follows the highest");
    assert_eq!(v6["config"]["instance_count"], 2);
    let (status, body) = server.post_bytes("/api/v1/models/iris/versions?version=5", b"x".to_vec(), &[]).await;
    assert_eq!(status, 409, "{body}");

    let (status, body) = server.infer_iris("/v2/models/iris/infer").await;
    assert_eq!((status, body["model_version"].as_str()), (200, Some("6")));
    let (_, version) = server.get("/api/v1/models/iris/versions/6").await;
    assert_eq!(version["loaded"], true, "loaded by the first request");

    // Pin version 5.
    let (status, body) = server
        .client
        .patch(format!("{}/api/v1/models/iris", server.url))
        .json(&json!({"version_policy": {"kind": "pinned", "version": 5}}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, ()))
        .unwrap();
    assert_eq!(status, 200, "{body:?}");
    let (_, body) = server.infer_iris("/v2/models/iris/infer").await;
    assert_eq!(body["model_version"], "5");
    let (_, metadata) = server.get("/v2/models/iris").await;
    assert_eq!(metadata["versions"], json!(["5", "6"]));
    let (status, body) = server
        .client
        .delete(format!("{}/api/v1/models/iris/versions/5", server.url))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, ()))
        .unwrap();
    assert_eq!(status, 400, "a pinned version cannot be deleted {body:?}");
    let status = server
        .client
        .patch(format!("{}/api/v1/models/iris", server.url))
        .json(&json!({"version_policy": {"kind": "pinned", "version": 7}}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 400, "cannot pin a missing version");

    // Explicit unload and load.
    let (status, body) = server.post_json("/api/v1/models/iris/versions/5/unload", &json!({})).await;
    assert_eq!((status, body["loaded"].as_bool()), (200, Some(false)));
    let (status, body) = server.infer_iris("/v2/models/iris/infer").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("unloaded"));
    let (status, _) = server.get("/v2/models/iris/ready").await;
    assert_eq!(status, 503);
    let (status, body) = server.post_json("/api/v1/models/iris/versions/5/load", &json!({})).await;
    assert_eq!((status, body["loaded"].as_bool()), (200, Some(true)));
    let (status, _) = server.get("/v2/models/iris/versions/5/ready").await;
    assert_eq!(status, 200);

    // Config change: the next request reloads with it.
    let response = server
        .client
        .put(format!("{}/api/v1/models/iris/versions/5/config", server.url))
        .json(&json!({"max_batch_size": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let two_rows = json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8]}]});
    let (status, body) = server.post_json("/v2/models/iris/infer", &two_rows).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("batch size 2 exceeds max_batch_size 1"), "{body}");

    // Everything survives a restart.
    server.stop();
    let server = TestServer::start(dir.path(), &[]).await;
    let (status, model) = server.get("/api/v1/models/iris").await;
    assert_eq!(status, 200);
    assert_eq!(versions(&model), [5, 6]);
    assert_eq!(model["metadata"], json!({"dataset": "iris", "rows": 150}));
    assert_eq!(model["labels"], json!({"team": "botany"}));
    assert_eq!(model["version_policy"], json!({"kind": "pinned", "version": 5}));
    let (_, body) = server.infer_iris("/v2/models/iris/infer").await;
    assert_eq!(body["model_version"], "5");

    // Deleting removes rows and files.
    assert_eq!(server.delete("/api/v1/models/iris/versions/6").await, 204);
    assert_eq!(server.files("sha256").len(), 1);
    assert_eq!(server.delete("/api/v1/models/iris").await, 204);
    assert_eq!(server.delete("/api/v1/models/iris").await, 404);
    assert!(server.files("sha256").is_empty());
    let (status, _) = server.infer_iris("/v2/models/iris/infer").await;
    assert_eq!(status, 404);
    let (status, list) = server.get("/api/v1/models").await;
    assert_eq!((status, list["models"].as_array().unwrap().len()), (200, 0));
    server.stop();
}

#[tokio::test]
async fn the_cli_pushes_lists_infers_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]).await;
    let yunmo = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_yunmo")).args(args).args(["--url", &server.url]).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let model = crate::harness::fixture("iris_mlp.onnx");
    let (ok, stdout, stderr) = yunmo(&[
        "models",
        "push",
        model.to_str().unwrap(),
        "--name",
        "iris",
        "--task",
        "classification",
        "--config",
        r#"{"labels": ["setosa", "versicolor", "virginica"]}"#,
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("Pushed") && stderr.contains("version 1"), "{stderr}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["config"]["labels"][2], "virginica");
    let (ok, stdout, _) = yunmo(&["models", "ls"]);
    assert!(ok);
    let row: Vec<&str> = stdout.lines().find(|line| line.starts_with("iris ")).expect("a row for iris").split_whitespace().collect();
    assert_eq!(row, ["iris", "1", "classification", "no", &std::fs::metadata(&model).unwrap().len().to_string()], "{stdout}");
    let header = stdout.lines().next().unwrap();
    let data = stdout.lines().find(|line| line.starts_with("iris ")).unwrap();
    assert_eq!(header.find("TASK"), data.find("classification"), "columns line up:\n{stdout}");
    assert_eq!(header.find("LOADED"), data.find(" no ").map(|i| i + 1), "columns line up:\n{stdout}");
    let request = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"probabilities","parameters":{"classification":1}}]}"#;
    let (ok, stdout, stderr) = yunmo(&["infer", "iris", "--input", request]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(":0:setosa"), "{stdout}");
    let (ok, _, stderr) = yunmo(&["infer", "iris", "--input", r#"{"inputs":[]}"#]);
    assert!(!ok);
    assert!(stderr.contains("missing input 'X'") && stderr.contains("HTTP 400"), "{stderr}");
    // A refused push leaves nothing behind: no empty model.
    let junk = dir.path().join("not-a-model.onnx");
    std::fs::write(&junk, b"this is not a model").unwrap();
    let (ok, _, stderr) = yunmo(&["models", "push", junk.to_str().unwrap(), "--name", "junk"]);
    assert!(!ok && stderr.contains("not a model in a supported format"), "{stderr}");
    let (status, body) = server.get("/api/v1/models/junk").await;
    assert_eq!(status, 404, "a failed push left a model behind: {body}");
    let (ok, _, _) = yunmo(&["models", "rm", "iris"]);
    assert!(ok);
    let (ok, _, stderr) = yunmo(&["models", "rm", "iris"]);
    assert!(!ok && stderr.contains("not found"), "{stderr}");
    server.stop();
}
