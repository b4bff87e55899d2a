//! Sum / mean / max over a set of full-shape axes.

use crate::error::{Error, Result};
use crate::model::{strides_of, ReduceKind};

/// Reduces `x` (full shape `xs`) over `axes`. The output keeps the order of the remaining axes,
/// which is the same with or without keepdims, so `y` has `len(x) / prod(xs[axes])` values.
pub(crate) fn reduce(
    x: &[f32],
    xs: &[usize],
    kind: ReduceKind,
    axes: &[usize],
    y: &mut [f32],
) -> Result<()> {
    let rank = xs.len();
    if axes.iter().any(|&a| a >= rank) || x.len() != xs.iter().product::<usize>() {
        return Err(Error::internal(format!("Reduce over {axes:?} of {xs:?}")));
    }
    let kept: Vec<usize> = (0..rank)
        .map(|d| if axes.contains(&d) { 1 } else { xs[d] })
        .collect();
    let count: usize = axes.iter().map(|&a| xs[a]).product::<usize>().max(1);
    if y.len() != kept.iter().product::<usize>() {
        return Err(Error::internal(format!(
            "Reduce over {axes:?} of {xs:?}: bad output length"
        )));
    }
    // Walk the input in order; reduced axes get output stride 0.
    let ks = strides_of(&kept);
    let os: Vec<usize> = (0..rank)
        .map(|d| if axes.contains(&d) { 0 } else { ks[d] })
        .collect();
    let init = if kind == ReduceKind::Max {
        f32::NEG_INFINITY
    } else {
        0.0
    };
    y.fill(init);
    if x.is_empty() {
        return Ok(());
    }
    let mut idx = vec![0usize; rank];
    let mut o = 0usize;
    for &v in x {
        let acc = &mut y[o];
        *acc = if kind == ReduceKind::Max {
            acc.max(v)
        } else {
            *acc + v
        };
        let mut d = rank;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            o += os[d];
            if idx[d] < xs[d] {
                break;
            }
            o -= os[d] * xs[d];
            idx[d] = 0;
        }
    }
    if kind == ReduceKind::Mean {
        let inv = count as f32;
        y.iter_mut().for_each(|v| *v /= inv);
    }
    Ok(())
}

/// Gradient of `reduce`, overwriting `dx` (shape `xs`): Sum broadcasts `dy`, Mean divides it by
/// the reduced count, Max sends it to the first maximum in memory order. `x` is read for Max only.
pub(crate) fn reduce_vjp(
    x: &[f32],
    xs: &[usize],
    kind: ReduceKind,
    axes: &[usize],
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    let rank = xs.len();
    let n: usize = xs.iter().product();
    let kept: Vec<usize> = (0..rank)
        .map(|d| if axes.contains(&d) { 1 } else { xs[d] })
        .collect();
    let bad = axes.iter().any(|&a| a >= rank)
        || dx.len() != n
        || (kind == ReduceKind::Max && x.len() != n)
        || dy.len() != kept.iter().product::<usize>();
    if bad {
        return Err(Error::internal(format!(
            "Reduce VJP over {axes:?} of {xs:?}"
        )));
    }
    if n == 0 {
        return Ok(());
    }
    let count: usize = axes.iter().map(|&a| xs[a]).product::<usize>().max(1);
    let ks = strides_of(&kept);
    let os: Vec<usize> = (0..rank)
        .map(|d| if axes.contains(&d) { 0 } else { ks[d] })
        .collect();
    // Same odometer as the forward: input index i maps to output index o.
    let each = |mut f: Box<dyn FnMut(usize, usize) + '_>| {
        let mut idx = vec![0usize; rank];
        let mut o = 0usize;
        for i in 0..n {
            f(i, o);
            let mut d = rank;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                o += os[d];
                if idx[d] < xs[d] {
                    break;
                }
                o -= os[d] * xs[d];
                idx[d] = 0;
            }
        }
    };
    match kind {
        ReduceKind::Sum => each(Box::new(|i, o| dx[i] = dy[o])),
        ReduceKind::Mean => {
            let inv = 1.0 / count as f32;
            each(Box::new(|i, o| dx[i] = dy[o] * inv))
        }
        ReduceKind::Max => {
            let mut best: Vec<Option<usize>> = vec![None; dy.len()];
            each(Box::new(|i, o| {
                if best[o].is_none_or(|b| x[i] > x[b]) {
                    best[o] = Some(i);
                }
            }));
            dx.fill(0.0);
            for (o, b) in best.into_iter().enumerate() {
                if let Some(i) = b {
                    dx[i] = dy[o];
                }
            }
        }
    }
    Ok(())
}
