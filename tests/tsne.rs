//! t-SNE: the GPU kernels against their CPU twins (affinities, gradient, step, KL), P split into
//! row blocks against one block, Barnes-Hut against the exact gradient at theta 0, the digits
//! acceptance runs (KL and 5-NN label agreement for exact-on-GPU and Barnes-Hut), a CI-sized
//! version of the README's N = 10000 run (6000 points, P in two row blocks), bad input, and the
//! CLI.

mod common;
use common::*;
use netlens::cpu::tsne as exact_cpu;
use netlens::gpu::{wgpu, GpuBackend, GpuOptions};
use netlens::methods::tsne::affinity::{dense_p, sparse_p};
use netlens::methods::tsne::{
    barnes_hut, descend, gaussian_clusters, initial_embedding, knn_label_agreement, prepare, tsne,
    Algorithm, Distance, Init, Tsne, TsneResult,
};
use netlens::progress::Silent;
use netlens::{ErrorKind, HostTensor};
use std::time::Instant;

/// Split P against one block: bit for bit, as the README says (the forces and KL carry their sums
/// from block to block in the order one block sums them, and every kernel runs the same code per
/// row). A relative error of 0 means every element is equal.
const SPLIT_TOL: f32 = 0.0;

/// max |a − b| / max |b|.
fn rel_max(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let m = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |e, (x, y)| e.max((x - y).abs())) / m
}

fn digits() -> (HostTensor, Vec<usize>) {
    let x = read_npy(&asset("ref/tsne_digits_X.npy"));
    let bytes = std::fs::read(asset("ref/tsne_digits_y.npy")).unwrap();
    let y: Vec<i64> = npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap();
    (x, y.into_iter().map(|v| v as usize).collect())
}

/// t-SNE on `gpu` when given, else on the CPU backend.
fn tsne_on_gpu_or_cpu(
    x: &HostTensor,
    opts: &Tsne,
    gpu: Option<&GpuBackend>,
) -> netlens::Result<TsneResult> {
    match gpu {
        Some(g) => tsne(x, opts, g, &Silent),
        None => tsne(x, opts, &cpu(), &Silent),
    }
}

fn spread_embedding(n: usize, dims: usize, seed: u64) -> HostTensor {
    let mut y = random(&[n, dims], seed);
    y.data.iter_mut().for_each(|v| *v *= 3.0);
    y
}

#[test]
fn gpu_affinities_match_cpu() {
    for distance in [Distance::Euclidean, Distance::Cosine] {
        let (x, _) = gaussian_clusters(200, 10, 4, 1);
        let (xp, scale) = prepare(&x, distance, true).unwrap();
        let p_gpu = gpu().tsne_affinities(&xp, scale, 30.0).unwrap();
        let p_cpu = dense_p(&xp.data, 200, 10, scale, 30.0);
        let err = rel_max(&p_gpu.data, &p_cpu);
        let sum: f64 = p_gpu.data.iter().map(|&v| v as f64).sum();
        eprintln!("{distance:?}: P GPU vs CPU rel err {err:.2e}, sum {sum:.6}");
        assert!(err < 1e-4, "{distance:?}: P differs by {err}");
        assert!((sum - 1.0).abs() < 1e-4, "P sums to {sum}");
    }
}

