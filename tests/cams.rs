//! The CAM family and RISE against their peers, and the generic device ops they are made of.
//!
//! References (assets/tools/peer_cams.py, recorded in assets/ref/peers/manifest.json under
//! `cams_and_rise`): pytorch-grad-cam 1.5.7 on the same ONNX graphs (onnx2torch), at the CAM
//! layer and at an inner layer whose gradients vary over space (at the CAM layer of a model
//! ending in global pooling + linear, HiResCAM and XGrad-CAM equal Grad-CAM); RISE by a plain
//! numpy implementation of the same masks, scored by the same graph in PyTorch. MobileNetV2 on
//! the CPU, the tiny digits CNN on both backends (the GPU tests run on lavapipe).
//!
//! Error measure: max |ours - ref| / max |ref|. Bounds: 1e-4 for the CAMs, 1e-5 for RISE.

mod common;
use common::*;
use netlens::backend::{Fill, MaskSource, RiseMasks};
use netlens::methods::eigencam::EigenCam;
use netlens::methods::gradcam::{CamMap, CamVariant, GradCam};
use netlens::methods::hirescam::HiResCam;
use netlens::methods::rise::Rise;
use netlens::methods::xgradcam::XGradCam;
use netlens::methods::{normalize_min_max, upsample_bilinear};
use netlens::model::import::load_model;
use netlens::model::{BinaryKind, ReduceKind, Unary};
use netlens::{Backend, ErrorKind, HostTensor, Model};

const CAM_TOL: f32 = 1e-4;
const RISE_TOL: f32 = 1e-5;

struct Case {
    stem: &'static str,
    model: &'static str,
    input: &'static str,
    target: usize,
    inner: &'static str,
    /// Whether pgc's upsampled maps were stored for every method (the small model) or only
    /// for the new ones at the CAM layer.
    all_maps: bool,
}

const MOBILENET: Case = Case {
    stem: "mobilenetv2_imagenet_chelsea",
    model: "models/mobilenetv2_imagenet.onnx",
    input: "ref/mobilenetv2_imagenet_chelsea_input.npy",
    target: 285,
    inner: "/features/features.17/conv/conv.2/Conv_output_0",
    all_maps: false,
};

const DIGITS: Case = Case {
    stem: "tiny_digits_digit3",
    model: "models/tiny_digits.onnx",
    input: "ref/peers/tiny_digits_digit3_input.npy",
    target: 3,
    inner: "/features/features.8/Relu_output_0",
    all_maps: true,
};

fn load(case: &Case) -> (Model, HostTensor) {
    let m = load_model(asset(case.model)).expect("import");
    (m, read_npy(&asset(case.input)))
}

fn peer(case: &Case, name: &str) -> Option<HostTensor> {
    let path = asset(&format!("ref/peers/{}_{name}.npy", case.stem));
    std::path::Path::new(&path)
        .exists()
        .then(|| read_npy(&path))
}

/// pytorch-grad-cam's post-processing of a low-res map: min-max, bilinear resize (OpenCV's
/// INTER_LINEAR, half-pixel centres), min-max again.
fn pgc_map(lowres: &HostTensor, h: usize, w: usize) -> HostTensor {
    normalize_min_max(&upsample_bilinear(&normalize_min_max(lowres), h, w))
}

/// Every CAM method at `layer` (None: the CAM layer), as pgc's file key.
fn cams<B: Backend>(
    b: &B,
    m: &Model,
    x: &HostTensor,
    c: usize,
    layer: Option<&str>,
) -> Vec<(&'static str, CamMap)> {
    let layer = layer.map(str::to_string);
    let grad = |variant| GradCam {
        variant,
        layer: layer.clone(),
        ..Default::default()
    };
    let one = |r: netlens::Result<Vec<CamMap>>| r.expect("cam").remove(0);
    vec![
        (
            "gradcam",
            one(grad(CamVariant::GradCam).attribute(b, m, x, &[c])),
        ),
        (
            "gradcampp",
            one(grad(CamVariant::GradCamPlusPlus).attribute(b, m, x, &[c])),
        ),
        (
            "layercam",
            one(grad(CamVariant::LayerCam).attribute(b, m, x, &[c])),
        ),
        (
            "hirescam",
            one(HiResCam {
                layer: layer.clone(),
                ..Default::default()
            }
            .attribute(b, m, x, &[c])),
        ),
        (
            "xgradcam",
            one(XGradCam {
                layer: layer.clone(),
                ..Default::default()
            }
            .attribute(b, m, x, &[c])),
        ),
        (
            "eigencam",
            one(EigenCam {
                layer: layer.clone(),
                ..Default::default()
            }
            .attribute(b, m, x, &[c])),
        ),
    ]
}

