use crate::harness::TestServer;

#[tokio::test]
async fn sigterm_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]).await;
    server.push("effnet", "efficientnet_lite0.onnx", "").await;
    let (status, _) = server.get("/v2/models/effnet/ready").await;
    assert_eq!(status, 200);

    // A batch of 8 images takes long enough on 2 cores to be in flight when the signal arrives.
    let header = r#"{"inputs":[{"name":"input","shape":[8,3,224,224],"datatype":"FP32","parameters":{"binary_data_size":4816896}}],"outputs":[{"name":"logits","parameters":{"binary_data":true}}]}"#;
    let mut body = header.as_bytes().to_vec();
    body.extend(std::iter::repeat_n(0u8, 4816896));
    let request = server
        .client
        .post(format!("{}/v2/models/effnet/infer", server.url))
        .header("Inference-Header-Content-Length", header.len().to_string())
        .body(body)
        .send();
    let in_flight = tokio::spawn(request);
    // The batch is with the worker once the batching task has recorded it.
    server.wait_for_metric_value("yunmo_inference_batch_size_count{model=\"effnet\"", |batches| batches >= 1.0).await;
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let response = in_flight.await.unwrap().expect("the in-flight request completes");
    assert_eq!(response.status().as_u16(), 200);
    let length: usize = response.headers()["inference-header-content-length"].to_str().unwrap().parse().unwrap();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len() - length, 8 * 1000 * 4, "all logits arrive");
    let mut server = server;
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
}
