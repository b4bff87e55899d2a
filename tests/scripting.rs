//! Scripting: every subcommand takes --json (one JSON document on stdout) and --quiet (nothing on
//! stderr but errors); exit codes are 0, 2 for bad input (usage errors included), 1 otherwise.
//! Also: `auto` picks the CPU backend when the only adapter is a software one.

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

/// Runs `args`, expects exit 0, nothing on stderr, and one JSON document on stdout.
fn json_quiet(args: &[&str]) -> serde_json::Value {
    let out = netlens(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    assert!(stderr.is_empty(), "{args:?} with --quiet wrote: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn every_subcommand_speaks_json_quietly() {
    let info = json_quiet(&["info", DIGITS, "--json", "--quiet"]);
    assert!(info["parameters"].as_u64().unwrap() > 0);

    let adapters = json_quiet(&["adapters", "--json", "-q"]);
    assert!(adapters.is_array());

    let c = json_quiet(&["classify", DIGITS, DIGIT_PNG, "--json", "-q"]);
    assert_eq!(c["results"][0]["top"][0]["class"], 3);

    let npy = scratch_in("scripting", "logits.npy");
    let r = json_quiet(&[
        "run",
        DIGITS,
        DIGIT_PNG,
        "-o",
        npy.to_str().unwrap(),
        "--json",
        "-q",
    ]);
    assert_eq!(r["written"][0]["shape"], serde_json::json!([1, 10]));

    let dir = scratch_in("scripting", "gradcam");
    let g = json_quiet(&[
        "gradcam",
        DIGITS,
        DIGIT_PNG,
        "-o",
        dir.to_str().unwrap(),
        "--json",
        "-q",
    ]);
    assert_eq!(g["method"], "gradcam");
    assert_eq!(g["results"][0]["class"], 3);
    assert!(g["non_finite"].as_array().unwrap().is_empty());
    let own: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary_gradcam_3.json")).unwrap())
            .unwrap();
    assert_eq!(own, g, "stdout is not the run's summary_gradcam_3.json");

    let dir = scratch_in("scripting", "explain");
    let e = json_quiet(&[
        "explain",
        DIGITS,
        DIGIT_PNG,
        "-o",
        dir.to_str().unwrap(),
        "--json",
        "-q",
    ]);
    assert_eq!(e["class"], 3);
    assert!(dir.join("report.html").exists() && dir.join("summary.json").exists());
}

/// The perturbation and global subcommands too: with --json, stdout is exactly their
/// summary.json (for lime and scorecam also their own `summary_<method>_<class>.json`), and
/// nothing else (deep dream's per-level lines included).
#[test]
fn perturbation_and_global_subcommands_speak_json() {
    const LAYER: &str = "/features/features.2/Relu_output_0";
    const FEATURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/ref/tsne_digits_X.npy");
    const DIGITS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/digits_all");
    let runs: [(&str, &[&str]); 6] = [
        ("lime", &["lime", DIGITS, DIGIT_PNG, "--num-samples", "128"]),
        ("scorecam", &["scorecam", DIGITS, DIGIT_PNG]),
        (
            "activations",
            &["activations", DIGITS, DIGIT_PNG, "--layer", LAYER],
        ),
        (
            "deepdream",
            &[
                "deepdream",
                DIGITS,
                "--layer",
                LAYER,
                "--channels",
                "0,1",
                "--levels",
                "1",
            ],
        ),
        ("extremes", &["extremes", DIGITS, DIGITS_DIR]),
        (
            "tsne",
            &["tsne", "--features", FEATURES, "--iterations", "20"],
        ),
    ];
    for (name, args) in runs {
        let dir = scratch_in("scripting", &format!("json-{name}"));
        let mut all = args.to_vec();
        all.extend([
            "-o",
            dir.to_str().unwrap(),
            "--backend",
            "cpu",
            "--json",
            "-q",
        ]);
        let printed = json_quiet(&all);
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(printed, saved, "{name}: stdout is not its summary.json");
        if matches!(name, "lime" | "scorecam") {
            let own = dir.join(format!(
                "summary_{name}_{}.json",
                printed["results"][0]["class"]
            ));
            let own: serde_json::Value = serde_json::from_slice(&std::fs::read(&own).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", own.display()));
            assert_eq!(printed, own, "{name}: stdout is not its own summary");
        }
    }
}

/// Without --quiet, the text output of explain ends with the report's path.
#[test]
fn explain_text_names_the_report() {
    let dir = scratch_in("scripting", "explain-text");
    let out = netlens(&[
        "explain",
        DIGITS,
        DIGIT_PNG,
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    let path = last.strip_prefix("report: ").expect(&stdout);
    assert!(path.ends_with("report.html") && std::path::Path::new(path).is_absolute());
}

/// `auto` picks the CPU backend when the adapter wgpu would use is a software one, and says so
/// on stderr (once) unless --quiet.
#[test]
fn auto_prefers_the_cpu_over_a_software_adapter() {
    let adapters = json_quiet(&["adapters", "--json"]);
    let software_only = adapters
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["device_type"] == "Cpu");
    let out = netlens(&["classify", DIGITS, DIGIT_PNG, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let backend = c["backend"].as_str().unwrap();
    if software_only {
        assert!(backend.starts_with("CPU"), "{backend}");
        assert_eq!(stderr.matches("software").count(), 1, "{stderr}");
    } else {
        assert!(!backend.starts_with("CPU"), "{backend}");
    }
    // --backend gpu still takes the software adapter.
    let forced = json_quiet(&[
        "classify",
        DIGITS,
        DIGIT_PNG,
        "--json",
        "-q",
        "--backend",
        "gpu",
    ]);
    assert!(!forced["backend"].as_str().unwrap().starts_with("CPU"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["bench", "--repeat", "many"],
        vec!["classify", "--no-such-flag"],
        vec!["frobnicate"],
    ] {
        let out = netlens(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = netlens(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
}
