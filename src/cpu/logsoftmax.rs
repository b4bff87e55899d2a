//! Log-softmax over one axis: the CPU oracle of `logsoftmax.wgsl`.

use crate::error::{Error, Result};

/// `(outer, len, inner)` of `xs` around `axis`, after checking the buffer sizes.
fn view(xs: &[usize], axis: usize, sizes: &[usize], what: &str) -> Result<(usize, usize)> {
    let n: usize = xs.iter().product();
    if axis >= xs.len() || sizes.iter().any(|&s| s != n) {
        return Err(Error::internal(format!(
            "{what} over axis {axis} of {xs:?}"
        )));
    }
    Ok((xs[axis], xs[axis + 1..].iter().product()))
}

/// `y = x - max - ln Σ exp(x - max)` along `axis`. The max comes out first so no exp
/// overflows; the sum of exponentials, each in (0, 1], is kept in f64.
pub(crate) fn log_softmax(x: &[f32], xs: &[usize], axis: usize, y: &mut [f32]) -> Result<()> {
    let (k, inner) = view(xs, axis, &[x.len(), y.len()], "LogSoftmax")?;
    if x.is_empty() {
        return Ok(());
    }
    for (src, dst) in x.chunks(k * inner).zip(y.chunks_mut(k * inner)) {
        for i in 0..inner {
            let m = (0..k)
                .map(|j| src[j * inner + i])
                .fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = (0..k)
                .map(|j| f64::from(src[j * inner + i] - m).exp())
                .sum();
            let lse = sum.ln();
            for j in 0..k {
                dst[j * inner + i] = (f64::from(src[j * inner + i] - m) - lse) as f32;
            }
        }
    }
    Ok(())
}

/// `dx = dy - exp(y) · Σ_axis dy` from the forward output `y` (`exp(y)` is the softmax).
pub(crate) fn log_softmax_vjp(
    y: &[f32],
    xs: &[usize],
    axis: usize,
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    let (k, inner) = view(xs, axis, &[y.len(), dy.len(), dx.len()], "LogSoftmax VJP")?;
    if y.is_empty() {
        return Ok(());
    }
    for ((ys, gs), ds) in y
        .chunks(k * inner)
        .zip(dy.chunks(k * inner))
        .zip(dx.chunks_mut(k * inner))
    {
        for i in 0..inner {
            let s: f64 = (0..k).map(|j| f64::from(gs[j * inner + i])).sum();
            for j in 0..k {
                let at = j * inner + i;
                ds[at] = (f64::from(gs[at]) - f64::from(ys[at]).exp() * s) as f32;
            }
        }
    }
    Ok(())
}