/// Compares every CAM method with pgc at both layers; returns the largest error seen.
fn cam_parity<B: Backend>(label: &str, b: &B, case: &Case) -> f32 {
    let (m, x) = load(case);
    let (h, w) = (x.shape[2], x.shape[3]);
    let mut worst = 0f32;
    for (prefix, layer) in [("", None), ("inner_", Some(case.inner))] {
        for (name, cam) in cams(b, &m, &x, case.target, layer) {
            let key = format!("{prefix}{name}");
            let want = peer(case, &format!("pgc_{key}_lowres")).expect("lowres reference");
            assert_eq!(cam.lowres.shape, want.shape, "{label} {key}");
            let e = rel_err(&cam.lowres.data, &want.data, 0.0);
            println!("{label} {} {key}: low-res map vs pgc {e:.2e}", case.stem);
            assert!(e <= CAM_TOL, "{label} {key}: low-res {e}");
            worst = worst.max(e);
            if let Some(want) = peer(case, &format!("pgc_{key}_map")) {
                let got = pgc_map(&cam.lowres, h, w);
                let e = rel_err(&got.data, &want.data, 0.0);
                println!("{label} {} {key}: upsampled map vs pgc {e:.2e}", case.stem);
                assert!(e <= CAM_TOL, "{label} {key}: upsampled {e}");
                // Our own upsampled map is the same picture before normalisation.
                let e2 = rel_err(&normalize_min_max(&cam.upsampled).data, &want.data, 0.0);
                assert!(e2 <= 1e-3, "{label} {key}: own upsampled {e2}");
                worst = worst.max(e);
            } else {
                let stored = case.all_maps
                    || (prefix.is_empty() && ["hirescam", "xgradcam", "eigencam"].contains(&name));
                assert!(!stored, "{key}: the upsampled reference is missing");
            }
        }
    }
    worst
}

#[test]
fn cam_family_matches_pytorch_grad_cam_on_mobilenet_cpu() {
    let e = cam_parity("cpu", &cpu(), &MOBILENET);
    println!("worst {e:.2e}");
    gradcam_pgc_parity("cpu", &cpu());
}

/// Grad-CAM's upsampled map from the earlier pgc run on torchvision's MobileNetV2 (the same
/// weights; manifest `gradcam_pgc`): the picture users see, pgc's ReLU, min-max, OpenCV resize
/// and min-max again applied to netlens' low-res map.
fn gradcam_pgc_parity<B: Backend>(label: &str, b: &B) {
    let (m, x) = load(&MOBILENET);
    let cam = GradCam::default()
        .attribute(b, &m, &x, &[MOBILENET.target])
        .unwrap()
        .remove(0);
    let want = peer(&MOBILENET, "gradcam_pgc").unwrap();
    let e = rel_err(&pgc_map(&cam.lowres, 224, 224).data, &want.data, 0.0);
    println!("{label} Grad-CAM upsampled map vs gradcam_pgc {e:.2e}");
    assert!(e <= CAM_TOL, "{label}: {e}");
}

/// One Grad-CAM (one forward and backward of MobileNetV2) on lavapipe: cheap enough to check
/// the shipped pgc map on the GPU too.
#[test]
fn gradcam_pgc_map_matches_on_mobilenet_gpu() {
    gradcam_pgc_parity("gpu", gpu());
}

#[test]
fn cam_family_matches_pytorch_grad_cam_on_digits_cpu() {
    cam_parity("cpu", &cpu(), &DIGITS);
}

#[test]
fn cam_family_matches_pytorch_grad_cam_on_digits_gpu() {
    cam_parity("gpu", gpu(), &DIGITS);
}

