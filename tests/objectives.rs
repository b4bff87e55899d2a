//! Layer objectives (a channel's mean, all channels' mean, a region of the grid): gradients
//! against directional finite differences of the objective itself, GPU against CPU, and the CLI.

mod common;
use common::*;
use netlens::methods::objective::{layer_gradients, LayerObjective, Region};
use netlens::model::import::load_model;
use netlens::{Backend, GradRule, HostTensor, Model};

const LAYER: &str = "/features/features.8/Relu_output_0";

fn model() -> Model {
    load_model(asset("models/tiny_digits.onnx")).expect("tiny_digits loads")
}

fn objectives(model: &Model) -> Vec<LayerObjective> {
    let layer = model.layer(LAYER).unwrap();
    vec![
        LayerObjective {
            layer,
            channel: Some(5),
            region: None,
        },
        LayerObjective {
            layer,
            channel: Some(17),
            region: Some(Region {
                top: 2,
                left: 1,
                height: 4,
                width: 5,
            }),
        },
        LayerObjective {
            layer,
            channel: None,
            region: Some(Region {
                top: 0,
                left: 0,
                height: 8,
                width: 3,
            }),
        },
    ]
}

/// The objective's value at `x`, from a CPU forward with the layer tapped.
fn value(model: &Model, o: &LayerObjective, x: &HostTensor) -> f64 {
    let b = cpu();
    let f = b.forward(model, &b.upload(x).unwrap(), &[o.layer]).unwrap();
    let a = b.read(f.tap(o.layer).unwrap()).unwrap();
    o.values(&a).unwrap()[0] as f64
}

#[test]
fn layer_objective_gradients_match_finite_differences() {
    let model = model();
    let x = random(&[1, 1, 16, 16], 7);
    let objs = objectives(&model);
    let grads = layer_gradients(&cpu(), &model, &x, &objs, GradRule::Standard, false).unwrap();
    for (o, g) in objs.iter().zip(&grads) {
        // A directional derivative averages over all pixels; the step is small enough that few
        // ReLU kinks lie within it (at 1e-2 they bias the difference by ~3%) and large enough
        // for f32 (objective ~0.5, so rounding adds ~3e-3 relative at most).
        let v = random(&[1, 1, 16, 16], 99);
        let eps = 1e-4f32;
        let shifted = |s: f32| HostTensor {
            shape: x.shape.clone(),
            data: x.data.iter().zip(&v.data).map(|(a, d)| a + s * d).collect(),
        };
        let fd = (value(&model, o, &shifted(eps)) - value(&model, o, &shifted(-eps)))
            / (2.0 * eps as f64);
        let analytic: f64 = g
            .map
            .data
            .iter()
            .zip(&v.data)
            .map(|(a, b)| (a * b) as f64)
            .sum();
        // Relative, with a floor for directions in which the objective barely moves (f32 rounding of
        // the objective alone is ~5e-4 there).
        let err = (fd - analytic).abs() / analytic.abs().max(0.05);
        println!("{o:?}: finite difference {fd:.6}, gradient {analytic:.6}, rel {err:.2e}");
        assert!(err < 1e-2, "{o:?}: fd {fd} vs gradient {analytic}");
        assert!(
            (g.score as f64 - value(&model, o, &x)).abs() < 1e-5,
            "reported objective value"
        );
    }
}

#[test]
fn layer_objective_gradients_agree_on_gpu_and_cpu() {
    let model = model();
    let x = random(&[1, 1, 16, 16], 3);
    let objs = objectives(&model);
    let c = layer_gradients(&cpu(), &model, &x, &objs, GradRule::Standard, true).unwrap();
    let g = layer_gradients(gpu(), &model, &x, &objs, GradRule::Standard, true).unwrap();
    for (a, b) in c.iter().zip(&g) {
        let e = rel_err(&b.map.data, &a.map.data, 1e-6);
        assert!(e < 1e-4, "GPU vs CPU relative error {e}");
        assert!((a.score - b.score).abs() <= 1e-4 * a.score.abs().max(1.0));
    }
}

#[test]
fn objectives_of_one_batch_must_share_a_layer_and_fit_it() {
    let model = model();
    let x = random(&[1, 1, 16, 16], 1);
    let mut objs = objectives(&model);
    objs[1].layer = model.layer("/features/features.5/Relu_output_0").unwrap();
    assert!(layer_gradients(&cpu(), &model, &x, &objs, GradRule::Standard, false).is_err());
    let bad_region = LayerObjective {
        layer: objs[0].layer,
        channel: None,
        region: Some(Region {
            top: 6,
            left: 0,
            height: 3,
            width: 1,
        }),
    };
    let e = layer_gradients(&cpu(), &model, &x, &[bad_region], GradRule::Standard, false)
        .expect_err("a region past the grid is an error");
    assert!(e.to_string().contains("does not fit"), "{e}");
}

#[test]
fn cli_explains_channels_of_a_layer_and_rejects_bad_objectives() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("objectives");
    let model = asset("models/tiny_digits.onnx");
    let image = asset("digits/digit_3_idx0649.png");
    let dir_s = dir.to_str().unwrap();
    let ok = netlens(&[
        "saliency",
        &model,
        &image,
        "--objective-layer",
        LAYER,
        "--channel",
        "3",
        "--channel",
        "7",
        "--region",
        "1,1,4,4",
        "--backend",
        "cpu",
        "-o",
        dir_s,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for f in [
        "saliency_ch3.png",
        "saliency_ch3.npy",
        "saliency_ch7.npy",
        "summary_saliency_ch3-ch7.json",
        "summary.json",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    for (args, needle) in [
        (vec!["--channel", "99"], "out of range"),
        (vec!["--region", "0,0,9,9"], "does not fit"),
        (vec!["--region", "1,2"], "four numbers"),
    ] {
        let mut all = vec!["saliency", &model, &image, "--objective-layer", LAYER];
        all.extend(args);
        all.extend(["--backend", "cpu", "-o", dir_s]);
        let out = netlens(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = netlens(&[
        "gradcam",
        &model,
        &image,
        "--objective-layer",
        LAYER,
        "--backend",
        "cpu",
        "-o",
        dir_s,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = netlens(&["saliency", &model, &image, "--channel", "2", "-o", dir_s]);
    assert_eq!(out.status.code(), Some(2));
}
