//! Property tests of the request decoders (the fuzzing of this crate: cargo-fuzz needs a nightly
//! toolchain, which this project does not use). Arbitrary and mutated inputs must decode or fail with a
//! clear error, never panic, and never allocate past the element limit. Bounded case counts keep this in
//! the regular test run; PROPTEST_CASES raises them. A failing input found here is kept in
//! `regressions()` below.

use bytes::Bytes;
use proptest::prelude::*;
use yunmo_api::kserve::decode::{DecodeLimits, decode_request};
use yunmo_proto::inference as pb;

const LIMITS: DecodeLimits = DecodeLimits { max_tensor_elements: 1 << 16 };
const DATATYPES: [&str; 15] =
    ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64", "BYTES", "FLOAT"];

fn valid_json() -> Vec<u8> {
    br#"{"id":"1","inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]},{"name":"S","shape":[2],"datatype":"BYTES","data":["a","b"],"parameters":{"binary_data_size":0}}],"outputs":[{"name":"y","parameters":{"classification":2,"binary_data":true}}]}"#.to_vec()
}

/// A valid binary-extension request: JSON header, then raw tensor bytes.
fn valid_binary() -> (Vec<u8>, usize) {
    let header = br#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}},{"name":"S","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":7}}]}"#;
    let mut body = header.to_vec();
    for value in [5.1f32, 3.5, 1.4, 0.2] {
        body.extend_from_slice(&value.to_le_bytes());
    }
    body.extend_from_slice(&3u32.to_le_bytes());
    body.extend_from_slice(b"abc");
    (body, header.len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn v2_json_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(Bytes::from(body), None, LIMITS);
    }

    #[test]
    fn v2_json_mutations(position in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut body = valid_json();
        let at = position.index(body.len());
        body[at] = byte;
        body.truncate(cut.index(body.len() + 1).max(at));
        let _ = decode_request(Bytes::from(body), None, LIMITS);
    }

    #[test]
    fn binary_extension_mutations(position in any::<prop::sample::Index>(), byte in any::<u8>(), header in 0usize..400, cut in any::<prop::sample::Index>()) {
        let (mut body, real_header) = valid_binary();
        let at = position.index(body.len());
        body[at] = byte;
        let keep = cut.index(body.len() + 1);
        body.truncate(keep.max(real_header));
        let _ = decode_request(Bytes::from(body.clone()), Some(real_header), LIMITS);
        let _ = decode_request(Bytes::from(body), Some(header), LIMITS);
    }

    #[test]
    fn grpc_arbitrary_tensors(
        datatype in 0usize..DATATYPES.len(),
        shape in proptest::collection::vec(-3i64..70_000, 0..4),
        raw in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
        ints in proptest::collection::vec(any::<i32>(), 0..16),
        floats in proptest::collection::vec(any::<f32>(), 0..16),
        strings in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..4),
        extra_raw in 0usize..3,
    ) {
        let contents = pb::InferTensorContents {
            int_contents: ints.clone(),
            uint_contents: ints.iter().map(|v| *v as u32).collect(),
            int64_contents: ints.iter().map(|v| *v as i64).collect(),
            fp32_contents: floats,
            bytes_contents: strings.into_iter().map(Bytes::from).collect(),
            ..Default::default()
        };
        let input = pb::model_infer_request::InferInputTensor {
            name: "x".into(),
            datatype: DATATYPES[datatype].into(),
            shape,
            parameters: Default::default(),
            contents: Some(contents),
        };
        let raw_contents: Vec<Bytes> = match raw {
            Some(raw) => std::iter::repeat_n(Bytes::from(raw), 1 + extra_raw).collect(),
            None => Vec::new(),
        };
        let request = pb::ModelInferRequest { inputs: vec![input], raw_input_contents: raw_contents, ..Default::default() };
        if let Ok(input) = yunmo_api::grpc::decode_request(request, LIMITS) {
            for tensor in input.inputs {
                let elements: i64 = tensor.shape().iter().product();
                prop_assert!(elements as usize <= LIMITS.max_tensor_elements);
            }
        }
    }
}

/// Inputs that once failed, kept as regressions (none found yet; add them here with the date).
#[test]
fn regressions() {
    let cases: [(&[u8], Option<usize>); 3] = [
        (br#"{"inputs":[{"name":"X","shape":[9223372036854775807,2],"datatype":"FP32","data":[]}]}"#, None),
        (br#"{"inputs":[{"name":"X","shape":[-1],"datatype":"BYTES","parameters":{"binary_data_size":4}}]}"#, Some(88)),
        (b"{}", Some(usize::MAX)),
    ];
    for (body, header) in cases {
        assert!(decode_request(Bytes::from_static(body), header, LIMITS).is_err());
    }
}
