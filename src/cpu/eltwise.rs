//! Elementwise ops: activations, per-channel affine, broadcasting binaries.

use super::simd::avx2_dispatch;
use crate::error::{Error, Result};
use crate::model::{broadcast_strides, strides_of, BinaryKind, Unary};

avx2_dispatch! {
    /// Applies `u` in place. The match sits outside the loops so the common activations
    /// vectorise; ReLU and Clip compare and select (a NaN becomes the lower bound, as
    /// `f32::max` does) instead of `f32::max`/`min`, whose NaN rules cost three extra vector ops.
    pub(crate) fn unary_inplace(u: Unary, xs: &mut [f32]) {
        let clamp_below = |x: f32, lo: f32| if x > lo { x } else { lo };
        match u {
            Unary::Relu => xs.iter_mut().for_each(|x| *x = clamp_below(*x, 0.0)),
            Unary::Clip { min, max } => xs.iter_mut().for_each(|x| {
                let v = clamp_below(*x, min);
                *x = if v < max { v } else { max };
            }),
            _ => xs.iter_mut().for_each(|x| *x = u.apply(*x)),
        }
    }
}

pub(crate) fn unary(u: Unary, x: &[f32], out: &mut [f32]) -> Result<()> {
    check_len(x.len(), out.len(), "unary")?;
    out.copy_from_slice(x);
    unary_inplace(u, out);
    Ok(())
}

fn check_len(a: usize, b: usize, what: &str) -> Result<()> {
    if a != b {
        return Err(Error::internal(format!(
            "{what}: {a} input values for {b} outputs"
        )));
    }
    Ok(())
}

/// `x[:, c, ...] = x[:, c, ...] * scale[c] + shift[c]` over full axis 1, in place.
pub(crate) fn channel_affine_inplace(
    x: &mut [f32],
    shape: &[usize],
    scale: &[f32],
    shift: &[f32],
) -> Result<()> {
    if shape.len() < 2 || scale.len() != shape[1] || shift.len() != shape[1] {
        return Err(Error::internal(format!(
            "ChannelAffine: {} scales / {} shifts for shape {shape:?}",
            scale.len(),
            shift.len()
        )));
    }
    check_len(shape.iter().product(), x.len(), "ChannelAffine")?;
    let inner: usize = shape[2..].iter().product();
    if inner == 0 {
        return Ok(());
    }
    for (i, plane) in x.chunks_mut(inner).enumerate() {
        let c = i % shape[1];
        let (s, t) = (scale[c], shift[c]);
        plane.iter_mut().for_each(|v| *v = *v * s + t);
    }
    Ok(())
}

pub(crate) fn channel_affine(
    x: &[f32],
    shape: &[usize],
    scale: &[f32],
    shift: &[f32],
    out: &mut [f32],
) -> Result<()> {
    check_len(x.len(), out.len(), "ChannelAffine")?;
    out.copy_from_slice(x);
    channel_affine_inplace(out, shape, scale, shift)
}

/// `out = a ∘ b` with numpy broadcasting; `out_shape` must be the broadcast of both shapes.
pub(crate) fn binary(
    kind: BinaryKind,
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<()> {
    check_operand(a, a_shape, out_shape)?;
    check_operand(b, b_shape, out_shape)?;
    check_out(out.len(), out_shape)?;
    let sa = broadcast_strides(out_shape, a_shape);
    let sb = broadcast_strides(out_shape, b_shape);
    walk(out_shape, &sa, &sb, |o, ia, ib, n, ca, cb| {
        let out = &mut out[o..o + n];
        match (ca, cb) {
            (1, 1) => {
                let (a, b) = (&a[ia..ia + n], &b[ib..ib + n]);
                for ((y, &x), &z) in out.iter_mut().zip(a).zip(b) {
                    *y = kind.apply(x, z);
                }
            }
            (1, 0) => {
                let z = b[ib];
                for (y, &x) in out.iter_mut().zip(&a[ia..ia + n]) {
                    *y = kind.apply(x, z);
                }
            }
            (0, 1) => {
                let x = a[ia];
                for (y, &z) in out.iter_mut().zip(&b[ib..ib + n]) {
                    *y = kind.apply(x, z);
                }
            }
            _ => {
                for (j, y) in out.iter_mut().enumerate() {
                    *y = kind.apply(a[ia + j * ca], b[ib + j * cb]);
                }
            }
        }
    });
    Ok(())
}

/// In place: `acc = acc ∘ other` (or `other ∘ acc` when `!acc_is_lhs`), where `acc` already has
/// the broadcast shape. Saves an allocation for residual adds and constant operands.
pub(crate) fn binary_assign(
    kind: BinaryKind,
    acc: &mut [f32],
    shape: &[usize],
    other: &[f32],
    other_shape: &[usize],
    acc_is_lhs: bool,
) -> Result<()> {
    check_operand(other, other_shape, shape)?;
    check_out(acc.len(), shape)?;
    let so = broadcast_strides(shape, other_shape);
    let sa = strides_of(shape);
    let f = move |x: f32, z: f32| {
        if acc_is_lhs {
            kind.apply(x, z)
        } else {
            kind.apply(z, x)
        }
    };
    walk(shape, &sa, &so, |o, _, ib, n, _, cb| {
        let acc = &mut acc[o..o + n];
        match cb {
            1 => {
                for (y, &z) in acc.iter_mut().zip(&other[ib..ib + n]) {
                    *y = f(*y, z);
                }
            }
            0 => {
                let z = other[ib];
                acc.iter_mut().for_each(|y| *y = f(*y, z));
            }
            _ => {
                for (j, y) in acc.iter_mut().enumerate() {
                    *y = f(*y, other[ib + j * cb]);
                }
            }
        }
    });
    Ok(())
}

/// Checks that `x` has `shape` and that `shape` broadcasts against `out_shape` without growing it.
fn check_operand(x: &[f32], shape: &[usize], out_shape: &[usize]) -> Result<()> {
    if !broadcasts(shape, out_shape) || shape.iter().product::<usize>() != x.len() {
        return Err(Error::internal(format!(
            "binary: operand of shape {shape:?} ({} values) does not broadcast to {out_shape:?}",
            x.len()
        )));
    }
    Ok(())
}

fn broadcasts(shape: &[usize], out_shape: &[usize]) -> bool {
    shape.len() <= out_shape.len()
        && shape
            .iter()
            .rev()
            .zip(out_shape.iter().rev())
            .all(|(&s, &o)| s == o || s == 1)
}

fn check_out(len: usize, shape: &[usize]) -> Result<()> {
    check_len(shape.iter().product(), len, "binary")
}

/// Walks a contiguous output of `shape` row by row (last axis), calling
/// `f(out_offset, a_offset, b_offset, row_len, a_inner_stride, b_inner_stride)`.
fn walk(
    shape: &[usize],
    sa: &[usize],
    sb: &[usize],
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    let total: usize = shape.iter().product();
    if total == 0 {
        return;
    }
    let Some((&n, outer)) = shape.split_last() else {
        f(0, 0, 0, 1, 0, 0);
        return;
    };
    let r = outer.len();
    let (ca, cb) = (sa[r], sb[r]);
    let mut idx = vec![0usize; r];
    let (mut ia, mut ib) = (0usize, 0usize);
    let mut o = 0;
    loop {
        f(o, ia, ib, n, ca, cb);
        o += n;
        // Odometer increment over the outer axes, keeping the operand offsets in step.
        let mut d = r;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            ia += sa[d];
            ib += sb[d];
            if idx[d] < outer[d] {
                break;
            }
            ia -= sa[d] * outer[d];
            ib -= sb[d] * outer[d];
            idx[d] = 0;
        }
    }
}

