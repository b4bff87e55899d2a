//! The uniform entry point (`Attribute::attribute_batch`) for every local method on the digits
//! model: GPU against CPU, against each method's own `attribute`, a batch against single calls,
//! no read-back before `read` for the methods that compute on the device, and bad targets.

mod common;
use common::*;
use netlens::methods::attribution::{Attribute, Attribution, HostAttribution, Named, Target};
use netlens::methods::cam::{cam, Cam};
use netlens::methods::gradcam::{CamVariant, GradCam};
use netlens::methods::integrated_gradients::IntegratedGradients;
use netlens::methods::lime::{Lime, Segmentation, Surrogate};
use netlens::methods::occlusion::Occlusion;
use netlens::methods::saliency::Saliency;
use netlens::methods::scorecam::ScoreCam;
use netlens::methods::smoothgrad::{SmoothGrad, Variant};
use netlens::methods::Score;
use netlens::model::import::load_model;
use netlens::model::BinaryKind;
use netlens::{Backend, ErrorKind, GradRule, HostTensor, Model, Result};

/// Every method with small settings, so the suite stays quick on lavapipe. The trait takes a
/// backend type parameter, so a list of methods is an enum.
#[derive(Clone, Debug)]
enum Method {
    Saliency(Saliency),
    SmoothGrad(SmoothGrad),
    Ig(IntegratedGradients),
    GradCam(GradCam),
    Cam,
    Occlusion(Occlusion),
    Lime(Lime),
    ScoreCam(ScoreCam),
}

/// What a method's own `attribute` returns, reduced to the numbers `Attribution` carries.
struct Own {
    map: Vec<f32>,
    lowres: Option<Vec<f32>>,
    score: f32,
}

impl Method {
    fn all() -> Vec<Method> {
        let saliency = |times_input, rule| {
            Method::Saliency(Saliency {
                score: Score::Logit,
                times_input,
                rule,
            })
        };
        let smoothgrad = |variant| {
            Method::SmoothGrad(SmoothGrad {
                samples: 4,
                variant,
                seed: 7,
                ..Default::default()
            })
        };
        let gradcam = |variant| {
            Method::GradCam(GradCam {
                variant,
                ..Default::default()
            })
        };
        vec![
            saliency(false, GradRule::Standard),
            saliency(true, GradRule::Standard),
            saliency(false, GradRule::Guided),
            smoothgrad(Variant::SmoothGrad),
            smoothgrad(Variant::SmoothGradSq),
            smoothgrad(Variant::VarGrad),
            Method::Ig(IntegratedGradients {
                steps: 8,
                score: Score::Probability,
                ..Default::default()
            }),
            gradcam(CamVariant::GradCam),
            gradcam(CamVariant::GradCamPlusPlus),
            gradcam(CamVariant::LayerCam),
            Method::Cam,
            Method::Occlusion(Occlusion {
                mask_size: Some([4, 4]),
                stride: Some([4, 4]),
                ..Default::default()
            }),
            Method::Lime(Lime {
                num_samples: 64,
                num_features: 16,
                segmentation: Segmentation::Grid,
                surrogate: Surrogate::Linear,
                ..Default::default()
            }),
            Method::ScoreCam(ScoreCam::default()),
        ]
    }

    /// The methods whose maps are computed on the device.
    fn on_device(&self) -> bool {
        !matches!(
            self,
            Method::Occlusion(_) | Method::Lime(_) | Method::ScoreCam(_)
        )
    }

