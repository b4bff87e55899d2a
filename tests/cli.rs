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
    // Hardmax: an op no image classifier netlens targets uses (Erf, the earlier example here,
    // is supported now).
    b.node("Hardmax", &["input"], &["y"], vec![]);
    let p = scratch_in("cli", "hardmax.onnx");
    std::fs::write(&p, b.build("y")).unwrap();
    assert_bad_input(
        &netlens(&["info", p.to_str().unwrap()]),
        "unsupported ONNX op 'Hardmax'",
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

/// `netlens gradcam` on the cat, on both backends: the hottest pixel of the upsampled map lies on
/// the cat's face. The face box was drawn by hand on the 224×224 model input (chelsea.png, 451×300,
/// shorter side resized to 256 → 384×256, centre crop at (80, 16)), viewed at 3× with a 20-pixel
/// grid: from the left eye's outer corner (x 35) to the right eye's outer corner (x 212), from the
/// top of the left eye (y 58) to the bottom of the crop, which cuts through the mouth (y 224). It
/// holds the eyes, nose and mouth and leaves out the forehead, the left cheek with its whiskers
/// and the right cheek: 59 % of the crop, because the crop is a close-up that the face fills.
#[test]
fn gradcam_cli_peak_is_on_the_cats_face() {
    const FACE_X: std::ops::Range<usize> = 35..213;
    const FACE_Y: std::ops::Range<usize> = 58..224;
    let model = asset("models/mobilenetv2_imagenet.onnx");
    let image = asset("images/chelsea.png");
    for backend in ["cpu", "gpu"] {
        let dir = scratch_in("cli", &format!("gradcam_cat_{backend}"));
        let out = netlens(&[
            "gradcam",
            &model,
            &image,
            "-o",
            dir.to_str().unwrap(),
            "--backend",
            backend,
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            dir.join("gradcam_285.png").exists() && dir.join("gradcam_285_lowres.npy").exists()
        );
        let map = read_npy(dir.join("gradcam_285.npy").to_str().unwrap());
        assert_eq!(map.shape, vec![224, 224]);
        let peak = argmax(&map.data);
        let (y, x) = (peak / 224, peak % 224);
        println!("{backend}: Grad-CAM peak at ({x}, {y})");
        assert!(
            FACE_X.contains(&x) && FACE_Y.contains(&y),
            "{backend}: peak at ({x}, {y}) is off the face"
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary_gradcam_285.json")).unwrap())
                .unwrap();
        assert_eq!(summary["results"][0]["class"], 285);
    }
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

/// The README's exit codes, one run each: 0 for success, 2 for bad input, 1 for a device failure.
/// The device failure is `--backend gpu` with `WGPU_BACKEND=metal`: wgpu has no Metal adapter
/// off Apple platforms, so the GPU cannot be opened (on a Mac the test would use dx12, which has
/// no adapter there).
#[test]
fn exit_codes_are_0_2_and_1_as_documented() {
    let no_adapter_api = if cfg!(target_os = "macos") {
        "dx12"
    } else {
        "metal"
    };
    let classify = |backend: &str, image: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_netlens"))
            .args(["classify", DIGITS, image, "--backend", backend])
            .env("NODEVICE_SELECT", "1")
            .env("WGPU_BACKEND", no_adapter_api)
            .env_remove("NETLENS_BACKEND")
            .output()
            .expect("netlens runs")
    };
    let ok = classify("cpu", DIGIT_PNG);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_bad_input(&classify("cpu", "/nonexistent/digit.png"), "digit.png");
    let device = classify("gpu", DIGIT_PNG);
    let stderr = String::from_utf8_lossy(&device.stderr);
    assert_eq!(device.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.starts_with("netlens: error:") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("adapter"), "{stderr}");
}

/// Degenerate counts are refused with exit 2, never a silent map: `--top 0` was silently 1 and
/// VarGrad of one sample wrote an all-zero map with exit 0 (issue 11).
#[test]
fn degenerate_counts_are_refused() {
    let out = scratch_in("cli", "degenerate");
    let out = out.to_str().unwrap();
    assert_bad_input(
        &netlens(&["classify", DIGITS, DIGIT_PNG, "--top", "0"]),
        "--top",
    );
    assert_bad_input(
        &netlens(&[
            "saliency",
            DIGITS,
            DIGIT_PNG,
            "--top",
            "0",
            "--backend",
            "cpu",
            "-o",
            out,
        ]),
        "--top",
    );
    assert_bad_input(
        &netlens(&[
            "smoothgrad",
            DIGITS,
            DIGIT_PNG,
            "--variant",
            "vargrad",
            "--samples",
            "1",
            "--backend",
            "cpu",
            "-o",
            out,
        ]),
        "at least 2 samples",
    );
    // The same counts one higher still run.
    let ok = netlens(&[
        "smoothgrad",
        DIGITS,
        DIGIT_PNG,
        "--variant",
        "vargrad",
        "--samples",
        "2",
        "--backend",
        "cpu",
        "-o",
        out,
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
