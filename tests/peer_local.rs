//! The local methods that had no external reference on both backends, against peers computed
//! on the tiny digits CNN (cheap on lavapipe): occlusion (Captum `Occlusion`), the gradient
//! of the logit and of the probability (Captum `Saliency`), gradient × input
//! (Captum `InputXGradient`), guided backprop (Captum `GuidedBackprop`), guided Grad-CAM
//! (pytorch-grad-cam's guided backprop × Grad-CAM map), plain SmoothGrad (Captum `NoiseTunnel`
//! given netlens' noise), Integrated Gradients (Captum, both quadratures, with δ), LIME's two
//! surrogates (scikit-learn `Ridge` and `DecisionTreeRegressor` on netlens' samples, rebuilt in
//! numpy and scored by the float64 graph) and a layer's activations (the float64 graph's tap).
//! The grid of which method is checked where: docs/peers.md.
//!
//! References: assets/tools/peer_local.py, recorded in assets/ref/peers/manifest.json under
//! `local_methods` (versions, settings, and each float32 peer's own distance `f32_vs_f64` to the
//! float64 reference stored here). Error measure: max |ours − ref| / max |ref| (`rel_err`).
//!
//! Tolerances. The references are the float64 evaluation of the same ONNX graph (Captum accepts a
//! float64 model), so what separates netlens from them is netlens' float32 rounding. PyTorch's
//! float32 run of the same peer lies 0.7e-7..2.7e-7 from them on this model (manifest
//! `f32_vs_f64`; the probability's gradient aside, see `PROB_GRAD_TOL`); netlens measured
//! 1.2e-7..5.5e-7 on both backends (the `println!`s below; docs/peers.md has each), within 4× of
//! it (the GPU's summation order adds a few ulp): no ReLU of this model sits within float32
//! rounding of its kink at this input (else the float32 peer itself would be ≥ 1e-3 away, see
//! docs/peers.md, "Why these tolerances"). `TOL` = 1e-4 is ~200× the float32 distance and far
//! below what a formula error moves (measured against these files: the plain gradient is 1.08
//! from gradient × input and 2.0 from guided backprop, 0.93 from SmoothGrad; guided backprop
//! without the CAM factor is 0.84 from guided Grad-CAM; LIME's ridge without the kernel weights
//! is 0.11 off, with Captum's kernel width 1 0.10, without the penalty 0.056).

mod common;
use common::*;
use netlens::methods::activations::activations;
use netlens::methods::attribution::{Attribute, Target};
use netlens::methods::guided_gradcam::GuidedGradCam;
use netlens::methods::integrated_gradients::{IntegratedGradients, Quadrature};
use netlens::methods::lime::{Lime, Segmentation, Surrogate};
use netlens::methods::occlusion::{MaskValue, Occlusion, Upsampling};
use netlens::methods::saliency::Saliency;
use netlens::methods::smoothgrad::{SmoothGrad, Variant};
use netlens::methods::Score;
use netlens::model::import::load_model;
use netlens::{Backend, GradRule, HostTensor, Model};

const CLASS: usize = 3;
/// See the module comment: 100× PyTorch float32's own distance to the float64 references.
const TOL: f32 = 1e-4;

fn digits() -> (Model, HostTensor) {
    let m = load_model(asset("models/tiny_digits.onnx")).expect("import");
    (
        m,
        read_npy(&asset("ref/peers/tiny_digits_digit3_input.npy")),
    )
}

fn peer(name: &str) -> HostTensor {
    read_npy(&asset(&format!("ref/peers/tiny_digits_digit3_{name}.npy")))
}

fn check(label: &str, what: &str, got: &[f32], want: &HostTensor, tol: f32) -> f32 {
    assert_eq!(got.len(), want.data.len(), "{label} {what}: size");
    assert!(
        want.data.iter().any(|v| v.abs() > 0.0),
        "{what}: a zero reference proves nothing"
    );
    let e = rel_err(got, &want.data, 0.0);
    println!("{label} {what}: {e:.2e} (tolerance {tol:.0e})");
    assert!(e <= tol, "{label} {what}: {e} > {tol}");
    e
}

