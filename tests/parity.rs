//! Forward parity with the peer runtime: GPU and CPU logits against onnxruntime's reference logits
//! (max |Δ| / max |ref| ≤ 1e-4), tiny_digits against the ONNX logits recorded in
//! digits/labels.json, and top-1 from the image files through our own preprocessing.

mod common;
use common::*;
use netlens::model::import::load_model;

const TOL: f32 = 1e-4;

fn ort_parity(model_name: &str) {
    let model = load_model(asset(&format!("models/{model_name}.onnx"))).expect("import");
    for image in ["chelsea", "coffee"] {
        let x = read_npy(&asset(&format!("ref/{model_name}_{image}_input.npy")));
        let reference = read_npy(&asset(&format!("ref/{model_name}_{image}_logits.npy")));
        let cpu_out = run_backend(&cpu(), &model, &x);
        let e_cpu = rel_err(&cpu_out.data, &reference.data, 0.0);
        let gpu_out = run_backend(gpu(), &model, &x);
        let e_gpu = rel_err(&gpu_out.data, &reference.data, 0.0);
        println!("{model_name} {image}: CPU rel err {e_cpu:.2e}, GPU rel err {e_gpu:.2e}");
        assert!(
            e_cpu <= TOL,
            "{model_name} {image}: CPU vs onnxruntime {e_cpu}"
        );
        assert!(
            e_gpu <= TOL,
            "{model_name} {image}: GPU vs onnxruntime {e_gpu}"
        );
    }
}

#[test]
fn mobilenetv2_matches_onnxruntime() {
    ort_parity("mobilenetv2_imagenet");
}

#[test]
fn efficientnet_lite0_matches_onnxruntime() {
    ort_parity("efficientnet_lite0_imagenet");
}

/// Top-1 from the PNG files through netlens' preprocessing, on both backends, as in
/// assets/PROVENANCE.md.
fn top1_from_files(model_name: &str, expected: [usize; 4]) {
    let path = asset(&format!("models/{model_name}.onnx"));
    let model = load_model(&path).expect("import");
    let sidecar = netlens::input::Sidecar::for_model(std::path::Path::new(&path))
        .expect("sidecar")
        .expect("sidecar present");
    let images = ["chelsea", "coffee", "china", "flower"];
    let batch: Vec<_> = images
        .iter()
        .map(|i| {
            netlens::input::image_tensor(
                asset(&format!("images/{i}.png")),
                sidecar.preprocess.as_ref().expect("preprocess"),
                model.input_shape(),
            )
            .expect("image")
        })
        .collect();
    let x = netlens::input::batch(batch).expect("batch");
    for (backend, out) in [
        ("cpu", run_backend(&cpu(), &model, &x)),
        ("gpu", run_backend(gpu(), &model, &x)),
    ] {
        for (i, name) in images.iter().enumerate() {
            let got = argmax(out.sample(i));
            assert_eq!(
                got, expected[i],
                "{model_name} on {name} ({backend}): top-1 {got}, expected {}",
                expected[i]
            );
        }
    }
}

#[test]
fn mobilenetv2_top1_from_image_files() {
    top1_from_files("mobilenetv2_imagenet", [285, 967, 698, 599]);
}

#[test]
fn efficientnet_lite0_top1_from_image_files() {
    top1_from_files("efficientnet_lite0_imagenet", [282, 967, 698, 985]);
}

#[test]
fn tiny_digits_matches_recorded_onnx_logits() {
    let path = asset("models/tiny_digits.onnx");
    let model = load_model(&path).expect("import");
    let text = std::fs::read_to_string(asset("digits/labels.json")).expect("labels.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let images = json["images"].as_array().expect("images");
    let pre = netlens::input::Preprocess::unit();
    let mut inputs = Vec::new();
    let mut reference = Vec::new();
    for img in images {
        let file = asset(img["file"].as_str().expect("file"));
        inputs.push(netlens::input::image_tensor(&file, &pre, model.input_shape()).expect("digit"));
        reference.extend(
            img["logits"]
                .as_array()
                .expect("logits")
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32),
        );
    }
    let x = netlens::input::batch(inputs).expect("batch");
    for (backend, out) in [
        ("cpu", run_backend(&cpu(), &model, &x)),
        ("gpu", run_backend(gpu(), &model, &x)),
    ] {
        // The recorded logits have 5 decimals; 1e-4 of the largest logit is well above that.
        let e = rel_err(&out.data, &reference, 0.0);
        println!("tiny_digits {backend}: rel err {e:.2e}");
        assert!(e <= TOL, "tiny_digits {backend}: rel err {e}");
    }
}
