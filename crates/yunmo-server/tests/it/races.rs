use std::time::Duration;

use serde_json::json;

use crate::harness::{TestServer, fixture};

/// Deleting the last version that uses a file while the same file is uploaded as a version of another
/// model: whatever the interleaving, an upload answered 201 must serve, now and after a restart.
#[tokio::test]
async fn a_delete_racing_an_upload_of_the_same_file_never_loses_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), &[]).await;
    let bytes = std::fs::read(fixture("iris_mlp.onnx")).unwrap();
    for name in ["a", "b"] {
        let (status, body) = server.post_json("/api/v1/models", &json!({ "name": name })).await;
        assert_eq!(status, 201, "{body}");
    }
    let mut last = None;
    for round in 0..40u64 {
        let (status, body) = server.post_bytes("/api/v1/models/a/versions", bytes.clone(), &[]).await;
        assert_eq!(status, 201, "{body}");
        let a_version = body["version"].as_u64().unwrap();
        // From here only a's new version refers to the file.
        if let Some(previous) = last {
            assert_eq!(server.delete(&format!("/api/v1/models/b/versions/{previous}")).await, 204);
        }
        let delete = async {
            // Spread the delete over the upload's phases (reading, inspecting, storing).
            tokio::time::sleep(Duration::from_micros((round % 8) * 700)).await;
            server.delete(&format!("/api/v1/models/a/versions/{a_version}")).await
        };
        let upload = server.post_bytes("/api/v1/models/b/versions", bytes.clone(), &[]);
        let (deleted, (status, body)) = tokio::join!(delete, upload);
        assert_eq!(deleted, 204);
        assert_eq!(status, 201, "{body}");
        let b_version = body["version"].as_u64().unwrap();
        let (status, body) = server.infer_iris(&format!("/v2/models/b/versions/{b_version}/infer")).await;
        assert_eq!(status, 200, "round {round}: version {b_version} of b was acknowledged but does not serve: {body}");
        last = Some(b_version);
        // Unload so that the next check reads the file again.
        let (status, _) = server.post_json(&format!("/api/v1/models/b/versions/{b_version}/unload"), &json!({})).await;
        assert_eq!(status, 200);
        let (status, _) = server.post_json(&format!("/api/v1/models/b/versions/{b_version}/load"), &json!({})).await;
        assert_eq!(status, 200, "round {round}: the file of b version {b_version} is gone");
    }
    server.stop();
    server = TestServer::start(dir.path(), &[]).await;
    let version = last.unwrap();
    let (status, body) = server.infer_iris(&format!("/v2/models/b/versions/{version}/infer")).await;
    assert_eq!(status, 200, "after a restart, version {version} of b: {body}");
}
