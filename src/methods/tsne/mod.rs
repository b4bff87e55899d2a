//! t-SNE (van der Maaten & Hinton 2008; MATLAB `tsne`, scikit-learn `TSNE`, openTSNE) of a
//! feature matrix `[N, D]`.
//!
//! Two algorithms share the options, the initialisation and the optimiser schedule:
//! - `Exact`: dense P and O(N²) forces per iteration, through the backend's [`TsneExact`]. On the
//!   GPU (`crate::gpu::tsne`) the perplexity search, the forces and the update all run on the
//!   device; on the CPU (`crate::cpu::tsne`) the same maths runs with rayon and is the oracle for
//!   the GPU kernels.
//! - `BarnesHut`: sparse P over the 3·perplexity nearest neighbours and a quadtree/octree for the
//!   repulsion, on the CPU ([`barnes_hut`]).
//!
//! Conventions (documented because t-SNE codes differ by constant factors):
//! - the gradient is taken without the constant 4 (openTSNE's convention), so the automatic
//!   learning rate `max(N / 12, 50)` equals scikit-learn's `max(N / 12 / 4, 50 / 4)` with its 4;
//! - early exaggeration 12 and momentum 0.5 for the first 250 iterations, then 1 and 0.8; the
//!   update and the gains restart at the phase change, as in scikit-learn;
//! - gains grow by 0.2 when the gradient changes sign and shrink by ×0.8 otherwise (min 0.01);
//! - initialisation is PCA scaled to a standard deviation of 1e-4 on the first axis (the default
//!   of scikit-learn ≥ 1.2 and openTSNE), or N(0, 1e-4²) from the seed;
//! - for `Distance::Cosine` the affinities use 1 − cos (not squared), as scikit-learn does for
//!   non-Euclidean metrics; for Euclidean the squared distance.

pub mod barnes_hut;

pub use crate::backend::tsne::{affinity, descend, Schedule, TsneExact, TsneResult};
use crate::backend::{noise, Backend, HostTensor};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Which optimiser computes the forces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Dense O(N²) forces: on the GPU when the engine is the GPU, else on the CPU.
    #[default]
    Exact,
    /// Barnes-Hut on the CPU (sparse kNN affinities, quadtree/octree with `theta`).
    BarnesHut,
}

impl Algorithm {
    /// `exact` or `barneshut` (also `barnes-hut`, `bh`).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "exact" => Ok(Algorithm::Exact),
            "barneshut" | "barnes-hut" | "bh" => Ok(Algorithm::BarnesHut),
            other => Err(Error::bad_input(format!(
                "unknown t-SNE algorithm '{other}': use exact or barneshut"
            ))),
        }
    }
}

/// The input-space dissimilarity the affinities are built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Distance {
    /// Squared Euclidean distance.
    #[default]
    Euclidean,
    /// 1 − cosine similarity.
    Cosine,
}

impl Distance {
    /// `euclidean` or `cosine`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "euclidean" => Ok(Distance::Euclidean),
            "cosine" => Ok(Distance::Cosine),
            other => Err(Error::bad_input(format!(
                "unknown t-SNE distance '{other}': use euclidean or cosine"
            ))),
        }
    }
}

/// How the embedding starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Init {
    /// The first principal components, scaled to std 1e-4 on the first.
    #[default]
    Pca,
    /// N(0, 1e-4²) from the seed.
    Random,
}