    fn name(&self) -> &'static str {
        match self {
            Method::Saliency(m) => m.name(),
            Method::SmoothGrad(m) => m.name(),
            Method::Ig(m) => m.name(),
            Method::GradCam(m) => m.name(),
            Method::Cam => Cam.name(),
            Method::Occlusion(m) => m.name(),
            Method::Lime(m) => m.name(),
            Method::ScoreCam(m) => m.name(),
        }
    }

    fn batch<B: Backend>(
        &self,
        b: &B,
        m: &Model,
        x: &HostTensor,
        t: &Target,
    ) -> Result<Attribution<B::Tensor>> {
        match self {
            Method::Saliency(s) => s.attribute_batch(b, m, x, t),
            Method::SmoothGrad(s) => s.attribute_batch(b, m, x, t),
            Method::Ig(s) => s.attribute_batch(b, m, x, t),
            Method::GradCam(s) => s.attribute_batch(b, m, x, t),
            Method::Cam => Cam.attribute_batch(b, m, x, t),
            Method::Occlusion(s) => s.attribute_batch(b, m, x, t),
            Method::Lime(s) => s.attribute_batch(b, m, x, t),
            Method::ScoreCam(s) => s.attribute_batch(b, m, x, t),
        }
    }

    fn read<B: Backend>(&self, b: &B, m: &Model, x: &HostTensor, t: &Target) -> HostAttribution {
        let a = self
            .batch(b, m, x, t)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name()));
        a.read(b).unwrap()
    }

    /// The method's own `attribute` for one image and one class.
    fn own<B: Backend>(&self, b: &B, m: &Model, x: &HostTensor, class: usize) -> Own {
        let pixel = |p: netlens::methods::PixelAttribution| Own {
            map: p.map.data,
            lowres: None,
            score: p.score,
        };
        let cam_map = |c: netlens::methods::gradcam::CamMap| Own {
            map: c.upsampled.data,
            lowres: Some(c.lowres.data),
            score: c.score,
        };
        match self {
            Method::Saliency(s) => pixel(s.attribute(b, m, x, &[class]).unwrap().remove(0)),
            Method::SmoothGrad(s) => pixel(s.attribute(b, m, x, class).unwrap()),
            Method::Ig(s) => pixel(s.attribute(b, m, x, class).unwrap().attribution),
            Method::GradCam(s) => cam_map(s.attribute(b, m, x, &[class]).unwrap().remove(0)),
            Method::Cam => cam_map(cam(b, m, x, &[class]).unwrap().remove(0)),
            Method::Occlusion(s) => {
                let o = s.attribute(b, m, x, &[class]).unwrap().remove(0);
                Own {
                    map: o.upsampled.unwrap_or(o.per_pixel).data,
                    lowres: Some(o.grid.data),
                    score: o.score,
                }
            }
            Method::Lime(s) => {
                let l = s.attribute(b, m, x, &[class]).unwrap().remove(0);
                Own {
                    map: l.score_map.data,
                    lowres: None,
                    score: l.score,
                }
            }
            Method::ScoreCam(s) => cam_map(s.attribute(b, m, x, &[class]).unwrap().remove(0).cam),
        }
    }
}

fn digits() -> (Model, HostTensor, HostTensor) {
    let m = load_model(asset("models/tiny_digits.onnx")).expect("import");
    let pre = netlens::input::Preprocess::unit();
    let image = |name: &str| {
        netlens::input::image_tensor(asset(&format!("digits/{name}")), &pre, m.input_shape())
            .unwrap()
    };
    let (a, b) = (image("digit_3_idx0649.png"), image("digit_7_idx1496.png"));
    let pair = HostTensor::new(vec![2, 1, 16, 16], [a.data.clone(), b.data].concat()).unwrap();
    (m, a, pair)
}

const TARGETS: [usize; 2] = [3, 7];

/// Sample `i` of a batch as a batch of one.
fn sample(x: &HostTensor, i: usize) -> HostTensor {
    HostTensor::new(vec![1, 1, 16, 16], x.sample(i).to_vec()).unwrap()
}

fn check_shapes(label: &str, a: &HostAttribution, n: usize) {
    // The digits have one channel, so per-element maps are [N, 1, H, W] too.
    assert_eq!(a.maps.shape, vec![n, 1, 16, 16], "{label}");
    assert_eq!(a.logits.shape, vec![n, 10], "{label}");
    assert_eq!(a.scores.len(), n, "{label}");
    if let Some(l) = &a.lowres {
        assert_eq!(l.shape[..2], [n, 1], "{label}");
    }
}

fn assert_close(label: &str, got: &HostAttribution, want: &HostAttribution, tol: f32) {
    let e = rel_err(&got.maps.data, &want.maps.data, 1e-6);
    println!("{label}: maps rel err {e:.1e}");
    assert!(e <= tol, "{label}: maps rel err {e}");
    if let (Some(g), Some(w)) = (&got.lowres, &want.lowres) {
        let e = rel_err(&g.data, &w.data, 1e-6);
        assert!(e <= tol, "{label}: low-res rel err {e}");
    }
    assert_eq!(got.lowres.is_some(), want.lowres.is_some(), "{label}");
    let e = rel_err(&got.scores, &want.scores, 1e-6);
    assert!(e <= tol, "{label}: scores rel err {e}");
    assert_eq!(got.targets, want.targets, "{label}");
}

