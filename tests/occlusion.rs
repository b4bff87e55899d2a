//! Occlusion sensitivity: Captum parity on MobileNetV2, GPU against CPU, the `perturb` op with
//! window masks, the
//! batching proof with the GPU counters, and the window geometry (clipping on and off) checked
//! against hand-listed windows and against a brute-force host-built reference.

mod common;
use common::*;
use netlens::backend::{Fill, MaskSource, OcclusionWindow};
use netlens::cpu::CpuBackend;
use netlens::gpu::{GpuBackend, GpuOptions};
use netlens::methods::occlusion::{MaskValue, Occlusion, Upsampling};
use netlens::methods::Score;
use netlens::model::import::{import_bytes, load_model};
use netlens::{Backend, HostTensor, Model};
use std::time::Instant;

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn pearson(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let n = a.len() as f64;
    let ma = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt()
}

fn win(top: i64, left: i64, height: usize, width: usize) -> OcclusionWindow {
    OcclusionWindow {
        top,
        left,
        height,
        width,
    }
}

fn digits() -> (Model, HostTensor) {
    let m = load_model(asset("models/tiny_digits.onnx")).expect("import");
    let pre = netlens::input::Preprocess::unit();
    let x =
        netlens::input::image_tensor(asset("digits/digit_3_idx0649.png"), &pre, m.input_shape())
            .expect("digit");
    (m, x)
}

/// The Captum setting of `assets/ref/peers` (PROVENANCE.md): window 32, stride 16, baseline 0,
/// only whole windows from the corner.
fn captum_setting(score: Score) -> Occlusion {
    Occlusion {
        mask_size: Some([32, 32]),
        stride: Some([16, 16]),
        mask_value: MaskValue::Scalar(0.0),
        clipping: false,
        mini_batch: None,
        score,
        upsampling: Upsampling::None,
    }
}

#[test]
fn cpu_matches_captum_on_mobilenetv2() {
    let m = load_model(asset("models/mobilenetv2_imagenet.onnx")).expect("import");
    let x = read_npy(&asset("ref/mobilenetv2_imagenet_chelsea_input.npy"));
    let b = CpuBackend::new();
    for (score, name) in [(Score::Logit, "logit"), (Score::Probability, "prob")] {
        let peer = read_npy(&asset(&format!(
            "ref/peers/mobilenetv2_imagenet_chelsea_occlusion_{name}.npy"
        )));
        assert_eq!(peer.shape, vec![1, 3, 224, 224]);
        let t = Instant::now();
        let maps = captum_setting(score)
            .attribute(&b, &m, &x, &[285])
            .expect("occlusion");
        let secs = t.elapsed().as_secs_f64();
        let map = &maps[0];
        assert_eq!(map.grid.shape, vec![13, 13]);
        let (r, e) = (
            pearson(&map.per_pixel.data, &peer.data[..224 * 224]),
            rel_l2(&map.per_pixel.data, &peer.data[..224 * 224]),
        );
        println!("occlusion {name}: {secs:.2} s on the CPU, Pearson {r:.6}, relative L2 {e:.2e}");
        assert!(r >= 0.999, "{name}: Pearson {r}");
        assert!(e <= 1e-3, "{name}: relative L2 {e}");
    }
}

#[test]
fn gpu_grid_matches_cpu_on_digits() {
    let (m, x) = digits();
    let o = Occlusion {
        mask_size: Some([5, 3]),
        stride: Some([2, 3]),
        mini_batch: Some(16),
        score: Score::Probability,
        ..Default::default()
    };
    let classes = [3, 8];
    let g = o.attribute(gpu(), &m, &x, &classes).expect("gpu");
    let c = o.attribute(&cpu(), &m, &x, &classes).expect("cpu");
    for (g, c) in g.iter().zip(&c) {
        assert_eq!(g.grid.shape, c.grid.shape);
        let e = rel_err(&g.grid.data, &c.grid.data, 1e-6);
        println!(
            "class {}: grid {:?}, GPU vs CPU {e:.2e}",
            g.class, g.grid.shape
        );
        assert!(e <= 1e-4, "class {}: {e}", g.class);
        assert!(
            c.grid.data.iter().any(|v| v.abs() > 1e-4),
            "a flat map proves nothing"
        );
    }
}