#[test]
fn gpu_gradient_step_and_kl_match_cpu() {
    let n = 200;
    let (x, _) = gaussian_clusters(n, 10, 4, 2);
    let (xp, scale) = prepare(&x, Distance::Euclidean, false).unwrap();
    let p = gpu().tsne_affinities(&xp, scale, 30.0).unwrap();
    for dims in [2, 3] {
        let y0 = spread_embedding(n, dims, 3 + dims as u64);
        let mut s = Tsne {
            dims,
            iterations: 1,
            ..Tsne::default()
        }
        .schedule(n);
        s.kl_every = 1;
        let (res, grad) = gpu()
            .tsne_exact_with_gradient(&xp, scale, 30.0, &y0, &s, &Silent)
            .unwrap();
        let want = exact_cpu::gradient(&p.data, &y0.data, n, dims, s.exaggeration);
        let err = rel_max(&grad.data, &want);
        eprintln!("dims {dims}: gradient GPU vs CPU rel err {err:.2e}");
        assert!(err < 1e-4, "dims {dims}: gradient differs by {err}");

        let mut y1 = y0.data.clone();
        let (mut u, mut g) = (vec![0f32; n * dims], vec![1f32; n * dims]);
        descend(&mut y1, &mut u, &mut g, &want, s.learn_rate, s.momentum.0);
        let step_gpu: Vec<f32> = res
            .embedding
            .data
            .iter()
            .zip(&y0.data)
            .map(|(a, b)| a - b)
            .collect();
        let step_cpu: Vec<f32> = y1.iter().zip(&y0.data).map(|(a, b)| a - b).collect();
        let err = rel_max(&step_gpu, &step_cpu);
        eprintln!("dims {dims}: step GPU vs CPU rel err {err:.2e}");
        assert!(err < 1e-3, "dims {dims}: step differs by {err}");

        let kl_cpu = exact_cpu::kl_dense(&p.data, &res.embedding.data, n, dims);
        eprintln!("dims {dims}: KL GPU {} CPU {kl_cpu}", res.kl);
        assert!((res.kl - kl_cpu).abs() < 1e-4 * kl_cpu.abs().max(1.0));
    }
}

/// P split into row blocks (a binding limit of 130 rows of 400 points: blocks of 130, 130, 130 and
/// 10 rows, off the 16- and 256-point tiles) gives the P, gradient, embedding and KL of one block,
/// with the same submissions and read-backs.
#[test]
fn gpu_split_p_matches_one_block() {
    let (n, rows) = (400usize, 130usize);
    let split = GpuBackend::new(&GpuOptions {
        max_binding_bytes: Some((rows * n * 4) as u64),
    })
    .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"));
    let whole = private_gpu();
    let blocks = n.div_ceil(rows);
    let (x, _) = gaussian_clusters(n, 10, 4, 7);
    let (xp, scale) = prepare(&x, Distance::Euclidean, false).unwrap();
    let p_whole = whole.tsne_affinities(&xp, scale, 30.0).unwrap();
    let p_split = split.tsne_affinities(&xp, scale, 30.0).unwrap();
    let err = rel_max(&p_split.data, &p_whole.data);
    eprintln!("P split into {blocks} blocks vs one block: rel err {err:.2e}");
    assert!(err <= SPLIT_TOL, "P differs by {err}");
    for dims in [2, 3] {
        let y0 = initial_embedding(&xp, dims, Init::Pca, 0);
        let s = Tsne {
            dims,
            iterations: 300,
            ..Tsne::default()
        }
        .schedule(n);
        let run = |g: &GpuBackend| {
            g.reset_stats();
            let r = g
                .tsne_exact_with_gradient(&xp, scale, 30.0, &y0, &s, &Silent)
                .unwrap();
            (r.0, r.1, g.stats())
        };
        let (a, ga, sa) = run(&whole);
        let (b, gb, sb) = run(&split);
        let e_emb = rel_max(&b.embedding.data, &a.embedding.data);
        let e_grad = rel_max(&gb.data, &ga.data);
        let e_kl = a
            .kl_history
            .iter()
            .zip(&b.kl_history)
            .map(|(x, y)| ((x.1 - y.1) / x.1).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "dims {dims}, {} iterations: split vs one block rel err embedding {e_emb:.2e}, \
             gradient {e_grad:.2e}, KL history {e_kl:.2e} (KL {} vs {})",
            s.iterations, b.kl, a.kl
        );
        assert!(
            e_emb <= SPLIT_TOL,
            "dims {dims}: embedding differs by {e_emb}"
        );
        assert!(
            e_grad <= SPLIT_TOL,
            "dims {dims}: gradient differs by {e_grad}"
        );
        assert!(
            e_kl <= SPLIT_TOL,
            "dims {dims}: KL history differs by {e_kl}"
        );
        assert_eq!(a.kl_history.len(), b.kl_history.len());
        assert_eq!(
            (sb.submissions, sb.readbacks),
            (sa.submissions, sa.readbacks),
            "splitting P must not add submissions or read-backs"
        );
        // Per block: distances and perplexity search, forces every iteration and KL every
        // chunk; per pair of blocks a symmetrisation.
        let chunks = s.iterations.div_ceil(s.kl_every);
        let per_blocks =
            |k: usize| (2 * k + k * (k + 1) / 2 + s.iterations * (k + 1) + chunks * k) as u64;
        assert_eq!(sa.dispatches, per_blocks(1));
        assert_eq!(
            sb.dispatches,
            per_blocks(blocks),
            "P must be split into {blocks} blocks"
        );
    }
}

