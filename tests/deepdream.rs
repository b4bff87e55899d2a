//! Deep dream and its image ops.
//!
//! What runs where (lavapipe is far too slow for MobileNetV2 at batch 8 × 30 fwd+bwd):
//! - the image ops (resize_bilinear, roll, ascent_step, blur): GPU against CPU, two shapes each;
//! - the MobileNetV2 acceptance (8 channels of a middle layer, objective ×5 from gray): the CPU
//!   backend at the model's 224×224 (pyramid 114, 160, 224), default options (~12 s);
//! - the batching proof (submissions independent of the channel count, one read-back) and a
//!   whole dream GPU against CPU: tiny_digits (16×16, pyramid 8, 11, 16) on the GPU;
//! - bad input through the library and the CLI (exit 2).

mod common;
use common::*;
use netlens::backend::AscentStep;
use netlens::gpu::GpuBackend;
use netlens::methods::deepdream::{DeepDream, InputSpace, Start, Target};
use netlens::methods::upsample_bilinear;
use netlens::model::import::{import_bytes_with_input, load_model, load_model_with_input};
use netlens::{Backend, ErrorKind, HostTensor, Model};

/// Runs `op` on both backends and checks they agree within 1e-4 relative (to the largest value).
fn both<F, G>(x: &[HostTensor], gpu_op: F, cpu_op: G) -> HostTensor
where
    F: Fn(&GpuBackend, &[netlens::gpu::GpuTensor]) -> netlens::gpu::GpuTensor,
    G: Fn(&netlens::cpu::CpuBackend, &[std::sync::Arc<HostTensor>]) -> std::sync::Arc<HostTensor>,
{
    let g = gpu();
    let c = cpu();
    let gx: Vec<_> = x.iter().map(|t| g.upload(t).unwrap()).collect();
    let cx: Vec<_> = x.iter().map(|t| c.upload(t).unwrap()).collect();
    let got = g.read(&gpu_op(g, &gx)).unwrap();
    let want = c.read(&cpu_op(&c, &cx)).unwrap();
    assert_eq!(got.shape, want.shape);
    let err = rel_err(&got.data, &want.data, 1e-6);
    assert!(err < 1e-4, "GPU vs CPU relative error {err}");
    want
}

#[test]
fn resize_bilinear_gpu_matches_cpu_and_upsample_bilinear() {
    for (shape, oh, ow) in [([2, 3, 7, 9], 13, 5), ([1, 2, 16, 16], 5, 31)] {
        let x = random(&shape, 1);
        let out = both(
            std::slice::from_ref(&x),
            |g, t| g.resize_bilinear(&t[0], oh, ow).unwrap(),
            |c, t| c.resize_bilinear(&t[0], oh, ow).unwrap(),
        );
        assert_eq!(out.shape, vec![shape[0], shape[1], oh, ow]);
        // Plane by plane, exactly the host helper Grad-CAM uses.
        let hw = shape[2] * shape[3];
        for p in 0..shape[0] * shape[1] {
            let plane = HostTensor::new(
                vec![shape[2], shape[3]],
                x.data[p * hw..(p + 1) * hw].to_vec(),
            )
            .unwrap();
            let want = upsample_bilinear(&plane, oh, ow);
            assert_eq!(&out.data[p * oh * ow..(p + 1) * oh * ow], &want.data[..]);
        }
    }
}

#[test]
fn roll_gpu_matches_cpu_and_numpy_roll() {
    for (shape, dy, dx) in [([2, 3, 5, 7], 2, -3), ([1, 1, 16, 16], -17, 40)] {
        let x = random(&shape, 2);
        let out = both(
            std::slice::from_ref(&x),
            |g, t| g.roll(&t[0], dy, dx).unwrap(),
            |c, t| c.roll(&t[0], dy, dx).unwrap(),
        );
        let (h, w) = (shape[2] as i64, shape[3] as i64);
        for p in 0..(shape[0] * shape[1]) as i64 {
            for y in 0..h {
                for xx in 0..w {
                    let src = p * h * w + (y - dy).rem_euclid(h) * w + (xx - dx).rem_euclid(w);
                    assert_eq!(
                        out.data[(p * h * w + y * w + xx) as usize],
                        x.data[src as usize]
                    );
                }
            }
        }
    }
}