#[test]
fn window_masks_are_bit_identical_on_gpu_and_cpu() {
    let x = random(&[1, 3, 7, 9], 11);
    let windows = [
        win(-2, -3, 4, 5),
        win(5, 7, 3, 4),
        win(1, 1, 0, 3),
        win(-10, -10, 2, 2),
        win(2, 3, 3, 2),
        win(-1, -1, 20, 20),
        win(6, 0, 1, 9),
    ];
    let value = [0.5, -1.25, 3.0];
    let c = cpu();
    let ct = c.upload(&x).expect("upload");
    let want = c
        .read(
            &c.perturb(&ct, &MaskSource::Windows(&windows), &Fill::Constant(&value))
                .expect("cpu"),
        )
        .expect("read");
    let g = gpu();
    let gt = g.upload(&x).expect("upload");
    let got = g
        .read(
            &g.perturb(&gt, &MaskSource::Windows(&windows), &Fill::Constant(&value))
                .expect("gpu"),
        )
        .expect("read");
    assert_eq!(got.shape, vec![windows.len(), 3, 7, 9]);
    assert_eq!(got, want);
    // Independent of both: the clipped window takes the value, everything else is the image.
    for (i, w) in windows.iter().enumerate() {
        for (ch, &v) in value.iter().enumerate() {
            for y in 0..7 {
                for xx in 0..9 {
                    let at = (ch * 7 + y) * 9 + xx;
                    let expect = if w.covers(y, xx) { v } else { x.data[at] };
                    assert_eq!(want.sample(i)[at], expect, "window {i} ch {ch} ({y}, {xx})");
                }
            }
        }
    }
    assert!(g
        .perturb(
            &gt,
            &MaskSource::Windows(&windows),
            &Fill::Constant(&value[..2])
        )
        .is_err());
}

/// 4×4 mask, stride 1 on 16×16: 13×13 = 169 windows, plus the unoccluded image = 170 samples,
/// at mini-batch 64 three chunks. Each chunk is one submission: the `perturb` kernel is deferred
/// and goes to the queue with its `forward`. All logits come back in one read-back, itself one
/// submission: 3 + 1 = 4.
#[test]
fn gpu_occlusion_batches_its_windows() {
    let g = private_gpu();
    let (m, x) = digits();
    let o = Occlusion {
        mask_size: Some([4, 4]),
        stride: Some([1, 1]),
        clipping: false,
        mini_batch: Some(64),
        ..Default::default()
    };
    let before = g.stats();
    let maps = o.attribute(&g, &m, &x, &[3, 5]).expect("occlusion");
    let after = g.stats();
    assert_eq!(maps[0].grid.shape, vec![13, 13]);
    assert_eq!(
        after.readbacks - before.readbacks,
        1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        after.submissions - before.submissions,
        4,
        "{before:?} -> {after:?}"
    );
    println!("169 windows at mini-batch 64: {before:?} -> {after:?}");
}

/// Score drops computed the slow way: occluded images built on the host, one CPU forward.
fn brute_force(m: &Model, x: &HostTensor, o: &Occlusion, class: usize, value: &[f32]) -> Vec<f32> {
    let (h, w) = (x.shape[2], x.shape[3]);
    let (_, _, windows) = o.windows(h, w).expect("windows");
    let n = x.sample_len();
    let mut data = x.data.clone();
    for win in &windows {
        let mut img = x.data.clone();
        for (ch, &v) in value.iter().enumerate() {
            for y in 0..h {
                for xx in 0..w {
                    if win.covers(y, xx) {
                        img[ch * h * w + y * w + xx] = v;
                    }
                }
            }
        }
        data.extend(img);
    }
    let batch = HostTensor::new(vec![windows.len() + 1, x.shape[1], h, w], data).expect("batch");
    assert_eq!(batch.data.len(), (windows.len() + 1) * n);
    let logits = run_backend(&cpu(), m, &batch);
    let k = logits.sample_len();
    (1..=windows.len())
        .map(|i| logits.data[class] - logits.data[i * k + class])
        .collect()
}

fn non_square_model() -> Model {
    let mut b = OnnxBuilder::new(&[1, 6, 10]);
    let w = b.weight("w", &[2, 1, 3, 3]);
    let bias = b.weight("b", &[2]);
    b.node(
        "Conv",
        &["input", &w, &bias],
        &["c"],
        vec![a_ints("pads", &[1, 1, 1, 1])],
    );
    b.node("Relu", &["c"], &["r"], vec![]);
    b.node("GlobalAveragePool", &["r"], &["g"], vec![]);
    b.node("Flatten", &["g"], &["f"], vec![]);
    let gw = b.weight("gw", &[3, 2]);
    let gb = b.weight("gb", &[3]);
    b.node("Gemm", &["f", &gw, &gb], &["y"], vec![a_int("transB", 1)]);
    import_bytes(&b.build("y"), "non_square").expect("import")
}