/// Sizes the device cannot hold are bad input (exit 2 in the CLI), not panics or aborts: one row
/// of P over the binding limit, and on a software GPU or the CPU a P larger than host memory
/// (refused before it is allocated, since Linux would overcommit it and kill the process on first
/// touch).
#[test]
fn impossible_sizes_are_bad_input() {
    let tiny = GpuBackend::new(&GpuOptions {
        max_binding_bytes: Some(1024),
    })
    .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"));
    let (x, _) = gaussian_clusters(300, 4, 3, 8);
    let opts = Tsne {
        iterations: 1,
        ..Tsne::default()
    };
    let e = tsne(&x, &opts, &tiny, &Silent).unwrap_err();
    eprintln!("{}", e.message);
    assert_eq!(e.kind, ErrorKind::BadInput, "{}", e.message);
    assert!(e.message.contains("barneshut"), "{}", e.message);
    if gpu().adapter_info().device_type == wgpu::DeviceType::Cpu {
        // 10⁶ points: P is 4 TB.
        let x = HostTensor::zeros(vec![1_000_000, 1]);
        let e = gpu().tsne_affinities(&x, 1.0, 30.0).unwrap_err();
        eprintln!("{}", e.message);
        assert_eq!(e.kind, ErrorKind::BadInput, "{}", e.message);
        assert!(e.message.contains("host memory"), "{}", e.message);
    }
    if cfg!(target_os = "linux") {
        let x = HostTensor::zeros(vec![1_000_000, 1]);
        let y0 = HostTensor::zeros(vec![1_000_000, 2]);
        let s = opts.schedule(1_000_000);
        let e = exact_cpu::run(&x, 1.0, 30.0, &y0, &s, &Silent).unwrap_err();
        eprintln!("{}", e.message);
        assert_eq!(e.kind, ErrorKind::BadInput, "{}", e.message);
        assert!(e.message.contains("memory available"), "{}", e.message);
    }
}

#[test]
fn barnes_hut_at_theta_zero_is_exact() {
    // Perplexity 33 on 100 points keeps every neighbour, so sparse P is dense P.
    let n = 100;
    let (x, _) = gaussian_clusters(n, 5, 3, 4);
    let (xp, scale) = prepare(&x, Distance::Euclidean, false).unwrap();
    let sp = sparse_p(&xp.data, n, 5, scale, 33.0);
    let dp = dense_p(&xp.data, n, 5, scale, 33.0);
    let mut dense_from_sparse = vec![0f32; n * n];
    for i in 0..n {
        for (j, v) in sp.row(i) {
            dense_from_sparse[i * n + j] = v;
        }
    }
    assert!(rel_max(&dense_from_sparse, &dp) < 1e-5);
    for dims in [2, 3] {
        let y = spread_embedding(n, dims, 9);
        let (bh, _) = barnes_hut::gradient(&sp, &y.data, dims, 12.0, 0.0);
        let exact = exact_cpu::gradient(&dp, &y.data, n, dims, 12.0);
        let err = rel_max(&bh, &exact);
        assert!(
            err < 1e-4,
            "dims {dims}: theta 0 differs from exact by {err}"
        );
        let (approx, _) = barnes_hut::gradient(&sp, &y.data, dims, 12.0, 0.5);
        let err = rel_max(&approx, &exact);
        eprintln!("dims {dims}: theta 0.5 gradient rel err {err:.2e}");
        assert!(
            err < 0.1,
            "dims {dims}: theta 0.5 differs from exact by {err}"
        );
    }
}

