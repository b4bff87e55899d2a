//! Exact t-SNE on the CPU backend: dense P, O(N²) forces with rayon. The oracle of the GPU kernels
//! (`shaders/tsne.wgsl`), and the CPU backend's [`TsneExact`].

use rayon::prelude::*;

use super::CpuBackend;
use crate::backend::tsne::affinity::dense_p;
use crate::backend::tsne::{descend, host_memory_available, Schedule, TsneExact, TsneResult};
use crate::backend::HostTensor;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Per point: the attractive sum `Σ_j p_ij w_ij (y_i − y_j)`, the repulsive sum
/// `Σ_j w_ij² (y_i − y_j)` and `Σ_j w_ij`, with `w_ij = 1 / (1 + ‖y_i − y_j‖²)`.
fn forces(p: &[f32], y: &[f32], n: usize, dims: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rows: Vec<([f32; 3], [f32; 3], f32)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (mut attr, mut rep, mut z) = ([0f32; 3], [0f32; 3], 0f32);
            let yi = &y[i * dims..(i + 1) * dims];
            for j in 0..n {
                if j == i {
                    continue;
                }
                let yj = &y[j * dims..(j + 1) * dims];
                let mut diff = [0f32; 3];
                let mut d2 = 0f32;
                for c in 0..dims {
                    diff[c] = yi[c] - yj[c];
                    d2 += diff[c] * diff[c];
                }
                let w = 1.0 / (1.0 + d2);
                let pw = p[i * n + j] * w;
                for c in 0..dims {
                    attr[c] += pw * diff[c];
                    rep[c] += w * w * diff[c];
                }
                z += w;
            }
            (attr, rep, z)
        })
        .collect();
    let mut a = vec![0f32; n * dims];
    let mut r = vec![0f32; n * dims];
    let mut z = vec![0f32; n];
    for (i, (ai, ri, zi)) in rows.into_iter().enumerate() {
        a[i * dims..(i + 1) * dims].copy_from_slice(&ai[..dims]);
        r[i * dims..(i + 1) * dims].copy_from_slice(&ri[..dims]);
        z[i] = zi;
    }
    (a, r, z)
}

/// The t-SNE gradient (without the constant 4) at `y` for symmetric dense `p` multiplied by
/// `exaggeration`: `Σ_j (e·p_ij − q_ij) w_ij (y_i − y_j)`.
pub fn gradient(p: &[f32], y: &[f32], n: usize, dims: usize, exaggeration: f32) -> Vec<f32> {
    let (a, r, z) = forces(p, y, n, dims);
    let zsum: f64 = z.iter().map(|&v| v as f64).sum();
    let inv_z = (1.0 / zsum) as f32;
    a.iter()
        .zip(&r)
        .map(|(a, r)| exaggeration * a - r * inv_z)
        .collect()
}

/// KL(P‖Q) of embedding `y` for dense symmetric `p` (summing to 1).
pub fn kl_dense(p: &[f32], y: &[f32], n: usize, dims: usize) -> f32 {
    let (s, z): (f64, f64) = (0..n)
        .into_par_iter()
        .map(|i| {
            let (mut s, mut z) = (0f64, 0f64);
            for j in 0..n {
                if j == i {
                    continue;
                }
                let d2: f32 = (0..dims)
                    .map(|c| (y[i * dims + c] - y[j * dims + c]).powi(2))
                    .sum();
                let w = 1.0 / (1.0 + d2 as f64);
                let pij = p[i * n + j] as f64;
                if pij > 0.0 {
                    s += pij * (pij.ln() - w.ln());
                }
                z += w;
            }
            (s, z)
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    (s + z.ln()) as f32
}

/// Exact t-SNE from prepared features `x` `[N, D]` (dissimilarity `scale·‖·‖²`) and the starting
/// embedding `y0`.
pub fn run(
    x: &HostTensor,
    scale: f32,
    perplexity: f32,
    y0: &HostTensor,
    s: &Schedule,
    progress: &dyn Progress,
) -> Result<TsneResult> {
    let (n, d) = (x.shape[0], x.shape[1]);
    let dims = y0.shape[1];
    // dense_p holds the conditional and the joint P at once: 8 bytes per pair.
    let bytes = (n as u64).saturating_mul(n as u64).saturating_mul(8);
    if let Some(avail) = host_memory_available() {
        if bytes > avail {
            return Err(Error::bad_input(format!(
                "exact t-SNE of {n} points on the CPU builds the dense {n}×{n} P in {:.2} GB, \
                 more than the {:.2} GB of memory available; use the Barnes-Hut algorithm \
                 (--algorithm barneshut)",
                bytes as f64 / 1e9,
                avail as f64 / 1e9
            )));
        }
    }
    let p = dense_p(&x.data, n, d, scale, perplexity);
    let mut y = y0.data.clone();
    let mut update = vec![0f32; n * dims];
    let mut gains = vec![1f32; n * dims];
    let mut history = Vec::new();
    progress.start("t-SNE exact (CPU)", s.iterations as u64);
    for it in 0..s.iterations {
        let (exag, momentum, restart) = s.at(it);
        if restart {
            update.fill(0.0);
            gains.fill(1.0);
        }
        let grad = gradient(&p, &y, n, dims, exag);
        descend(
            &mut y,
            &mut update,
            &mut gains,
            &grad,
            s.learn_rate,
            momentum,
        );
        if (it + 1) % s.kl_every == 0 || it + 1 == s.iterations {
            let kl = kl_dense(&p, &y, n, dims);
            history.push((it + 1, kl));
            progress.message(&format!("KL {kl:.4}"));
        }
        progress.advance(1);
    }
    progress.finish();
    let kl = history.last().map(|h| h.1).unwrap_or(f32::NAN);
    Ok(TsneResult {
        embedding: HostTensor::new(vec![n, dims], y)?,
        kl,
        kl_history: history,
        iterations: s.iterations,
    })
}

impl TsneExact for CpuBackend {
    fn tsne_exact(
        &self,
        x: &HostTensor,
        scale: f32,
        perplexity: f32,
        y0: &HostTensor,
        schedule: &Schedule,
        progress: &dyn Progress,
    ) -> Result<TsneResult> {
        run(x, scale, perplexity, y0, schedule, progress)
    }
}
