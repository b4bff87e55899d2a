//! Image ops on `[N, C, H, W]` batches, the CPU twins of `shaders/image.wgsl`: bilinear resize,
//! circular shift, Gaussian blur and deep dream's gradient-ascent step. Planes run in parallel.

use crate::backend::AscentStep;
use rayon::prelude::*;

/// `(i0, i1, f)` of output index `o`: half-pixel centres, clamped edges, the arithmetic of
/// `methods::upsample_bilinear`.
fn tap(o: usize, out: usize, inp: usize) -> (usize, usize, f32) {
    let x = ((o as f32 + 0.5) * inp as f32 / out as f32 - 0.5).max(0.0);
    let i0 = (x.floor() as usize).min(inp - 1);
    let i1 = (i0 + 1).min(inp - 1);
    (i0, i1, x - i0 as f32)
}

/// Resizes each `h × w` plane of `x` into the matching `oh × ow` plane of `out`.
pub(crate) fn resize_bilinear(
    x: &[f32],
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    out: &mut [f32],
) {
    if out.is_empty() {
        return;
    }
    let ys: Vec<_> = (0..oh).map(|o| tap(o, oh, h)).collect();
    let xs: Vec<_> = (0..ow).map(|o| tap(o, ow, w)).collect();
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(dst, src)| {
            for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
                for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
                    let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
                    let bottom = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
                    dst[oy * ow + ox] = top * (1.0 - fy) + bottom * fy;
                }
            }
        });
}

/// `out[.., y, x] = x[.., (y - dy) mod h, (x - dx) mod w]`.
pub(crate) fn roll(x: &[f32], (h, w): (usize, usize), dy: i64, dx: i64, out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    let (sy, sx) = (
        dy.rem_euclid(h as i64) as usize,
        dx.rem_euclid(w as i64) as usize,
    );
    out.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(dst, src)| {
            for y in 0..h {
                let from = (y + h - sy) % h;
                for xx in 0..w {
                    dst[y * w + xx] = src[from * w + (xx + w - sx) % w];
                }
            }
        });
}

/// The `(2r+1)²` window with weights `weights[|ky|] · weights[|kx|]`, edges replicated, summed
/// in the kernel's order (row sums, then rows).
pub(crate) fn blur(x: &[f32], (h, w): (usize, usize), weights: &[f32], out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    let r = weights.len() as i64 - 1;
    let clamp = |v: i64, n: usize| v.clamp(0, n as i64 - 1) as usize;
    out.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(dst, src)| {
            for y in 0..h {
                for xx in 0..w {
                    let mut acc = 0.0f32;
                    for ky in -r..=r {
                        let yy = clamp(y as i64 + ky, h);
                        let mut row = 0.0f32;
                        for kx in -r..=r {
                            let xc = clamp(xx as i64 + kx, w);
                            row += weights[kx.unsigned_abs() as usize] * src[yy * w + xc];
                        }
                        acc += weights[ky.unsigned_abs() as usize] * row;
                    }
                    dst[y * w + xx] = acc;
                }
            }
        });
}

/// One normalised ascent step per sample (see `Backend::ascent_step`); the mean |g| in f64.
pub(crate) fn ascent_step(
    x: &[f32],
    grad: &[f32],
    (c, h, w): (usize, usize, usize),
    step: &AscentStep,
    out: &mut [f32],
) {
    let per = c * h * w;
    if per == 0 {
        return;
    }
    let [dy, dx] = step.jitter;
    let (sy, sx) = (
        dy.rem_euclid(h as i64) as usize,
        dx.rem_euclid(w as i64) as usize,
    );
    out.par_chunks_mut(per)
        .zip(x.par_chunks(per).zip(grad.par_chunks(per)))
        .for_each(|(dst, (src, g))| {
            let mean = g.iter().map(|v| f64::from(v.abs())).sum::<f64>() / per as f64;
            let scale = step.step / (mean as f32 + 1e-8);
            for ch in 0..c {
                let (lo, hi) = (step.lo[ch], step.hi[ch]);
                let plane = ch * h * w;
                for y in 0..h {
                    let gy = (y + sy) % h;
                    for xx in 0..w {
                        let gx = (xx + sx) % w;
                        let v = src[plane + y * w + xx] + scale * g[plane + gy * w + gx];
                        dst[plane + y * w + xx] = v.clamp(lo, hi);
                    }
                }
            }
        });
}