/// `peer_local.py`'s `OCCLUSION`: window 8×8, stride 4, baseline 0, whole windows from the
/// corner (Captum's placement).
fn occlusion_parity<B: Backend>(label: &str, b: &B) {
    let (m, x) = digits();
    for (score, name) in [(Score::Logit, "logit"), (Score::Probability, "prob")] {
        let o = Occlusion {
            mask_size: Some([8, 8]),
            stride: Some([4, 4]),
            mask_value: MaskValue::Scalar(0.0),
            clipping: false,
            mini_batch: Some(16),
            score,
            upsampling: Upsampling::None,
        };
        let got = o.attribute(b, &m, &x, &[CLASS]).expect("occlusion");
        let want = peer(&format!("occlusion_{name}_f64"));
        check(
            label,
            &format!("occlusion ({name}) vs Captum"),
            &got[0].per_pixel.data,
            &want,
            TOL,
        );
    }
}

#[test]
fn occlusion_matches_captum_on_digits_cpu() {
    occlusion_parity("cpu", &cpu());
}

#[test]
fn occlusion_matches_captum_on_digits_gpu() {
    occlusion_parity("gpu", gpu());
}

/// The probability's gradient is a cancellation: p(∇z_c − Σ_j p_j ∇z_j) with p_c = 0.99926 here,
/// so the result is ~7.4e-4 of the terms it is made from and float32 rounding of those terms
/// shows up ~1/7.4e-4 larger: PyTorch float32 itself is 9.4e-5 from the float64 gradient
/// (manifest `saliency.prob.f32_vs_f64`), netlens 4.5e-7 on the CPU and 9.4e-5 on the GPU. 10×
/// that floor; the logit's gradient is ~1e3× larger, so a wrong score still fails.
const PROB_GRAD_TOL: f32 = 1e-3;

fn gradient_parity<B: Backend>(label: &str, b: &B) {
    let (m, x) = digits();
    for (score, times_input, rule, name, what) in [
        (
            Score::Logit,
            false,
            GradRule::Standard,
            "saliency_logit_f64",
            "gradient (logit) vs Captum Saliency",
        ),
        (
            Score::Probability,
            false,
            GradRule::Standard,
            "saliency_prob_f64",
            "gradient (probability) vs Captum Saliency",
        ),
        (
            Score::Logit,
            true,
            GradRule::Standard,
            "input_x_gradient_f64",
            "gradient × input vs Captum InputXGradient",
        ),
        (
            Score::Logit,
            false,
            GradRule::Guided,
            "guided_backprop_f64",
            "guided backprop vs Captum GuidedBackprop",
        ),
    ] {
        let got = Saliency {
            score,
            times_input,
            rule,
        }
        .attribute(b, &m, &x, &[CLASS])
        .expect("saliency")
        .remove(0);
        let tol = match score {
            Score::Probability => PROB_GRAD_TOL,
            Score::Logit => TOL,
        };
        check(label, what, &got.map.data, &peer(name), tol);
    }
}

#[test]
fn gradients_match_captum_on_digits_cpu() {
    gradient_parity("cpu", &cpu());
}

#[test]
fn gradients_match_captum_on_digits_gpu() {
    gradient_parity("gpu", gpu());
}

/// netlens' guided Grad-CAM is pgc's recipe (guided backprop × pgc's normalised Grad-CAM map):
/// the reference is pgc's float32 run (its GuidedBackpropReLUModel is 1e-7 from Captum's float64
/// guided backprop, manifest `pgc_gb_vs_captum_f64`). The CAM factor is netlens' own bilinear
/// upsampling then min-max against pgc's OpenCV resize with 1e-7 added to the range: equal maps
/// up to float32 rounding (measured 1.6e-7 CPU, 3.1e-7 GPU), so `TOL` holds here too.
const GUIDED_GRADCAM_TOL: f32 = TOL;

fn guided_gradcam_parity<B: Backend>(label: &str, b: &B) {
    let (m, x) = digits();
    let got = GuidedGradCam::default()
        .attribute_batch(b, &m, &x, &Target::Class(CLASS))
        .and_then(|a| a.read(b))
        .expect("guided grad-cam");
    let want = peer("pgc_guided_gradcam");
    check(
        label,
        "guided Grad-CAM vs pytorch-grad-cam",
        &got.maps.data,
        &want,
        GUIDED_GRADCAM_TOL,
    );
    // The free function the report uses gives the same product.
    let (_, product) = netlens::methods::gradcam::guided_gradcam(
        b,
        &m,
        &x,
        &[CLASS],
        &netlens::methods::gradcam::GradCam::default(),
    )
    .expect("guided_gradcam")
    .remove(0);
    check(
        label,
        "gradcam::guided_gradcam vs pytorch-grad-cam",
        &product.data,
        &want,
        GUIDED_GRADCAM_TOL,
    );
}