#[test]
fn non_square_input_matches_brute_force_on_both_backends() {
    let m = non_square_model();
    let x = random(&[1, 1, 6, 10], 5);
    for clipping in [false, true] {
        let o = Occlusion {
            mask_size: Some([2, 3]),
            stride: Some([2, 3]),
            mask_value: MaskValue::Scalar(0.7),
            clipping,
            mini_batch: Some(4),
            ..Default::default()
        };
        let (rows, cols, _) = o.windows(6, 10).expect("windows");
        // Off: rows (6-2)/2+1 = 3, cols (10-3)/3+1 = 3. On: centres 0,2,4 and 0,3,6,9.
        assert_eq!((rows, cols), if clipping { (3, 4) } else { (3, 3) });
        let want = brute_force(&m, &x, &o, 1, &[0.7]);
        for (label, maps) in [
            ("cpu", o.attribute(&cpu(), &m, &x, &[1]).expect("cpu")),
            ("gpu", o.attribute(gpu(), &m, &x, &[1]).expect("gpu")),
        ] {
            let map = &maps[0];
            assert_eq!(map.grid.shape, vec![rows, cols]);
            assert_eq!(map.per_pixel.shape, vec![6, 10]);
            assert_eq!(
                map.upsampled.as_ref().map(|u| u.shape.clone()),
                Some(vec![6, 10])
            );
            let e = rel_err(&map.grid.data, &want, 1e-6);
            assert!(e <= 1e-4, "{label}, clipping {clipping}: {e}");
        }
    }
}

#[test]
fn stride_larger_than_mask_leaves_gaps() {
    let (m, x) = digits();
    let o = Occlusion {
        mask_size: Some([3, 3]),
        stride: Some([5, 5]),
        mask_value: MaskValue::Scalar(0.0),
        clipping: false,
        upsampling: Upsampling::Nearest,
        ..Default::default()
    };
    let maps = o.attribute(&cpu(), &m, &x, &[3]).expect("occlusion");
    let map = &maps[0];
    // Starts 0, 5, 10: rows and columns 3, 4, 8, 9, 13, 14, 15 are covered by no window.
    assert_eq!(map.grid.shape, vec![3, 3]);
    let want = brute_force(&m, &x, &o, 3, &[0.0]);
    assert!(rel_err(&map.grid.data, &want, 1e-6) <= 1e-5);
    let covered = |v: usize| v % 5 < 3 && v < 13;
    for y in 0..16 {
        for xx in 0..16 {
            let p = map.per_pixel.data[y * 16 + xx];
            if covered(y) && covered(xx) {
                // Exactly one window covers the pixel: its mean is that window's drop.
                assert_eq!(p, map.grid.data[(y / 5) * 3 + xx / 5], "({y}, {xx})");
            } else {
                assert_eq!(p, 0.0, "({y}, {xx}) is covered by no window");
            }
        }
    }
    let up = map.upsampled.as_ref().expect("nearest map");
    assert_eq!(up.data[0], map.grid.data[0]);
    assert_eq!(up.data[16 * 16 - 1], map.grid.data[8]);
}