#[test]
fn ascent_step_gpu_matches_cpu_and_normalises_per_sample() {
    let cases = [
        (
            [3, 3, 8, 10],
            [1, -2],
            vec![-0.5, -2.0, -1.0],
            vec![0.5, 2.0, 0.7],
        ),
        ([2, 1, 17, 5], [0, 0], vec![-10.0], vec![10.0]),
    ];
    for (shape, jitter, lo, hi) in cases {
        let x = random(&shape, 3);
        let mut grad = random(&shape, 4);
        // Very different gradient scales per sample: the step must not care.
        let per = grad.sample_len();
        for (i, v) in grad.data.iter_mut().enumerate() {
            *v *= 10f32.powi((i / per) as i32 * 3);
        }
        let step = AscentStep {
            step: 0.25,
            jitter,
            lo: lo.clone(),
            hi: hi.clone(),
        };
        let out = both(
            &[x.clone(), grad.clone()],
            |g, t| g.ascent_step(&t[0], &t[1], &step).unwrap(),
            |c, t| c.ascent_step(&t[0], &t[1], &step).unwrap(),
        );
        let (ch, h, w) = (shape[1], shape[2] as i64, shape[3] as i64);
        for s in 0..shape[0] {
            let g = grad.sample(s);
            let mean = g.iter().map(|v| v.abs() as f64).sum::<f64>() / per as f64;
            for c in 0..ch {
                for y in 0..h {
                    for xx in 0..w {
                        let at = c * (h * w) as usize + (y * w + xx) as usize;
                        let gy = (y + jitter[0]).rem_euclid(h);
                        let gx = (xx + jitter[1]).rem_euclid(w);
                        let gv = g[c * (h * w) as usize + (gy * w + gx) as usize] as f64;
                        let want = (x.sample(s)[at] as f64 + 0.25 * gv / (mean + 1e-8))
                            .clamp(lo[c] as f64, hi[c] as f64);
                        let got = out.sample(s)[at] as f64;
                        assert!((got - want).abs() < 1e-5, "sample {s}: {got} vs {want}");
                    }
                }
            }
        }
    }
}

#[test]
fn blur_gpu_matches_cpu_and_keeps_constants() {
    for (shape, sigma) in [([2, 3, 9, 11], 0.8f32), ([1, 1, 20, 20], 2.0)] {
        let x = random(&shape, 5);
        both(
            std::slice::from_ref(&x),
            |g, t| g.blur(&t[0], sigma).unwrap(),
            |c, t| c.blur(&t[0], sigma).unwrap(),
        );
        // Normalised weights and replicated edges leave a constant image unchanged.
        let flat = HostTensor::new(shape.to_vec(), vec![0.75; x.data.len()]).unwrap();
        let out = both(
            &[flat],
            |g, t| g.blur(&t[0], sigma).unwrap(),
            |c, t| c.blur(&t[0], sigma).unwrap(),
        );
        assert!(out.data.iter().all(|v| (v - 0.75).abs() < 1e-5));
    }
    let c = cpu();
    let e = c
        .blur(&c.upload(&random(&[1, 1, 4, 4], 6)).unwrap(), 100.0)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
}

fn digits() -> (Vec<u8>, Model) {
    let path = asset("models/tiny_digits.onnx");
    (std::fs::read(&path).unwrap(), load_model(&path).unwrap())
}

/// The last conv's ReLU of tiny_digits (8×8, 48 channels).
fn digits_layer(m: &Model) -> String {
    let g = &m.graph;
    let v = g.cam_layer().expect("tiny_digits has a CAM layer");
    g.values[v].name.clone()
}