/// (1) and (3): the GPU's batch read back equals the CPU's (the per-method tests' 1e-4), and on
/// both backends a batch of two images with two targets equals two single calls.
#[test]
fn gpu_equals_cpu_and_a_batch_equals_single_calls() {
    let (m, _, pair) = digits();
    let target = Target::PerSample(TARGETS.to_vec());
    for method in Method::all() {
        let label = method.name();
        let on_cpu = method.read(&cpu(), &m, &pair, &target);
        check_shapes(label, &on_cpu, 2);
        assert!(
            on_cpu.maps.data.iter().any(|&v| v != 0.0),
            "{label}: a blank map proves nothing"
        );
        let on_gpu = method.read(gpu(), &m, &pair, &target);
        assert_close(&format!("{label} GPU vs CPU"), &on_gpu, &on_cpu, 1e-4);
        for (name, b_read) in [("cpu", &on_cpu), ("gpu", &on_gpu)] {
            for (i, &class) in TARGETS.iter().enumerate() {
                let alone = match name {
                    "cpu" => method.read(&cpu(), &m, &sample(&pair, i), &Target::Class(class)),
                    _ => method.read(gpu(), &m, &sample(&pair, i), &Target::Class(class)),
                };
                let one = |t: &HostTensor| sample(t, i).data;
                let e = rel_err(&one(&b_read.maps), &alone.maps.data, 1e-6);
                println!("{label} {name}: sample {i} vs alone: rel err {e:.1e}");
                assert!(e <= 1e-5, "{label} {name}: sample {i} vs alone: {e}");
                assert!(
                    (b_read.scores[i] - alone.scores[0]).abs()
                        <= 1e-5 * alone.scores[0].abs().max(1.0),
                    "{label} {name}: score {i}"
                );
            }
        }
    }
}

/// (2): a batch of one is each method's own `attribute`, number for number (they share the code
/// path), on both backends.
#[test]
fn a_batch_of_one_is_the_methods_own_attribute() {
    let (m, x, _) = digits();
    for method in Method::all() {
        let label = method.name();
        for (name, a, own) in [
            (
                "cpu",
                method.read(&cpu(), &m, &x, &Target::Class(3)),
                method.own(&cpu(), &m, &x, 3),
            ),
            (
                "gpu",
                method.read(gpu(), &m, &x, &Target::Class(3)),
                method.own(gpu(), &m, &x, 3),
            ),
        ] {
            assert_eq!(a.maps.data, own.map, "{label} {name}: map");
            assert_eq!(
                a.lowres.map(|l| l.data),
                own.lowres,
                "{label} {name}: low-res map"
            );
            assert_eq!(a.scores, vec![own.score], "{label} {name}: score");
        }
    }
}

/// (4): the gradient and CAM methods leave their maps on the GPU: the call submits its passes
/// and reads nothing back; `read` is then one read-back. The methods that finish on the host
/// read their scores back once per image inside the call, as their docs say.
#[test]
fn device_methods_read_nothing_back_before_read() {
    let g = private_gpu();
    let (m, _, pair) = digits();
    let target = Target::PerSample(TARGETS.to_vec());
    for method in Method::all() {
        let label = method.name();
        let before = g.stats();
        let a = method.batch(&g, &m, &pair, &target).unwrap();
        let called = g.stats();
        a.read(&g).unwrap();
        let read = g.stats();
        let expected = if method.on_device() { 0 } else { 2 };
        assert_eq!(
            called.readbacks - before.readbacks,
            expected,
            "{label}: {before:?} -> {called:?}"
        );
        assert_eq!(read.readbacks - called.readbacks, 1, "{label}: read");
        if method.on_device() {
            assert_eq!(
                called.submissions - before.submissions,
                1,
                "{label}: one pass for the batch: {before:?} -> {called:?}"
            );
            assert_eq!(read.submissions - called.submissions, 1, "{label}: read");
        }
    }
}

/// (5): a class out of range, a target list of the wrong length and a batch of the wrong shape
/// are bad input, never a panic.
#[test]
fn bad_targets_are_bad_input() {
    let (m, x, pair) = digits();
    let bad = [
        (pair.clone(), Target::PerSample(vec![3])),
        (pair.clone(), Target::PerSample(vec![3, 7, 1])),
        (pair.clone(), Target::PerSample(vec![3, 10])),
        (x.clone(), Target::Class(10)),
        (HostTensor::zeros(vec![0, 1, 16, 16]), Target::Class(3)),
        (HostTensor::zeros(vec![1, 1, 8, 8]), Target::Class(3)),
        (HostTensor::zeros(vec![1, 16, 16]), Target::Class(3)),
    ];
    for method in Method::all() {
        for (inputs, target) in &bad {
            let e = method
                .batch(&cpu(), &m, inputs, target)
                .err()
                .unwrap_or_else(|| panic!("{}: {target:?} on {:?}", method.name(), inputs.shape));
            assert_eq!(e.kind, ErrorKind::BadInput, "{}: {e}", method.name());
        }
    }
}

