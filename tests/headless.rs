//! GPU commands on a headless machine (no display, no `XDG_RUNTIME_DIR`) say nothing on stderr
//! that reads as a failure. Mesa's Vulkan device-selection layer (an implicit layer loaded into
//! every Vulkan instance) asks Wayland for the display's GPU, and libwayland printed `error:
//! XDG_RUNTIME_DIR is invalid or not set in the environment.` twice per instance although
//! nothing had failed.

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

/// Runs netlens as a headless session would: no display variables at all, and without the
/// `NODEVICE_SELECT=1` the other tests set to quiet Mesa (a user has no reason to set it).
fn headless(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_netlens"))
        .args(args)
        .env_remove("NODEVICE_SELECT")
        .env_remove("NETLENS_BACKEND")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .output()
        .expect("netlens runs")
}

#[test]
fn gpu_classify_without_xdg_runtime_dir_prints_no_probe_error() {
    let out = headless(&["classify", DIGITS, DIGIT_PNG, "--backend", "gpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "classify failed: {stderr}");
    let probe: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert!(
        probe.is_empty(),
        "stderr names XDG_RUNTIME_DIR {} time(s):\n{stderr}",
        probe.len()
    );
}

#[test]
fn gpu_run_without_xdg_runtime_dir_prints_no_probe_error() {
    let logits = scratch_in("headless", "logits.npy");
    let out = headless(&[
        "run",
        DIGITS,
        DIGIT_PNG,
        "--backend",
        "gpu",
        "-o",
        logits.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed: {stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}
