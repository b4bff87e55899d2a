//! `netlens evaluate`: the method × metric table, summary.json and curve plots on both backends,
//! JSON and quiet output, folders (mean ± std), a method the model cannot run, the pointing game's
//! box, and bad input (exit 2). The metrics themselves are checked in tests/metrics.rs.

mod common;
use common::*;

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(asset("ref/peers/manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest json")
}

/// `netlens evaluate` on the tiny digits CNN, on both backends: exit 0, the table on stdout, a
/// curve plot per method and curve, and a summary whose Grad-CAM deletion AUC is the numpy
/// reference's (netlens' Grad-CAM is pytorch-grad-cam's map, within 1e-5).
#[test]
fn cli_evaluate_writes_table_summary_and_plots() {
    let want = manifest()["metrics"]["maps"]["gradcam"]["deletion_auc"]
        .as_f64()
        .unwrap();
    for backend in ["cpu", "gpu"] {
        let dir = scratch_in("metrics", &format!("evaluate-{backend}"));
        let _ = std::fs::remove_dir_all(&dir);
        let out = netlens(&[
            "evaluate",
            &asset("models/tiny_digits.onnx"),
            "--input-npy",
            &asset("ref/peers/tiny_digits_digit3_input.npy"),
            "--methods",
            "gradcam,saliency",
            "--class",
            "3",
            "--backend",
            backend,
            "-q",
            "-o",
            dir.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("deletion") && stdout.contains("gradcam"),
            "{stdout}"
        );
        for f in [
            "gradcam_deletion.png",
            "gradcam_insertion.png",
            "saliency_deletion.png",
        ] {
            let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(bytes.starts_with(b"\x89PNG"), "{f}");
        }
        let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
        let s: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(s["class"], 3);
        let gradcam = &s["results"][0];
        assert_eq!(gradcam["method"], "gradcam");
        let auc = gradcam["metrics"]["deletion"]["auc"].as_f64().unwrap();
        assert!((auc - want).abs() <= 1e-5, "{backend}: {auc} vs {want}");
        let points = gradcam["metrics"]["deletion"]["scores"].as_array().unwrap();
        assert_eq!(points.len(), 101);
        assert!(gradcam["metrics"]["average-drop"]["value"].is_number());
    }
}

/// With --json -q, stdout is exactly summary.json and stderr is empty.
#[test]
fn cli_evaluate_speaks_json_quietly() {
    let dir = scratch_in("metrics", "evaluate-json");
    let out = netlens(&[
        "evaluate",
        &asset("models/tiny_digits.onnx"),
        &asset("digits/digit_3_idx0649.png"),
        "--methods",
        "occlusion",
        "--metrics",
        "insertion,increase,infidelity",
        "--steps",
        "8",
        "--backend",
        "cpu",
        "--json",
        "-q",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout JSON");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(printed, saved);
    let metrics = &printed["results"][0]["metrics"];
    assert_eq!(metrics["insertion"]["scores"].as_array().unwrap().len(), 9);
    assert!(metrics.get("deletion").is_none() && metrics.get("average-drop").is_none());
    assert!(metrics["infidelity"]["value"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        printed["best"]["insertion"],
        serde_json::json!(["occlusion"])
    );
}

/// The pointing game without a box is skipped with a note (exit 0); with one it scores 0 or 1.
#[test]
fn cli_evaluate_pointing_game_needs_a_box() {
    let dir = scratch_in("metrics", "evaluate-pointing");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "evaluate".to_string(),
            asset("models/tiny_digits.onnx"),
            asset("digits/digit_3_idx0649.png"),
            "--metrics".into(),
            "deletion,pointing-game".into(),
            "--methods".into(),
            "gradcam".into(),
            "--steps".into(),
            "4".into(),
            "--backend".into(),
            "cpu".into(),
            "--json".into(),
            "-o".into(),
            dir.to_str().unwrap().into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        netlens(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("pointing-game skipped"), "{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["notes"][0].as_str().unwrap().contains("--box"));
    assert!(s["results"][0]["metrics"].get("pointing-game").is_none());
    assert!(s["results"][0]["metrics"]["deletion"]["auc"].is_number());
    // The whole image as the box: the maximum is always inside.
    let out = run(&["--box", "0,0,16,16"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["results"][0]["metrics"]["pointing-game"]["value"], 1.0);
}

#[test]
fn cli_evaluate_refuses_bad_input() {
    let dir = scratch_in("metrics", "evaluate-bad");
    let model = asset("models/tiny_digits.onnx");
    let x = asset("ref/peers/tiny_digits_digit3_input.npy");
    let base = [
        "evaluate",
        &model,
        "--input-npy",
        &x,
        "--backend",
        "cpu",
        "-o",
    ];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.push(dir.to_str().unwrap());
        args.extend_from_slice(extra);
        netlens(&args)
    };
    assert_bad_input(
        &run(&["--metrics", "deletion,road"]),
        "unknown metric 'road'",
    );
    assert_bad_input(
        &run(&["--methods", "gradcam,nope"]),
        "unknown method 'nope'",
    );
    assert_bad_input(&run(&["--steps", "0"]), "steps");
    assert_bad_input(&run(&["--baseline", "blurry"]), "baseline");
    assert_bad_input(&run(&["--score", "odds"]), "score");
    assert_bad_input(&run(&["--class", "10"]), "out of range");
    assert_bad_input(&run(&["--mini-batch", "0"]), "mini-batch");
    assert_bad_input(&run(&["--perturbations", "0"]), "perturbations");
    assert_bad_input(&run(&["--box", "1,2,3"]), "T,L,H,W");
    assert_bad_input(
        &run(&["--metrics", "pointing-game", "--box", "40,0,2,2"]),
        "outside",
    );
    assert_bad_input(&run(&["--noise-sigma=0"]), "noise-sigma");
}

/// A method that cannot run on the model (classic CAM without global average pooling) is
/// skipped with a note, the others evaluated; when no method runs, the reason is the error.
#[test]
fn cli_evaluate_skips_a_method_the_model_cannot_run() {
    let mut ob = OnnxBuilder::new(&[1, 4, 4]);
    let w = ob.weight("w", &[2, 1, 3, 3]);
    let fc = ob.weight("fc", &[3, 8]);
    ob.node("Conv", &["input", &w], &["c"], vec![]);
    ob.node("Flatten", &["c"], &["f"], vec![]);
    ob.node("Gemm", &["f", &fc], &["y"], vec![a_int("transB", 1)]);
    let model = scratch_in("metrics", "nogap.onnx");
    std::fs::write(&model, ob.build("y")).unwrap();
    let x = scratch_in("metrics", "nogap.npy");
    netlens::input::write_npy(&x, &[1, 1, 4, 4], &random(&[16], 3).data).unwrap();
    let dir = scratch_in("metrics", "evaluate-skip");
    let run = |methods: &str| {
        netlens(&[
            "evaluate",
            model.to_str().unwrap(),
            "--input-npy",
            x.to_str().unwrap(),
            "--methods",
            methods,
            "--steps",
            "4",
            "--backend",
            "cpu",
            "--json",
            "-o",
            dir.to_str().unwrap(),
        ])
    };
    let out = run("cam,saliency");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("skipping cam"), "{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["results"][0]["skipped"].is_string(), "{s}");
    assert!(
        s["results"][1]["metrics"]["deletion"]["auc"].is_number(),
        "{s}"
    );
    assert_bad_input(&run("cam"), "cam");
}

/// Over a folder: every image evaluated (its own top class), each metric's mean ± std, the mean
/// curves plotted; an empty folder is bad input.
#[test]
fn cli_evaluate_over_a_folder_gives_mean_and_std() {
    let dir = scratch_in("metrics", "evaluate-folder");
    let out = netlens(&[
        "evaluate",
        &asset("models/tiny_digits.onnx"),
        &asset("digits"),
        "--methods",
        "saliency",
        "--steps",
        "4",
        "--backend",
        "cpu",
        "--json",
        "-q",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let images = s["class"].as_array().unwrap();
    assert_eq!(images.len(), 20, "{s}");
    assert!(images[0]["image"].as_str().unwrap().ends_with(".png"));
    let deletion = &s["results"][0]["metrics"]["deletion"];
    let values: Vec<f64> = deletion["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(values.len(), 20);
    let mean = values.iter().sum::<f64>() / 20.0;
    assert!((deletion["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!(deletion["std"].as_f64().unwrap() > 0.0);
    assert_eq!(deletion["mean_scores"].as_array().unwrap().len(), 5);
    assert!(dir.join("saliency_deletion.png").exists());

    let empty = scratch_in("metrics", "empty-folder");
    std::fs::create_dir_all(&empty).unwrap();
    let out = netlens(&[
        "evaluate",
        &asset("models/tiny_digits.onnx"),
        empty.to_str().unwrap(),
        "--backend",
        "cpu",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert_bad_input(&out, "image");
}
