//! The memory budget (issue 11, item 3): path methods run in budget-sized chunks with the same
//! result as one batch and flat memory in the sample count; what cannot be chunked is refused
//! with exit 2 before it is allocated; LIME refuses an underdetermined surrogate (item 6).

mod common;
use common::*;
use netlens::backend::{sample_bytes, Budget};
use netlens::methods::integrated_gradients::{IntegratedGradients, Quadrature};
use netlens::methods::smoothgrad::{SmoothGrad, Variant};
use netlens::model::import::load_model;
use netlens::{HostTensor, Model};

const DIGITS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/models/tiny_digits.onnx"
);
const X_DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fuzz/x_digits.npy");

fn digits() -> (Model, HostTensor) {
    let m = load_model(DIGITS).expect("import");
    let x = read_npy(X_DIGITS);
    (m, x)
}

/// A budget that holds `samples` samples of a gradient pass on `m` (and not one more).
fn budget_for(m: &Model, x: &HostTensor, samples: u128) -> Budget {
    let per = sample_bytes(m, true) + x.sample_len() as u128 * 4;
    Budget::new((per * samples + per / 2) as u64, "a test budget")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max)
}

/// SmoothGrad, SmoothGrad² and VarGrad in chunks of 7 give the one-batch maps: each chunk draws
/// its own samples' noise (not the first chunk's again) and the sums add up. IG likewise.
#[test]
fn chunked_path_methods_equal_one_batch() {
    let (m, x) = digits();
    let whole = cpu();
    let mut chunked = cpu();
    chunked.set_budget(budget_for(&m, &x, 7));
    for variant in [Variant::SmoothGrad, Variant::SmoothGradSq, Variant::VarGrad] {
        let sg = SmoothGrad {
            samples: 40,
            variant,
            ..Default::default()
        };
        let a = sg.attribute(&whole, &m, &x, 3).unwrap();
        let b = sg.attribute(&chunked, &m, &x, 3).unwrap();
        let scale = a.map.data.iter().fold(0f32, |s, v| s.max(v.abs()));
        let d = max_abs_diff(&a.map.data, &b.map.data);
        assert!(d <= 1e-5 * scale.max(1e-6), "{variant:?}: {d} of {scale}");
        assert_eq!(a.score, b.score, "{variant:?}: the clean image's score");
    }
    for q in [Quadrature::GaussLegendre, Quadrature::RiemannTrapezoid] {
        let ig = IntegratedGradients {
            steps: 30,
            quadrature: q,
            ..Default::default()
        };
        let a = ig.attribute(&whole, &m, &x, 3).unwrap();
        let b = ig.attribute(&chunked, &m, &x, 3).unwrap();
        let scale = a
            .attribution
            .map
            .data
            .iter()
            .fold(0f32, |s, v| s.max(v.abs()));
        let d = max_abs_diff(&a.attribution.map.data, &b.attribution.map.data);
        assert!(d <= 1e-5 * scale.max(1e-6), "{q:?}: {d} of {scale}");
        assert!((a.convergence_delta - b.convergence_delta).abs() <= 1e-4);
    }
}

/// On the GPU a run that fits one chunk stays one gradients submission and one read-back; under
/// a budget of 10 samples, 32 noisy copies + the clean image take 4 submissions and still one
/// read-back.
#[test]
fn gpu_chunks_add_submissions_only_past_one_chunk() {
    let (m, x) = digits();
    let mut g = private_gpu();
    let sg = SmoothGrad {
        samples: 32,
        ..Default::default()
    };
    let runs = |g: &netlens::gpu::GpuBackend| {
        let before = g.stats();
        sg.attribute(g, &m, &x, 3).unwrap();
        let after = g.stats();
        (
            after.submissions - before.submissions - (after.readbacks - before.readbacks),
            after.readbacks - before.readbacks,
        )
    };
    assert_eq!(runs(&g), (1, 1), "one chunk");
    g.set_budget(budget_for(&m, &x, 10));
    assert_eq!(runs(&g), (4, 1), "33 samples in chunks of 10");
}

/// A budget too small for one sample's activations is exit 2 naming what needed how much.
#[test]
fn one_sample_over_the_budget_is_refused() {
    let (m, x) = digits();
    let mut b = cpu();
    b.set_budget(Budget::new(1000, "a test budget"));
    let e = SmoothGrad::default().attribute(&b, &m, &x, 3).unwrap_err();
    assert_eq!(e.kind, netlens::ErrorKind::BadInput);
    assert!(
        e.message.contains("needs") && e.message.contains("a test budget"),
        "{e}"
    );
    let e = netlens::methods::saliency::Saliency::default()
        .attribute(&b, &m, &x, &[3])
        .unwrap_err();
    assert!(e.message.contains("gradient pass of one sample"), "{e}");
}

