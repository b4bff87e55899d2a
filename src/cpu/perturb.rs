//! Perturbed copies of one image (occlusion windows, LIME samples, Score-CAM maps, RISE masks,
//! deletion / insertion steps),
//! the CPU twin of `perturb` in `shaders/perturb.wgsl`.

use crate::backend::{aligned_scale, rank_shown, segment_kept, Fill, MaskSource, PerturbDims};
use rayon::prelude::*;
use std::sync::Arc;

use super::HostTensor;

/// Writes `out` (`[count, C, H, W]`): sample `i` is `image` (`[C, H, W]`) under mask `i` of
/// `source`, filled as `fill` says (see [`crate::Backend::perturb`]).
pub(crate) fn perturb(
    image: &[f32],
    d: PerturbDims,
    source: &MaskSource<'_, Arc<HostTensor>>,
    fill: &Fill,
    out: &mut [f32],
) {
    let (hw, chw) = (d.h * d.w, d.c * d.h * d.w);
    if chw == 0 {
        return;
    }
    out.par_chunks_mut(chw).enumerate().for_each(|(i, sample)| {
        let mask = mask(source, i, d);
        let planes = sample.chunks_mut(hw).zip(image.chunks(hw));
        for (ch, (plane, src)) in planes.enumerate() {
            let values = plane.iter_mut().zip(src).zip(&mask);
            match fill {
                Fill::Multiply => values.for_each(|((v, &x), &m)| *v = x * m),
                Fill::Constant(value) => {
                    let fill = value[ch];
                    values.for_each(|((v, &x), &m)| {
                        *v = if m == 1.0 {
                            x
                        } else if m == 0.0 {
                            fill
                        } else {
                            m * x + (1.0 - m) * fill
                        }
                    })
                }
            }
        }
    });
}

/// Mask `i` of the batch, `[H · W]`.
fn mask(source: &MaskSource<'_, Arc<HostTensor>>, i: usize, d: PerturbDims) -> Vec<f32> {
    let (h, w) = (d.h, d.w);
    match source {
        MaskSource::Windows(windows) => {
            let win = windows[i];
            let mut m = vec![1.0; h * w];
            let (rows, cols) = (clip(win.top, win.height, h), clip(win.left, win.width, w));
            for y in rows {
                m[y * w + cols.start..y * w + cols.end].fill(0.0);
            }
            m
        }
        MaskSource::Segments {
            labels,
            seed,
            first,
            ..
        } => {
            let s = (first + i) as u32;
            labels
                .data
                .iter()
                .map(|&k| segment_kept(*seed, s, k as u32) as u32 as f32)
                .collect()
        }
        MaskSource::Maps { maps, first, .. } => {
            let (mh, mw) = (maps.shape[2], maps.shape[3]);
            let at = (first + i) * mh * mw;
            upsampled_normalised(&maps.data[at..at + mh * mw], (mh, mw), (h, w))
        }
        MaskSource::Rise { masks, first, .. } => masks.mask((first + i) as u32, h, w),
        MaskSource::Ranked { rank, shown } => rank
            .data
            .iter()
            .map(|&r| rank_shown(r, shown[i]) as u32 as f32)
            .collect(),
    }
}

/// The rows (or columns) `start..start + len` clipped to `0..dim`.
fn clip(start: i64, len: usize, dim: usize) -> std::ops::Range<usize> {
    let lo = start.clamp(0, dim as i64) as usize;
    let hi = (start + len as i64).clamp(0, dim as i64) as usize;
    lo..hi.max(lo)
}

/// `map` (`[h, w]`) upsampled to `hh × ww` with aligned corners and min-max normalised,
/// `(u - min) / (max - min + 1e-8)`: the arithmetic of `mask_range` / `perturb` in
/// `shaders/perturb.wgsl`.
fn upsampled_normalised(map: &[f32], (h, w): (usize, usize), (hh, ww): (usize, usize)) -> Vec<f32> {
    let (sy, sx) = (aligned_scale(h, hh), aligned_scale(w, ww));
    let axis = |o: usize, scale: f32, inp: usize| {
        let src = scale * o as f32;
        let i0 = (src.floor() as usize).min(inp - 1);
        (i0, (i0 + 1).min(inp - 1), (src - i0 as f32).clamp(0.0, 1.0))
    };
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
    up.iter().map(|&u| (u - lo) / (hi - lo + 1e-8)).collect()
}
