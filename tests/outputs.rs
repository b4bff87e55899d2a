//! What the command line and the library produce when things go wrong after the input was
//! accepted (issue 11, items 4 and 5):
//! - a model that overflows inside (finite input, Inf or NaN logits, maps and IG delta): the
//!   maps are still written, exit 0, a warning on stderr and a `non_finite` list in the summary;
//!   the library's `non_finite()` says the same on both backends;
//! - write errors (a full device, an output folder under a file) are exit 1 naming the path;
//! - six concurrent runs into one folder keep six summaries, and no file is ever seen half
//!   written.

mod common;
use common::*;
use netlens::methods::attribution::{Attribute, HostAttribution, Target};
use netlens::methods::finite::NonFinite;
use netlens::methods::gradcam::GradCam;
use netlens::methods::integrated_gradients::IntegratedGradients;
use netlens::methods::saliency::Saliency;
use netlens::model::import::import_bytes;
use netlens::{Backend, HostTensor, Model};
use serde_json::Value;
use std::path::{Path, PathBuf};

const DIGITS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/models/tiny_digits.onnx"
);
const X_DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fuzz/x_digits.npy");

/// `[3, 8, 8]` → Conv (every weight 1e20) → Relu → global average pool → Gemm to 4 classes. On an
/// input of ones the pooled features are about 2.7e21, so each product with a Gemm weight of
/// ±1e20 overflows f32: class 0's logit is +Inf, class 1's -Inf, class 2 (mixed signs) Inf or
/// NaN, and
/// class 3 (weights 1e-30) stays finite, as does its gradient.
fn overflow_bytes() -> Vec<u8> {
    let mut b = OnnxBuilder::new(&[3, 8, 8]);
    let w = b.init("w", &[6, 3, 3, 3], vec![1e20; 162]);
    let bias = b.init("b", &[6], vec![0.0; 6]);
    b.node(
        "Conv",
        &["input", &w, &bias],
        &["c"],
        vec![a_ints("pads", &[1, 1, 1, 1])],
    );
    b.node("Relu", &["c"], &["r"], vec![]);
    b.node("GlobalAveragePool", &["r"], &["g"], vec![]);
    b.node("Flatten", &["g"], &["f"], vec![]);
    let mut gw = vec![1e20f32; 6];
    gw.extend([-1e20f32; 6]);
    gw.extend([1e20f32, -1e20, 1e20, -1e20, 1e20, -1e20]);
    gw.extend([1e-30f32; 6]);
    let gw = b.init("gw", &[4, 6], gw);
    let gb = b.init("gb", &[4], vec![0.0; 4]);
    b.node("Gemm", &["f", &gw, &gb], &["y"], vec![a_int("transB", 1)]);
    b.build("y")
}

fn overflow_model() -> Model {
    import_bytes(&overflow_bytes(), "overflow").expect("import")
}

fn ones() -> HostTensor {
    HostTensor::new(vec![1, 3, 8, 8], vec![1.0; 192]).unwrap()
}

/// The overflow model and an input of ones as files, for the command line.
fn overflow_files() -> (String, String) {
    let model = scratch_in("outputs", "overflow.onnx");
    // Atomically: the tests beside this one run netlens on the same file.
    netlens::atomic::write_bytes(&model, &overflow_bytes()).unwrap();
    let x = scratch_in("outputs", "ones.npy");
    netlens::input::write_npy(&x, &[1, 3, 8, 8], &[1.0; 192]).unwrap();
    (
        model.to_str().unwrap().to_string(),
        x.to_str().unwrap().to_string(),
    )
}

fn has(found: &[NonFinite], what: &str, class: usize) -> bool {
    found
        .iter()
        .any(|n| n.what == what && n.class == Some(class) && n.count > 0)
}

