//! LIME and Score-CAM: truthfulness on a synthetic model whose logit is a known linear function
//! of segment means, reproducibility, the device-side samplers against their CPU twins and
//! independent references, the batching proof with the GPU counters, and the CLI on bad input.

mod common;
use common::*;
use netlens::backend::{segment_kept, Fill, MaskSource};
use netlens::methods::lime::{segment, Lime, Segmentation, Surrogate};
use netlens::methods::occlusion::MaskValue;
use netlens::methods::scorecam::ScoreCam;
use netlens::methods::Score;
use netlens::model::import::import_bytes;
use netlens::{Backend, HostTensor, Model};

/// `[3, 16, 16]` → 4×4 average pools → Flatten (48) → Gemm to 2 classes. With the 4×4 grid the
/// logit is exactly `b + Σ_c Σ_k W[c·16 + k] mean_ck`, so with off segments filled by `fill_c`,
/// segment `k`'s true effect is `t_k = Σ_c W[c·16 + k] (mean_ck - fill_c)`.
fn pooled_linear() -> (Model, Vec<f32>) {
    let mut b = OnnxBuilder::new(&[3, 16, 16]);
    b.node(
        "AveragePool",
        &["input"],
        &["p"],
        vec![a_ints("kernel_shape", &[4, 4]), a_ints("strides", &[4, 4])],
    );
    b.node("Flatten", &["p"], &["f"], vec![]);
    let w = random(&[2, 48], 21).data;
    let wn = b.init("w", &[2, 48], w.clone());
    let bias = b.init("b", &[2], vec![0.3, -0.2]);
    b.node("Gemm", &["f", &wn, &bias], &["y"], vec![a_int("transB", 1)]);
    (
        import_bytes(&b.build("y"), "pooled_linear").expect("import"),
        w,
    )
}

/// True per-segment effects of class 0 on `x` with the per-channel image mean as fill.
fn true_effects(x: &HostTensor, w: &[f32]) -> Vec<f64> {
    let hw = 256;
    let fill: Vec<f64> = (0..3)
        .map(|c| {
            x.data[c * hw..(c + 1) * hw]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / hw as f64
        })
        .collect();
    (0..16)
        .map(|k| {
            let (gy, gx) = (k / 4, k % 4);
            (0..3)
                .map(|c| {
                    let mut mean = 0.0;
                    for y in 0..4 {
                        for xx in 0..4 {
                            mean += x.data[c * hw + (gy * 4 + y) * 16 + gx * 4 + xx] as f64;
                        }
                    }
                    w[c * 16 + k] as f64 * (mean / 16.0 - fill[c])
                })
                .sum()
        })
        .collect()
}

fn ranking(v: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx
}

fn grid_lime(surrogate: Surrogate) -> Lime {
    Lime {
        num_features: 16,
        segmentation: Segmentation::Grid,
        surrogate,
        mini_batch: Some(128),
        seed: 7,
        top_k: 10,
        ..Lime::default()
    }
}

#[test]
fn lime_recovers_the_segments_of_a_linear_model() {
    let (m, w) = pooled_linear();
    let x = random(&[1, 3, 16, 16], 5);
    let truth = true_effects(&x, &w);
    let maps = grid_lime(Surrogate::Linear)
        .attribute(gpu(), &m, &x, &[0])
        .expect("lime");
    let got: Vec<f64> = maps[0]
        .feature_importance
        .iter()
        .map(|&v| v as f64)
        .collect();
    let (want, have) = (ranking(&truth), ranking(&got));
    println!(
        "true effects {truth:.4?}\nLIME         {got:.4?}\nR² {:.6}",
        maps[0].r2
    );
    assert_eq!(have[..10], want[..10], "top-10 segments");
    assert_eq!(maps[0].top_segments, want[..10]);
    assert!(maps[0].r2 > 0.95, "R² {}", maps[0].r2);
    // The ridge shrinks a little; the effects themselves are recovered closely.
    let scale = truth.iter().fold(0f64, |a, v| a.max(v.abs()));
    for (a, b) in got.iter().zip(&truth) {
        assert!((a - b).abs() < 0.02 * scale, "{a} vs {b}");
    }
    // Every pixel of the score map carries its grid cell's importance.
    assert_eq!(maps[0].score_map.shape, vec![16, 16]);
    assert_eq!(
        maps[0].score_map.data[5 * 16 + 9],
        maps[0].feature_importance[6]
    );

    // The tree surrogate finds the segment with the largest effect first.
    let tree = grid_lime(Surrogate::Tree)
        .attribute(gpu(), &m, &x, &[0])
        .expect("lime tree");
    let by_size = ranking(&truth.iter().map(|v| v.abs()).collect::<Vec<_>>());
    println!("tree R² {:.6}, top {:?}", tree[0].r2, tree[0].top_segments);
    assert_eq!(tree[0].top_segments[0], by_size[0]);
    assert!(tree[0].r2 > 0.95);
}