#[test]
fn matlab_mask_clipping_windows_by_hand() {
    let o = |clipping| Occlusion {
        mask_size: Some([2, 2]),
        stride: Some([2, 2]),
        clipping,
        ..Default::default()
    };
    // Off: whole windows from the corner.
    let (r, c, w) = o(false).windows(4, 4).expect("off");
    assert_eq!((r, c), (2, 2));
    assert_eq!(
        w,
        vec![
            win(0, 0, 2, 2),
            win(0, 2, 2, 2),
            win(2, 0, 2, 2),
            win(2, 2, 2, 2)
        ]
    );
    // On: the window centre (start + ⌊2/2⌋) visits 0 and 2, so starts are -1 and 1; the first
    // window is clipped to the single pixel row/column 0.
    let (r, c, w) = o(true).windows(4, 4).expect("on");
    assert_eq!((r, c), (2, 2));
    assert_eq!(
        w,
        vec![
            win(-1, -1, 2, 2),
            win(-1, 1, 2, 2),
            win(1, -1, 2, 2),
            win(1, 1, 2, 2)
        ]
    );
    // 5×5, mask 3, stride 2, on: centres 0, 2, 4 → starts -1, 1, 3.
    let o3 = Occlusion {
        mask_size: Some([3, 3]),
        stride: Some([2, 2]),
        clipping: true,
        ..Default::default()
    };
    let (r, c, w) = o3.windows(5, 5).expect("on");
    assert_eq!((r, c), (3, 3));
    let tops: Vec<i64> = w.iter().step_by(3).map(|w| w.top).collect();
    assert_eq!(tops, vec![-1, 1, 3]);
    // A mask larger than the image is fine when clipped, an error when not.
    let big = |clipping| Occlusion {
        mask_size: Some([6, 2]),
        stride: Some([1, 1]),
        clipping,
        ..Default::default()
    };
    assert!(big(true).windows(4, 4).is_ok());
    let e = big(false)
        .windows(4, 4)
        .expect_err("mask larger than the image");
    assert!(e.to_string().contains("larger than the image"), "{e}");
    // MATLAB's auto sizes: floor(0.2·side) and ceil(0.1·side).
    let (r, c, w) = Occlusion::default().windows(16, 30).expect("auto");
    assert_eq!((w[0].height, w[0].width), (3, 6));
    assert_eq!((r, c), (8, 10));
}

#[test]
fn bad_settings_are_rejected() {
    let (m, x) = digits();
    let b = cpu();
    let run = |o: Occlusion, classes: &[usize]| {
        o.attribute(&b, &m, &x, classes)
            .expect_err("should be rejected")
            .to_string()
    };
    let e = run(
        Occlusion {
            mask_size: Some([0, 2]),
            ..Default::default()
        },
        &[3],
    );
    assert!(e.contains("mask size"), "{e}");
    let e = run(
        Occlusion {
            stride: Some([1, 0]),
            ..Default::default()
        },
        &[3],
    );
    assert!(e.contains("stride"), "{e}");
    let e = run(
        Occlusion {
            mask_size: Some([17, 2]),
            clipping: false,
            ..Default::default()
        },
        &[3],
    );
    assert!(e.contains("larger than the image"), "{e}");
    let e = run(
        Occlusion {
            mini_batch: Some(0),
            ..Default::default()
        },
        &[3],
    );
    assert!(e.contains("mini-batch"), "{e}");
    let e = run(
        Occlusion {
            mask_value: MaskValue::PerChannel(vec![0.0, 0.0, 0.0]),
            ..Default::default()
        },
        &[3],
    );
    assert!(e.contains("channel"), "{e}");
    let e = run(Occlusion::default(), &[10]);
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn gpu_perturb_refuses_a_batch_over_the_binding_limit() {
    let g = GpuBackend::new(&GpuOptions {
        max_binding_bytes: Some(4096),
    })
    .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"));
    let x = g.upload(&random(&[1, 1, 16, 16], 3)).expect("upload");
    // 3 samples of 1 KiB fit, 5 do not.
    let occlude = |n: usize| {
        g.perturb(
            &x,
            &MaskSource::Windows(&vec![win(0, 0, 2, 2); n]),
            &Fill::Constant(&[0.0]),
        )
    };
    let ok = occlude(3).expect("fits");
    assert_eq!(g.shape(&ok), vec![3, 1, 16, 16]);
    let e = occlude(5).expect_err("over the limit").to_string();
    assert!(
        e.contains("binding limit") && e.contains("mini-batch"),
        "{e}"
    );
}

#[test]
fn upsampling_keeps_constants_and_same_size_maps() {
    use netlens::methods::occlusion::{resize_bicubic, resize_nearest};
    let flat = HostTensor::new(vec![3, 4], vec![2.5; 12]).expect("map");
    for up in [resize_bicubic(&flat, 7, 9), resize_nearest(&flat, 7, 9)] {
        assert_eq!(up.shape, vec![7, 9]);
        assert!(up.data.iter().all(|v| (v - 2.5).abs() < 1e-6), "{up:?}");
    }
    let m = random(&[5, 6], 9);
    assert_eq!(resize_bicubic(&m, 5, 6), m);
    assert_eq!(resize_nearest(&m, 5, 6), m);
    // Upsampling by 2: nearest repeats each value in a 2×2 block.
    let n = resize_nearest(&m, 10, 12);
    assert_eq!(n.data[3 * 12 + 5], m.data[6 + 2]);
}
