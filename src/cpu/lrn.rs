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