/// t-SNE options, with MATLAB's and scikit-learn's defaults.
#[derive(Clone, Debug)]
pub struct Tsne {
    /// Effective number of neighbours (30). Must be below N.
    pub perplexity: f32,
    /// Embedding dimensions: 2 or 3.
    pub dims: usize,
    /// The input-space dissimilarity (MATLAB `Distance`, scikit-learn `metric`; default Euclidean).
    pub distance: Distance,
    /// Centre each feature and scale it to unit variance before distances.
    pub standardize: bool,
    /// Multiplies P during the early phase (12).
    pub exaggeration: f32,
    /// Length of the early phase (250 iterations).
    pub exaggeration_iters: usize,
    /// `None`: `max(N / 12, 50)`.
    pub learn_rate: Option<f32>,
    /// Total iterations, early phase included (1000).
    pub iterations: usize,
    /// Momentum of the early phase, then of the rest.
    pub momentum: (f32, f32),
    /// Seeds the random initialisation and the PCA's subspace-iteration start.
    pub seed: u64,
    /// How the embedding starts (default PCA).
    pub init: Init,
    /// Exact or Barnes-Hut forces (default exact).
    pub algorithm: Algorithm,
    /// Barnes-Hut accuracy (0.5); 0 makes it exact (slowly).
    pub theta: f32,
    /// KL divergence is computed (and progress reported) every this many iterations (50).
    pub kl_every: usize,
}

impl Default for Tsne {
    fn default() -> Self {
        Tsne {
            perplexity: 30.0,
            dims: 2,
            distance: Distance::Euclidean,
            standardize: false,
            exaggeration: 12.0,
            exaggeration_iters: 250,
            learn_rate: None,
            iterations: 1000,
            momentum: (0.5, 0.8),
            seed: 0,
            init: Init::Pca,
            algorithm: Algorithm::Exact,
            theta: 0.5,
            kl_every: 50,
        }
    }
}

impl Tsne {
    /// Checks the options against a feature matrix of `n` rows.
    pub fn validate(&self, n: usize) -> Result<()> {
        if !(self.dims == 2 || self.dims == 3) {
            return Err(Error::bad_input(format!(
                "t-SNE embeds in 2 or 3 dimensions, not {}",
                self.dims
            )));
        }
        if !(self.perplexity.is_finite() && self.perplexity > 0.0) {
            return Err(Error::bad_input(format!(
                "perplexity must be positive, got {}",
                self.perplexity
            )));
        }
        if self.perplexity >= n as f32 {
            return Err(Error::bad_input(format!(
                "perplexity {} must be below the number of points ({n}); use a smaller --perplexity",
                self.perplexity
            )));
        }
        if !(self.exaggeration.is_finite() && self.exaggeration > 0.0) {
            return Err(Error::bad_input("exaggeration must be positive"));
        }
        if let Some(lr) = self.learn_rate {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(Error::bad_input("learning rate must be positive"));
            }
        }
        if self.iterations == 0 {
            return Err(Error::bad_input("t-SNE needs at least one iteration"));
        }
        if !(0.0..=1.0).contains(&self.momentum.0) || !(0.0..=1.0).contains(&self.momentum.1) {
            return Err(Error::bad_input("momentum must be in [0, 1]"));
        }
        if !(self.theta.is_finite() && self.theta >= 0.0) {
            return Err(Error::bad_input("theta must be non-negative"));
        }
        Ok(())
    }

    /// The optimiser schedule for `n` points.
    pub fn schedule(&self, n: usize) -> Schedule {
        Schedule {
            exaggeration: self.exaggeration,
            exaggeration_iters: self.exaggeration_iters,
            learn_rate: self
                .learn_rate
                .unwrap_or_else(|| (n as f32 / 12.0).max(50.0)),
            momentum: self.momentum,
            iterations: self.iterations,
            kl_every: self.kl_every.max(1),
        }
    }
}

/// Checks that `x` is a finite `[N, D]` matrix with N ≥ 2 and D ≥ 1; returns `(N, D)`.
pub fn check_features(x: &HostTensor) -> Result<(usize, usize)> {
    if x.shape.len() != 2 {
        return Err(Error::bad_input(format!(
            "t-SNE takes a feature matrix [N, D], got shape {:?}",
            x.shape
        )));
    }
    let (n, d) = (x.shape[0], x.shape[1]);
    if n < 2 || d == 0 {
        return Err(Error::bad_input(format!(
            "t-SNE needs at least 2 points of at least 1 feature, got [{n}, {d}]"
        )));
    }
    if x.data.len() != n * d {
        return Err(Error::internal(
            "feature matrix size does not match its shape",
        ));
    }
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::bad_input(format!(
            "the features contain a non-finite value ({}) at row {}, column {}",
            x.data[i],
            i / d,
            i % d
        )));
    }
    Ok((n, d))
}