#[test]
fn lime_is_reproducible_and_the_samplers_agree_bit_for_bit() {
    let (m, _) = pooled_linear();
    let x = random(&[1, 3, 16, 16], 9);
    let lime = Lime {
        num_samples: 300,
        ..grid_lime(Surrogate::Linear)
    };
    let a = lime.attribute(gpu(), &m, &x, &[0, 1]).expect("first");
    let b = lime.attribute(gpu(), &m, &x, &[0, 1]).expect("second");
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(a.feature_importance, b.feature_importance);
        assert_eq!(a.score_map, b.score_map);
        assert_eq!(a.r2.to_bits(), b.r2.to_bits());
    }
    let other_seed = Lime {
        seed: 8,
        ..lime.clone()
    }
    .attribute(gpu(), &m, &x, &[0])
    .expect("seed 8");
    assert_ne!(other_seed[0].feature_importance, a[0].feature_importance);

    // The perturbed batches: GPU and CPU bit-identical, for chunks at any offset, and each
    // pixel is the image or the fill exactly as the host's hash says.
    let labels = segment::grid(16, 16, 16).unwrap();
    let fill = [0.25f32, -0.5, 1.5];
    let c = cpu();
    let g = gpu();
    let (ci, cl) = (c.upload(&x).unwrap(), c.upload(&labels.tensor()).unwrap());
    let (gi, gl) = (g.upload(&x).unwrap(), g.upload(&labels.tensor()).unwrap());
    for (first, count) in [(0usize, 5usize), (37, 11), (4000, 3)] {
        fn segments<T>(labels: &T, first: usize, count: usize) -> MaskSource<'_, T> {
            MaskSource::Segments {
                labels,
                seed: 7,
                first,
                count,
            }
        }
        let fills = Fill::Constant(&fill);
        let want = c
            .read(
                &c.perturb(&ci, &segments(&cl, first, count), &fills)
                    .unwrap(),
            )
            .unwrap();
        let got = g
            .read(
                &g.perturb(&gi, &segments(&gl, first, count), &fills)
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(got.shape, vec![count, 3, 16, 16]);
        assert_eq!(got, want, "samples {first}..{}", first + count);
        for i in 0..count {
            let s = (first + i) as u32;
            for (ch, &f) in fill.iter().enumerate() {
                for p in 0..256 {
                    let at = ch * 256 + p;
                    let kept = segment_kept(7, s, labels.labels[p]);
                    let expect = if kept { x.data[at] } else { f };
                    assert_eq!(want.sample(i)[at], expect);
                }
            }
        }
    }
    let all_on = MaskSource::Segments {
        labels: &cl,
        seed: 99,
        first: 0,
        count: 1,
    };
    let all_on = c
        .read(&c.perturb(&ci, &all_on, &Fill::Constant(&fill)).unwrap())
        .unwrap();
    assert_eq!(all_on.data, x.data, "sample 0 is the unperturbed image");
    // Roughly half the segments are on.
    let on = (1..1001u32)
        .flat_map(|s| (0..16u32).map(move |k| segment_kept(3, s, k)))
        .filter(|&b| b)
        .count();
    assert!((7200..8800).contains(&on), "{on} of 16000 on");
}

