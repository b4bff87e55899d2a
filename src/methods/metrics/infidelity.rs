//! Infidelity (Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations"), as
//! Captum's `captum.metrics.infidelity` with `normalize=False`: for perturbations `I_s`,
//! `mean_s (Σ_j I_s[j] · attr[j] - (f(x) - f(x - I_s)))²`, where `f` is the class score.
//!
//! The perturbations are Gaussian, `I_s = σ ε_s`, with `ε_s` netlens' counter-based standard
//! normal noise keyed by `(seed, s, element)` (the noise of SmoothGrad's copies): the perturbed
//! batch `x - I_s` is generated on the device by [`Backend::path_batch`] (the image as its own
//! baseline, noise scale `-σ`) and forwarded once with the image; the host recomputes `I_s` from
//! the same formula for the products with the map, so no perturbation crosses the bus. Cost: one
//! forward submission (two on the GPU when the batch is split by the memory budget) and one
//! read-back. The map must have the input's shape (a per-pixel `[H, W]` map of a one-channel
//! model, or a `[C, H, W]` per-element map); a per-pixel map of a several-channel model is
//! broadcast over the channels.

use super::super::{check_class, check_single_image, scores, Score};
use crate::backend::{noise, top_k, Backend, HostTensor};
use crate::error::{Error, Result};
use crate::model::Model;

/// Infidelity settings; `Default`: 10 perturbations (Captum's `n_perturb_samples`), σ = 0.1,
/// seed 0, the class probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Infidelity {
    /// Perturbations (`n_perturb_samples`).
    pub samples: usize,
    /// The noise's standard deviation, in input units.
    pub sigma: f32,
    /// Seed of the noise.
    pub seed: u64,
    /// The class score `f`.
    pub score: Score,
}

impl Default for Infidelity {
    fn default() -> Self {
        Infidelity {
            samples: 10,
            sigma: 0.1,
            seed: 0,
            score: Score::Probability,
        }
    }
}

/// The most perturbations per map.
pub const MAX_SAMPLES: usize = 1 << 16;

impl Infidelity {
    /// Perturbation `s` (`I_s`), as the device generates its negation.
    pub fn perturbation(&self, s: usize, len: usize) -> Vec<f32> {
        (0..len)
            .map(|j| -((-self.sigma) * noise::normal(self.seed, s as u32, j as u32)))
            .collect()
    }

    /// The infidelity of `map` on `x` (`[1, C, H, W]`) for `class`, or when `None` the top
    /// prediction on `x`.
    pub fn evaluate<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        map: &HostTensor,
        class: Option<usize>,
    ) -> Result<f64> {
        check_single_image(model, x)?;
        if !(1..=MAX_SAMPLES).contains(&self.samples) {
            return Err(Error::bad_input(format!(
                "infidelity needs 1 to {MAX_SAMPLES} perturbations, got {}",
                self.samples
            )));
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(Error::bad_input(format!(
                "infidelity noise sigma must be finite and positive, got {}",
                self.sigma
            )));
        }
        if let Some(c) = class {
            check_class(model, c)?;
        }
        let n = x.sample_len();
        let attr = broadcast(map, &x.shape[1..])?;
        let image = b.upload(x)?;
        // Sample 0 is the image itself (no noise), samples 1..=S the perturbed copies.
        let mut sigmas = vec![-self.sigma; self.samples + 1];
        sigmas[0] = 0.0;
        let alphas = vec![0.0; sigmas.len()];
        // The noise of copy `i` is keyed by `i`; the perturbation of sample `s` is copy `s + 1`.
        let batch = b.path_batch(&image, &image, &alphas, &sigmas, self.seed)?;
        let logits = b.read(&b.forward(model, &batch, &[])?.output)?;
        let class = class.unwrap_or_else(|| top_k(logits.sample(0), 1)[0]);
        let f = scores(&logits, self.score, &vec![class; sigmas.len()]);
        let total: f64 = (1..=self.samples)
            .map(|i| {
                let dot: f64 = self
                    .perturbation(i, n)
                    .iter()
                    .zip(&attr)
                    .map(|(&p, &a)| f64::from(p) * f64::from(a))
                    .sum();
                (dot - (f64::from(f[0]) - f64::from(f[i]))).powi(2)
            })
            .sum();
        Ok(total / self.samples as f64)
    }
}

/// `map` as one value per input element: the input's shape `[C, H, W]` (a leading 1 dropped),
/// or `[H, W]` / `[1, H, W]` broadcast over the channels.
fn broadcast(map: &HostTensor, input: &[usize]) -> Result<Vec<f32>> {
    let dims: Vec<usize> = match map.shape.as_slice() {
        [1, rest @ ..] if rest.len() == input.len() => rest.to_vec(),
        s => s.to_vec(),
    };
    if dims == input {
        return Ok(map.data.clone());
    }
    let (c, hw) = (input[0], input[1..].iter().product::<usize>());
    if input.len() == 3 && dims.iter().product::<usize>() == hw && dims.ends_with(&input[1..]) {
        return Ok(map.data.repeat(c));
    }
    Err(Error::bad_input(format!(
        "infidelity needs a map of the input's shape {input:?} (or [H, W]), got {:?}",
        map.shape
    )))
}
