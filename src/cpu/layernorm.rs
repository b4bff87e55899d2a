//! Layer normalisation over contiguous rows: the CPU oracle of `layernorm.wgsl`.
//!
//! Each row of `len` elements is normalised on its own: `x̂ = (x - μ) · r` with
//! `r = 1 / sqrt(σ² + ε)`, then `y = x̂ · γ + β`. The mean and the variance are summed in f64 and
//! the variance in two passes (mean first, then squared deviations), so neither a large offset
//! nor a long row loses the f32 digits the one-pass `E[x²] - E[x]²` would cancel away.

use crate::error::{Error, Result};

/// `(μ, r)` of one row: its mean and `1 / sqrt(σ² + ε)`, computed in f64.
fn row_stats(x: &[f32], eps: f32) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| {
            let d = f64::from(v) - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, 1.0 / (var + f64::from(eps)).sqrt())
}

fn check(what: &str, n: usize, len: usize, scale: &[f32], bias: Option<&[f32]>) -> Result<()> {
    if len == 0
        || !n.is_multiple_of(len)
        || scale.len() != len
        || bias.is_some_and(|b| b.len() != len)
    {
        return Err(Error::internal(format!(
            "{what} over rows of {len}: {n} elements, scale {}, bias {:?}",
            scale.len(),
            bias.map(<[f32]>::len)
        )));
    }
    Ok(())
}

/// `y = (x - μ) · r · scale + bias` per row of `len` elements.
pub(crate) fn layer_norm(
    x: &[f32],
    len: usize,
    eps: f32,
    scale: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    check("LayerNorm", x.len(), len, scale, bias)?;
    if y.len() != x.len() {
        return Err(Error::internal("LayerNorm output size"));
    }
    for (xr, yr) in x.chunks(len).zip(y.chunks_mut(len)) {
        let (mean, r) = row_stats(xr, eps);
        for (j, (o, &v)) in yr.iter_mut().zip(xr).enumerate() {
            let xh = (f64::from(v) - mean) * r;
            let b = bias.map_or(0.0, |b| f64::from(b[j]));
            *o = (xh * f64::from(scale[j]) + b) as f32;
        }
    }
    Ok(())
}

/// The input gradient per row, with `ĝ = dy · scale`:
/// `dx = r · (ĝ - mean(ĝ) - x̂ · mean(ĝ · x̂))`. Exact with ε inside `r`, since `x̂` carries the
/// same `r`. Recomputes `μ` and `r` from `x` rather than keeping them from the forward.
pub(crate) fn layer_norm_vjp(
    x: &[f32],
    len: usize,
    eps: f32,
    scale: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    check("LayerNorm VJP", x.len(), len, scale, None)?;
    if dy.len() != x.len() || dx.len() != x.len() {
        return Err(Error::internal("LayerNorm VJP gradient size"));
    }
    let n = len as f64;
    for ((xr, gr), dr) in x.chunks(len).zip(dy.chunks(len)).zip(dx.chunks_mut(len)) {
        let (mean, r) = row_stats(xr, eps);
        let (mut sg, mut sgx) = (0.0f64, 0.0f64);
        for j in 0..len {
            let g = f64::from(gr[j]) * f64::from(scale[j]);
            sg += g;
            sgx += g * (f64::from(xr[j]) - mean) * r;
        }
        let (mg, mgx) = (sg / n, sgx / n);
        for j in 0..len {
            let g = f64::from(gr[j]) * f64::from(scale[j]);
            let xh = (f64::from(xr[j]) - mean) * r;
            dr[j] = (r * (g - mg - xh * mgx)) as f32;
        }
    }
    Ok(())
}
