use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestServer, fixture};

/// Small fixtures the mutations start from: an MLP, a linear model, a CNN and one input of every datatype.
const SEEDS: [&str; 4] = ["iris_mlp.onnx", "diabetes_linreg.onnx", "cnn.onnx", "dtypes.onnx"];
/// Crash inputs found by this test are kept here and replayed first, every run.
const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/upload_regressions");

/// xorshift64*: a seeded generator, so a failing run is repeated with `YUNMO_UPLOAD_FUZZ_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to three structural mutations of a seed file: bit flips, boundary bytes, truncation, insertion,
/// deletion, duplication of a range, and splicing with another seed.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(data.len());
        match rng.below(7) {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(data.len());
                    data[i] ^= 1 << rng.below(8);
                }
            }
            1 => data[at] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => data.truncate(at.max(1)),
            3 => {
                let bytes: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            4 => {
                let end = (at + 1 + rng.below(32)).min(data.len());
                data.drain(at..end);
            }
            5 => {
                let end = (at + 1 + rng.below(64)).min(data.len());
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
        }
        if data.is_empty() {
            data.push(0x08);
        }
    }
    data
}

/// A V2 request with zeros for every input of an accepted model (dynamic dimensions as 1), or `None` when
/// the inputs would be too large to bother.
fn zero_request(metadata: &Value) -> Option<Value> {
    let mut inputs = Vec::new();
    for input in metadata["inputs"].as_array()? {
        let shape: Vec<i64> = input["shape"].as_array()?.iter().map(|d| d.as_i64().unwrap_or(1).max(1)).collect();
        let count = shape.iter().try_fold(1i64, |n, d| n.checked_mul(*d)).filter(|n| *n <= 4096)?;
        let zero = match input["datatype"].as_str()? {
            "BOOL" => json!(false),
            "BYTES" => json!(""),
            _ => json!(0),
        };
        inputs.push(json!({"name": input["name"], "shape": shape, "datatype": input["datatype"], "data": vec![zero; count as usize]}));
    }
    Some(json!({ "inputs": inputs }))
}

/// The ONNX upload path under mutated files: every upload is stored (201) or refused with 400 and leaves
/// nothing behind; an accepted mutant loads and answers or fails with a clean error; the server never
/// crashes, panics or answers another 5xx. Bounded by `YUNMO_UPLOAD_FUZZ_CASES` (default 2,000) and `YUNMO_UPLOAD_FUZZ_SECONDS`
/// (default 60); the seed is random unless `YUNMO_UPLOAD_FUZZ_SEED` is set, and printed.
#[tokio::test]
async fn mutated_onnx_uploads_are_stored_or_refused_never_crash() {
    let seed = std::env::var("YUNMO_UPLOAD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    let cases: usize = std::env::var("YUNMO_UPLOAD_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let seconds: u64 = std::env::var("YUNMO_UPLOAD_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    eprintln!("upload fuzz: YUNMO_UPLOAD_FUZZ_SEED={seed} YUNMO_UPLOAD_FUZZ_CASES={cases} YUNMO_UPLOAD_FUZZ_SECONDS={seconds}");
    let seeds: Vec<Vec<u8>> = SEEDS.iter().map(|name| std::fs::read(fixture(name)).unwrap()).collect();
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(REGRESSIONS)
        .map(|dir| dir.map(|entry| entry.unwrap().path()).map(|path| (path.display().to_string(), std::fs::read(path).unwrap())).collect())
        .unwrap_or_default();
    inputs.sort();
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]).await;
    let (status, body) = server.post_json("/api/v1/models", &json!({"name": "fuzz"})).await;
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut accepted, mut refused, mut ran) = (0, 0, 0);
    for case in 0..inputs.len() + cases {
        if Instant::now() > deadline {
            break;
        }
        let (name, data) = match inputs.get(case) {
            Some((name, data)) => (name.clone(), data.clone()),
            None => (format!("seed {seed}, case {case}"), mutate(&mut rng, &seeds)),
        };
        let keep = || {
            let path = std::env::temp_dir().join(format!("yunmo-upload-crash-{seed}-{case}.onnx"));
            std::fs::write(&path, &data).unwrap();
            format!("{name}: input kept at {} (copy it into {REGRESSIONS})", path.display())
        };
        let result = server.client.post(format!("{}/api/v1/models/fuzz/versions", server.url)).body(data.clone()).send().await;
        let Ok(response) = result else { panic!("the server stopped answering: {}", keep()) };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            201 => {
                accepted += 1;
                let version = body["version"].as_u64().unwrap();
                let (status, metadata) = server.get(&format!("/v2/models/fuzz/versions/{version}")).await;
                assert_eq!(status, 200, "{}: metadata {metadata}", keep());
                if let Some(request) = zero_request(&metadata) {
                    let (status, answer) = server.post_json(&format!("/v2/models/fuzz/versions/{version}/infer"), &request).await;
                    // A mutant the runtime accepts can still fail when it runs (weights of the wrong length): that
                    // is the model's fault, answered 500 "inference failed" as for any model that fails; a
                    // panic, a crash or another 5xx is a bug.
                    let message = answer["error"].as_str().unwrap_or_default();
                    let runtime_failure = status == 500 && message.starts_with("inference failed:") && !message.contains("panicked");
                    assert!(status < 500 || status == 503 || runtime_failure, "{}: inference answered {status} {answer}", keep());
                    ran += 1;
                }
                assert_eq!(server.delete(&format!("/api/v1/models/fuzz/versions/{version}")).await, 204, "{}", keep());
            }
            400 => {
                refused += 1;
                assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: 400 without a message: {body}", keep());
            }
            _ => panic!("{}: upload answered {status} {body}", keep()),
        }
        assert!(server.files("staging").is_empty(), "{}: a staging file was left behind", keep());
        assert!(server.files("sha256").is_empty(), "{}: a file was left in the store", keep());
    }
    eprintln!("upload fuzz: {accepted} accepted ({ran} run), {refused} refused");
    assert!(accepted + refused >= inputs.len() + cases.min(50), "too few cases ran in the time bound");
    let (status, _) = server.get("/v2/health/live").await;
    assert_eq!(status, 200);
    server.stop();
}