#[test]
fn guided_gradcam_matches_pytorch_grad_cam_cpu() {
    guided_gradcam_parity("cpu", &cpu());
}

#[test]
fn guided_gradcam_matches_pytorch_grad_cam_gpu() {
    guided_gradcam_parity("gpu", gpu());
}

/// peer_more.py's `NT` settings; the noisy copies themselves are checked against `path_batch`
/// on both backends by tests/peers.rs (`tiny_digits_digit3_nt_noisy`), and peer_local.py asserts
/// it rebuilt the same copies.
fn smoothgrad_parity<B: Backend>(label: &str, b: &B) {
    let (m, x) = digits();
    let got = SmoothGrad {
        samples: 8,
        noise: 0.15,
        variant: Variant::SmoothGrad,
        seed: 7,
        ..Default::default()
    }
    .attribute(b, &m, &x, CLASS)
    .expect("smoothgrad");
    check(
        label,
        "SmoothGrad vs Captum NoiseTunnel",
        &got.map.data,
        &peer("nt_smoothgrad"),
        TOL,
    );
}

#[test]
fn smoothgrad_matches_captum_noise_tunnel_cpu() {
    smoothgrad_parity("cpu", &cpu());
}

#[test]
fn smoothgrad_matches_captum_noise_tunnel_gpu() {
    smoothgrad_parity("gpu", gpu());
}

/// Captum's convergence deltas on the float64 graph (manifest `integrated_gradients`):
/// Σ attributions − (f(x) − f(0)), with f(x) − f(0) ≈ 10.
const IG_DELTAS: [(Quadrature, &str, f32); 2] = [
    (Quadrature::GaussLegendre, "gausslegendre", 0.030_449_65),
    (Quadrature::RiemannTrapezoid, "trapezoid", -0.228_758_08),
];
/// δ is a difference of two float32 sums of size ~10: PyTorch float32's δ is 2.6e-6 (GL) and
/// 1.7e-6 (trapezoid) from the float64 one. 1e-4 is ~40× that and far below the 0.26 between the
/// two rules' deltas, or what a dropped or mis-weighted step would move (~0.3 at 32 steps).
const IG_DELTA_TOL: f32 = 1e-4;

/// Both quadratures on both backends (on MobileNetV2 the GPU runs only Gauss-Legendre).
fn ig_parity<B: Backend>(label: &str, b: &B) {
    let (m, x) = digits();
    for (quadrature, name, delta) in IG_DELTAS {
        let r = IntegratedGradients {
            steps: 32,
            quadrature,
            ..Default::default()
        }
        .attribute(b, &m, &x, CLASS)
        .expect("ig");
        check(
            label,
            &format!("IG {name} vs Captum"),
            &r.attribution.map.data,
            &peer(&format!("ig_{name}_f64")),
            TOL,
        );
        println!(
            "{label} IG {name}: convergence delta {} vs Captum {delta}",
            r.convergence_delta
        );
        assert!(
            (r.convergence_delta - delta).abs() <= IG_DELTA_TOL,
            "{label} IG {name}: delta {} vs {delta}",
            r.convergence_delta
        );
    }
}

#[test]
fn integrated_gradients_match_captum_on_digits_cpu() {
    ig_parity("cpu", &cpu());
}

#[test]
fn integrated_gradients_match_captum_on_digits_gpu() {
    ig_parity("gpu", gpu());
}

/// peer_local.py's `LIME` settings.
fn lime(surrogate: Surrogate) -> Lime {
    Lime {
        num_samples: 256,
        num_features: 16,
        segmentation: Segmentation::Grid,
        surrogate,
        kernel_width: 0.25,
        ridge: 1.0,
        mask_value: MaskValue::Auto,
        mini_batch: Some(64),
        seed: 5,
        score: Score::Logit,
        ..Default::default()
    }
}

/// The ridge coefficients are a linear solve on scores that differ from the float64 ones by
/// float32 rounding of 256 forwards (1.4e-7 for PyTorch float32, manifest `scores_f32_vs_f64`);
/// the solve (λ = 1 against the kernel-weighted Gram matrix of 0/1 columns) is well conditioned:
/// PyTorch float32's scores give coefficients 1.3e-7 from the float64 fit
/// (`coef_f32_vs_f64`), netlens' 1.4e-7 on both backends. So `TOL` again.
const LIME_COEF_TOL: f32 = TOL;