fn check_digits(algorithm: Algorithm, on_gpu: bool) {
    let (x, labels) = digits();
    let opts = Tsne {
        algorithm,
        ..Tsne::default()
    };
    let t = Instant::now();
    let r = tsne_on_gpu_or_cpu(&x, &opts, on_gpu.then(gpu)).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (frac, vote) = knn_label_agreement(&r.embedding, &labels, 5);
    eprintln!(
        "digits {algorithm:?} (gpu {on_gpu}): KL {:.4}, 5-NN same-label fraction {frac:.4}, \
         5-NN vote accuracy {vote:.4}, {secs:.1} s; history {:?}",
        r.kl, r.kl_history
    );
    assert_eq!(r.embedding.shape, vec![1797, 2]);
    // scikit-learn 1.9.1 reaches 0.754 on these digits (README table): the exact run (measured
    // 0.686) may not do worse. The Barnes-Hut run (measured 0.767, a sparse-P KL like
    // scikit-learn's; openTSNE 0.752) gets 0.78: within 4 % of the peer, the spread between
    // Barnes-Hut implementations' trees and neighbour searches.
    let kl_max = match algorithm {
        Algorithm::Exact => 0.754,
        Algorithm::BarnesHut => 0.78,
    };
    assert!(r.kl <= kl_max, "KL {} > {kl_max}", r.kl);
    assert!(frac >= 0.95, "5-NN same-label fraction {frac}");
}

#[test]
fn digits_exact_gpu() {
    check_digits(Algorithm::Exact, true);
}

#[test]
fn digits_barnes_hut_cpu() {
    check_digits(Algorithm::BarnesHut, false);
}

/// CI-sized version of the README's N = 10000 run: 6000 points of 10 Gaussian clusters in 50-D
/// (the bench's generator, seed 0), exact t-SNE on the GPU with the default 128 MiB binding, which
/// holds 5792 rows of P, so P is two row blocks (asserted through the dispatch count); 300
/// iterations (the 250 exaggerated ones and 50 more). Bounds: see the constants.
#[test]
fn clusters_6000_exact_gpu_two_blocks() {
    // Measured here (lavapipe, 2-core machine at load ~7): KL 2.714 after 300 iterations (2.946
    // at the end of the 250 exaggerated ones, 3.797 at iteration 50), 5-NN same-label fraction
    // 1.000, 224 s wall. KL_MAX is 5 % above the measured value and below the 2.946 of iteration
    // 250, so the 50 unexaggerated iterations must do their work; a wrong force in either block
    // leaves the KL far higher. The clusters are separated by far more than their spread, so a
    // correct embedding puts every point among its own cluster: the fraction bound is 0.99 (60 of
    // 6000 points astray would already mean a broken gradient).
    const KL_MAX: f32 = 2.85;
    const FRACTION_MIN: f64 = 0.99;
    let n = 6000;
    let (x, labels) = gaussian_clusters(n, 50, 10, 0);
    let g = private_gpu();
    let opts = Tsne {
        iterations: 300,
        ..Tsne::default()
    };
    let s = opts.schedule(n);
    let t = Instant::now();
    let r = tsne(&x, &opts, &g, &Silent).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (frac, vote) = knn_label_agreement(&r.embedding, &labels, 5);
    let stats = g.stats();
    eprintln!(
        "6000 clusters exact GPU: {secs:.1} s, KL {:.4}, 5-NN same-label fraction {frac:.4}, \
         vote accuracy {vote:.4}; GPU {stats:?}; history {:?}",
        r.kl, r.kl_history
    );
    let chunks = s.iterations.div_ceil(s.kl_every);
    let per_blocks =
        |k: usize| (2 * k + k * (k + 1) / 2 + s.iterations * (k + 1) + chunks * k) as u64;
    assert_eq!(stats.dispatches, per_blocks(2), "P must be two row blocks");
    assert!(r.kl <= KL_MAX, "KL {}", r.kl);
    assert!(frac >= FRACTION_MIN, "5-NN same-label fraction {frac}");
}