/// The features as the affinities see them, and the factor turning a squared Euclidean distance
/// between prepared rows into the dissimilarity: standardised if asked, and for cosine scaled to
/// unit rows, where ‖a − b‖² / 2 = 1 − cos(a, b).
pub fn prepare(x: &HostTensor, distance: Distance, standardize: bool) -> Result<(HostTensor, f32)> {
    let (n, d) = check_features(x)?;
    let mut data = x.data.clone();
    if standardize {
        for c in 0..d {
            let mean = (0..n).map(|i| data[i * d + c] as f64).sum::<f64>() / n as f64;
            let var = (0..n)
                .map(|i| (data[i * d + c] as f64 - mean).powi(2))
                .sum::<f64>()
                / (n - 1).max(1) as f64;
            // A constant feature carries no information: centre it and leave it at 0.
            let inv = if var > 0.0 { 1.0 / var.sqrt() } else { 1.0 };
            for i in 0..n {
                data[i * d + c] = ((data[i * d + c] as f64 - mean) * inv) as f32;
            }
        }
    }
    let scale = match distance {
        Distance::Euclidean => 1.0,
        Distance::Cosine => {
            for (i, row) in data.chunks_mut(d).enumerate() {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                if norm == 0.0 {
                    return Err(Error::bad_input(format!(
                        "row {i} of the features is all zeros: its cosine distance is undefined"
                    )));
                }
                row.iter_mut().for_each(|v| *v /= norm);
            }
            0.5
        }
    };
    Ok((HostTensor::new(vec![n, d], data)?, scale))
}

/// The starting embedding `[N, dims]`.
pub fn initial_embedding(x: &HostTensor, dims: usize, init: Init, seed: u64) -> HostTensor {
    let (n, d) = (x.shape[0], x.shape[1]);
    let mut y = match init {
        Init::Random => (0..n * dims)
            .map(|k| 1e-4 * noise::normal(seed, (k / dims) as u32, (k % dims) as u32))
            .collect(),
        Init::Pca => pca(x, dims, seed),
    };
    if init == Init::Pca {
        let first: Vec<f32> = (0..n).map(|i| y[i * dims]).collect();
        let mean = first.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let std = (first
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt();
        // Degenerate data (all rows equal) has no principal direction: fall back to noise.
        if std > 0.0 && d > 0 {
            let k = 1e-4 / std;
            y.iter_mut().for_each(|v| *v = (*v as f64 * k) as f32);
        } else {
            return initial_embedding(x, dims, Init::Random, seed);
        }
    }
    HostTensor {
        shape: vec![n, dims],
        data: y,
    }
}

/// Projections on the top `k` principal components, by subspace iteration on the centred data
/// (never forming the D×D covariance, so wide features stay cheap). Each component's sign makes
/// its largest loading positive, so the result does not depend on the random start.
fn pca(x: &HostTensor, k: usize, seed: u64) -> Vec<f32> {
    let (n, d) = (x.shape[0], x.shape[1]);
    let mut mean = vec![0f64; d];
    for row in x.data.chunks(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let xc: Vec<f64> = x
        .data
        .chunks(d)
        .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| v as f64 - m))
        .collect();
    let k_eff = k.min(d);
    let mut v: Vec<Vec<f64>> = (0..k_eff)
        .map(|c| {
            (0..d)
                .map(|j| noise::normal(seed ^ 0x9e37, c as u32, j as u32) as f64)
                .collect()
        })
        .collect();
    for _ in 0..200 {
        // v ← Xcᵀ Xc v, then Gram-Schmidt.
        for vc in v.iter_mut() {
            let proj: Vec<f64> = xc
                .chunks(d)
                .map(|row| row.iter().zip(vc.iter()).map(|(a, b)| a * b).sum())
                .collect();
            let mut w = vec![0f64; d];
            for (row, p) in xc.chunks(d).zip(&proj) {
                for (wj, a) in w.iter_mut().zip(row) {
                    *wj += a * p;
                }
            }
            *vc = w;
        }
        for c in 0..k_eff {
            for prev in 0..c {
                let dot: f64 = v[c].iter().zip(&v[prev]).map(|(a, b)| a * b).sum();
                let (head, tail) = v.split_at_mut(c);
                for (a, b) in tail[0].iter_mut().zip(&head[prev]) {
                    *a -= dot * b;
                }
            }
            let norm = v[c].iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm > 0.0 {
                v[c].iter_mut().for_each(|a| *a /= norm);
            }
        }
    }
    for vc in v.iter_mut() {
        let big = vc
            .iter()
            .copied()
            .fold(0f64, |m, a| if a.abs() > m.abs() { a } else { m });
        if big < 0.0 {
            vc.iter_mut().for_each(|a| *a = -*a);
        }
    }
    let mut y = vec![0f32; n * k];
    for (i, row) in xc.chunks(d).enumerate() {
        for (c, vc) in v.iter().enumerate() {
            y[i * k + c] = row.iter().zip(vc).map(|(a, b)| a * b).sum::<f64>() as f32;
        }
    }
    y
}