/// 2048 samples at mini-batch 128: 16 chunks, each one submission (the masking kernel is
/// deferred into its forward), and one read-back for all logits.
#[test]
fn gpu_lime_batches_its_samples() {
    let g = private_gpu();
    let (m, _) = pooled_linear();
    let x = random(&[1, 3, 16, 16], 5);
    let before = g.stats();
    let maps = grid_lime(Surrogate::Linear)
        .attribute(&g, &m, &x, &[0, 1])
        .expect("lime");
    let after = g.stats();
    assert_eq!(maps.len(), 2);
    assert_eq!(
        after.readbacks - before.readbacks,
        1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        after.submissions - before.submissions - 1,
        16,
        "forward submissions: {before:?} -> {after:?}"
    );
    // Image, label map, the model's two weights, and a few bytes of fill values per chunk:
    // nothing per sample.
    assert!(
        after.uploads - before.uploads <= 4 + 16,
        "uploads: {before:?} -> {after:?}"
    );
    println!("LIME 2048 at 128: {before:?} -> {after:?}");
}

/// `[3, 12, 12]` → Conv 3→6, 3×3, stride 2 (→ 6×6) → Relu → GlobalAveragePool → Gemm to 4.
fn small_cnn() -> Model {
    let mut b = OnnxBuilder::new(&[3, 12, 12]);
    let w = b.weight("w", &[6, 3, 3, 3]);
    let bias = b.weight("b", &[6]);
    b.node(
        "Conv",
        &["input", &w, &bias],
        &["c"],
        vec![a_ints("pads", &[1, 1, 1, 1]), a_ints("strides", &[2, 2])],
    );
    b.node("Relu", &["c"], &["r"], vec![]);
    b.node("GlobalAveragePool", &["r"], &["g"], vec![]);
    b.node("Flatten", &["g"], &["f"], vec![]);
    let gw = b.weight("gw", &[4, 6]);
    let gb = b.weight("gb", &[4]);
    b.node("Gemm", &["f", &gw, &gb], &["y"], vec![a_int("transB", 1)]);
    import_bytes(&b.build("y"), "small_cnn").expect("import")
}

/// pytorch-grad-cam's ScoreCAM written out on the host: aligned-corners bilinear upsampling,
/// min-max over the upsampled map, one CPU forward per channel, softmax of the logits, ReLU of
/// the weighted sum.
fn reference_scorecam(m: &Model, x: &HostTensor, class: usize) -> (Vec<f32>, Vec<f32>) {
    let c = cpu();
    let layer = m.layer("r").unwrap();
    let f = c.forward(m, &c.upload(x).unwrap(), &[layer]).unwrap();
    let acts = c.read(f.tap(layer).unwrap()).unwrap();
    let (k, h, w) = (acts.shape[1], acts.shape[2], acts.shape[3]);
    let (hh, ww) = (x.shape[2], x.shape[3]);
    let mut scores = Vec::new();
    for ch in 0..k {
        let map = &acts.data[ch * h * w..(ch + 1) * h * w];
        let mut up = vec![0f64; hh * ww];
        for y in 0..hh {
            let sy = y as f64 * (h - 1) as f64 / (hh - 1) as f64;
            let (y0, ly) = (sy.floor() as usize, sy - sy.floor());
            let y1 = (y0 + 1).min(h - 1);
            for xx in 0..ww {
                let sx = xx as f64 * (w - 1) as f64 / (ww - 1) as f64;
                let (x0, lx) = (sx.floor() as usize, sx - sx.floor());
                let x1 = (x0 + 1).min(w - 1);
                let v = |a: usize, b: usize| map[a * w + b] as f64;
                up[y * ww + xx] = (1.0 - ly) * ((1.0 - lx) * v(y0, x0) + lx * v(y0, x1))
                    + ly * ((1.0 - lx) * v(y1, x0) + lx * v(y1, x1));
            }
        }
        let lo = up.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = up.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut masked = x.clone();
        for (i, v) in masked.data.iter_mut().enumerate() {
            *v = (*v as f64 * (up[i % (hh * ww)] - lo) / (hi - lo + 1e-8)) as f32;
        }
        let out = run_backend(&c, m, &masked);
        scores.push(out.data[class] as f64);
    }
    let mx = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
    let z: f64 = e.iter().sum();
    let weights: Vec<f32> = e.iter().map(|v| (v / z) as f32).collect();
    let cam = (0..h * w)
        .map(|p| {
            (0..k)
                .map(|ch| weights[ch] as f64 * acts.data[ch * h * w + p] as f64)
                .sum::<f64>()
                .max(0.0) as f32
        })
        .collect();
    (weights, cam)
}

