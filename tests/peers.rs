//! Score-CAM, classic CAM, SmoothGrad² and VarGrad against external references, on both backends.
//!
//! References (assets/tools/peer_more.py, recorded in assets/ref/peers/manifest.json under
//! `scorecam_and_cam`): pytorch-grad-cam 1.5.7's `ScoreCAM` on the same ONNX graph (onnx2torch,
//! float32); classic CAM as an independent numpy float64 sum Σ_k W[c, k] A_k with A_k from the
//! onnx2torch graph run in float64 and W read from the ONNX initializer; SmoothGrad² and VarGrad
//! by Captum 0.9.0's `NoiseTunnel(Saliency)` given netlens' own noise (the script reimplements
//! the counter-based noise formula; the noisy copies it wrote are checked against `path_batch`
//! here, so the two sides provably average over the same inputs).
//!
//! Error measure: max |ours - ref| / max |ref| (`rel_err`).

mod common;
use common::*;
use netlens::methods::cam::cam;
use netlens::methods::scorecam::ScoreCam;
use netlens::methods::smoothgrad::{SmoothGrad, Variant};
use netlens::methods::{normalize_min_max, upsample_bilinear};
use netlens::model::import::load_model;
use netlens::{Backend, HostTensor, Model};

/// Score-CAM's weights are a softmax over 48 masked logits; both sides run the same float32
/// graph on the same masked images, so they differ by float32 summation order only (measured
/// ≤ 5e-7 on both backends).
const SCORECAM_TOL: f32 = 1e-4;
/// Classic CAM is one weighted channel sum after a float32 forward; the float64 reference
/// differs by float32 rounding of the forward (measured ≤ 1e-6 on both models).
const CAM_TOL: f32 = 1e-4;

fn digits() -> (Model, HostTensor) {
    let m = load_model(asset("models/tiny_digits.onnx")).expect("import");
    (
        m,
        read_npy(&asset("ref/peers/tiny_digits_digit3_input.npy")),
    )
}

fn mobilenet() -> (Model, HostTensor) {
    let m = load_model(asset("models/mobilenetv2_imagenet.onnx")).expect("import");
    (
        m,
        read_npy(&asset("ref/mobilenetv2_imagenet_chelsea_input.npy")),
    )
}

fn peer(name: &str) -> HostTensor {
    read_npy(&asset(&format!("ref/peers/{name}.npy")))
}

fn check(label: &str, what: &str, got: &[f32], want: &HostTensor, tol: f32) -> f32 {
    let e = rel_err(got, &want.data, 0.0);
    println!("{label} {what}: {e:.2e}");
    assert!(e <= tol, "{label} {what}: {e} > {tol}");
    e
}

fn scorecam_parity<B: Backend>(label: &str, b: &B) {
    let (m, x) = digits();
    let (h, w) = (x.shape[2], x.shape[3]);
    let got = ScoreCam::default()
        .attribute(b, &m, &x, &[3])
        .expect("score-cam")
        .remove(0);
    let weights = peer("tiny_digits_digit3_pgc_scorecam_weights");
    check(label, "weights", &got.weights, &weights, SCORECAM_TOL);
    let lowres = peer("tiny_digits_digit3_pgc_scorecam_lowres");
    assert_eq!(got.cam.lowres.shape, lowres.shape);
    check(
        label,
        "low-res map",
        &got.cam.lowres.data,
        &lowres,
        SCORECAM_TOL,
    );
    // What pgc returns: min-max, OpenCV bilinear resize (half-pixel centres), min-max again.
    let want = peer("tiny_digits_digit3_pgc_scorecam_map");
    let pgc_map = normalize_min_max(&upsample_bilinear(
        &normalize_min_max(&got.cam.lowres),
        h,
        w,
    ));
    check(label, "pgc-style map", &pgc_map.data, &want, SCORECAM_TOL);
    // netlens' own upsampled map is the same picture before normalisation.
    let own = normalize_min_max(&got.cam.upsampled);
    check(label, "own upsampled map", &own.data, &want, SCORECAM_TOL);
}