/// The library's report on one backend: class 0 overflows everywhere, class 3's map is finite.
fn library_reports_the_overflow<B: Backend>(b: &B) {
    let model = overflow_model();
    let x = ones();
    let logits = run_backend(b, &model, &x);
    assert_eq!(logits.data[0], f32::INFINITY, "{:?}", logits.data);
    assert!(logits.data[3].is_finite(), "{:?}", logits.data);
    let batch = HostTensor::new(vec![2, 3, 8, 8], vec![1.0; 384]).unwrap();
    let target = Target::PerSample(vec![0, 3]);
    let read = |a: netlens::methods::attribution::Attribution<B::Tensor>| -> HostAttribution {
        a.read(b).unwrap()
    };
    let saliency = read(
        Saliency::default()
            .attribute_batch(b, &model, &batch, &target)
            .unwrap(),
    );
    let found = saliency.non_finite();
    assert!(
        has(&found, "logits", 0) && has(&found, "score", 0),
        "{found:?}"
    );
    assert!(has(&found, "map", 0), "{found:?}");
    assert!(
        !has(&found, "map", 3),
        "class 3's gradient is finite: {found:?}"
    );
    let logit_report = found.iter().find(|n| n.what == "logits").unwrap();
    assert_eq!(logit_report.first_index, vec![0]);
    assert_eq!(logit_report.count, 3, "classes 0, 1 and 2 overflow");

    let cam = read(
        GradCam::default()
            .attribute_batch(b, &model, &batch, &target)
            .unwrap(),
    );
    let found = cam.non_finite();
    assert!(
        has(&found, "map", 0) || has(&found, "lowres_map", 0),
        "{found:?}"
    );

    let ig = IntegratedGradients {
        steps: 8,
        ..IntegratedGradients::default()
    };
    let ig = read(ig.attribute_batch(b, &model, &batch, &target).unwrap());
    let found = ig.non_finite();
    assert!(
        has(&found, "convergence_delta", 0) && has(&found, "map", 0),
        "{found:?}"
    );
    assert!(!has(&found, "convergence_delta", 3), "{found:?}");
}

#[test]
fn the_library_reports_an_overflow_inside_the_model_on_the_cpu() {
    library_reports_the_overflow(&cpu());
}

#[test]
fn the_library_reports_an_overflow_inside_the_model_on_the_gpu() {
    library_reports_the_overflow(gpu());
}

