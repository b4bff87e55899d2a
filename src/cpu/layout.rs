//! Data movement: transpose, slice, concat, pad (reshape is a plain copy or a move).

use crate::error::{Error, Result};
use crate::model::strides_of;

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Copies a `shape` block: `dst[dst_off + Σ i_d dst_st[d]] = src[src_off + Σ i_d src_st[d]]`.
/// Offsets stay in bounds by the callers' checks; a slip panics in the slice indexing.
fn copy_strided(
    shape: &[usize],
    src: &[f32],
    src_off: isize,
    src_st: &[isize],
    dst: &mut [f32],
    dst_off: isize,
    dst_st: &[isize],
) {
    if numel(shape) == 0 {
        return;
    }
    let Some((&n, outer)) = shape.split_last() else {
        dst[dst_off as usize] = src[src_off as usize];
        return;
    };
    let r = outer.len();
    let (cs, cd) = (src_st[r], dst_st[r]);
    let mut idx = vec![0usize; r];
    let (mut s, mut d) = (src_off, dst_off);
    loop {
        if cs == 1 && cd == 1 {
            dst[d as usize..d as usize + n].copy_from_slice(&src[s as usize..s as usize + n]);
        } else {
            for j in 0..n as isize {
                dst[(d + j * cd) as usize] = src[(s + j * cs) as usize];
            }
        }
        let mut k = r;
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            s += src_st[k];
            d += dst_st[k];
            if idx[k] < outer[k] {
                break;
            }
            s -= src_st[k] * outer[k] as isize;
            d -= dst_st[k] * outer[k] as isize;
            idx[k] = 0;
        }
    }
}

fn istrides(shape: &[usize]) -> Vec<isize> {
    strides_of(shape).into_iter().map(|s| s as isize).collect()
}

pub(crate) fn transpose(x: &[f32], xs: &[usize], perm: &[usize], y: &mut [f32]) -> Result<()> {
    let mut seen = vec![false; xs.len()];
    let valid = perm.len() == xs.len()
        && perm
            .iter()
            .all(|&p| p < xs.len() && !std::mem::replace(&mut seen[p], true));
    if !valid || x.len() != numel(xs) || y.len() != x.len() {
        return Err(Error::internal(format!("Transpose {perm:?} of {xs:?}")));
    }
    let st = istrides(xs);
    let ys: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
    let src_st: Vec<isize> = perm.iter().map(|&p| st[p]).collect();
    copy_strided(&ys, x, 0, &src_st, y, 0, &istrides(&ys));
    Ok(())
}

/// `y[i] = x[start + i * step]` per axis, output extents from `ys`.
pub(crate) fn slice(
    x: &[f32],
    xs: &[usize],
    starts: &[i64],
    steps: &[i64],
    ys: &[usize],
    y: &mut [f32],
) -> Result<()> {
    let r = xs.len();
    let bad = || Error::internal(format!("Slice {starts:?}:{steps:?} of {xs:?} -> {ys:?}"));
    if starts.len() != r || steps.len() != r || ys.len() != r {
        return Err(bad());
    }
    if x.len() != numel(xs) || y.len() != numel(ys) {
        return Err(bad());
    }
    if y.is_empty() {
        return Ok(());
    }
    for d in 0..r {
        let last = starts[d] + (ys[d] as i64 - 1) * steps[d];
        let inside = |i: i64| i >= 0 && i < xs[d] as i64;
        if steps[d] == 0 || !inside(starts[d]) || !inside(last) {
            return Err(bad());
        }
    }
    let st = istrides(xs);
    let off: isize = (0..r).map(|d| starts[d] as isize * st[d]).sum();
    let src_st: Vec<isize> = (0..r).map(|d| steps[d] as isize * st[d]).collect();
    copy_strided(ys, x, off, &src_st, y, 0, &istrides(ys));
    Ok(())
}

/// Concatenates `inputs` (data, full shape) along `axis` into `y` of shape `ys`.
pub(crate) fn concat(
    inputs: &[(&[f32], &[usize])],
    axis: usize,
    ys: &[usize],
    y: &mut [f32],
) -> Result<()> {
    let bad = || Error::internal(format!("Concat along {axis} into {ys:?}"));
    if axis >= ys.len() || y.len() != numel(ys) {
        return Err(bad());
    }
    let mut at = 0;
    for (data, s) in inputs {
        let same_rest = s.len() == ys.len() && (0..ys.len()).all(|d| d == axis || s[d] == ys[d]);
        if !same_rest || data.len() != numel(s) {
            return Err(bad());
        }
        at += s[axis];
    }
    if at != ys[axis] {
        return Err(bad());
    }
    let dst_st = istrides(ys);
    let mut at = 0;
    for (data, s) in inputs {
        copy_strided(s, data, 0, &istrides(s), y, at * dst_st[axis], &dst_st);
        at += s[axis] as isize;
    }
    Ok(())
}