/// `TopPrediction` explains each sample's top class, and the targets say which.
#[test]
fn top_prediction_targets_each_samples_top_class() {
    let (m, _, pair) = digits();
    let logits = run_backend(&cpu(), &m, &pair);
    let top: Vec<usize> = (0..2).map(|i| argmax(logits.sample(i))).collect();
    let a = Saliency::default()
        .attribute_batch(&cpu(), &m, &pair, &Target::TopPrediction)
        .unwrap()
        .read(&cpu())
        .unwrap();
    assert_eq!(a.targets, top);
    let explicit = Method::Saliency(Saliency::default()).read(&cpu(), &m, &pair, &top.into());
    assert_eq!(a.maps.data, explicit.maps.data);
}

/// The batch-combining ops the methods end with: GPU against the CPU's host formulas (the same
/// f32 products and summation order), and their operand checks.
#[test]
fn combining_ops_gpu_match_cpu() {
    let x = random(&[6, 2, 3, 4], 1);
    let weights: Vec<f32> = random(&[6], 2).data;
    let (a, b) = (random(&[2, 3, 4], 3), random(&[2, 3, 4], 4));
    let parts = [
        random(&[1, 3, 2], 5),
        random(&[3, 3, 2], 6),
        random(&[2, 3, 2], 7),
    ];
    fn run<B: Backend>(
        bk: &B,
        x: &HostTensor,
        w: &[f32],
        a: &HostTensor,
        b: &HostTensor,
        parts: &[HostTensor],
    ) -> Vec<HostTensor> {
        let up = |t: &HostTensor| bk.upload(t).unwrap();
        let (x, a, b) = (up(x), up(a), up(b));
        let parts: Vec<_> = parts.iter().map(up).collect();
        let out = [
            bk.weighted_sum(&x, w, &[2, 2, 3, 4]).unwrap(),
            bk.weighted_sum(&x, w, &[3, 24]).unwrap(),
            bk.elementwise(&a, &b, BinaryKind::Sub).unwrap(),
            bk.elementwise(&a, &b, BinaryKind::Mul).unwrap(),
            bk.concat(&parts.iter().collect::<Vec<_>>()).unwrap(),
        ];
        bk.read_many(&out.iter().collect::<Vec<_>>()).unwrap()
    }
    let on_cpu = run(&cpu(), &x, &weights, &a, &b, &parts);
    let on_gpu = run(gpu(), &x, &weights, &a, &b, &parts);
    for (i, (g, c)) in on_gpu.iter().zip(&on_cpu).enumerate() {
        assert_eq!(g.shape, c.shape, "op {i}");
        assert_eq!(g.data, c.data, "op {i}");
    }
    // Groups of three samples: out[1] = Σ_s w[3 + s] x[3 + s].
    let want: Vec<f32> = (0..24)
        .map(|l| (3..6).fold(0.0, |acc, s| acc + weights[s] * x.data[s * 24 + l]))
        .collect();
    assert_eq!(on_cpu[0].data[24..], want[..]);
    assert_eq!(on_cpu[4].shape, vec![6, 3, 2]);
    assert_eq!(on_cpu[4].data[6..24], parts[1].data[..]);

    fn refused<B: Backend>(bk: &B, x: &HostTensor, a: &HostTensor, b: &HostTensor) {
        let up = |t: &HostTensor| bk.upload(t).unwrap();
        let (x, a, b) = (up(x), up(a), up(b));
        for e in [
            bk.weighted_sum(&x, &[1.0; 4], &[2, 2, 3, 4]).err(),
            bk.weighted_sum(&x, &[1.0; 6], &[4, 24]).err(),
            bk.weighted_sum(&x, &[], &[1, 24]).err(),
            bk.elementwise(&a, &x, BinaryKind::Add).err(),
            bk.concat(&[&a, &b, &x]).err(),
            bk.concat(&[]).err(),
        ] {
            let e = e.expect("refused");
            assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
        }
    }
    refused(&cpu(), &x, &a, &b);
    refused(gpu(), &x, &a, &b);
}
