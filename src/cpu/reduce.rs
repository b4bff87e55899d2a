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
