//! Faithfulness metrics (src/methods/metrics): deletion / insertion AUC against a plain numpy
//! implementation and pytorch-grad-cam's confidence metrics (assets/tools/peer_metrics.py,
//! manifest key "metrics"), on both backends; the ranked masks of `perturb` GPU against CPU;
//! the batching proof with the GPU counters; bad input. The CLI is tested in tests/evaluate.rs.

mod common;
use common::*;
use netlens::backend::{Fill, MaskSource};
use netlens::methods::metrics::causal::{Baseline, Causal, CurveKind};
use netlens::methods::metrics::confidence::confidence_change;
use netlens::methods::metrics::infidelity::Infidelity;
use netlens::methods::metrics::{ranking, relevance};
use netlens::methods::Score;
use netlens::model::import::load_model;
use netlens::progress::Silent;
use netlens::{Backend, HostTensor, Model};

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(asset("ref/peers/manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest json")
}

fn digits() -> (Model, HostTensor) {
    let m = load_model(asset("models/tiny_digits.onnx")).expect("import");
    let x = read_npy(&asset("ref/peers/tiny_digits_digit3_input.npy"));
    (m, x)
}

/// The manifest's baseline: a number, or `["blur", sigma]`.
fn baseline(v: &serde_json::Value) -> Baseline {
    match v.as_f64() {
        Some(c) => Baseline::Constant(c as f32),
        None => Baseline::Blur(v[1].as_f64().unwrap() as f32),
    }
}

/// Both curves of each reference map, on backend `b`: every point's probability and both AUCs
/// within 1e-5 of numpy's on the float64 graph (the float32 graph's own AUCs lie within 4e-8 of
/// them, manifest `auc_f32`); zero and blurred baselines.
fn check_curves<B: Backend>(b: &B, what: &str) {
    let (m, x) = digits();
    let refs = &manifest()["metrics"]["maps"];
    for name in ["gradcam", "saliency", "gradcam_blur"] {
        let r = &refs[name];
        let map = read_npy(&asset(r["map"].as_str().unwrap()));
        let want = read_npy(&asset(r["curves"].as_str().unwrap()));
        let steps = r["steps"].as_u64().unwrap() as usize;
        let causal = Causal {
            steps,
            baseline: baseline(&r["baseline"]),
            score: Score::Probability,
            mini_batch: Some(48),
        };
        let kinds = [CurveKind::Deletion, CurveKind::Insertion];
        let curves = causal
            .curves(b, &m, &x, &map, Some(3), &kinds, &Silent)
            .expect("curves");
        for (i, c) in curves.iter().enumerate() {
            let key = format!("{}_auc", c.kind.name());
            let auc = r[&key].as_f64().unwrap();
            let diff = (c.auc - auc).abs();
            println!(
                "{what} {name} {}: AUC {:.8} numpy {auc:.8} |Δ| {diff:.2e}",
                c.kind.name(),
                c.auc
            );
            assert!(diff <= 1e-5, "{what} {name} {key}: {} vs {auc}", c.auc);
            let expected = want.sample(i);
            assert_eq!(c.scores.len(), expected.len());
            let worst = c
                .scores
                .iter()
                .zip(expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                worst <= 1e-5,
                "{what} {name} {}: point off by {worst}",
                c.kind.name()
            );
            assert_eq!(c.fractions.len(), steps + 1);
            assert_eq!(c.class, 3);
        }
    }
}

#[test]
fn cpu_deletion_insertion_match_numpy() {
    check_curves(&cpu(), "cpu");
}

#[test]
fn gpu_deletion_insertion_match_numpy() {
    check_curves(gpu(), "gpu");
}

/// pytorch-grad-cam's DropInConfidence / IncreaseInConfidence (float32) and the float64
/// before / after scores, on both backends.
#[test]
fn confidence_change_matches_pytorch_grad_cam() {
    let (m, x) = digits();
    let refs = &manifest()["metrics"]["maps"];
    for name in ["gradcam", "saliency"] {
        let r = &refs[name];
        let map = read_npy(&asset(r["map"].as_str().unwrap()));
        let drop = r["pgc_drop_in_confidence"].as_f64().unwrap() as f32;
        let inc = r["pgc_increase_in_confidence"].as_f64().unwrap() as f32;
        let before = r["confidence_before_f64"].as_f64().unwrap() as f32;
        let after = r["confidence_after_f64"].as_f64().unwrap() as f32;
        let c = confidence_change(&cpu(), &m, &x, &map, None, Score::Probability).expect("cpu");
        let g = confidence_change(gpu(), &m, &x, &map, None, Score::Probability).expect("gpu");
        for (what, v) in [("cpu", &c), ("gpu", &g)] {
            println!(
                "{what} {name}: drop {} pgc {drop}; after {} f64 {after}",
                v.drop, v.after
            );
            assert_eq!(v.class, 3);
            assert!(
                (v.drop - drop).abs() <= 1e-4,
                "{what} {name}: {v:?} vs {drop}"
            );
            assert_eq!(v.increase, inc, "{what} {name}");
            assert!((v.before - before).abs() <= 1e-5, "{what} {name}: {v:?}");
            assert!((v.after - after).abs() <= 1e-5, "{what} {name}: {v:?}");
        }
    }
}

