//! The batch-combining ops of [`Backend`](super::Backend) (`weighted_sum`, `elementwise`,
//! `concat`): their operand checks, shared by both backends, and their host formulas, which the
//! trait's default methods run (the CPU backend's implementation) and the GPU kernels mirror in
//! the same f32 summation order.

use super::HostTensor;
use crate::error::{Error, Result};
use crate::model::BinaryKind;

/// Checks the operands of [`Backend::weighted_sum`](super::Backend::weighted_sum); returns
/// `(G, S, L)`: groups, samples per group, elements per sample.
pub(crate) fn check_weighted_sum(
    x: &[usize],
    weights: usize,
    shape: &[usize],
) -> Result<(usize, usize, usize)> {
    let g = shape.first().copied().unwrap_or(0);
    let l: usize = shape.iter().skip(1).product();
    let len: usize = x.iter().product();
    if g == 0 || weights == 0 || !weights.is_multiple_of(g) || weights * l != len {
        return Err(Error::bad_input(format!(
            "a weighted sum of {x:?} with {weights} weights into {shape:?}: needs [G, ...] with \
             G > 0 dividing the (non-zero) number of weights, and the input holding one output \
             group member per weight"
        )));
    }
    Ok((g, weights / g, l))
}

/// `out[g, l] = Σ_s weights[g·S + s] · x[(g·S + s)·L + l]`, each product rounded to f32 and
/// summed in f32 from `s = 0` up.
pub(crate) fn weighted_sum(x: &HostTensor, weights: &[f32], shape: &[usize]) -> Result<HostTensor> {
    let (g, s, l) = check_weighted_sum(&x.shape, weights.len(), shape)?;
    let mut out = vec![0.0f32; g * l];
    for (gi, row) in out.chunks_mut(l.max(1)).enumerate().take(g) {
        for si in 0..s {
            let w = weights[gi * s + si];
            let src = &x.data[(gi * s + si) * l..(gi * s + si + 1) * l];
            for (o, &v) in row.iter_mut().zip(src) {
                *o += w * v;
            }
        }
    }
    HostTensor::new(shape.to_vec(), out)
}

/// Checks the operands of [`Backend::elementwise`](super::Backend::elementwise).
pub(crate) fn check_elementwise(a: &[usize], b: &[usize]) -> Result<()> {
    if a != b {
        return Err(Error::bad_input(format!(
            "an element-wise op needs operands of one shape, got {a:?} and {b:?}"
        )));
    }
    Ok(())
}

/// `a ∘ b` element by element.
pub(crate) fn elementwise(a: &HostTensor, b: &HostTensor, op: BinaryKind) -> Result<HostTensor> {
    check_elementwise(&a.shape, &b.shape)?;
    let data = a.data.iter().zip(&b.data).map(|(&x, &y)| op.apply(x, y));
    HostTensor::new(a.shape.clone(), data.collect())
}

/// Checks the operands of [`Backend::concat`](super::Backend::concat); returns the shape of
/// the result.
pub(crate) fn check_concat(parts: &[&[usize]]) -> Result<Vec<usize>> {
    let Some(first) = parts.first() else {
        return Err(Error::bad_input("concatenating no tensors"));
    };
    let mut shape = first.to_vec();
    if shape.is_empty()
        || parts
            .iter()
            .any(|p| p.len() != shape.len() || p[1..] != shape[1..])
    {
        return Err(Error::bad_input(format!(
            "concatenation along the batch axis needs equal shapes past it, got {parts:?}"
        )));
    }
    shape[0] = parts.iter().map(|p| p[0]).sum();
    Ok(shape)
}

/// The parts stacked along the batch axis.
pub(crate) fn concat(parts: &[&HostTensor]) -> Result<HostTensor> {
    let shapes: Vec<&[usize]> = parts.iter().map(|p| p.shape.as_slice()).collect();
    let shape = check_concat(&shapes)?;
    let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
    HostTensor::new(shape, data)
}