#[test]
fn scorecam_matches_pytorch_grad_cam_cpu() {
    scorecam_parity("cpu", &cpu());
}

#[test]
fn scorecam_matches_pytorch_grad_cam_gpu() {
    scorecam_parity("gpu", gpu());
}

fn cam_parity<B: Backend>(
    label: &str,
    b: &B,
    (m, x): (Model, HostTensor),
    class: usize,
    stem: &str,
) {
    let got = cam(b, &m, &x, &[class]).expect("cam").remove(0);
    let want = peer(&format!("{stem}_cam_f64"));
    assert_eq!(got.lowres.shape, want.shape);
    check(
        label,
        &format!("{stem} classic CAM vs numpy float64"),
        &got.lowres.data,
        &want,
        CAM_TOL,
    );
}

#[test]
fn classic_cam_matches_numpy_float64_cpu() {
    cam_parity("cpu", &cpu(), digits(), 3, "tiny_digits_digit3");
    cam_parity(
        "cpu",
        &cpu(),
        mobilenet(),
        285,
        "mobilenetv2_imagenet_chelsea",
    );
}

#[test]
fn classic_cam_matches_numpy_float64_gpu() {
    cam_parity("gpu", gpu(), digits(), 3, "tiny_digits_digit3");
    cam_parity(
        "gpu",
        gpu(),
        mobilenet(),
        285,
        "mobilenetv2_imagenet_chelsea",
    );
}

/// The NoiseTunnel settings of assets/tools/peer_more.py (`NT`).
const NT_SAMPLES: usize = 8;
const NT_NOISE: f32 = 0.15;
const NT_SEED: u64 = 7;
/// Both sides: gradients of the same float32 graph at the same noisy inputs, averaged over 8;
/// they differ by float32 rounding (the noise itself by a few ulp of `ln`/`cos`, checked below at
/// 1e-6). VarGrad, a difference of two means, loses a little to cancellation but stays far inside.
const NT_TOL: f32 = 1e-4;

fn noise_tunnel_parity<B: Backend>(label: &str, b: &B) {
    let (m, x) = digits();
    // The noisy copies: netlens' path batch against the script's numpy reimplementation.
    let (lo, hi) = x
        .data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let sigma = NT_NOISE * (hi - lo);
    let image = b.upload(&x).expect("upload");
    let batch = b
        .path_batch(
            &image,
            &image,
            &[1.0; NT_SAMPLES],
            &[sigma; NT_SAMPLES],
            NT_SEED,
        )
        .and_then(|t| b.read(&t))
        .expect("path batch");
    let noisy = peer("tiny_digits_digit3_nt_noisy");
    assert_eq!(batch.shape, noisy.shape);
    check(label, "noisy copies vs numpy", &batch.data, &noisy, 1e-6);
    for (variant, name) in [
        (Variant::SmoothGradSq, "smoothgrad_sq"),
        (Variant::VarGrad, "vargrad"),
    ] {
        let got = SmoothGrad {
            samples: NT_SAMPLES,
            noise: NT_NOISE,
            variant,
            seed: NT_SEED,
            ..Default::default()
        }
        .attribute(b, &m, &x, 3)
        .expect("smoothgrad");
        let want = peer(&format!("tiny_digits_digit3_nt_{name}"));
        assert_eq!(got.map.shape, want.shape);
        check(
            label,
            &format!("{name} vs Captum NoiseTunnel"),
            &got.map.data,
            &want,
            NT_TOL,
        );
    }
}

#[test]
fn smoothgrad_sq_and_vargrad_match_captum_noise_tunnel_cpu() {
    noise_tunnel_parity("cpu", &cpu());
}

#[test]
fn smoothgrad_sq_and_vargrad_match_captum_noise_tunnel_gpu() {
    noise_tunnel_parity("gpu", gpu());
}