/// Constant padding, `pads[d] = (before, after)` per axis.
pub(crate) fn pad(
    x: &[f32],
    xs: &[usize],
    pads: &[(usize, usize)],
    value: f32,
    y: &mut [f32],
) -> Result<()> {
    let ys: Vec<usize> = xs.iter().zip(pads).map(|(&n, &(b, a))| n + b + a).collect();
    if pads.len() != xs.len() || x.len() != numel(xs) || y.len() != numel(&ys) {
        return Err(Error::internal(format!("Pad {pads:?} of {xs:?}")));
    }
    y.fill(value);
    let dst_st = istrides(&ys);
    let off: isize = pads
        .iter()
        .zip(&dst_st)
        .map(|(&(b, _), &s)| b as isize * s)
        .sum();
    copy_strided(xs, x, 0, &istrides(xs), y, off, &dst_st);
    Ok(())
}

/// Gradient of `transpose`: `dy` (shape `perm(xs)`) transposed back by the inverse permutation.
pub(crate) fn transpose_vjp(
    dy: &[f32],
    xs: &[usize],
    perm: &[usize],
    dx: &mut [f32],
) -> Result<()> {
    if perm.len() != xs.len() || perm.iter().any(|&p| p >= xs.len()) {
        return Err(Error::internal(format!("Transpose VJP {perm:?} of {xs:?}")));
    }
    let ys: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    transpose(dy, &ys, &inv, dx)
}

/// Gradient of `slice`: `dy` scattered back to the positions it was read from, zeros elsewhere.
pub(crate) fn slice_vjp(
    dy: &[f32],
    ys: &[usize],
    starts: &[i64],
    steps: &[i64],
    xs: &[usize],
    dx: &mut [f32],
) -> Result<()> {
    let r = xs.len();
    let bad = || {
        Error::internal(format!(
            "Slice VJP {starts:?}:{steps:?} of {xs:?} -> {ys:?}"
        ))
    };
    if starts.len() != r || steps.len() != r || ys.len() != r {
        return Err(bad());
    }
    if dx.len() != numel(xs) || dy.len() != numel(ys) {
        return Err(bad());
    }
    dx.fill(0.0);
    if dy.is_empty() {
        return Ok(());
    }
    for d in 0..r {
        let last = starts[d] + (ys[d] as i64 - 1) * steps[d];
        let inside = |i: i64| i >= 0 && i < xs[d] as i64;
        if steps[d] == 0 || !inside(starts[d]) || !inside(last) {
            return Err(bad());
        }
    }
    let st = istrides(xs);
    let off: isize = (0..r).map(|d| starts[d] as isize * st[d]).sum();
    let dst_st: Vec<isize> = (0..r).map(|d| steps[d] as isize * st[d]).collect();
    copy_strided(ys, dy, 0, &istrides(ys), dx, off, &dst_st);
    Ok(())
}

/// Gradient of `concat` w.r.t. the input of shape `xs` that starts at `offset` along `axis`:
/// the matching block of `dy`.
pub(crate) fn concat_vjp(
    dy: &[f32],
    ys: &[usize],
    axis: usize,
    offset: usize,
    xs: &[usize],
    dx: &mut [f32],
) -> Result<()> {
    let fits = axis < ys.len()
        && xs.len() == ys.len()
        && (0..ys.len()).all(|d| d == axis || xs[d] == ys[d])
        && offset + xs[axis] <= ys[axis]
        && dy.len() == numel(ys)
        && dx.len() == numel(xs);
    if !fits {
        return Err(Error::internal(format!(
            "Concat VJP along {axis}: {xs:?} at {offset} of {ys:?}"
        )));
    }
    let src_st = istrides(ys);
    copy_strided(
        xs,
        dy,
        offset as isize * src_st[axis],
        &src_st,
        dx,
        0,
        &istrides(xs),
    );
    Ok(())
}

/// Gradient of `pad`: the interior of `dy` (the padding's value is a constant).
pub(crate) fn pad_vjp(
    dy: &[f32],
    xs: &[usize],
    pads: &[(usize, usize)],
    dx: &mut [f32],
) -> Result<()> {
    let ys: Vec<usize> = xs.iter().zip(pads).map(|(&n, &(b, a))| n + b + a).collect();
    if pads.len() != xs.len() || dx.len() != numel(xs) || dy.len() != numel(&ys) {
        return Err(Error::internal(format!("Pad VJP {pads:?} of {xs:?}")));
    }
    let src_st = istrides(&ys);
    let off: isize = pads
        .iter()
        .zip(&src_st)
        .map(|(&(b, _), &s)| b as isize * s)
        .sum();
    copy_strided(xs, dy, off, &src_st, dx, 0, &istrides(xs));
    Ok(())
}