#[test]
fn scorecam_matches_the_reference_on_both_backends() {
    let m = small_cnn();
    let x = random(&[1, 3, 12, 12], 3);
    let (want_w, want_cam) = reference_scorecam(&m, &x, 2);
    let sc = ScoreCam {
        mini_batch: Some(4),
        ..Default::default()
    };
    let g = sc.attribute(gpu(), &m, &x, &[2]).expect("gpu");
    let c = sc.attribute(&cpu(), &m, &x, &[2]).expect("cpu");
    for (name, r) in [("GPU", &g[0]), ("CPU", &c[0])] {
        let ew = rel_err(&r.weights, &want_w, 1e-6);
        let ec = rel_err(&r.cam.lowres.data, &want_cam, 1e-6);
        println!(
            "{name}: weights {ew:.2e}, map {ec:.2e}; layer {}",
            r.cam.layer
        );
        assert!(ew <= 1e-4 && ec <= 1e-4, "{name}: {ew} {ec}");
        assert_eq!(r.cam.layer, "r");
        assert_eq!(r.cam.upsampled.shape, vec![12, 12]);
    }
    assert!(
        want_cam.iter().any(|&v| v > 0.0),
        "a zero map proves nothing"
    );

    // The masking op itself, GPU against CPU on a non-square, non-multiple upsampling.
    let img = random(&[1, 2, 9, 13], 4);
    let maps = random(&[1, 5, 3, 4], 6);
    let cb = cpu();
    let gb = gpu();
    let (cm, gm) = (cb.upload(&maps).unwrap(), gb.upload(&maps).unwrap());
    fn source<T>(maps: &T) -> MaskSource<'_, T> {
        MaskSource::Maps {
            maps,
            first: 1,
            count: 3,
        }
    }
    let want = cb
        .read(
            &cb.perturb(&cb.upload(&img).unwrap(), &source(&cm), &Fill::Multiply)
                .unwrap(),
        )
        .unwrap();
    let got = gb
        .read(
            &gb.perturb(&gb.upload(&img).unwrap(), &source(&gm), &Fill::Multiply)
                .unwrap(),
        )
        .unwrap();
    assert_eq!(got.shape, vec![3, 2, 9, 13]);
    let e = rel_err(&got.data, &want.data, 1e-6);
    assert!(e <= 1e-4, "Score-CAM map masks GPU vs CPU {e}");
}

/// Score-CAM over 6 channels at mini-batch 4: one forward that taps the layer, two masked
/// forwards, one read-back.
#[test]
fn gpu_scorecam_batches_its_channels() {
    let g = private_gpu();
    let m = small_cnn();
    let x = random(&[1, 3, 12, 12], 3);
    let before = g.stats();
    ScoreCam {
        mini_batch: Some(4),
        score: Score::Probability,
        ..Default::default()
    }
    .attribute(&g, &m, &x, &[0, 3])
    .expect("scorecam");
    let after = g.stats();
    assert_eq!(after.readbacks - before.readbacks, 1);
    assert_eq!(
        after.submissions - before.submissions,
        1 + 2 + 1,
        "{before:?} -> {after:?}"
    );
}

