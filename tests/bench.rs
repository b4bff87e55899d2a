//! `netlens bench`: every method of the harness runs on both backends and lands in the JSON with
//! its medians and submission counts; the Markdown table regenerates from the JSON alone.
//! Speed is never asserted.

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
fn bench_json_covers_every_method_on_both_backends() {
    let (json, table) = (
        scratch_in("bench", "out.json"),
        scratch_in("bench", "table.md"),
    );
    let out = netlens(&[
        "bench",
        "--model",
        DIGITS,
        "--image",
        DIGIT_PNG,
        "--repeat",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--markdown",
        table.to_str().unwrap(),
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "--quiet, yet: {stderr}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).expect("JSON");
    assert_eq!(report["class"], 3, "the top prediction of a 3");
    assert!(!report["adapter"]["name"].as_str().unwrap().is_empty());
    assert!(report["adapter"]["driver"].is_string());
    assert!(!report["cpu_model"].as_str().unwrap().is_empty());
    let rows = report["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["method"].as_str().unwrap()).collect();
    let all: Vec<&str> = netlens::bench::entries(&Default::default())
        .iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, all);
    for want in [
        "forward",
        "saliency",
        "gradient-x-input",
        "guided",
        "smoothgrad",
        "ig",
        "cam",
        "gradcam",
        "gradcam++",
        "layercam",
        "guided-gradcam",
        "occlusion",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for r in rows {
        for key in ["gpu_median_s", "cpu_median_s", "speedup"] {
            assert!(r[key].as_f64().unwrap() > 0.0, "{key}: {r}");
        }
        // Every method records its work and reads its result back: at least one submission.
        assert!(
            r["gpu_submissions_per_call"].as_f64().unwrap() >= 1.0,
            "{r}"
        );
        assert!(r["gpu_readbacks_per_call"].as_f64().unwrap() >= 1.0, "{r}");
    }
    let forward = &rows[0];
    assert_eq!(forward["peer"], "tract (optimized plan)");
    assert!(forward["peer_median_s"].as_f64().unwrap() > 0.0);
    // A forward with its read-back is two submissions, whatever the model.
    assert_eq!(forward["gpu_submissions_per_call"], 2.0);

    let md = std::fs::read_to_string(&table).unwrap();
    for name in &names {
        assert!(md.contains(&format!("| {name} |")), "{name} not in\n{md}");
    }
    // The table regenerates from the JSON alone, identically.
    let again = scratch_in("bench", "again.md");
    let out = netlens(&[
        "bench",
        "--from",
        json.to_str().unwrap(),
        "--markdown",
        again.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&again).unwrap(), md);
    assert_eq!(String::from_utf8_lossy(&out.stdout), md);
}

#[test]
fn bench_subset_cpu_only_and_json_on_stdout() {
    let out = netlens(&[
        "bench",
        "--model",
        DIGITS,
        "--image",
        DIGIT_PNG,
        "--methods",
        "forward,gradcam",
        "--no-gpu",
        "--repeat",
        "2",
        "--batch",
        "4",
        "--json",
        "-",
        "-q",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(report["adapter"].is_null());
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["params"], "batch 4");
    assert_eq!(rows[1]["cpu_runs_s"].as_array().unwrap().len(), 2);
    assert!(rows[1]["gpu_median_s"].is_null());
}

#[test]
fn bench_bad_input_exits_2() {
    for (args, needle) in [
        (
            vec!["bench", "--methods", "nope", "--no-gpu"],
            "known: forward",
        ),
        (
            vec!["bench", "--no-gpu", "--no-cpu", "--methods", "forward"],
            "nothing to bench",
        ),
        (vec!["bench", "--from", "/nonexistent.json"], "cannot read"),
    ] {
        let out = netlens(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
