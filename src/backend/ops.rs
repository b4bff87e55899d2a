//! Argument checks of the backend ops and the small formulas both backends share (blur weights,
//! aligned-corner scales, the path batch and its noise, whose hash the perturbation masks share),
//! so the GPU and the CPU reject the same inputs with the same messages and compute the same
//! thing; and host formulas the layers above share (top-k).

use super::*;

/// Checks the operands of [`Backend::path_batch`]; returns the per-sample element count.
pub(crate) fn check_path_batch(
    image: &[usize],
    baseline: &[usize],
    alphas: &[f32],
    sigmas: &[f32],
) -> Result<usize> {
    if image.len() != 4 || image[0] != 1 || image != baseline {
        return Err(Error::bad_input(format!(
            "path batches need one image and a baseline of the same shape [1, C, H, W], got {image:?} and {baseline:?}"
        )));
    }
    if alphas.len() != sigmas.len() {
        return Err(Error::internal(
            "path batch: one alpha and one sigma per sample",
        ));
    }
    Ok(image[1..].iter().product())
}

/// Standard normal noise shared bit-for-bit in its integer part by both backends (a PCG hash of
/// seed, sample and element, then Box-Muller in f32), so a seed means the same noise everywhere.
pub(crate) mod noise {
    pub fn pcg(v: u32) -> u32 {
        let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
        let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
        (word >> 22) ^ word
    }

    pub fn normal(seed: u64, sample: u32, element: u32) -> f32 {
        let key = pcg(element ^ pcg(sample ^ pcg(seed as u32 ^ pcg((seed >> 32) as u32))));
        let u1 = ((key >> 8) as f32 + 1.0) / 16777216.0;
        let u2 = (pcg(key) >> 8) as f32 / 16777216.0;
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// Writes `out` (`[alphas.len(), n]`): sample `i` is `base + alphas[i] (image - base)` plus
/// `sigmas[i]` times the shared counter-based normal noise of sample `first + i`: the CPU
/// backend's `path_chunk`, and the GPU backend's for a batch over its binding limit.
pub(crate) fn path_batch_host(
    image: &[f32],
    base: &[f32],
    (alphas, sigmas): (&[f32], &[f32]),
    seed: u64,
    first: u32,
    out: &mut [f32],
) {
    let n = image.len();
    if n == 0 {
        return;
    }
    use rayon::prelude::*;
    out.par_chunks_mut(n).enumerate().for_each(|(s, sample)| {
        let (a, sigma) = (alphas[s], sigmas[s]);
        for (j, v) in sample.iter_mut().enumerate() {
            *v = base[j] + a * (image[j] - base[j]);
            if sigma != 0.0 {
                *v += sigma * noise::normal(seed, first.wrapping_add(s as u32), j as u32);
            }
        }
    });
}

/// The parameters of [`Backend::ascent_step`].
#[derive(Clone, Debug, PartialEq)]
pub struct AscentStep {
    /// Step length in input units, applied to the gradient normalised to mean |g| = 1.
    pub step: f32,
    /// The `(dy, dx)` given to [`Backend::roll`] before the gradient was taken.
    pub jitter: [i64; 2],
    /// Per-channel lower bound of the valid input range.
    pub lo: Vec<f32>,
    /// Per-channel upper bound.
    pub hi: Vec<f32>,
}

/// The largest blur radius: its weights travel in a kernel's parameter block.
pub const MAX_BLUR_RADIUS: usize = 24;

/// The most channels [`Backend::ascent_step`] clamps per channel (their bounds travel in a
/// kernel's parameter block); image inputs have 1 or 3.
pub const MAX_ASCENT_CHANNELS: usize = 24;

/// Checks a `[N, C, H, W]` operand of the image ops; returns its four dimensions.
pub(crate) fn check_image_batch(shape: &[usize], what: &str) -> Result<[usize; 4]> {
    match *shape {
        [n, c, h, w] if h > 0 && w > 0 => Ok([n, c, h, w]),
        _ => Err(Error::bad_input(format!(
            "{what} needs a batch of images [N, C, H, W] with H, W > 0, got {shape:?}"
        ))),
    }
}

/// Checks the operands of [`Backend::ascent_step`]; returns the dimensions of `x`.
pub(crate) fn check_ascent(x: &[usize], grad: &[usize], step: &AscentStep) -> Result<[usize; 4]> {
    let d = check_image_batch(x, "a gradient-ascent step")?;
    if x != grad {
        return Err(Error::bad_input(format!(
            "gradient-ascent step: the gradient {grad:?} must match the image {x:?}"
        )));
    }
    let c = d[1];
    if c > MAX_ASCENT_CHANNELS || step.lo.len() != c || step.hi.len() != c {
        return Err(Error::bad_input(format!(
            "gradient-ascent step: {} lower and {} upper bounds for {c} channels (one per channel, \
             at most {MAX_ASCENT_CHANNELS})",
            step.lo.len(),
            step.hi.len()
        )));
    }
    if !step.step.is_finite() {
        return Err(Error::bad_input(
            "gradient-ascent step length is not finite",
        ));
    }
    Ok(d)
}

/// The normalised 1-D Gaussian weights `w[0..=r]` (`w[k]` for offsets ±k) of [`Backend::blur`],
/// computed once on the host so both backends use the same numbers.
pub(crate) fn blur_weights(sigma: f32) -> Result<Vec<f32>> {
    if !sigma.is_finite() {
        return Err(Error::bad_input("blur sigma is not finite"));
    }
    if sigma <= 0.0 {
        return Ok(vec![1.0]);
    }
    let r = (3.0 * sigma).ceil() as usize;
    if r > MAX_BLUR_RADIUS {
        return Err(Error::bad_input(format!(
            "blur sigma {sigma} is too large: at most {} pixels",
            MAX_BLUR_RADIUS as f32 / 3.0
        )));
    }
    let w: Vec<f64> = (0..=r)
        .map(|k| (-((k * k) as f64) / (2.0 * f64::from(sigma).powi(2))).exp())
        .collect();
    let total = w[0] + 2.0 * w[1..].iter().sum::<f64>();
    Ok(w.iter().map(|v| (v / total) as f32).collect())
}

/// `(in - 1) / (out - 1)`: the source step of an aligned-corners resize (0 for one output).
pub(crate) fn aligned_scale(inp: usize, out: usize) -> f32 {
    if out > 1 {
        (inp as f32 - 1.0) / (out as f32 - 1.0)
    } else {
        0.0
    }
}

/// Indices of the `k` largest values, best first.
pub fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(k);
    idx
}