/// In place: `g = g * scale[c]` over full axis 1.
pub(crate) fn channel_affine_vjp_inplace(
    g: &mut [f32],
    shape: &[usize],
    scale: &[f32],
) -> Result<()> {
    let zeros = vec![0.0; scale.len()];
    channel_affine_inplace(g, shape, scale, &zeros)
}

/// The gradient of `out = a ∘ b` w.r.t. one operand (`lhs` picks `a`), summed over the axes
/// along which that operand was broadcast; overwrites `dx` (the operand's shape). Add and Sub do
/// not read the operands, and Mul/Div w.r.t. `a` do not read `a`: what is not read may be `None`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn binary_vjp(
    kind: BinaryKind,
    lhs: bool,
    a: Option<&[f32]>,
    a_shape: &[usize],
    b: Option<&[f32]>,
    b_shape: &[usize],
    dy: &[f32],
    out_shape: &[usize],
    dx: &mut [f32],
) -> Result<()> {
    check_out(dy.len(), out_shape)?;
    let (own_shape, _) = if lhs {
        (a_shape, b_shape)
    } else {
        (b_shape, a_shape)
    };
    check_len(own_shape.iter().product(), dx.len(), "binary VJP")?;
    for (x, s, is_a) in [(a, a_shape, true), (b, b_shape, false)] {
        match x {
            Some(x) => check_operand(x, s, out_shape)?,
            None => {
                let needed = match kind {
                    BinaryKind::Add | BinaryKind::Sub => false,
                    BinaryKind::Mul => lhs != is_a,
                    BinaryKind::Div => !lhs || !is_a,
                };
                if needed {
                    return Err(Error::internal("binary VJP: a Mul/Div operand is missing"));
                }
                if !broadcasts(s, out_shape) {
                    return Err(Error::internal(format!(
                        "binary VJP: {s:?} does not broadcast to {out_shape:?}"
                    )));
                }
            }
        }
    }
    let sa = broadcast_strides(out_shape, a_shape);
    let sb = broadcast_strides(out_shape, b_shape);
    let (a, b) = (a.unwrap_or(&[]), b.unwrap_or(&[]));
    // Fast paths: no broadcast on this side and no operand read.
    let same = own_shape == out_shape;
    match (kind, lhs, same) {
        (BinaryKind::Add, _, true) | (BinaryKind::Sub, true, true) => {
            dx.copy_from_slice(dy);
            return Ok(());
        }
        (BinaryKind::Sub, false, true) => {
            dx.iter_mut().zip(dy).for_each(|(d, &g)| *d = -g);
            return Ok(());
        }
        _ => {}
    }
    dx.fill(0.0);
    walk(out_shape, &sa, &sb, |o, ia, ib, n, ca, cb| {
        let (dst, cd) = if lhs { (ia, ca) } else { (ib, cb) };
        for j in 0..n {
            let g = dy[o + j];
            let d = match (kind, lhs) {
                (BinaryKind::Add, _) | (BinaryKind::Sub, true) => g,
                (BinaryKind::Sub, false) => -g,
                (BinaryKind::Mul, true) => g * b[ib + j * cb],
                (BinaryKind::Mul, false) => g * a[ia + j * ca],
                (BinaryKind::Div, true) => g / b[ib + j * cb],
                (BinaryKind::Div, false) => {
                    let z = b[ib + j * cb];
                    -g * a[ia + j * ca] / (z * z)
                }
            };
            dx[dst + j * cd] += d;
        }
    });
    Ok(())
}