#[test]
fn bad_input_is_rejected() {
    let (x, _) = gaussian_clusters(20, 3, 2, 5);
    let err = |x: &HostTensor, o: Tsne| tsne(x, &o, &cpu(), &Silent).unwrap_err();
    let e = err(&x, Tsne::default());
    assert_eq!(e.kind, ErrorKind::BadInput);
    assert!(e.message.contains("perplexity"), "{}", e.message);
    let small = Tsne {
        perplexity: 5.0,
        ..Tsne::default()
    };
    let cube = HostTensor::zeros(vec![4, 5, 1]);
    assert_eq!(err(&cube, small.clone()).kind, ErrorKind::BadInput);
    let mut nan = x.clone();
    nan.data[7] = f32::NAN;
    let e = err(&nan, small.clone());
    assert!(e.message.contains("row 2"), "{}", e.message);
    let four = Tsne {
        dims: 4,
        ..small.clone()
    };
    assert_eq!(err(&x, four).kind, ErrorKind::BadInput);
    let zeros = HostTensor::zeros(vec![20, 3]);
    let cos = Tsne {
        distance: Distance::Cosine,
        ..small
    };
    assert_eq!(err(&zeros, cos).kind, ErrorKind::BadInput);
}

#[test]
fn cli_writes_outputs_and_exits_2_on_bad_perplexity() {
    let dir = std::env::temp_dir().join(format!("netlens_tsne_cli_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (x, labels) = gaussian_clusters(150, 8, 3, 6);
    let xf = dir.join("x.npy");
    netlens::input::write_npy(&xf, &x.shape, &x.data).unwrap();
    let yf = dir.join("y.txt");
    let text: Vec<String> = labels.iter().map(|l| format!("c{l}")).collect();
    std::fs::write(&yf, text.join("\n")).unwrap();
    let out = dir.join("out");
    let bin = env!("CARGO_BIN_EXE_netlens");
    let run = std::process::Command::new(bin)
        .args(["tsne", "--features"])
        .arg(&xf)
        .arg("--labels")
        .arg(&yf)
        .args([
            "--algorithm",
            "barneshut",
            "--iterations",
            "300",
            "--perplexity",
            "20",
            "-q",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let emb = read_npy(out.join("embedding.npy").to_str().unwrap());
    assert_eq!(emb.shape, vec![150, 2]);
    let png = image::open(out.join("tsne.png")).unwrap();
    assert!(png.width() >= 400);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["kl"].as_f64().unwrap() > 0.0);

    let bad = std::process::Command::new(bin)
        .args(["tsne", "--features"])
        .arg(&xf)
        .args(["--perplexity", "150", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("perplexity"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue acceptance: t-SNE of tiny_digits' global-average-pool features over all 1797 digits
/// shows the 10 classes as clusters (5-NN vote accuracy in 2-D ≥ 0.95). The data-set pass runs on
/// the CPU backend here (lavapipe forwards ~20 digits/s); the GPU pass is tested in global.rs.
#[test]
fn tiny_digits_gap_features_cluster_by_class() {
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tsne_tiny_digits");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_netlens"))
        .args([
            "tsne",
            &asset("models/tiny_digits.onnx"),
            &asset("digits_all"),
            "--algorithm",
            "barneshut",
            "--backend",
            "cpu",
            "--thumbnails-from-dataset",
            "-o",
            out.to_str().unwrap(),
        ])
        .env("NODEVICE_SELECT", "1")
        .output()
        .expect("netlens runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["points"], 1797);
    assert_eq!(
        summary["features"], 48,
        "the GAP layer of tiny_digits has 48 channels"
    );
    let vote = summary["knn"]["majority_vote_accuracy"].as_f64().unwrap();
    println!(
        "tiny_digits GAP features: KL {}, 5-NN vote {vote}",
        summary["kl"]
    );
    assert!(vote >= 0.95, "5-NN accuracy {vote}");
    assert!(out.join("tsne.png").exists() && out.join("embedding.npy").exists());
}
