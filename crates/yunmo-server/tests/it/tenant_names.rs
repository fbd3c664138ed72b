use serde_json::{Value, json};

use crate::harness::{TestServer, fixture};

struct Api<'a> {
    server: &'a TestServer,
    key: String,
}

impl Api<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.server.client.request(method, format!("{}{path}", self.server.url)).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn push(&self, name: &str) {
        let (status, body) = self.call(reqwest::Method::POST, "/api/v1/models", Some(json!({ "name": name }))).await;
        assert_eq!(status, 201, "{body}");
        let bytes = std::fs::read(fixture("iris_mlp.onnx")).unwrap();
        let response = self
            .server
            .client
            .post(format!("{}/api/v1/models/{name}/versions", self.server.url))
            .bearer_auth(&self.key)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    async fn infer(&self, name: &str) -> (u16, Value) {
        let body = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});
        self.call(reqwest::Method::POST, &format!("/v2/models/{name}/infer"), Some(body)).await
    }
}

/// Model names are per tenant: creating a name another tenant uses privately succeeds (nothing tells that
/// it exists); each tenant's name means its own model; a shared model is reachable by `tenant/name`, or
/// by its short name when that is unambiguous.
#[tokio::test]
async fn model_names_are_per_tenant_and_never_confirm_another_tenants_private_model() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[("YUNMO__AUTH__ENABLED", "true")]).await;
    let bootstrap = std::fs::read_to_string(dir.path().join("data/bootstrap-admin.key")).unwrap().trim().to_string();
    let admin = Api { server: &server, key: bootstrap };
    let mut keys = Vec::new();
    for tenant in ["a", "b", "c"] {
        let (status, _) = admin.call(reqwest::Method::POST, "/api/v1/tenants", Some(json!({ "name": tenant }))).await;
        assert_eq!(status, 201);
        let scopes = json!({ "tenant": tenant, "scopes": ["models:write", "models:read", "infer"] });
        let (status, body) = admin.call(reqwest::Method::POST, "/api/v1/keys", Some(scopes)).await;
        assert_eq!(status, 201, "{body}");
        keys.push(Api { server: &server, key: body["key"].as_str().unwrap().to_string() });
    }
    let (a, b, c) = (&keys[0], &keys[1], &keys[2]);
    a.push("iris").await;
    // B may create the same name: the answer does not depend on A's private model.
    b.push("iris").await;
    let (status, body) = b.call(reqwest::Method::POST, "/api/v1/models", Some(json!({ "name": "iris" }))).await;
    assert_eq!((status, body["error"]["message"].as_str()), (409, Some("model 'iris' already exists")), "only B's own name conflicts");
    for (api, owner) in [(a, "a"), (b, "b")] {
        let (status, body) = api.call(reqwest::Method::GET, "/api/v1/models/iris", None).await;
        assert_eq!((status, body["tenant"].as_str(), body["name"].as_str()), (200, Some(owner), Some("iris")), "{body}");
        assert_eq!(api.infer("iris").await.0, 200);
    }
    // C sees neither, by either name.
    for name in ["iris", "a/iris", "b%2Firis"] {
        let (status, body) = c.call(reqwest::Method::GET, &format!("/api/v1/models/{name}"), None).await;
        assert_eq!(status, 404, "{name}: {body}");
        assert_eq!(c.infer(name).await.0, 404);
    }
    // A shares with C: C calls it by its short name (unambiguous) or qualified.
    let (status, _) = a.call(reqwest::Method::PUT, "/api/v1/models/iris/sharing", Some(json!({ "tenants": ["c"] }))).await;
    assert_eq!(status, 200);
    assert_eq!(c.infer("iris").await.0, 200);
    let (status, body) = c.infer("a%2Firis").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = c.infer("a/iris").await;
    assert_eq!(status, 200, "a plain slash works too (tritonclient does not escape it): {body}");
    let (status, body) = c.call(reqwest::Method::GET, "/api/v1/models/a/iris/versions", None).await;
    assert_eq!(status, 200, "{body}");
    let (_, listed) = c.call(reqwest::Method::GET, "/api/v1/models", None).await;
    let names: Vec<&str> = listed["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a/iris"], "others' models are listed by their qualified name");
    let (_, openai) = c.call(reqwest::Method::GET, "/v1/models", None).await;
    assert_eq!(openai["data"][0]["id"], "a/iris", "{openai}");
    // B shares too: C's short name is now ambiguous and must be qualified.
    let (status, _) = b.call(reqwest::Method::PUT, "/api/v1/models/iris/sharing", Some(json!({ "tenants": ["c"] }))).await;
    assert_eq!(status, 200);
    let (status, body) = c.infer("iris").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("'a/iris' or 'b/iris'"), "{body}");
    assert_eq!(c.infer("b%2Firis").await.0, 200);
    // The admin sees both, qualified, and each tenant's usage names its own model by its own name.
    let (_, listed) = admin.call(reqwest::Method::GET, "/api/v1/models", None).await;
    let mut names: Vec<&str> = listed["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["a/iris", "b/iris"]);
    let (status, usage) = b.call(reqwest::Method::GET, "/api/v1/usage", None).await;
    assert_eq!(status, 200);
    assert_eq!(usage["rows"][0]["group"], "iris", "{usage}");
    server.stop();
}