fn netlens_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_netlens"))
        .args(args)
        .env("NODEVICE_SELECT", "1")
        .env_remove("NETLENS_BACKEND")
        .output()
        .unwrap()
}

fn assert_exit_2(out: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "'{n}' missing from: {stderr}");
    }
}

/// SmoothGrad with 10^7 and 10^8 samples under a 2 GiB address-space limit: one batch would
/// need 41 GB and 410 GB (and aborted); in chunks it is still running, in well under 300 MB of
/// RSS, when it is stopped after 4 seconds.
#[test]
fn huge_smoothgrad_runs_flat_under_an_address_space_limit() {
    for samples in ["10000000", "100000000"] {
        let dir = scratch_in("budget", &format!("sg{samples}"));
        let mut child = std::process::Command::new("prlimit")
            .arg("--as=2147483648")
            .arg(env!("CARGO_BIN_EXE_netlens"))
            .args(["smoothgrad", DIGITS, "--input-npy", X_DIGITS])
            .args(["--samples", samples, "--backend", "cpu", "--quiet", "-o"])
            .arg(&dir)
            .env("NODEVICE_SELECT", "1")
            .env_remove("NETLENS_BACKEND")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("prlimit (util-linux) runs netlens");
        std::thread::sleep(std::time::Duration::from_secs(4));
        let status = child.try_wait().unwrap();
        // prlimit execs netlens: the child's pid is netlens's.
        let rss_kb = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            });
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        assert!(
            status.is_none(),
            "{samples} samples ended early ({status:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rss_kb = rss_kb.expect("VmHWM of the running netlens");
        assert!(
            rss_kb < 300 << 10,
            "{samples} samples: peak RSS {rss_kb} kB"
        );
    }
}

/// LIME's surrogate needs every sample at once: 10^8 samples are refused before any forward,
/// naming the budget; with fewer samples than segments + 1 it is underdetermined and refused
/// (`--num-samples 1` wrote an all-zero map).
#[test]
fn lime_refuses_what_its_surrogate_cannot_hold_or_determine() {
    let dir = scratch_in("budget", "lime");
    let d = dir.to_str().unwrap();
    let lime = |extra: &[&str]| {
        let mut args = vec!["lime", DIGITS, "--input-npy", X_DIGITS, "--backend", "cpu"];
        args.extend_from_slice(&["--quiet", "-o", d]);
        args.extend_from_slice(extra);
        netlens_cli(&args)
    };
    let out = lime(&["--num-samples", "100000000", "--max-memory", "1G"]);
    assert_exit_2(&out, &["LIME's surrogate", "--max-memory 1G"]);
    let out = lime(&["--num-samples", "1"]);
    assert_exit_2(&out, &["segments + 1", "--num-samples"]);
    let out = lime(&[
        "--num-samples",
        "1",
        "--segmentation",
        "grid",
        "--num-features",
        "4",
    ]);
    assert_exit_2(&out, &["1 samples for 4 segments"]);
    let out = lime(&[
        "--num-samples",
        "5",
        "--segmentation",
        "grid",
        "--num-features",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--max-memory` takes sizes with units and refuses anything else with exit 2; Gauss-Legendre
/// IG past its node limit is refused too (its table costs n² to compute).
#[test]
fn max_memory_and_step_limits_are_checked() {
    let dir = scratch_in("budget", "flags");
    let d = dir.to_str().unwrap();
    let base = [
        "saliency",
        DIGITS,
        "--input-npy",
        X_DIGITS,
        "--backend",
        "cpu",
        "-o",
        d,
    ];
    for bad in ["4X", "-1G", "lots", "1K"] {
        let mut args = base.to_vec();
        let flag = format!("--max-memory={bad}");
        args.push(&flag);
        assert_exit_2(&netlens_cli(&args), &["--max-memory"]);
    }
    let mut args = base.to_vec();
    args.extend_from_slice(&["--max-memory", "512M", "--quiet"]);
    let out = netlens_cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = netlens_cli(&[
        "ig",
        DIGITS,
        "--input-npy",
        X_DIGITS,
        "--backend",
        "cpu",
        "-o",
        d,
        "--steps",
        "100000000",
    ]);
    assert_exit_2(&out, &["Gauss-Legendre", "riemann"]);
}
