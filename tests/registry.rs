//! The method registry drives the CLI, the report and the bench: every entry is a subcommand
//! with only its own options in `--help`, runs end to end, shows in `netlens explain`'s report
//! where the methods always were, and is a bench row.

mod common;
use common::*;

use netlens::cpu::CpuBackend;
use netlens::methods::registry::{self, MethodEntry};

const DIGITS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/models/tiny_digits.onnx"
);
const DIGIT_PNG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/digits/digit_3_idx0649.png"
);

fn entries() -> Vec<MethodEntry<CpuBackend>> {
    registry::methods::<CpuBackend>()
}

fn help(command: &str) -> String {
    let out = netlens(&[command, "--help"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{command} --help: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names are unique (each is a subcommand and a bench row) and every preset's options parse.
#[test]
fn names_are_unique_and_every_preset_parses() {
    let all = entries();
    for (i, e) in all.iter().enumerate() {
        assert!(all[i + 1..].iter().all(|o| o.name != e.name), "{}", e.name);
        for p in &e.presets {
            if let Err(err) = e.options_from(p.args) {
                panic!("{} {:?}: {err}", e.name, p.args);
            }
        }
    }
}

#[test]
fn each_subcommand_help_lists_its_own_options_only() {
    let gradcam = help("gradcam");
    for own_or_shared in [
        "--layer",
        "--no-relu",
        "--class",
        "--score",
        "--output",
        "--backend",
    ] {
        assert!(
            gradcam.contains(own_or_shared),
            "{own_or_shared}: {gradcam}"
        );
    }
    for other in [
        "--steps",
        "--samples",
        "--num-samples",
        "--mask-size",
        "--baseline",
    ] {
        assert!(
            !gradcam.contains(other),
            "gradcam --help lists {other}: {gradcam}"
        );
    }
    let ig = help("ig");
    for own in ["--steps", "--method", "--baseline", "--input-npy"] {
        assert!(ig.contains(own), "{own}: {ig}");
    }
    for other in ["--samples", "--layer", "--no-relu", "--mask-size"] {
        assert!(!ig.contains(other), "ig --help lists {other}: {ig}");
    }
    let lime = help("lime");
    assert!(lime.contains("--num-samples") && lime.contains("--segmentation"));
    assert!(!lime.contains("--steps") && !lime.contains("--no-relu"));
}

#[test]
fn every_registry_method_is_a_subcommand_that_runs() {
    let top = help("--help");
    for e in entries() {
        assert!(
            top.contains(e.name),
            "{} missing from netlens --help",
            e.name
        );
        assert!(help(e.name).contains(e.about), "{}'s --help", e.name);
        // Small settings keep the sampling methods quick.
        let quick: &[&str] = match e.name {
            "lime" => &["--num-samples", "128"],
            "smoothgrad" => &["--samples", "2"],
            "ig" => &["--steps", "4"],
            _ => &[],
        };
        let dir = scratch_in("registry", e.name);
        let _ = std::fs::remove_dir_all(&dir);
        let mut args = vec![
            e.name,
            DIGITS,
            DIGIT_PNG,
            "--backend",
            "cpu",
            "--json",
            "-q",
        ];
        args.extend(["-o", dir.to_str().unwrap()]);
        args.extend(quick);
        let out = netlens(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", e.name);
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(summary["method"], e.name);
        assert_eq!(summary["parameters"]["score"], "logit", "{}", e.name);
        let result = &summary["results"][0];
        assert_eq!(result["class"], 3, "{}", e.name);
        for key in ["png", "npy"] {
            let path = result[key].as_str().unwrap_or_default();
            assert!(
                std::path::Path::new(path).exists(),
                "{}: {key} {path}",
                e.name
            );
        }
        assert!(
            dir.join(format!("{}_3.png", e.name)).exists(),
            "{}: file names keep the subcommand's name",
            e.name
        );
    }
}

#[test]
fn report_shows_every_registry_method_where_it_always_was() {
    let model = netlens::model::import::load_model(DIGITS).unwrap();
    let pre = netlens::input::Preprocess::unit();
    let x = netlens::input::image_tensor(DIGIT_PNG, &pre, model.input_shape()).unwrap();
    let rgb = netlens::viz::display_image(&x, &pre);
    let settings = netlens::report::Settings {
        lime_samples: 64,
        ..Default::default()
    };
    let panels = netlens::report::panels(
        &cpu(),
        &model,
        &x,
        &rgb,
        3,
        &settings,
        &netlens::progress::Silent,
    )
    .unwrap();
    let titles: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
    let mut want = vec!["Strongest activation channel"];
    for e in entries().iter().filter(|e| e.in_report) {
        want.extend(e.presets.iter().map(|p| p.title));
    }
    assert_eq!(titles, want);
    // The report's panels before the registry, in their order (new methods may come between).
    let before = [
        "Strongest activation channel",
        "CAM",
        "Grad-CAM",
        "Grad-CAM++",
        "LayerCAM",
        "Occlusion sensitivity",
        "LIME",
        "Vanilla gradient",
        "Gradient × input",
        "SmoothGrad",
        "Integrated Gradients",
        "Guided backprop",
        "Guided Grad-CAM",
    ];
    let mut rest = titles.iter();
    for t in before {
        assert!(
            rest.any(|s| *s == t),
            "{t} missing or out of order in {titles:?}"
        );
    }
    let ig = panels
        .iter()
        .find(|p| p.title == "Integrated Gradients")
        .unwrap();
    assert!(
        ig.note.as_deref().unwrap_or("").contains("convergence δ"),
        "{ig:?}"
    );
    assert!(
        !titles.contains(&"Score-CAM"),
        "Score-CAM stays out of the report"
    );
}

#[test]
fn bench_times_every_registry_method() {
    let names: Vec<&str> = netlens::bench::entries(&Default::default())
        .iter()
        .map(|e| e.name)
        .collect();
    for e in entries() {
        for p in &e.presets {
            assert!(names.contains(&p.name), "{} missing from {names:?}", p.name);
        }
    }
    for old in [
        "forward",
        "channel",
        "cam",
        "gradcam",
        "gradcam++",
        "layercam",
        "occlusion",
        "lime",
        "scorecam",
        "deepdream",
        "tsne",
        "saliency",
        "gradient-x-input",
        "guided",
        "smoothgrad",
        "ig",
        "guided-gradcam",
    ] {
        assert!(names.contains(&old), "{old} missing from {names:?}");
    }
}
