//! The command line on good and bad input: bad input exits 2 with a clear message on stderr,
//! never a panic, a backtrace or a hang.

mod common;
use common::*;

const DIGITS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/models/tiny_digits.onnx"
);
const DIGIT_PNG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/digits/digit_3_idx0649.png"
);

#[test]
fn missing_model_file() {
    assert_bad_input(
        &netlens(&["info", "/nonexistent/model.onnx"]),
        "cannot read model",
    );
}

#[test]
fn empty_model_file() {
    let p = scratch_in("cli", "empty.onnx");
    std::fs::write(&p, b"").unwrap();
    assert_bad_input(&netlens(&["info", p.to_str().unwrap()]), "empty");
}

#[test]
fn random_bytes_model() {
    let p = scratch_in("cli", "random.onnx");
    let bytes: Vec<u8> = (0..10000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(&p, bytes).unwrap();
    assert_bad_input(&netlens(&["info", p.to_str().unwrap()]), "random.onnx");
}

#[test]
fn truncated_model() {
    let bytes = std::fs::read(DIGITS).unwrap();
    let p = scratch_in("cli", "truncated.onnx");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert_bad_input(
        &netlens(&["classify", p.to_str().unwrap(), DIGIT_PNG]),
        "truncated.onnx",
    );
}

#[test]
fn unsupported_op_model() {
    let mut b = OnnxBuilder::new(&[1, 16, 16]);
    b.node("Erf", &["input"], &["y"], vec![]);
    let p = scratch_in("cli", "erf.onnx");
    std::fs::write(&p, b.build("y")).unwrap();
    assert_bad_input(
        &netlens(&["info", p.to_str().unwrap()]),
        "unsupported ONNX op 'Erf'",
    );
}

#[test]
fn wrong_rank_input_npy() {
    let p = scratch_in("cli", "rank2.npy");
    netlens::input::write_npy(&p, &[16, 16], &vec![0.5; 256]).unwrap();
    let out = scratch_in("cli", "out.npy");
    assert_bad_input(
        &netlens(&[
            "run",
            DIGITS,
            "--input-npy",
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
        ]),
        "shape",
    );
}

#[test]
fn non_image_file() {
    let p = scratch_in("cli", "notes.png");
    std::fs::write(&p, b"this is not an image at all").unwrap();
    assert_bad_input(
        &netlens(&["classify", DIGITS, p.to_str().unwrap(), "--backend", "cpu"]),
        "notes.png",
    );
}

#[test]
fn unknown_tap_layer() {
    let out = scratch_in("cli", "tap.npy");
    assert_bad_input(
        &netlens(&[
            "run",
            DIGITS,
            DIGIT_PNG,
            "-o",
            out.to_str().unwrap(),
            "--tap",
            "no_such_layer",
            "--backend",
            "cpu",
        ]),
        "no_such_layer",
    );
}

#[test]
fn missing_image() {
    assert_bad_input(
        &netlens(&[
            "classify",
            DIGITS,
            "/nonexistent/digit.png",
            "--backend",
            "cpu",
        ]),
        "digit.png",
    );
}

/// A 16-bit RGB PNG and an 8-bit grayscale PNG of the same digit classify like the original.
#[test]
fn sixteen_bit_and_grayscale_pngs_work() {
    let img = image::open(DIGIT_PNG).unwrap();
    let p16 = scratch_in("cli", "digit16.png");
    img.to_rgb16().save(&p16).unwrap();
    let pgray = scratch_in("cli", "digit_gray.png");
    img.to_luma8().save(&pgray).unwrap();
    let prgba = scratch_in("cli", "digit_rgba.png");
    img.to_rgba8().save(&prgba).unwrap();
    for p in [&p16, &pgray, &prgba] {
        let out = netlens(&[
            "classify",
            DIGITS,
            p.to_str().unwrap(),
            "--top",
            "1",
            "--json",
            "--backend",
            "cpu",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
        assert_eq!(
            json["results"][0]["top"][0]["class"],
            3,
            "{}: {stdout}",
            p.display()
        );
    }
}

#[test]
fn run_writes_logits_and_taps() {
    let out = scratch_in("cli", "digits_run.npy");
    let layer = "/features/features.11/Relu_output_0";
    let r = netlens(&[
        "run",
        DIGITS,
        DIGIT_PNG,
        "-o",
        out.to_str().unwrap(),
        "--tap",
        layer,
    ]);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let logits = read_npy(out.to_str().unwrap());
    assert_eq!(logits.shape, vec![1, 10]);
    assert_eq!(argmax(&logits.data), 3);
    let tap = read_npy(
        scratch_in("cli", "digits_run._features_features.11_Relu_output_0.npy")
            .to_str()
            .unwrap(),
    );
    assert_eq!(tap.shape, vec![1, 48, 8, 8]);
}

#[test]
fn info_names_the_cam_layer_of_every_shipped_model() {
    for (model, cam) in [
        (
            "mobilenetv2_imagenet",
            "/features/features.18/features.18.2/Clip_output_0",
        ),
        ("efficientnet_lite0_imagenet", "/_swish_1/Clip_output_0"),
        ("tiny_digits", "/features/features.11/Relu_output_0"),
    ] {
        let out = netlens(&["info", &asset(&format!("models/{model}.onnx")), "--json"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["cam_layer"], cam, "{model}");
    }
}

#[test]
fn classify_default_runs_mobilenetv2_on_the_cat() {
    let out = netlens(&["classify", "--json", "--backend", "cpu"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["results"][0]["top"][0]["class"], 285);
}

/// `netlens gradcam` on the cat: the hottest pixel of the upsampled map lies on the cat's face,
/// hand-marked in the 224×224 crop as x 30..224, y 20..224 (the background strip at the top-left
/// corner is excluded).
#[test]
fn gradcam_cli_peak_is_on_the_cat() {
    let dir = scratch_in("cli", "gradcam_cat");
    let model = asset("models/mobilenetv2_imagenet.onnx");
    let image = asset("images/chelsea.png");
    let out = netlens(&[
        "gradcam",
        &model,
        &image,
        "-o",
        dir.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("gradcam_285.png").exists() && dir.join("gradcam_285_lowres.npy").exists());
    let map = read_npy(dir.join("gradcam_285.npy").to_str().unwrap());
    assert_eq!(map.shape, vec![224, 224]);
    let peak = argmax(&map.data);
    let (y, x) = (peak / 224, peak % 224);
    assert!(
        (30..224).contains(&x) && (20..224).contains(&y),
        "peak at ({x}, {y})"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["results"][0]["class"], 285);
}

#[test]
fn explain_bad_inputs_exit_2() {
    let dir = scratch_in("cli", "bad_explain");
    let d = dir.to_str().unwrap();
    assert_bad_input(
        &netlens(&[
            "gradcam",
            DIGITS,
            DIGIT_PNG,
            "-o",
            d,
            "--layer",
            "nope",
            "--backend",
            "cpu",
        ]),
        "nope",
    );
    assert_bad_input(
        &netlens(&[
            "saliency",
            DIGITS,
            DIGIT_PNG,
            "-o",
            d,
            "--class",
            "10",
            "--backend",
            "cpu",
        ]),
        "out of range",
    );
    // A classifier without global average pooling: conv -> flatten -> gemm.
    let mut b = OnnxBuilder::new(&[1, 4, 4]);
    let w = b.weight("w", &[2, 1, 3, 3]);
    let fc = b.weight("fc", &[3, 8]);
    b.node("Conv", &["input", &w], &["c"], vec![]);
    b.node("Flatten", &["c"], &["f"], vec![]);
    b.node("Gemm", &["f", &fc], &["y"], vec![a_int("transB", 1)]);
    let p = scratch_in("cli", "nogap.onnx");
    std::fs::write(&p, b.build("y")).unwrap();
    let img = scratch_in("cli", "nogap.png");
    image::GrayImage::from_pixel(4, 4, image::Luma([128]))
        .save(&img)
        .unwrap();
    assert_bad_input(
        &netlens(&[
            "cam",
            p.to_str().unwrap(),
            img.to_str().unwrap(),
            "-o",
            d,
            "--backend",
            "cpu",
        ]),
        "global average pool",
    );
}

#[test]
fn occlusion_cli_writes_maps_and_rejects_bad_geometry() {
    let dir = scratch_in("cli", "occlusion");
    let d = dir.to_str().unwrap();
    let ok = netlens(&[
        "occlusion",
        DIGITS,
        DIGIT_PNG,
        "-o",
        d,
        "--mask-size",
        "4",
        "--stride",
        "2",
        "--backend",
        "cpu",
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let grid = read_npy(dir.join("occlusion_3_grid.npy").to_str().unwrap());
    let per_pixel = read_npy(dir.join("occlusion_3.npy").to_str().unwrap());
    assert_eq!(per_pixel.shape, vec![16, 16]);
    assert!(
        grid.data.iter().any(|v| *v != 0.0),
        "occluding the digit must change its score"
    );
    assert!(dir.join("occlusion_3.png").exists());
    for (flag, value, needle) in [
        ("--mask-size", "0", "mask size"),
        ("--stride", "0", "stride"),
        ("--mask-size", "2x0", "mask size"),
    ] {
        assert_bad_input(
            &netlens(&[
                "occlusion",
                DIGITS,
                DIGIT_PNG,
                "-o",
                d,
                flag,
                value,
                "--backend",
                "cpu",
            ]),
            needle,
        );
    }
    assert_bad_input(
        &netlens(&[
            "occlusion",
            DIGITS,
            DIGIT_PNG,
            "-o",
            d,
            "--mask-size",
            "20",
            "--clipping",
            "off",
            "--backend",
            "cpu",
        ]),
        "larger",
    );
}