fn lime_parity<B: Backend>(label: &str, b: &B) {
    let (m, x) = digits();
    let l = lime(Surrogate::Linear);
    let got = l.attribute(b, &m, &x, &[CLASS]).expect("lime").remove(0);
    // The samples: the same segments and the same on/off matrix as the numpy rebuild.
    let labels = peer("lime_labels");
    assert_eq!(got.feature_map.data, labels.data, "grid segments");
    let design = peer("lime_design");
    let k = design.shape[1];
    assert_eq!(design.shape, vec![l.num_samples, k]);
    let ours: Vec<f32> = l.design(k).iter().map(|&on| on as u8 as f32).collect();
    assert_eq!(ours, design.data, "on/off matrix");
    // The unperturbed score (sample 0) against the float64 forward.
    let scores = peer("lime_scores_f64");
    let e = (got.score - scores.data[0]).abs() / scores.data[0].abs();
    println!("{label} LIME score of sample 0 vs float64: {e:.2e}");
    assert!(
        e <= TOL,
        "{label}: score {} vs {}",
        got.score,
        scores.data[0]
    );
    check(
        label,
        "LIME ridge coefficients vs scikit-learn",
        &got.feature_importance,
        &peer("lime_ridge_coef"),
        LIME_COEF_TOL,
    );
    // sklearn's `r2_score` with the kernel weights (manifest `lime_linear.r2_weighted`): the
    // fit quality netlens reports, a ratio of weighted sums that rounding moves by ~1e-7.
    let r2 = 0.857_783_313_834_356_1;
    println!("{label} LIME weighted R² {} vs scikit-learn {r2}", got.r2);
    assert!(
        (got.r2 - r2).abs() <= 1e-4,
        "{label}: R² {} vs {r2}",
        got.r2
    );
    lime_tree_parity(label, b, &m, &x);
}

/// The tree surrogate (the default, MATLAB's `fitrtree` defaults) against scikit-learn's
/// `DecisionTreeRegressor` with the same limits on the same samples and weights: importance =
/// summed weighted squared-error drop per feature over the total weight, divided by the number
/// of splits (40 here). A tree is a chain of decisions, so it only matches where no split is a
/// near-tie: peer_local.py checks that sklearn's random feature order changes nothing (spread
/// 5e-15), and PyTorch float32's scores give importances 1.5e-7 from the float64 tree
/// (`importance_f32_vs_f64`). `TOL` then; a different split anywhere moves some feature's
/// importance by at least one split's share: 1.2e-3 of the largest importance for the smallest of
/// the 40 splits, 3e-2 for the median (measured on the reference tree).
fn lime_tree_parity<B: Backend>(label: &str, b: &B, m: &Model, x: &HostTensor) {
    let got = lime(Surrogate::Tree)
        .attribute(b, m, x, &[CLASS])
        .expect("lime tree")
        .remove(0);
    check(
        label,
        "LIME tree importance vs scikit-learn",
        &got.feature_importance,
        &peer("lime_tree_importance"),
        TOL,
    );
    let r2 = 0.816_416_163_320_994_3;
    println!(
        "{label} LIME tree weighted R² {} vs scikit-learn {r2}",
        got.r2
    );
    assert!(
        (got.r2 - r2).abs() <= 1e-4,
        "{label}: tree R² {} vs {r2}",
        got.r2
    );
}

#[test]
fn lime_surrogates_match_scikit_learn_cpu() {
    lime_parity("cpu", &cpu());
}

#[test]
fn lime_surrogates_match_scikit_learn_gpu() {
    lime_parity("gpu", gpu());
}

fn activations_parity<B: Backend>(label: &str, b: &B) {
    let (m, x) = digits();
    let got = activations(b, &m, &x, "/features/features.8/Relu_output_0").expect("activations");
    let want = peer("activations_features8_f64");
    assert_eq!(got.tensor.shape, want.shape);
    check(
        label,
        "activations vs float64 graph",
        &got.tensor.data,
        &want,
        TOL,
    );
}

#[test]
fn activations_match_the_float64_graph_cpu() {
    activations_parity("cpu", &cpu());
}

#[test]
fn activations_match_the_float64_graph_gpu() {
    activations_parity("gpu", gpu());
}
