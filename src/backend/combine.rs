//! The batch-combining ops of [`Backend`](super::Backend) (`weighted_sum`, `elementwise`,
//! `reduce`, `unary`, `concat`): their operand checks, shared by both backends, and their host
//! formulas, which the trait's default methods run (the CPU backend's implementation) and the GPU
//! kernels mirror in the same f32 summation order.

use super::HostTensor;
use crate::error::{Error, Result};
use crate::model::{broadcast_strides, BinaryKind, ReduceKind, Unary};

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

/// Checks the operands of [`Backend::elementwise`](super::Backend::elementwise): `b` has the
/// rank of `a` and each of its axes is `a`'s or 1 (numpy broadcasting of `b` onto `a`).
pub(crate) fn check_elementwise(a: &[usize], b: &[usize]) -> Result<()> {
    let fits = a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| x == y || y == 1);
    if !fits {
        return Err(Error::bad_input(format!(
            "an element-wise op needs a second operand of the first one's shape, or broadcast \
             to it (each axis equal or 1), got {a:?} and {b:?}"
        )));
    }
    Ok(())
}

/// `a ∘ b` element by element, `b` broadcast onto `a`'s shape.
pub(crate) fn elementwise(a: &HostTensor, b: &HostTensor, op: BinaryKind) -> Result<HostTensor> {
    check_elementwise(&a.shape, &b.shape)?;
    if a.shape == b.shape {
        let data = a.data.iter().zip(&b.data).map(|(&x, &y)| op.apply(x, y));
        return HostTensor::new(a.shape.clone(), data.collect());
    }
    let bs = broadcast_strides(&a.shape, &b.shape);
    let mut data = Vec::with_capacity(a.data.len());
    let mut at = 0;
    walk(&a.shape, &bs, |i, step| {
        data.push(op.apply(a.data[i], b.data[at]));
        at = step(at);
    });
    HostTensor::new(a.shape.clone(), data)
}

/// Calls `visit(i, next)` for every element `i` of a row-major tensor of shape `shape` in order,
/// where `next` moves an offset with strides `strides` (per axis of `shape`) on to element
/// `i + 1`: an odometer, so no element costs a division.
fn walk(shape: &[usize], strides: &[usize], mut visit: impl FnMut(usize, &dyn Fn(usize) -> usize)) {
    let len: usize = shape.iter().product();
    let idx = std::cell::RefCell::new(vec![0usize; shape.len()]);
    let next = |mut off: usize| {
        let mut idx = idx.borrow_mut();
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            off += strides[d];
            if idx[d] < shape[d] {
                return off;
            }
            off -= strides[d] * shape[d];
            idx[d] = 0;
        }
        off
    };
    for i in 0..len {
        visit(i, &next);
    }
}

/// Checks the operands of [`Backend::reduce`](super::Backend::reduce): distinct axes past the
/// batch axis. Returns the output shape, the reduced axes kept as 1.
pub(crate) fn check_reduce(x: &[usize], axes: &[usize]) -> Result<Vec<usize>> {
    let distinct = axes.iter().enumerate().all(|(i, a)| !axes[..i].contains(a));
    if axes.is_empty() || !distinct || axes.iter().any(|&a| a == 0 || a >= x.len()) {
        return Err(Error::bad_input(format!(
            "a reduction of {x:?} over axes {axes:?}: needs distinct axes past the batch axis"
        )));
    }
    Ok((0..x.len())
        .map(|d| if axes.contains(&d) { 1 } else { x[d] })
        .collect())
}

/// `x` reduced over `axes` (kept as size 1): each output element folds its group in row-major
/// order from the group's first element, in f32, as the GPU's reduce kernel does; the mean is
/// that sum divided by the group size.
pub(crate) fn reduce(x: &HostTensor, kind: ReduceKind, axes: &[usize]) -> Result<HostTensor> {
    let shape = check_reduce(&x.shape, axes)?;
    let count: usize = axes.iter().map(|&a| x.shape[a]).product();
    // Walking the input in order visits each group's elements in row-major order; reduced axes
    // get output stride 0.
    let os = broadcast_strides(&x.shape, &shape);
    let len: usize = shape.iter().product();
    let init = match kind {
        ReduceKind::Max => f32::NEG_INFINITY,
        ReduceKind::Sum | ReduceKind::Mean => 0.0,
    };
    let mut data = vec![init; len];
    let mut at = 0;
    walk(&x.shape, &os, |i, step| {
        let v = x.data[i];
        data[at] = match kind {
            ReduceKind::Max => data[at].max(v),
            ReduceKind::Sum | ReduceKind::Mean => data[at] + v,
        };
        at = step(at);
    });
    if kind == ReduceKind::Mean {
        data.iter_mut().for_each(|v| *v /= count as f32);
    }
    HostTensor::new(shape, data)
}

/// `op` applied to every element.
pub(crate) fn unary(x: &HostTensor, op: Unary) -> HostTensor {
    HostTensor {
        shape: x.shape.clone(),
        data: x.data.iter().map(|&v| op.apply(v)).collect(),
    }
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
