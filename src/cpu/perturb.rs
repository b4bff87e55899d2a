//! Perturbed copies of one image (occlusion, IG paths, LIME samples, Score-CAM masks), the CPU
//! twin of `shaders/perturb.wgsl`.

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

/// Writes `out` (`[count, C, H, W]`) from `image` (`[C, H, W]`) and per-pixel segment ids
/// `labels` (`[H, W]`): sample `first + i` keeps the pixels of the segments
/// [`crate::backend::segment_kept`] keeps and shows `value[c]` elsewhere.
pub(crate) fn segment_mask(
    image: &[f32],
    labels: &[f32],
    first: usize,
    seed: u64,
    value: &[f32],
    out: &mut [f32],
) {
    let (n, hw) = (image.len(), labels.len());
    if n == 0 {
        return;
    }
    out.par_chunks_mut(n).enumerate().for_each(|(i, sample)| {
        let s = (first + i) as u32;
        for (j, v) in sample.iter_mut().enumerate() {
            let k = labels[j % hw] as u32;
            *v = if crate::backend::segment_kept(seed, s, k) {
                image[j]
            } else {
                value[j / hw]
            };
        }
    });
}

/// Writes `out` (`[K', C, H, W]`) from `image` (`[C, H, W]`) and `maps` (`[K', h, w]`): sample
/// `i` is the image times map `i` upsampled with aligned corners and min-max normalised, the same
/// arithmetic as `scale_by_maps` in `shaders/perturb.wgsl`.
pub(crate) fn scale_by_maps(
    image: &[f32],
    (c, hh, ww): (usize, usize, usize),
    maps: &[f32],
    (h, w): (usize, usize),
    out: &mut [f32],
) {
    let n = c * hh * ww;
    if n == 0 || h * w == 0 {
        return;
    }
    let (sy, sx) = (
        crate::backend::aligned_scale(h, hh),
        crate::backend::aligned_scale(w, ww),
    );
    let axis = |o: usize, scale: f32, inp: usize| {
        let src = scale * o as f32;
        let i0 = (src.floor() as usize).min(inp - 1);
        (i0, (i0 + 1).min(inp - 1), (src - i0 as f32).clamp(0.0, 1.0))
    };
    out.par_chunks_mut(n)
        .zip(maps.par_chunks(h * w))
        .for_each(|(sample, map)| {
            let mut up = Vec::with_capacity(hh * ww);
            for y in 0..hh {
                let (y0, y1, ly) = axis(y, sy, h);
                for x in 0..ww {
                    let (x0, x1, lx) = axis(x, sx, w);
                    let top = (1.0 - lx) * map[y0 * w + x0] + lx * map[y0 * w + x1];
                    let bottom = (1.0 - lx) * map[y1 * w + x0] + lx * map[y1 * w + x1];
                    up.push((1.0 - ly) * top + ly * bottom);
                }
            }
            let lo = up.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = up.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for (j, v) in sample.iter_mut().enumerate() {
                *v = image[j] * ((up[j % (hh * ww)] - lo) / (hi - lo + 1e-8));
            }
        });
}
