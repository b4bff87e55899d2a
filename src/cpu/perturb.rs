//! Perturbed copies of one image (occlusion), the CPU twin of `shaders/perturb.wgsl`.

use crate::backend::OcclusionWindow;
use rayon::prelude::*;

/// Writes `out` (`[windows.len(), C, H, W]`) from `image` (`[C, H, W]`): sample `i` is the image
/// with window `i`, clipped to the image, set to `value[c]` on channel `c`.
pub(crate) fn occlude(
    image: &[f32],
    (c, h, w): (usize, usize, usize),
    windows: &[OcclusionWindow],
    value: &[f32],
    out: &mut [f32],
) {
    let n = c * h * w;
    if n == 0 {
        return;
    }
    out.par_chunks_mut(n)
        .zip(windows.par_iter())
        .for_each(|(sample, win)| {
            sample.copy_from_slice(image);
            let clip = |start: i64, len: usize, dim: usize| {
                let lo = start.clamp(0, dim as i64) as usize;
                let hi = (start + len as i64).clamp(0, dim as i64) as usize;
                lo..hi.max(lo)
            };
            let (rows, cols) = (clip(win.top, win.height, h), clip(win.left, win.width, w));
            for (ch, &v) in value.iter().enumerate().take(c) {
                for y in rows.clone() {
                    let at = ch * h * w + y * w;
                    sample[at + cols.start..at + cols.end].fill(v);
                }
            }
        });
}

/// Writes `out` (`[alphas.len(), n]`): sample `i` is `base + alphas[i] (image - base)` plus
/// `sigmas[i]` times the shared counter-based normal noise.
pub(crate) fn path_batch(
    image: &[f32],
    base: &[f32],
    alphas: &[f32],
    sigmas: &[f32],
    seed: u64,
    out: &mut [f32],
) {
    let n = image.len();
    if n == 0 {
        return;
    }
    out.par_chunks_mut(n).enumerate().for_each(|(s, sample)| {
        let (a, sigma) = (alphas[s], sigmas[s]);
        for (j, v) in sample.iter_mut().enumerate() {
            *v = base[j] + a * (image[j] - base[j]);
            if sigma != 0.0 {
                *v += sigma * crate::backend::noise::normal(seed, s as u32, j as u32);
            }
        }
    });
}