/// Runs t-SNE on a feature matrix `[N, D]`. `Exact` runs on `backend` (on the device for the GPU
/// backend); `BarnesHut` always runs on the CPU.
pub fn tsne<B: Backend + TsneExact>(
    x: &HostTensor,
    opts: &Tsne,
    backend: &B,
    progress: &dyn Progress,
) -> Result<TsneResult> {
    let (n, _) = check_features(x)?;
    opts.validate(n)?;
    let (xp, scale) = prepare(x, opts.distance, opts.standardize)?;
    let y0 = initial_embedding(&xp, opts.dims, opts.init, opts.seed);
    let schedule = opts.schedule(n);
    match opts.algorithm {
        Algorithm::Exact => {
            backend.tsne_exact(&xp, scale, opts.perplexity, &y0, &schedule, progress)
        }
        Algorithm::BarnesHut => barnes_hut::run(
            &xp,
            scale,
            opts.perplexity,
            &y0,
            &schedule,
            opts.theta,
            progress,
        ),
    }
}

/// Mean over points of the fraction of their `k` nearest neighbours (in `embedding`) sharing their
/// label, and the accuracy of a `k`-NN majority vote (ties go to the smallest label).
pub fn knn_label_agreement(embedding: &HostTensor, labels: &[usize], k: usize) -> (f64, f64) {
    use rayon::prelude::*;
    let (n, dims) = (embedding.shape[0], embedding.shape[1]);
    let y = &embedding.data;
    let (frac, correct) = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut d: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let s = (0..dims)
                        .map(|c| (y[i * dims + c] - y[j * dims + c]).powi(2))
                        .sum();
                    (s, j)
                })
                .collect();
            let k = k.min(d.len()).max(1);
            d.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
            let nn = &d[..k];
            let same = nn.iter().filter(|(_, j)| labels[*j] == labels[i]).count();
            let mut votes = std::collections::BTreeMap::new();
            for (_, j) in nn {
                *votes.entry(labels[*j]).or_insert(0usize) += 1;
            }
            let best = votes
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(l, _)| *l);
            (same as f64 / k as f64, (best == Some(labels[i])) as usize)
        })
        .reduce(|| (0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    (frac / n as f64, correct as f64 / n as f64)
}

/// `n` points in `d` dimensions from `k` Gaussian clusters (unit spread, centres drawn with
/// spread 8), with their cluster labels: the synthetic case of the bench.
pub fn gaussian_clusters(n: usize, d: usize, k: usize, seed: u64) -> (HostTensor, Vec<usize>) {
    let k = k.max(1);
    let centres: Vec<f32> = (0..k * d)
        .map(|e| 8.0 * noise::normal(seed ^ 0xc1u64, u32::MAX, e as u32))
        .collect();
    let mut data = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % k;
        labels.push(c);
        for j in 0..d {
            data.push(centres[c * d + j] + noise::normal(seed, i as u32, j as u32));
        }
    }
    (
        HostTensor {
            shape: vec![n, d],
            data,
        },
        labels,
    )
}