/// On the GPU, the dream of 8 channels costs exactly the submissions of 1 channel (one batch):
/// at most 3 per iteration (jitter roll, forward + backward, ascent step; blur is off) plus a few
/// per run (start forward, resizes, final forward, the read), and one read-back at the very end.
#[test]
fn gpu_dream_batches_channels_and_reads_back_once() {
    let g = private_gpu();
    let (bytes, m) = digits();
    let at_size = |h: usize, w: usize| import_bytes_with_input(&bytes, "tiny", [1, h, w]);
    let dream = DeepDream {
        jitter: 2,
        ..Default::default()
    };
    let layer = digits_layer(&m);
    let mut counts = Vec::new();
    for channels in [vec![5], (0..8).collect::<Vec<_>>()] {
        let target = Target::Channels {
            layer: layer.clone(),
            channels,
        };
        let before = g.stats();
        let r = dream.attribute(&g, &m, &at_size, &target).unwrap();
        let after = g.stats();
        assert_eq!(
            after.readbacks - before.readbacks,
            1,
            "{before:?} -> {after:?}"
        );
        counts.push(after.submissions - before.submissions);
        assert_eq!(r.sizes, vec![[8, 8], [11, 11], [16, 16]]);
        println!(
            "{} channel(s): {before:?} -> {after:?}",
            target_len(&target)
        );
    }
    assert_eq!(counts[0], counts[1], "8 channels must cost what 1 costs");
    let fwd_bwd_sets = (dream.levels * dream.iterations) as u64;
    assert!(
        counts[1] <= 3 * fwd_bwd_sets + 8,
        "{} submissions for {fwd_bwd_sets} forward+backward iterations",
        counts[1]
    );
}

fn target_len(t: &Target) -> usize {
    match t {
        Target::Channels { channels, .. } => channels.len(),
        Target::Classes(c) => c.len(),
    }
}

/// GPU vs CPU after a whole dream (max |Δ| over the images / their max, and the objectives'
/// relative difference). Both backends run the same pyramid, jitter, blur and normalised step;
/// only the order of the sums inside the kernels differs (workgroup tiles against rayon chunks),
/// a few float32 ulps per op, and the step's normalisation to mean |g| = 1 keeps those from
/// growing. Measured on lavapipe after 3 levels × 10 iterations: images 3.8e-7 (channels) and
/// 3.6e-7 (classes), objectives 1.7e-7 and 1.0e-7, i.e. ~3 ulps. The tolerance is 5× the largest
/// (it was 1e-2, which a wrong blur or jitter could pass).
const DREAM_TOL: f32 = 2e-6;

/// A whole dream (channels and classes, with blur and a random start) agrees between the
/// backends: the trajectory is deterministic, so only rounding differs.
#[test]
fn gpu_dream_matches_cpu_on_tiny_digits() {
    let (bytes, m) = digits();
    let at_size = |h: usize, w: usize| import_bytes_with_input(&bytes, "tiny", [1, h, w]);
    let dream = DeepDream {
        blur: 0.5,
        ..Default::default()
    };
    for target in [
        Target::Channels {
            layer: digits_layer(&m),
            channels: vec![0, 3, 7],
        },
        Target::Classes(vec![2, 9]),
    ] {
        let a = dream.attribute(gpu(), &m, &at_size, &target).unwrap();
        let b = dream.attribute(&cpu(), &m, &at_size, &target).unwrap();
        let err = rel_err(&a.images.data, &b.images.data, 1e-3);
        let obj_err = a
            .objective_after
            .iter()
            .zip(&b.objective_after)
            .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
            .fold(0f32, f32::max);
        println!("{target:?}: images rel err {err:.2e}, objective rel err {obj_err:.2e}");
        assert!(err < DREAM_TOL, "{target:?}: images differ by {err}");
        assert!(
            obj_err <= DREAM_TOL,
            "{target:?}: objectives differ by {obj_err}"
        );
        for (before, after) in b.objective_before.iter().zip(&b.objective_after) {
            assert!(after > before, "{target:?}: {before} -> {after}");
        }
    }
}

