//! What both backends' exact t-SNE shares: the solver trait, the optimiser schedule and result,
//! the update step's host formula and the perplexity search's constants ([`affinity`]). The
//! options, the initialisation and Barnes-Hut are in `crate::methods::tsne`, which calls
//! [`TsneExact`] on whichever backend it runs on.

pub mod affinity;

use crate::backend::HostTensor;
use crate::error::Result;
use crate::progress::Progress;

/// Exact t-SNE (dense P, O(N²) forces per iteration), implemented by each backend: the GPU runs
/// the perplexity search, the forces and the update on the device; the CPU runs the same maths
/// with rayon and is the oracle of the GPU kernels.
pub trait TsneExact {
    /// Exact t-SNE from prepared features `x` `[N, D]` (dissimilarity `scale·‖x_i − x_j‖²`) and
    /// the starting embedding `y0` `[N, 2 or 3]`. A P too large for the device or the host's
    /// memory is a bad-input error that names the Barnes-Hut algorithm.
    fn tsne_exact(
        &self,
        x: &HostTensor,
        scale: f32,
        perplexity: f32,
        y0: &HostTensor,
        schedule: &Schedule,
        progress: &dyn Progress,
    ) -> Result<TsneResult>;
}

/// What a t-SNE run returns.
#[derive(Clone, Debug)]
pub struct TsneResult {
    /// `[N, dims]`.
    pub embedding: HostTensor,
    /// KL(P‖Q) of the final embedding (P not exaggerated).
    pub kl: f32,
    /// `(iteration, KL)` every `kl_every` iterations, always against the unexaggerated P.
    pub kl_history: Vec<(usize, f32)>,
    /// Iterations run.
    pub iterations: usize,
}

/// The optimiser's per-iteration constants, shared by every implementation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Multiplies P during the early phase.
    pub exaggeration: f32,
    /// Length of the early phase, in iterations.
    pub exaggeration_iters: usize,
    /// Step size, resolved from `Tsne::learn_rate` (automatic `max(N / 12, 50)` when unset).
    pub learn_rate: f32,
    /// Momentum of the early phase, then of the rest.
    pub momentum: (f32, f32),
    /// Total iterations, early phase included.
    pub iterations: usize,
    /// KL divergence is computed every this many iterations (at least 1).
    pub kl_every: usize,
}

impl Schedule {
    /// `(exaggeration, momentum, restart)` at iteration `it`; `restart` zeroes the update and
    /// resets the gains to 1 before the step (at 0 and at the phase change).
    pub fn at(&self, it: usize) -> (f32, f32, bool) {
        let early = it < self.exaggeration_iters;
        let restart = it == 0 || it == self.exaggeration_iters;
        if early {
            (self.exaggeration, self.momentum.0, restart)
        } else {
            (1.0, self.momentum.1, restart)
        }
    }
}

/// One gradient-descent step with momentum and gains (Jacobs 1988, as in scikit-learn), on every
/// coordinate: the CPU twin of the GPU update kernel.
pub fn descend(
    y: &mut [f32],
    update: &mut [f32],
    gains: &mut [f32],
    grad: &[f32],
    learn_rate: f32,
    momentum: f32,
) {
    for (((yv, u), g), &dy) in y.iter_mut().zip(update).zip(gains).zip(grad) {
        *g = if *u * dy < 0.0 { *g + 0.2 } else { *g * 0.8 };
        *g = g.max(0.01);
        *u = momentum * *u - learn_rate * *g * dy;
        *yv += *u;
    }
}

/// `MemAvailable` of `/proc/meminfo` in bytes (Linux; `None` elsewhere). Dense P grows as N²,
/// and Linux overcommits: an allocation past this succeeds and the process is killed when the
/// pages are first touched, so the exact paths check against it before allocating.
pub(crate) fn host_memory_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