fn ranked_batch<B: Backend>(
    b: &B,
    x: &HostTensor,
    rank: &HostTensor,
    shown: &[[u32; 2]],
    fill: &[f32],
) -> HostTensor {
    let rank = b.upload(rank).unwrap();
    let source = MaskSource::Ranked { rank: &rank, shown };
    let batch = b.perturb(&b.upload(x).unwrap(), &source, &Fill::Constant(fill));
    b.read(&batch.expect("perturb")).unwrap()
}

/// Captum's `infidelity` fed netlens' own noise (float64 graph, probability), on both backends.
#[test]
fn infidelity_matches_captum() {
    let (m, x) = digits();
    let all = manifest();
    let params = &all["metrics"]["infidelity"];
    let inf = Infidelity {
        samples: params["samples"].as_u64().unwrap() as usize,
        sigma: params["sigma"].as_f64().unwrap() as f32,
        seed: params["seed"].as_u64().unwrap(),
        score: Score::Probability,
    };
    for name in ["gradcam", "saliency"] {
        let r = &all["metrics"]["maps"][name];
        let map = read_npy(&asset(r["map"].as_str().unwrap()));
        let want = r["captum_infidelity_f64"].as_f64().unwrap();
        for (what, got) in [
            ("cpu", inf.evaluate(&cpu(), &m, &x, &map, Some(3)).unwrap()),
            ("gpu", inf.evaluate(gpu(), &m, &x, &map, Some(3)).unwrap()),
        ] {
            let rel = (got - want).abs() / want.abs();
            println!("{what} {name}: infidelity {got:.9} captum {want:.9} rel {rel:.2e}");
            assert!(rel <= 1e-4, "{what} {name}: {got} vs {want}");
        }
    }
    let bad = Infidelity {
        samples: 0,
        ..Infidelity::default()
    };
    let map = read_npy(&asset("ref/peers/tiny_digits_digit3_pgc_gradcam_map.npy"));
    assert!(bad.evaluate(&cpu(), &m, &x, &map, None).is_err());
    let wrong = HostTensor::zeros(vec![2, 16, 16]);
    assert!(Infidelity::default()
        .evaluate(&cpu(), &m, &x, &wrong, None)
        .is_err());
}

/// The ranked masks are the same bits on both backends, and equal a host-built batch.
#[test]
fn gpu_ranked_masks_equal_cpu_and_host() {
    let (c, h, w) = (3, 5, 7);
    let x = random(&[1, c, h, w], 11);
    let rel = random(&[h, w], 12);
    let rank: Vec<f32> = ranking(&rel.data).iter().map(|&r| r as f32).collect();
    let rank = HostTensor::new(vec![h, w], rank).unwrap();
    let shown = [[0, 35], [4, 35], [0, 0], [0, 9], [35, 35], [3, 20]];
    let fill = [0.25, -1.0, 0.0];
    let ct = ranked_batch(&cpu(), &x, &rank, &shown, &fill);
    let gt = ranked_batch(gpu(), &x, &rank, &shown, &fill);
    assert_eq!(ct.shape, vec![shown.len(), c, h, w]);
    assert_eq!(ct.data, gt.data, "GPU and CPU ranked batches differ");
    let hw = h * w;
    for (i, &[lo, hi]) in shown.iter().enumerate() {
        for (ch, &f) in fill.iter().enumerate() {
            for p in 0..hw {
                let r = rank.data[p] as u32;
                let want = if r >= lo && r < hi {
                    x.data[ch * hw + p]
                } else {
                    f
                };
                assert_eq!(
                    ct.data[(i * c + ch) * hw + p],
                    want,
                    "sample {i} ch {ch} px {p}"
                );
            }
        }
    }
}

