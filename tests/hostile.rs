//! Hostile inputs through the command line: a decompression-bomb PNG under a memory limit and
//! non-finite `.npy` tensors. Each must end with exit 0 or 2, never a panic or an abort.

mod common;
use common::*;

const DIGITS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/models/tiny_digits.onnx"
);
const X_DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fuzz/x_digits.npy");
const BOMB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fuzz/bomb16384_rgb.png");

/// x_digits.npy ([1, 1, 16, 16] float32, little-endian) with some values replaced.
fn digits_with(name: &str, set: &[(usize, f32)]) -> String {
    let mut bytes = std::fs::read(X_DIGITS).unwrap();
    let data_at = bytes.len() - 256 * 4;
    for &(i, v) in set {
        bytes[data_at + 4 * i..data_at + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    let path = scratch_in("hostile", name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

fn run_and_saliency(npy: &str, needle: &str) {
    let out = scratch_in("hostile", "out.npy");
    let dir = scratch_in("hostile", "saliency");
    let o = out.to_str().unwrap();
    let d = dir.to_str().unwrap();
    for args in [
        vec![
            "run",
            DIGITS,
            "--input-npy",
            npy,
            "-o",
            o,
            "--backend",
            "cpu",
        ],
        vec![
            "saliency",
            DIGITS,
            "--input-npy",
            npy,
            "-o",
            d,
            "--backend",
            "cpu",
        ],
    ] {
        let result = netlens(&args);
        assert_bad_input(&result, needle);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains("non-finite"), "{args:?}: {stderr}");
    }
}

#[test]
fn all_nan_input_is_refused_at_its_first_index() {
    let all: Vec<(usize, f32)> = (0..256).map(|i| (i, f32::NAN)).collect();
    run_and_saliency(&digits_with("all_nan.npy", &all), "index [0, 0, 0, 0]");
}

#[test]
fn one_nan_pixel_is_refused_naming_its_position() {
    // Flat index 37 of [1, 1, 16, 16] is row 2, column 5.
    run_and_saliency(
        &digits_with("one_nan.npy", &[(37, f32::NAN)]),
        "index [0, 0, 2, 5]",
    );
}

#[test]
fn infinities_are_refused_too() {
    run_and_saliency(
        &digits_with("inf.npy", &[(255, f32::INFINITY), (254, f32::NEG_INFINITY)]),
        "index [0, 0, 15, 14]",
    );
}

#[test]
fn finite_input_still_runs() {
    let out = scratch_in("hostile", "finite.npy");
    let args = [
        "run",
        DIGITS,
        "--input-npy",
        X_DIGITS,
        "-o",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
    ];
    let result = netlens(&args);
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// The 783 KB PNG of 16384x16384 RGB under a 4 GiB address-space limit: it decodes within the
/// budget (768 MiB of 8-bit samples, then row-by-row conversion and resizing), so it classifies;
/// exit 2 would also be acceptable, a signal (allocation abort) is not.
#[test]
fn image_bomb_under_a_memory_limit_exits_0_or_2() {
    let result = std::process::Command::new("prlimit")
        .arg("--as=4294967296")
        .arg(env!("CARGO_BIN_EXE_netlens"))
        .args(["classify", DIGITS, BOMB, "--backend", "cpu"])
        .env("NODEVICE_SELECT", "1")
        .env_remove("NETLENS_BACKEND")
        .output()
        .expect("prlimit (util-linux) runs netlens");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        matches!(result.status.code(), Some(0 | 2)),
        "status {:?}, stderr: {stderr}",
        result.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
