//! Prints the FP32 tensor an image becomes under ImageNet steps (resize 256, crop 224, [-1, 1]), as raw
//! little-endian floats on stdout: `cargo run -p yunmo-pipeline --example prepare -- IMAGE > out.f32`.
fn main() {
    let path = std::env::args().nth(1).expect("an image path");
    let bytes = std::fs::read(path).expect("readable");
    let steps: yunmo_pipeline::vision::ImageSteps = serde_json::from_str(
        r#"{"resize": {"shorter_side": 256}, "center_crop": [224, 224], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}"#,
    )
    .expect("valid steps");
    let prepared = steps.prepare(&bytes, &Default::default()).expect("an image");
    let yunmo_pipeline::vision::Values::Fp32(values) = prepared.values else { panic!("FP32") };
    let out: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
    std::io::Write::write_all(&mut std::io::stdout(), &out).expect("written");
}