fn summary(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn whats(summary: &Value, class: u64) -> Vec<String> {
    summary["non_finite"]
        .as_array()
        .expect("a non_finite list")
        .iter()
        .filter(|n| n["class"] == class)
        .map(|n| n["what"].as_str().unwrap().to_string())
        .collect()
}

/// Exit 0, the maps written, a warning per problem on stderr and the summary's `non_finite`.
#[test]
fn an_overflow_inside_the_model_is_reported_and_the_maps_are_written() {
    let (model, x) = overflow_files();
    let dir = scratch_in("outputs", "overflow_cli");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let cases: [(&str, &[&str], &str); 3] = [
        ("saliency", &["--class", "0", "--class", "3"], "0-3"),
        ("gradcam", &["--class", "0"], "0"),
        ("ig", &["--class", "0", "--steps", "8"], "0"),
    ];
    for (method, extra, tag) in cases {
        let mut args = vec![
            method,
            &model,
            "--input-npy",
            &x,
            "-o",
            d,
            "--backend",
            "cpu",
        ];
        args.extend_from_slice(extra);
        let out = netlens(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{method}: {stderr}");
        assert!(
            stderr.contains("warning: logits (class 0): 3 of 4 values are NaN or infinite"),
            "{method}: {stderr}"
        );
        let s = summary(&dir.join(format!("summary_{method}_{tag}.json")));
        assert_eq!(s["method"], method);
        let class0 = whats(&s, 0);
        assert!(class0.contains(&"logits".to_string()), "{method}: {s}");
        assert!(
            class0.iter().any(|w| w.contains("map")),
            "{method}: {class0:?}"
        );
        for r in s["results"].as_array().unwrap() {
            let npy = r["npy"].as_str().unwrap();
            let png = r["png"].as_str().unwrap();
            assert!(Path::new(png).exists(), "{png}");
            let map = read_npy(npy);
            if r["class"] == 0 {
                assert!(map.data.iter().any(|v| !v.is_finite()), "{npy}");
            } else {
                assert!(map.data.iter().all(|v| v.is_finite()), "{npy}");
            }
        }
        if method == "ig" {
            assert!(class0.contains(&"convergence_delta".to_string()), "{s}");
            // JSON has no NaN: the delta itself is null, the report says what it was.
            assert!(s["results"][0]["convergence_delta"].is_null(), "{s}");
        }
        if method == "saliency" {
            assert!(!whats(&s, 3).contains(&"map".to_string()), "{s}");
        }
    }
}

/// `explain` draws every panel as computed, notes the overflow in the caption and lists each
/// panel's findings in summary.json.
#[test]
fn explain_reports_each_panels_overflow() {
    let model = scratch_in("outputs_explain", "overflow.onnx");
    std::fs::write(&model, overflow_bytes()).unwrap();
    std::fs::write(model.with_extension("json"), r#"{"preprocess": "unit"}"#).unwrap();
    let dir = scratch_in("outputs_explain", "report");
    let out = netlens(&[
        "explain",
        model.to_str().unwrap(),
        &asset("digits/digit_3_idx0649.png"),
        "--class",
        "0",
        "--steps",
        "4",
        "--samples",
        "4",
        "-o",
        dir.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: Grad-CAM: map (class 0)"),
        "{stderr}"
    );
    let s = summary(&dir.join("summary.json"));
    let whats: Vec<&str> = s["non_finite"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["what"].as_str().unwrap())
        .collect();
    for w in [
        "logits",
        "Grad-CAM: map",
        "Integrated Gradients: convergence_delta",
    ] {
        assert!(whats.contains(&w), "{w} not in {whats:?}");
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("map (class 0): 192 of 192 values are NaN or infinite"));
}

/// `run` writes the Inf logits and lists them; the first index is the batch sample's.
#[test]
fn run_reports_non_finite_logits() {
    let (model, x) = overflow_files();
    let npy = scratch_in("outputs", "overflow_logits.npy");
    let out = netlens(&[
        "run",
        &model,
        "--input-npy",
        &x,
        "-o",
        npy.to_str().unwrap(),
        "--backend",
        "cpu",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: logits: 3 of 4 values are NaN or infinite, the first (inf) at [0, 0]"
        ),
        "{stderr}"
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = &printed["non_finite"][0];
    assert_eq!(
        (n["what"].as_str(), n["count"].as_u64()),
        (Some("logits"), Some(3))
    );
    assert_eq!(n["first_index"], serde_json::json!([0, 0]));
    assert_eq!(n["first_value"], "inf");
    let logits = read_npy(npy.to_str().unwrap());
    assert_eq!(logits.data[0], f32::INFINITY);
    // Inf or NaN: it depends on whether the Gemm fuses its multiply-adds.
    assert!(!logits.data[2].is_finite() && logits.data[3].is_finite());
}

/// A finite model on a finite but huge input: the first layer's activations overflow.
#[test]
fn an_input_so_large_that_activations_overflow_is_reported() {
    let x = read_npy(X_DIGITS);
    // Finite, up to 1e38: the first convolution's sums pass f32's 3.4e38.
    let top = x.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    let huge: Vec<f32> = x.data.iter().map(|v| v / top * 1e38).collect();
    let npy = scratch_in("outputs", "huge.npy");
    netlens::input::write_npy(&npy, &x.shape, &huge).unwrap();
    let dir = scratch_in("outputs", "huge_saliency");
    let out = netlens(&[
        "saliency",
        DIGITS,
        "--input-npy",
        npy.to_str().unwrap(),
        "--class",
        "3",
        "-o",
        dir.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: logits (class 3)"), "{stderr}");
    let s = summary(&dir.join("summary_saliency_3.json"));
    assert!(whats(&s, 3).contains(&"logits".to_string()), "{s}");
}

/// Preprocessing that makes finite pixels infinite (a sidecar's tiny `std`) is refused like a
/// non-finite `.npy`: exit 2 naming the first position.
#[test]
fn an_image_made_non_finite_by_preprocessing_is_refused() {
    let model = scratch_in("outputs_sidecar", "digits.onnx");
    std::fs::copy(DIGITS, &model).unwrap();
    std::fs::write(
        model.with_extension("json"),
        r#"{"preprocess": {"scale": 255, "mean": [0.0], "std": [1e-44]}}"#,
    )
    .unwrap();
    let image = asset("digits/digit_3_idx0649.png");
    let dir = scratch_in("outputs_sidecar", "out");
    for args in [
        vec![
            "classify",
            model.to_str().unwrap(),
            &image,
            "--backend",
            "cpu",
        ],
        vec![
            "saliency",
            model.to_str().unwrap(),
            &image,
            "-o",
            dir.to_str().unwrap(),
            "--backend",
            "cpu",
        ],
    ] {
        let out = netlens(&args);
        assert_bad_input(&out, "non-finite value");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("index [0, 0, "),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn assert_output_error(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "wanted {needle:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// An output folder that cannot be created (it would be under a file): exit 1 naming it.
#[test]
fn an_output_folder_that_cannot_be_made_is_exit_1_with_the_path() {
    let file = scratch_in("outputs", "a_file");
    std::fs::write(&file, b"not a folder").unwrap();
    let dir = file.join("maps");
    let d = dir.to_str().unwrap();
    for method in ["saliency", "gradcam"] {
        let out = netlens(&[
            method,
            DIGITS,
            "--input-npy",
            X_DIGITS,
            "-o",
            d,
            "--backend",
            "cpu",
        ]);
        assert_output_error(&out, d);
    }
    let npy = dir.join("logits.npy");
    let out = netlens(&[
        "run",
        DIGITS,
        "--input-npy",
        X_DIGITS,
        "-o",
        npy.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert_output_error(&out, npy.to_str().unwrap());
}

/// `run -o /dev/full`: the device is written in place (never replaced by a rename), and the full
/// disk is exit 1 with the path and the reason.
#[cfg(target_os = "linux")]
#[test]
fn an_output_file_on_a_full_disk_is_exit_1_with_the_reason() {
    let out = netlens(&[
        "run",
        DIGITS,
        "--input-npy",
        X_DIGITS,
        "-o",
        "/dev/full",
        "--backend",
        "cpu",
    ]);
    assert_output_error(&out, "cannot write /dev/full");
    assert_output_error(&out, "No space left");
    assert!(!std::fs::metadata("/dev/full").unwrap().is_file());
}

/// Everything under `dir` that is not a temporary file must be whole: JSON that parses, `.npy`
/// whose data matches its header, PNG that decodes. Returns how many files were checked.
fn check_whole(dir: &Path) -> usize {
    let mut checked = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        // A file may be replaced between the listing and the read: that is fine, a missing one
        // is not half written.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if name.ends_with(".json") {
            serde_json::from_slice::<Value>(&bytes)
                .unwrap_or_else(|err| panic!("{name} half written: {err}"));
        } else if name.ends_with(".npy") {
            let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|err| panic!("{name}: {err}"));
            let n: u64 = npy.shape().iter().product();
            let data: Vec<f32> = npy
                .into_vec()
                .unwrap_or_else(|err| panic!("{name} half written: {err}"));
            assert_eq!(data.len() as u64, n, "{name}");
        } else if name.ends_with(".png") {
            image::load_from_memory(&bytes).unwrap_or_else(|err| panic!("{name}: {err}"));
        }
        checked += 1;
    }
    checked
}

/// Six runs of different methods and classes into one folder at once: six summaries, each its
/// own run's, and a reader polling the folder meanwhile never sees half a file.
#[test]
fn six_concurrent_runs_into_one_folder_keep_six_summaries() {
    let dir: PathBuf = scratch_in("outputs", "concurrent");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap().to_string();
    let runs: [(&str, &[&str], &str); 6] = [
        ("saliency", &["--class", "1"], "1"),
        ("saliency", &["--class", "2"], "2"),
        ("gradcam", &["--class", "1"], "1"),
        (
            "ig",
            &["--class", "1", "--class", "2", "--steps", "16"],
            "1-2",
        ),
        ("occlusion", &["--class", "4"], "4"),
        ("guided", &["--class", "3", "--class", "1"], "3-1"),
    ];
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut polls = 0usize;
            let mut seen = 0usize;
            // Polls until the runs are done, and once more after.
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Relaxed);
                seen = seen.max(check_whole(&dir));
                polls += 1;
                if finished {
                    break (polls, seen);
                }
            }
        });
        let children: Vec<_> = runs
            .iter()
            .map(|(method, extra, _)| {
                std::process::Command::new(env!("CARGO_BIN_EXE_netlens"))
                    .args([*method, DIGITS, "--input-npy", X_DIGITS, "-o", &d])
                    .args(["--backend", "cpu", "--quiet"])
                    .args(*extra)
                    .env("NODEVICE_SELECT", "1")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("netlens runs")
            })
            .collect();
        for (child, (method, ..)) in children.into_iter().zip(&runs) {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{method}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let (polls, seen) = watcher.join().unwrap();
        assert!(polls > 0 && seen > 0, "the reader never looked");
    });
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("summary_"))
        .collect();
    names.sort();
    let mut expected: Vec<String> = runs
        .iter()
        .map(|(m, _, tag)| format!("summary_{m}_{tag}.json"))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    let mut own = Vec::new();
    for (method, extra, tag) in runs {
        let s = summary(&dir.join(format!("summary_{method}_{tag}.json")));
        assert_eq!(s["method"], method);
        let classes: Vec<u64> = s["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["class"].as_u64().unwrap())
            .collect();
        let asked: Vec<u64> = extra
            .chunks(2)
            .filter(|p| p[0] == "--class")
            .map(|p| p[1].parse().unwrap())
            .collect();
        assert_eq!(classes, asked, "{method}");
        // Each map file the summary names is there and whole.
        for r in s["results"].as_array().unwrap() {
            read_npy(r["npy"].as_str().unwrap());
        }
        own.push(s);
    }
    // summary.json is a whole copy of one of them (the last to finish).
    assert!(own.contains(&summary(&dir.join("summary.json"))));
    assert_eq!(check_whole(&dir), std::fs::read_dir(&dir).unwrap().count());
}

/// Every output file goes through `netlens::atomic`: no other code under `src/` (tests aside)
/// creates or writes a file itself.
#[test]
fn every_file_is_written_through_the_atomic_helper() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut offenders = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap().to_string_lossy().to_string();
        if rel == "atomic.rs" || rel.ends_with("tests.rs") || rel.contains("/tests/") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Inline unit tests sit at the end of a file.
        let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for bad in [
                "File::create",
                "fs::write(",
                "OpenOptions",
                ".save(",
                ".save_with_format(",
            ] {
                if line.contains(bad) {
                    offenders.push(format!("src/{rel}:{}: {line}", n + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "write through netlens::atomic:\n{}",
        offenders.join("\n")
    );
}
