//! ONNX LocalResponseNormalization across channels.

use crate::error::{Error, Result};

/// `y = x / (bias + alpha / size * sum_{c' in window(c)} x[c']^2)^beta`, the window being
/// `[c - floor((size-1)/2), c + ceil((size-1)/2)]` clipped to the channels.
pub(crate) fn lrn(
    x: &[f32],
    xs: &[usize],
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
    y: &mut [f32],
) -> Result<()> {
    if xs.len() < 2 || size == 0 || x.len() != xs.iter().product::<usize>() || y.len() != x.len() {
        return Err(Error::internal(format!("LRN of size {size} on {xs:?}")));
    }
    let c = xs[1];
    let inner: usize = xs[2..].iter().product();
    if x.is_empty() {
        return Ok(());
    }
    let (before, after) = ((size - 1) / 2, size / 2);
    let scale = alpha / size as f32;
    let mut acc = vec![0.0f32; inner];
    for (src, dst) in x.chunks(c * inner).zip(y.chunks_mut(c * inner)) {
        for ch in 0..c {
            acc.fill(0.0);
            let lo = ch.saturating_sub(before);
            let hi = (ch + after).min(c - 1);
            for k in lo..=hi {
                for (a, &v) in acc.iter_mut().zip(&src[k * inner..(k + 1) * inner]) {
                    *a += v * v;
                }
            }
            let (s, d) = (
                &src[ch * inner..(ch + 1) * inner],
                &mut dst[ch * inner..(ch + 1) * inner],
            );
            for ((o, &v), &a) in d.iter_mut().zip(s).zip(&acc) {
                *o = v / (bias + scale * a).powf(beta);
            }
        }
    }
    Ok(())
}

/// Gradient of `lrn` from its input, overwriting `dx`. With `S_c = bias + alpha/size ·
/// sum_{window(c)} x²`: `dx_k = dy_k S_k^-β - 2αβ/size · x_k · sum_{c: k ∈ window(c)} dy_c x_c
/// S_c^(-β-1)`; `k ∈ window(c)` iff `c ∈ [k - after, k + before]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lrn_vjp(
    x: &[f32],
    xs: &[usize],
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    let n: usize = xs.iter().product();
    if xs.len() < 2 || size == 0 || x.len() != n || dy.len() != n || dx.len() != n {
        return Err(Error::internal(format!("LRN VJP of size {size} on {xs:?}")));
    }
    if n == 0 {
        return Ok(());
    }
    let c = xs[1];
    let inner: usize = xs[2..].iter().product();
    let (before, after) = ((size - 1) / 2, size / 2);
    let scale = alpha / size as f32;
    let mut s = vec![0.0f32; c * inner];
    let mut t = vec![0.0f32; c * inner];
    for ((src, g), dst) in x
        .chunks(c * inner)
        .zip(dy.chunks(c * inner))
        .zip(dx.chunks_mut(c * inner))
    {
        for ch in 0..c {
            let lo = ch.saturating_sub(before);
            let hi = (ch + after).min(c - 1);
            let sc = &mut s[ch * inner..(ch + 1) * inner];
            sc.fill(0.0);
            for k in lo..=hi {
                for (a, &v) in sc.iter_mut().zip(&src[k * inner..(k + 1) * inner]) {
                    *a += v * v;
                }
            }
            for (j, a) in sc.iter_mut().enumerate() {
                *a = bias + scale * *a;
                let at = ch * inner + j;
                t[at] = g[at] * src[at] * a.powf(-beta - 1.0);
            }
        }
        for k in 0..c {
            let lo = k.saturating_sub(after);
            let hi = (k + before).min(c - 1);
            for j in 0..inner {
                let at = k * inner + j;
                let sum: f32 = (lo..=hi).map(|cc| t[cc * inner + j]).sum();
                dst[at] = g[at] * s[at].powf(-beta) - 2.0 * scale * beta * src[at] * sum;
            }
        }
    }
    Ok(())
}