/// The CAM layer of a pooled-linear head has a spatially constant gradient: there HiResCAM and
/// XGrad-CAM are Grad-CAM. At the inner layer they are not, so the parity above tests each
/// formula for itself.
#[test]
fn inner_layer_tells_the_formulas_apart() {
    let (m, x) = load(&DIGITS);
    let at = |layer| cams(&cpu(), &m, &x, DIGITS.target, layer);
    let (top, inner) = (at(None), at(Some(DIGITS.inner)));
    let lowres = |v: &[(&str, CamMap)], n: &str| {
        v.iter()
            .find(|(k, _)| *k == n)
            .unwrap()
            .1
            .lowres
            .data
            .clone()
    };
    for n in ["hirescam", "xgradcam"] {
        assert!(
            rel_err(&lowres(&top, n), &lowres(&top, "gradcam"), 0.0) < 1e-5,
            "{n} at the CAM layer"
        );
        assert!(
            rel_err(&lowres(&inner, n), &lowres(&inner, "gradcam"), 0.0) > 1e-2,
            "{n} inner"
        );
    }
}

fn rise_settings(case: &Case) -> Rise {
    if case.stem.starts_with("tiny") {
        Rise {
            num_masks: 256,
            grid: 4,
            seed: 7,
            mini_batch: Some(100),
            ..Default::default()
        }
    } else {
        Rise {
            num_masks: 48,
            grid: 7,
            seed: 3,
            mini_batch: Some(16),
            ..Default::default()
        }
    }
}

fn rise_parity<B: Backend>(label: &str, b: &B, case: &Case) {
    let (m, x) = load(case);
    let settings = rise_settings(case);
    let r = settings
        .attribute(b, &m, &x, &[case.target])
        .expect("rise")
        .remove(0);
    let scores = peer(case, "rise_scores").unwrap();
    let e = rel_err(&r.mask_scores, &scores.data, 0.0);
    println!("{label} {}: RISE mask scores vs PyTorch {e:.2e}", case.stem);
    assert!(e <= RISE_TOL, "{label}: scores {e}");
    let want = peer(case, "rise_saliency").unwrap();
    let e = rel_err(&r.saliency.data, &want.data, 0.0);
    println!("{label} {}: RISE saliency vs numpy {e:.2e}", case.stem);
    assert!(e <= RISE_TOL, "{label}: saliency {e}");
    assert!(
        want.data.iter().any(|&v| (v - want.data[0]).abs() > 1e-3),
        "a flat map proves nothing"
    );
}

#[test]
fn rise_matches_numpy_on_mobilenet_cpu() {
    rise_parity("cpu", &cpu(), &MOBILENET);
}

#[test]
fn rise_matches_numpy_on_digits_cpu_and_gpu() {
    rise_parity("cpu", &cpu(), &DIGITS);
    rise_parity("gpu", gpu(), &DIGITS);
}