/// A 100-step deletion curve is 101 perturbed images (point 0 is the image itself): at
/// mini-batch 32, ⌈101 / 32⌉ = 4 forward submissions, each carrying its masking kernel, then one
/// read-back (one more submission). Both curves together: ⌈202 / 64⌉ = 4 forwards, 1 read-back;
/// the same over a blurred baseline (the blur, both `perturb`s and their sum ride with the
/// forwards).
#[test]
fn gpu_deletion_curve_batches_its_steps() {
    let g = private_gpu();
    let (m, x) = digits();
    let map = read_npy(&asset("ref/peers/tiny_digits_digit3_pgc_gradcam_map.npy"));
    let both = &[CurveKind::Deletion, CurveKind::Insertion][..];
    for (kinds, mini_batch, forwards, baseline) in [
        (&[CurveKind::Deletion][..], 32, 4, Baseline::Zero),
        (both, 64, 4, Baseline::Zero),
        (both, 64, 4, Baseline::Blur(1.0)),
    ] {
        let causal = Causal {
            steps: 100,
            mini_batch: Some(mini_batch),
            baseline,
            ..Causal::default()
        };
        let before = g.stats();
        let curves = causal
            .curves(&g, &m, &x, &map, None, kinds, &Silent)
            .expect("curves");
        let after = g.stats();
        assert_eq!(curves.len(), kinds.len());
        assert_eq!(
            after.readbacks - before.readbacks,
            1,
            "{before:?} -> {after:?}"
        );
        assert_eq!(
            after.submissions - before.submissions,
            forwards + 1,
            "{before:?} -> {after:?}"
        );
        println!(
            "{} curve(s) of 100 steps at mini-batch {mini_batch}, {baseline:?}: {} submissions, \
             {} read-back",
            kinds.len(),
            after.submissions - before.submissions,
            after.readbacks - before.readbacks
        );
    }
}

/// Infidelity: the perturbed copies are generated on the device and ride with the one forward
/// (one submission), then one read-back (one more).
#[test]
fn gpu_infidelity_is_one_forward_and_one_read_back() {
    let g = private_gpu();
    let (m, x) = digits();
    let map = read_npy(&asset("ref/peers/tiny_digits_digit3_pgc_gradcam_map.npy"));
    let before = g.stats();
    Infidelity::default()
        .evaluate(&g, &m, &x, &map, None)
        .expect("infidelity");
    let after = g.stats();
    assert_eq!(
        after.readbacks - before.readbacks,
        1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        after.submissions - before.submissions,
        2,
        "{before:?} -> {after:?}"
    );
}

#[test]
fn bad_metric_input_is_refused() {
    let (m, x) = digits();
    let map = read_npy(&asset("ref/peers/tiny_digits_digit3_pgc_gradcam_map.npy"));
    let kinds = [CurveKind::Deletion];
    let b = cpu();
    let zero = Causal {
        steps: 0,
        ..Causal::default()
    };
    let err = zero
        .curves(&b, &m, &x, &map, None, &kinds, &Silent)
        .unwrap_err();
    assert!(err.to_string().contains("steps"), "{err}");
    let small = HostTensor::zeros(vec![8, 8]);
    let err = Causal::default()
        .curves(&b, &m, &x, &small, None, &kinds, &Silent)
        .unwrap_err();
    assert!(err.to_string().contains("[H, W]"), "{err}");
    let err = Causal::default()
        .curves(&b, &m, &x, &map, Some(10), &kinds, &Silent)
        .unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    assert!(confidence_change(&b, &m, &x, &small, None, Score::Logit).is_err());
    let nan = HostTensor::new(vec![16, 16], vec![f32::NAN; 256]).unwrap();
    assert!(relevance(&nan, 16, 16).is_err());
    assert!(Baseline::parse("blurry").is_err());
    assert!(Baseline::parse("blur:0").is_err());
    assert_eq!(Baseline::parse("blur").unwrap(), Baseline::Blur(1.0));
    assert_eq!(Baseline::parse("blur:2.5").unwrap(), Baseline::Blur(2.5));
    assert_eq!(Baseline::parse("0.5").unwrap(), Baseline::Constant(0.5));
}

/// The curves' read-back is budgeted before anything runs: 2 × 65 537 points of 4096 classes
/// would be 2 GiB of scores.
#[test]
fn curves_over_the_logit_budget_are_refused() {
    let mut ob = OnnxBuilder::new(&[1, 4, 4]);
    let fc = ob.weight("fc", &[4096, 16]);
    ob.node("Flatten", &["input"], &["f"], vec![]);
    ob.node("Gemm", &["f", &fc], &["y"], vec![a_int("transB", 1)]);
    let m = netlens::model::import::import_bytes(&ob.build("y"), "wide").expect("import");
    let x = random(&[1, 1, 4, 4], 5);
    let map = random(&[4, 4], 6);
    let causal = Causal {
        steps: 65536,
        ..Causal::default()
    };
    let kinds = [CurveKind::Deletion, CurveKind::Insertion];
    let err = causal
        .curves(&cpu(), &m, &x, &map, Some(0), &kinds, &Silent)
        .unwrap_err();
    assert!(err.to_string().contains("budget"), "{err}");
}