/// The acceptance: 8 channels of a MobileNetV2 middle layer (the expansion ReLU6 of block 8, a
/// 14×14 map at 224 input), one batch, MATLAB's default pyramid, gray start: every channel's
/// mean activation rises at least 5×. CPU backend (see the file doc).
#[test]
fn mobilenetv2_eight_channels_rise_fivefold_from_gray() {
    let path = asset("models/mobilenetv2_imagenet.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let m = load_model(&path).unwrap();
    let at_size = |h: usize, w: usize| import_bytes_with_input(&bytes, "mnv2", [3, h, w]);
    let layer = MNV2_LAYER.to_string();
    let dream = DeepDream {
        start: Start::Gray,
        ..Default::default()
    };
    let target = Target::Channels {
        layer,
        channels: (0..8).collect(),
    };
    let t = std::time::Instant::now();
    let r = dream.attribute(&cpu(), &m, &at_size, &target).unwrap();
    println!(
        "8 channels on the CPU at 224: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(r.images.shape, vec![8, 3, 224, 224]);
    for (i, (b, a)) in r
        .objective_before
        .iter()
        .zip(&r.objective_after)
        .enumerate()
    {
        println!(
            "channel {i}: {b:.4} -> {a:.4} (x{:.1}); per level {:?}",
            a / b.max(1e-6),
            r.objective_per_level
                .iter()
                .map(|l| l[i])
                .collect::<Vec<_>>()
        );
    }
    for (b, a) in r.objective_before.iter().zip(&r.objective_after) {
        assert!(*b > 0.0 && *a >= 5.0 * b, "{b} -> {a}");
    }
    let space = InputSpace::default_for(3).unwrap();
    for (i, v) in r.images.data.iter().enumerate() {
        let c = (i / (224 * 224)) % 3;
        assert!(*v >= space.lo[c] - 1e-6 && *v <= space.hi[c] + 1e-6);
    }
}

const MNV2_LAYER: &str = "/features/features.8/conv/conv.0/conv.0.2/Clip_output_0";

#[test]
fn bad_targets_are_bad_input() {
    let (bytes, m) = digits();
    let at_size = |h: usize, w: usize| import_bytes_with_input(&bytes, "tiny", [1, h, w]);
    let d = DeepDream::default();
    let c = cpu();
    let unknown = Target::Channels {
        layer: "no_such_layer".into(),
        channels: vec![0],
    };
    let e = d.attribute(&c, &m, &at_size, &unknown).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput);
    assert!(e.to_string().contains("no_such_layer"), "{e}");
    let out_of_range = Target::Channels {
        layer: digits_layer(&m),
        channels: vec![1, 48],
    };
    let e = d.attribute(&c, &m, &at_size, &out_of_range).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput);
    assert!(e.to_string().contains("channel 48 is out of range"), "{e}");
    let e = d
        .attribute(&c, &m, &at_size, &Target::Classes(vec![10]))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
    let e = d
        .attribute(&c, &m, &at_size, &Target::Classes(vec![]))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
}

#[test]
fn cli_dreams_and_rejects_bad_input() {
    let model = asset("models/tiny_digits.onnx");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("deepdream_cli");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let m = load_model(&model).unwrap();
    let layer = digits_layer(&m);
    let out = netlens(&[
        "deepdream",
        &model,
        "--layer",
        &layer,
        "--channels",
        "0,5,9",
        "--backend",
        "cpu",
        "-o",
        d,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "dream_0.png",
        "dream_5.png",
        "dream_9.png",
        "montage.png",
        "dream.npy",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let results = summary["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0]["objective_after"].as_f64() > results[0]["objective_before"].as_f64());
    let npy = read_npy(dir.join("dream.npy").to_str().unwrap());
    assert_eq!(npy.shape, vec![3, 1, 16, 16]);

    for (args, needle) in [
        (
            vec!["--layer", "nope", "--channels", "0"],
            "no layer named 'nope'",
        ),
        (
            vec!["--layer", layer.as_str(), "--channels", "0,48"],
            "channel 48 is out of range",
        ),
        (
            vec!["--class", "3", "--layer", layer.as_str()],
            "give either",
        ),
    ] {
        let mut all = vec!["deepdream", model.as_str(), "--backend", "cpu", "-o", d];
        all.extend(args);
        let out = netlens(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains(needle), "stderr lacks '{needle}': {stderr}");
    }
}

/// The pyramid's model instances: MobileNetV2 re-imported at 112×112 derives every shape from
/// the new input; a channel count other than the file's is refused.
#[test]
fn models_instantiate_at_other_input_sizes() {
    let path = asset("models/mobilenetv2_imagenet.onnx");
    let m = load_model_with_input(&path, [3, 112, 112]).unwrap();
    assert_eq!(m.input_shape(), &[3, 112, 112]);
    let v = m.layer(MNV2_LAYER).unwrap();
    assert_eq!(m.graph.values[v].shape, vec![384, 7, 7]);
    assert_eq!(m.num_classes(), 1000);
    let e = load_model_with_input(&path, [1, 112, 112]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
}