#[test]
fn lime_refuses_bad_settings_in_the_library() {
    let (m, _) = pooled_linear();
    let x = random(&[1, 3, 16, 16], 5);
    let c = cpu();
    let err = |l: Lime| l.attribute(&c, &m, &x, &[0]).expect_err("refused");
    assert!(err(Lime {
        num_samples: 0,
        ..grid_lime(Surrogate::Linear)
    })
    .message
    .contains("sample"));
    assert!(err(Lime {
        num_features: 257,
        ..grid_lime(Surrogate::Linear)
    })
    .message
    .contains("257"));
    assert!(err(Lime {
        mini_batch: Some(0),
        ..grid_lime(Surrogate::Linear)
    })
    .message
    .contains("mini-batch"));
    assert!(err(Lime {
        mask_value: MaskValue::PerChannel(vec![0.0]),
        ..grid_lime(Surrogate::Linear)
    })
    .message
    .contains("channel"));
    let wrong = segment::grid(4, 8, 8).unwrap();
    assert!(err(Lime {
        segmentation: Segmentation::Labels(wrong),
        ..grid_lime(Surrogate::Linear)
    })
    .message
    .contains("8x8"));
}

// ---------------------------------------------------------------------------------------------
// CLI

const DIGITS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/models/tiny_digits.onnx"
);
const DIGIT_PNG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/digits/digit_3_idx0649.png"
);

#[test]
fn cli_lime_refuses_bad_input() {
    let out = scratch_in("lime", "bad");
    let o = out.to_str().unwrap();
    let base = [
        "lime",
        DIGITS,
        DIGIT_PNG,
        "--backend",
        "cpu",
        "-o",
        o,
        "--class",
        "3",
    ];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        netlens(&a)
    };
    assert_bad_input(&with(&["--num-samples", "0"]), "num-samples");
    assert_bad_input(
        &with(&["--num-features", "1000", "--segmentation", "grid"]),
        "only 256 pixels",
    );
    assert_bad_input(&with(&["--num-features", "1000"]), "only 256 pixels");
    let labels = scratch_in("lime", "labels_8x8.npy");
    netlens::input::write_npy(
        &labels,
        &[8, 8],
        &(0..64).map(|i| (i / 16) as f32).collect::<Vec<_>>(),
    )
    .unwrap();
    assert_bad_input(
        &with(&["--segmentation", labels.to_str().unwrap()]),
        "label map is 8x8",
    );
    assert_bad_input(
        &with(&["--segmentation", "/nonexistent/labels.npy"]),
        "label map",
    );
    assert_bad_input(&with(&["--surrogate", "forest"]), "surrogate");
    assert_bad_input(&with(&["--kernel-width", "0"]), "kernel width");
}

#[test]
fn cli_lime_and_scorecam_write_their_maps() {
    let dir = scratch_in("lime", "ok");
    let o = dir.to_str().unwrap();
    let labels = scratch_in("lime", "labels_16.npy");
    netlens::input::write_npy(
        &labels,
        &[16, 16],
        &(0..256)
            .map(|i| ((i / 16) / 4 * 4 + (i % 16) / 4) as f32)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let out = netlens(&[
        "lime",
        DIGITS,
        DIGIT_PNG,
        "--backend",
        "cpu",
        "-o",
        o,
        "--class",
        "3",
        "--num-samples",
        "200",
        "--segmentation",
        labels.to_str().unwrap(),
        "--surrogate",
        "linear",
        "--top-k",
        "3",
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary_lime_3.json")).unwrap())
            .unwrap();
    let r = &summary["results"][0];
    assert_eq!(r["segments"], 16);
    assert_eq!(r["top_segments"].as_array().unwrap().len(), 3);
    assert!(r["r2"].as_f64().unwrap().is_finite());
    for f in [
        "lime_3.png",
        "lime_3_top3.png",
        "lime_3.npy",
        "lime_3_importance.npy",
        "lime_features.npy",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let score_map = read_npy(dir.join("lime_3.npy").to_str().unwrap());
    assert_eq!(score_map.shape, vec![16, 16]);

    let out = netlens(&[
        "scorecam",
        DIGITS,
        DIGIT_PNG,
        "--backend",
        "cpu",
        "-o",
        o,
        "--class",
        "3",
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "scorecam_3.png",
        "scorecam_3.npy",
        "scorecam_3_lowres.npy",
        "scorecam_3_weights.npy",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let w = read_npy(dir.join("scorecam_3_weights.npy").to_str().unwrap());
    let sum: f32 = w.data.iter().sum();
    assert!((sum - 1.0).abs() < 1e-4, "weights sum to {sum}");
}