/// The masks themselves: the host formula against numpy's, and the device's against the host's
/// (through `perturb` on an image of ones), at an offset, with both fills.
#[test]
fn rise_masks_match_numpy_and_the_device() {
    let want = peer(&DIGITS, "rise_masks").unwrap();
    let masks = rise_settings(&DIGITS).masks();
    let (h, w) = (16, 16);
    for i in 0..want.batch() {
        let e = rel_err(&masks.mask(i as u32, h, w), want.sample(i), 1.0);
        assert!(e <= 1e-6, "mask {i}: {e}");
    }
    let odd = RiseMasks {
        seed: 1 << 40 | 5,
        grid: 3,
        p: 0.3,
    };
    let x = random(&[1, 2, 11, 13], 4);
    let fill = [0.5f32, -2.0];
    for fill in [Fill::Multiply, Fill::Constant(&fill)] {
        let source = MaskSource::Rise {
            masks: odd,
            first: 1000,
            count: 7,
        };
        let c = cpu()
            .read(
                &cpu()
                    .perturb(&cpu().upload(&x).unwrap(), &source, &fill)
                    .unwrap(),
            )
            .unwrap();
        let source = MaskSource::Rise {
            masks: odd,
            first: 1000,
            count: 7,
        };
        let g = gpu()
            .read(
                &gpu()
                    .perturb(&gpu().upload(&x).unwrap(), &source, &fill)
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(g.shape, vec![7, 2, 11, 13]);
        let e = rel_err(&g.data, &c.data, 1e-6);
        assert!(e <= 1e-5, "{fill:?}: GPU vs CPU {e}");
        // Sample 3 on the CPU is the image under the host's mask 1003.
        let m = odd.mask(1003, 11, 13);
        let s = c.sample(3);
        for (j, &v) in s.iter().enumerate() {
            let (img, mk) = (x.data[j], m[j % 143]);
            let expect = match fill {
                Fill::Multiply => img * mk,
                Fill::Constant(f) if mk == 1.0 => {
                    let _ = f;
                    img
                }
                Fill::Constant(f) if mk == 0.0 => f[j / 143],
                Fill::Constant(f) => mk * img + (1.0 - mk) * f[j / 143],
            };
            assert_eq!(v, expect, "element {j}");
        }
    }
    // About p of the cells are on.
    let on = (0..400u32)
        .flat_map(|s| (0..9u32).map(move |k| (s, k)))
        .filter(|&(s, k)| odd.cell_on(s, k))
        .count();
    assert!(
        (950..1210).contains(&on),
        "{on} of 3600 cells on at p = 0.3"
    );
}

/// RISE on the GPU: one forward of the unmasked image, one submission per chunk (the masking
/// kernel rides with its forward), one read-back: 40 masks at mini-batch 16 are 1 + 3 + 1.
#[test]
fn gpu_rise_batches_its_masks() {
    let g = private_gpu();
    let (m, x) = load(&DIGITS);
    let before = g.stats();
    Rise {
        num_masks: 40,
        grid: 4,
        mini_batch: Some(16),
        ..Default::default()
    }
    .attribute(&g, &m, &x, &[3, 5])
    .expect("rise");
    let after = g.stats();
    assert_eq!(
        after.readbacks - before.readbacks,
        1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        after.submissions - before.submissions,
        5,
        "{before:?} -> {after:?}"
    );
}

#[test]
fn bad_rise_settings_are_bad_input() {
    let (m, x) = load(&DIGITS);
    for r in [
        Rise {
            num_masks: 0,
            ..Default::default()
        },
        Rise {
            grid: 0,
            num_masks: 4,
            ..Default::default()
        },
        Rise {
            p: 0.0,
            num_masks: 4,
            ..Default::default()
        },
        Rise {
            p: f32::NAN,
            num_masks: 4,
            ..Default::default()
        },
        Rise {
            mini_batch: Some(0),
            num_masks: 4,
            ..Default::default()
        },
    ] {
        let e = r.attribute(&cpu(), &m, &x, &[3]).expect_err("bad settings");
        assert_eq!(e.kind, ErrorKind::BadInput, "{r:?}: {e}");
    }
    let e = Rise::default()
        .attribute(&cpu(), &m, &x, &[10])
        .expect_err("class");
    assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
}

/// The generic ops the CAM formulas are made of, GPU against the CPU oracle, and their checks.
#[test]
fn generic_ops_gpu_match_cpu() {
    let x = random(&[2, 5, 3, 4], 1);
    let (gx, cx) = (gpu().upload(&x).unwrap(), cpu().upload(&x).unwrap());
    for kind in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max] {
        for axes in [&[2, 3][..], &[1], &[1, 3], &[3, 1], &[1, 2, 3]] {
            let g = gpu().read(&gpu().reduce(&gx, kind, axes).unwrap()).unwrap();
            let c = cpu().read(&cpu().reduce(&cx, kind, axes).unwrap()).unwrap();
            let mut want = vec![2, 5, 3, 4];
            axes.iter().for_each(|&a| want[a] = 1);
            assert_eq!(c.shape, want);
            assert_eq!(g.shape, want);
            let e = rel_err(&g.data, &c.data, 1e-6);
            assert!(e <= 1e-5, "{kind:?} {axes:?}: {e}");
        }
    }
    // Spatial sums by hand.
    let c = cpu()
        .read(&cpu().reduce(&cx, ReduceKind::Sum, &[2, 3]).unwrap())
        .unwrap();
    for (i, v) in c.data.iter().enumerate() {
        let want: f32 = x.data[i * 12..(i + 1) * 12].iter().sum();
        assert!((v - want).abs() <= 1e-5, "{i}");
    }
    for op in [Unary::Relu, Unary::Sigmoid] {
        let g = gpu().read(&gpu().unary(&gx, op).unwrap()).unwrap();
        let c = cpu().read(&cpu().unary(&cx, op).unwrap()).unwrap();
        assert_eq!(
            c.data,
            x.data.iter().map(|&v| op.apply(v)).collect::<Vec<_>>()
        );
        assert!(rel_err(&g.data, &c.data, 1e-6) <= 1e-5, "{op:?}");
    }
    for shape in [
        &[2, 5, 1, 1][..],
        &[1, 1, 1, 1],
        &[2, 1, 3, 4],
        &[2, 5, 3, 4],
        &[1, 5, 1, 4],
    ] {
        let y = random(shape, 2);
        for op in [BinaryKind::Mul, BinaryKind::Div, BinaryKind::Sub] {
            let g = gpu()
                .read(
                    &gpu()
                        .elementwise(&gx, &gpu().upload(&y).unwrap(), op)
                        .unwrap(),
                )
                .unwrap();
            let c = cpu()
                .read(
                    &cpu()
                        .elementwise(&cx, &cpu().upload(&y).unwrap(), op)
                        .unwrap(),
                )
                .unwrap();
            assert_eq!(c.shape, x.shape);
            // Element (1, 4, 2, 3) by hand.
            let at = |s: &[usize], i: [usize; 4]| -> usize {
                (0..4).fold(0, |o, d| o * s[d] + if s[d] == 1 { 0 } else { i[d] })
            };
            let want = op.apply(
                x.data[at(&x.shape, [1, 4, 2, 3])],
                y.data[at(shape, [1, 4, 2, 3])],
            );
            assert_eq!(c.data[at(&x.shape, [1, 4, 2, 3])], want, "{shape:?} {op:?}");
            assert!(rel_err(&g.data, &c.data, 1e-6) <= 1e-5, "{shape:?} {op:?}");
        }
    }
    // Bad operands are bad input on both backends.
    let bad = |e: netlens::Error| assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
    for axes in [&[0][..], &[1, 1], &[4], &[]] {
        bad(gpu().reduce(&gx, ReduceKind::Sum, axes).unwrap_err());
        bad(cpu().reduce(&cx, ReduceKind::Sum, axes).unwrap_err());
    }
    for shape in [&[2, 5, 2, 1][..], &[5, 1, 1], &[2, 5, 3, 4, 1]] {
        let y = random(shape, 3);
        bad(gpu()
            .elementwise(&gx, &gpu().upload(&y).unwrap(), BinaryKind::Mul)
            .unwrap_err());
        bad(cpu()
            .elementwise(&cx, &cpu().upload(&y).unwrap(), BinaryKind::Mul)
            .unwrap_err());
    }
}

