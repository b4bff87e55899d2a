//! Numerically stable softmax over one axis.

use crate::error::{Error, Result};

pub(crate) fn softmax(x: &[f32], xs: &[usize], axis: usize, y: &mut [f32]) -> Result<()> {
    if axis >= xs.len() || x.len() != xs.iter().product::<usize>() || y.len() != x.len() {
        return Err(Error::internal(format!(
            "Softmax over axis {axis} of {xs:?}"
        )));
    }
    let n = xs[axis];
    let inner: usize = xs[axis + 1..].iter().product();
    if x.is_empty() {
        return Ok(());
    }
    for (src, dst) in x.chunks(n * inner).zip(y.chunks_mut(n * inner)) {
        for i in 0..inner {
            let m = (0..n)
                .map(|j| src[j * inner + i])
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for j in 0..n {
                let e = (src[j * inner + i] - m).exp();
                dst[j * inner + i] = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            for j in 0..n {
                dst[j * inner + i] *= inv;
            }
        }
    }
    Ok(())
}

/// `dx = y * (dy - sum_axis(dy * y))` from the forward output `y`, overwriting `dx`.
pub(crate) fn softmax_vjp(
    y: &[f32],
    xs: &[usize],
    axis: usize,
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    let n: usize = xs.iter().product();
    if axis >= xs.len() || y.len() != n || dy.len() != n || dx.len() != n {
        return Err(Error::internal(format!(
            "Softmax VJP over axis {axis} of {xs:?}"
        )));
    }
    if n == 0 {
        return Ok(());
    }
    let k = xs[axis];
    let inner: usize = xs[axis + 1..].iter().product();
    for ((ys, gs), ds) in y
        .chunks(k * inner)
        .zip(dy.chunks(k * inner))
        .zip(dx.chunks_mut(k * inner))
    {
        for i in 0..inner {
            let dot: f32 = (0..k).map(|j| ys[j * inner + i] * gs[j * inner + i]).sum();
            for j in 0..k {
                let at = j * inner + i;
                ds[at] = ys[at] * (gs[at] - dot);
            }
        }
    }
    Ok(())
}