/// A path in `auth.open_paths` is served without a key as an anonymous caller with no scopes, never as an
/// admin: management and inference routes listed there refuse; health and a listed `/metrics` answer.
#[tokio::test]
async fn an_open_path_grants_no_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let open = r#"["/v2/health/*", "/metrics", "/api/*", "/v2/models/*"]"#;
    let server = TestServer::start(dir.path(), &[("YUNMO__AUTH__ENABLED", "true"), ("YUNMO__AUTH__OPEN_PATHS", open)]).await;
    let bootstrap = std::fs::read_to_string(dir.path().join("data/bootstrap-admin.key")).unwrap().trim().to_string();
    let admin = Api { server: &server, key: bootstrap };
    admin.push("iris").await;
    let anonymous = Api { server: &server, key: String::new() };
    let url = |path: &str| format!("{}{path}", server.url);

    let response = server.client.post(url("/api/v1/tenants")).json(&json!({"name": "mallory"})).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 403, "an open management route made a tenant without a key: {body}");
    assert!(body.contains("admin"), "the refusal names the scope: {body}");
    // Records that any key of a tenant may read (its keys, usage, audit, tenant) are no one's without a key.
    for path in ["/api/v1/keys", "/api/v1/usage", "/api/v1/audit", "/api/v1/tenants/default"] {
        let response = server.client.get(url(path)).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path} answered without a key: {}", response.text().await.unwrap());
    }
    let (status, _) = anonymous.call(reqwest::Method::DELETE, "/api/v1/models/iris", None).await;
    assert!(status == 403 || status == 404, "an open path deleted a model without a key: {status}");
    let (status, body) = anonymous.infer("iris").await;
    assert!(status == 403 || status == 404, "an open path ran inference without a key: {status} {body}");
    let (status, body) = admin.infer("iris").await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(server.client.get(url("/metrics")).send().await.unwrap().status(), 200, "a listed /metrics is open");
    assert_eq!(server.client.get(url("/v2/health/live")).send().await.unwrap().status(), 200);
    server.stop();
}

/// `keys:write`: a tenant's key creates and revokes keys of its own tenant, granting only scopes and models
/// it holds (never `admin`), and cannot touch another tenant's keys, whose existence it does not learn.
#[tokio::test]
async fn a_keys_write_key_manages_only_its_own_tenants_keys_within_its_own_rights() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[("YUNMO__AUTH__ENABLED", "true")]).await;
    let bootstrap = std::fs::read_to_string(dir.path().join("data/bootstrap-admin.key")).unwrap().trim().to_string();
    let admin = Api { server: &server, key: bootstrap };
    let mut owners = Vec::new();
    for tenant in ["a", "b"] {
        assert_eq!(admin.call(reqwest::Method::POST, "/api/v1/tenants", Some(json!({ "name": tenant }))).await.0, 201);
        let request = json!({ "tenant": tenant, "scopes": ["models:read", "infer", "keys:write"], "models": ["iris"] });
        let (status, body) = admin.call(reqwest::Method::POST, "/api/v1/keys", Some(request)).await;
        assert_eq!(status, 201, "{body}");
        owners.push(Api { server: &server, key: body["key"].as_str().unwrap().to_string() });
    }
    let (a, b) = (&owners[0], &owners[1]);
    let create = |body: Value| async move { a.call(reqwest::Method::POST, "/api/v1/keys", Some(body)).await };
    let (status, made) = create(json!({ "name": "ci", "scopes": ["infer"], "models": ["iris"] })).await;
    assert_eq!((status, made["tenant"].as_str()), (201, Some("a")), "{made}");
    let made_key = Api { server: &server, key: made["key"].as_str().unwrap().to_string() };
    assert_eq!(made_key.call(reqwest::Method::GET, "/api/v1/whoami", None).await.0, 200);
    let refusals = [
        (json!({ "scopes": ["admin"], "models": ["iris"] }), "'admin' scope"),
        (json!({ "scopes": ["models:write"], "models": ["iris"] }), "'models:write' scope"),
        (json!({ "scopes": ["infer"] }), "name them in 'models'"),
        (json!({ "scopes": ["infer"], "models": ["other"] }), "model 'other'"),
        (json!({ "scopes": ["infer"], "models": ["iris"], "tenant": "b" }), "tenant 'b'"),
    ];
    for (body, names) in refusals {
        let (status, answer) = create(body.clone()).await;
        assert_eq!(status, 403, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(names), "{body}: {answer}");
    }
    // B's key cannot revoke A's key and is told only that B has no such key.
    let id = made["id"].as_str().unwrap();
    let (status, answer) = b.call(reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"), None).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["message"], format!("no key '{id}' in tenant 'b'"));
    assert_eq!(made_key.call(reqwest::Method::GET, "/api/v1/whoami", None).await.0, 200, "still valid");
    let (status, answer) = a.call(reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(made_key.call(reqwest::Method::GET, "/api/v1/whoami", None).await.0, 401, "revoked by its tenant's key");
    // Without keys:write, a tenant key still cannot create keys.
    let (status, body) = admin.call(reqwest::Method::POST, "/api/v1/keys", Some(json!({ "tenant": "a", "scopes": ["infer"] }))).await;
    assert_eq!(status, 201);
    let plain = Api { server: &server, key: body["key"].as_str().unwrap().to_string() };
    let (status, answer) = plain.call(reqwest::Method::POST, "/api/v1/keys", Some(json!({ "scopes": ["infer"] }))).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("'keys:write'"), "{answer}");
}