/// The new subcommands end to end on the CPU: their files and summary, their own options in
/// `--help`, and bad settings as exit 2.
#[test]
fn cli_runs_the_new_methods() {
    let model = asset("models/tiny_digits.onnx");
    let png = asset("digits/digit_3_idx0649.png");
    for (method, extra) in [
        ("hirescam", &[][..]),
        ("xgradcam", &[]),
        ("eigencam", &[]),
        ("rise", &["--masks", "64", "--grid", "4", "--seed", "5"]),
    ] {
        let dir = scratch_in("cams", method);
        let d = dir.to_str().unwrap();
        let mut args = vec![
            method,
            &model,
            &png,
            "-o",
            d,
            "--backend",
            "cpu",
            "--class",
            "3",
        ];
        args.extend_from_slice(extra);
        let out = netlens(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{method}: {stderr}");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["method"], method);
        let result = &summary["results"][0];
        assert_eq!(result["class"], 3, "{summary}");
        for key in ["png", "npy"] {
            let file = result[key].as_str().unwrap();
            assert!(std::path::Path::new(file).exists(), "{method}: {file}");
        }
        let npy = read_npy(result["npy"].as_str().unwrap());
        assert_eq!(npy.shape, vec![16, 16], "{method}");
        assert!(npy.data.iter().any(|&v| v > 0.0), "{method}: empty map");
    }
    let help = String::from_utf8_lossy(&netlens(&["rise", "--help"]).stdout).to_string();
    assert!(
        help.contains("--masks") && help.contains("--grid"),
        "{help}"
    );
    assert!(
        !help.contains("--num-samples") && !help.contains("--steps"),
        "{help}"
    );
    let dir = scratch_in("cams", "bad");
    for bad in [&["--p", "0"][..], &["--masks", "0"], &["--grid", "0"]] {
        let mut args = vec![
            "rise",
            &model,
            &png,
            "-o",
            dir.to_str().unwrap(),
            "--backend",
            "cpu",
        ];
        args.extend_from_slice(bad);
        assert_bad_input(&netlens(&args), "");
    }
}
