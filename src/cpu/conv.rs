//! 2-D convolution, NCHW: pointwise (one sgemm), depthwise (direct loops), general (im2col +
//! sgemm per group). An optional activation is fused into the epilogue while the output is hot.

use rayon::prelude::*;

use super::depthwise::{depthwise, depthwise_vjp};
use super::eltwise::unary_inplace;
use super::gemm::{gemm, Mat};
use super::geom::Geom;
use crate::error::{Error, Result};
use crate::model::{Conv, Unary};

fn geometry(x: &[f32], xs: &[usize], conv: &Conv, ys: &[usize], y: &[f32]) -> Result<Geom> {
    let bad = |why: &str| Err(Error::internal(format!("Conv {xs:?} -> {ys:?}: {why}")));
    let ws = &conv.weight.shape;
    if xs.len() != 4 || ys.len() != 4 || ws.len() != 4 || xs[0] != ys[0] {
        return bad("expects NCHW input, output and OIHW weight");
    }
    let g = Geom {
        n: xs[0],
        ic: xs[1],
        h: xs[2],
        w: xs[3],
        oc: ys[1],
        oh: ys[2],
        ow: ys[3],
        kh: ws[2],
        kw: ws[3],
        groups: conv.groups,
    };
    if g.groups == 0 || !g.ic.is_multiple_of(g.groups) || !g.oc.is_multiple_of(g.groups) {
        return bad("channels not divisible by groups");
    }
    if ws[0] != g.oc || ws[1] * g.groups != g.ic {
        return bad(&format!("weight shape {ws:?} does not match channels"));
    }
    if conv.bias.as_ref().is_some_and(|b| b.len() != g.oc) {
        return bad("bias length differs from output channels");
    }
    if conv.strides.contains(&0) || conv.dilations.contains(&0) || g.kh == 0 || g.kw == 0 {
        return bad("zero stride, dilation or kernel");
    }
    if x.len() != xs.iter().product::<usize>() || y.len() != ys.iter().product::<usize>() {
        return bad("data length does not match shape");
    }
    Ok(g)
}

/// `y = act(conv(x))`, overwriting all of `y`. `par` lets the op use all threads (the executor
/// turns it off when it already runs samples in parallel).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    x: &[f32],
    xs: &[usize],
    conv: &Conv,
    ys: &[usize],
    act: Option<Unary>,
    par: bool,
    y: &mut [f32],
) -> Result<()> {
    let g = geometry(x, xs, conv, ys, y)?;
    if g.n == 0 || y.is_empty() {
        return Ok(());
    }
    let [sh, sw] = conv.strides;
    let pads = conv.pads;
    if g.groups == g.ic && conv.weight.shape[1] == 1 && g.groups > 1 {
        depthwise(x, &g, conv, act, par, y)?;
    } else if g.kh == 1
        && g.kw == 1
        && sh == 1
        && sw == 1
        && pads == [0; 4]
        && g.groups == 1
        && (g.oh, g.ow) == (g.h, g.w)
    {
        pointwise(x, &g, conv, act, par, y);
    } else {
        im2col_conv(x, &g, conv, act, par, y);
    }
    Ok(())
}

/// Adds the per-row bias and applies the activation to a `[rows, cols]` block.
pub(crate) fn bias_act_rows(y: &mut [f32], cols: usize, bias: Option<&[f32]>, act: Option<Unary>) {
    if bias.is_none() && act.is_none() {
        return;
    }
    for (r, row) in y.chunks_mut(cols).enumerate() {
        if let Some(b) = bias {
            let b = b[r];
            row.iter_mut().for_each(|v| *v += b);
        }
        if let Some(a) = act {
            unary_inplace(a, row);
        }
    }
}

fn pointwise(x: &[f32], g: &Geom, conv: &Conv, act: Option<Unary>, par: bool, y: &mut [f32]) {
    let hw = g.h * g.w;
    let w = &conv.weight.data[..];
    let bias = conv.bias.as_ref().map(|b| &b.data[..]);
    let one = |i: usize, ys: &mut [f32], inner_par: bool| {
        let xs = &x[i * g.ic * hw..(i + 1) * g.ic * hw];
        gemm(
            g.oc,
            g.ic,
            hw,
            Mat::rows(w, 0, g.ic),
            Mat::rows(xs, 0, hw),
            ys,
            hw,
            false,
            inner_par,
        );
        bias_act_rows(ys, hw, bias, act);
    };
    let per = g.oc * hw;
    if par && g.n > 1 {
        y.par_chunks_mut(per)
            .enumerate()
            .for_each(|(i, ys)| one(i, ys, false));
    } else {
        y.chunks_mut(per)
            .enumerate()
            .for_each(|(i, ys)| one(i, ys, par));
    }
}

/// Range of output positions `o` for which `o * stride + off` lands in `[0, len)`.
fn valid_range(out_len: usize, stride: usize, off: isize, len: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let hi_excl = len as isize - off; // o * s < len - off
    let hi = if hi_excl <= 0 {
        0
    } else {
        (hi_excl + s - 1) / s
    };
    let lo = (lo as usize).min(out_len);
    (lo, (hi as usize).clamp(lo, out_len))
}

/// The most values an im2col buffer holds (16 MiB of f32): a layer whose full buffer
/// (`in channels per group × kernel taps × output pixels`) is larger runs over blocks of output
/// rows, so the scratch stays bounded however large the planes (a legal model can ask for GBs).
/// Unit tests use a tiny block so that their small shapes run over several blocks too.
const COL_MAX: usize = if cfg!(test) { 64 } else { 1 << 22 };

/// Output rows per im2col block for `kdim` rows of `ow`-wide output rows.
fn col_rows(g: &Geom, kdim: usize) -> usize {
    (COL_MAX / (kdim * g.ow).max(1)).clamp(1, g.oh.max(1))
}

/// Fills `col[(c * kh + ki) * kw + kj, (oy - oy0) * ow + ox]` with the input tap of channels
/// `c0..`, for the `block / ow` output rows from `oy0` (zero where the tap falls in the padding).
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    g: &Geom,
    conv: &Conv,
    c0: usize,
    oy0: usize,
    block: usize,
    col: &mut [f32],
    par: bool,
) {
    let ohw = block;
    let [sh, sw] = conv.strides;
    let [dh, dw] = conv.dilations;
    let [pt, pl, _, _] = conv.pads;
    let hw = g.h * g.w;
    let fill = |r: usize, dst: &mut [f32]| {
        let c = c0 + r / (g.kh * g.kw);
        let (ki, kj) = ((r / g.kw) % g.kh, r % g.kw);
        let src = &x[c * hw..(c + 1) * hw];
        let off = (kj * dw) as isize - pl as isize;
        let (lo, hi) = valid_range(g.ow, sw, off, g.w);
        for (oy, row) in dst.chunks_mut(g.ow).enumerate() {
            let iy = ((oy0 + oy) * sh + ki * dh) as isize - pt as isize;
            if iy < 0 || iy >= g.h as isize || lo >= hi {
                row.fill(0.0);
                continue;
            }
            let in_row = &src[iy as usize * g.w..][..g.w];
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            let start = ((lo * sw) as isize + off) as usize;
            if sw == 1 {
                row[lo..hi].copy_from_slice(&in_row[start..start + hi - lo]);
            } else {
                for (d, &v) in row[lo..hi]
                    .iter_mut()
                    .zip(in_row[start..].iter().step_by(sw))
                {
                    *d = v;
                }
            }
        }
    };
    if par {
        col.par_chunks_mut(ohw)
            .enumerate()
            .for_each(|(r, d)| fill(r, d));
    } else {
        col.chunks_mut(ohw)
            .enumerate()
            .for_each(|(r, d)| fill(r, d));
    }
}

fn im2col_conv(x: &[f32], g: &Geom, conv: &Conv, act: Option<Unary>, par: bool, y: &mut [f32]) {
    let (ohw, hw) = (g.oh * g.ow, g.h * g.w);
    let (icg, ocg) = (g.ic / g.groups, g.oc / g.groups);
    let kdim = icg * g.kh * g.kw;
    let wt = &conv.weight.data[..];
    let bias = conv.bias.as_ref().map(|b| &b.data[..]);
    let rows = col_rows(g, kdim);
    let one = |i: usize, ys: &mut [f32], inner_par: bool| {
        let xs = &x[i * g.ic * hw..(i + 1) * g.ic * hw];
        let mut col = vec![0.0f32; kdim * rows * g.ow];
        for (gi, yg) in ys.chunks_mut(ocg * ohw).enumerate() {
            for oy0 in (0..g.oh).step_by(rows) {
                // Output rows oy0.. of every channel of the group: columns of C with stride ohw.
                let block = rows.min(g.oh - oy0) * g.ow;
                let col = &mut col[..kdim * block];
                im2col(xs, g, conv, gi * icg, oy0, block, col, inner_par);
                let a = Mat::rows(wt, gi * ocg * kdim, kdim);
                gemm(
                    ocg,
                    kdim,
                    block,
                    a,
                    Mat::rows(col, 0, block),
                    &mut yg[oy0 * g.ow..],
                    ohw,
                    false,
                    inner_par,
                );
            }
        }
        bias_act_rows(ys, ohw, bias, act);
    };
    let per = g.oc * ohw;
    if par && g.n > 1 {
        y.par_chunks_mut(per)
            .enumerate()
            .for_each(|(i, ys)| one(i, ys, false));
    } else {
        y.chunks_mut(per)
            .enumerate()
            .for_each(|(i, ys)| one(i, ys, par));
    }
}

/// `dx = d conv(x) / dx ^T · dy`, overwriting all of `dx` (shape `xs`). Only the weights enter:
/// the VJP of a convolution w.r.t. its input needs no forward activation.
pub(crate) fn conv2d_vjp(
    dy: &[f32],
    ys: &[usize],
    conv: &Conv,
    xs: &[usize],
    par: bool,
    dx: &mut [f32],
) -> Result<()> {
    let g = geometry(dx, xs, conv, ys, dy)?;
    if g.n == 0 || dx.is_empty() {
        return Ok(());
    }
    let [sh, sw] = conv.strides;
    if g.groups == g.ic && conv.weight.shape[1] == 1 && g.groups > 1 {
        depthwise_vjp(dy, &g, conv, par, dx)?;
    } else if g.kh == 1
        && g.kw == 1
        && sh == 1
        && sw == 1
        && conv.pads == [0; 4]
        && g.groups == 1
        && (g.oh, g.ow) == (g.h, g.w)
    {
        pointwise_vjp(dy, &g, conv, par, dx);
    } else {
        col2im_conv_vjp(dy, &g, conv, par, dx);
    }
    Ok(())
}

/// Runs `one(sample, dx_sample, inner_par)` over samples, across threads when allowed.
fn per_sample(
    dx: &mut [f32],
    per: usize,
    n: usize,
    par: bool,
    one: impl Fn(usize, &mut [f32], bool) + Sync,
) {
    if par && n > 1 {
        dx.par_chunks_mut(per)
            .enumerate()
            .for_each(|(i, d)| one(i, d, false));
    } else {
        dx.chunks_mut(per)
            .enumerate()
            .for_each(|(i, d)| one(i, d, par));
    }
}

fn pointwise_vjp(dy: &[f32], g: &Geom, conv: &Conv, par: bool, dx: &mut [f32]) {
    let hw = g.h * g.w;
    let w = &conv.weight.data[..];
    per_sample(dx, g.ic * hw, g.n, par, |i, d, inner| {
        // W is [oc, ic]; swapped strides read W^T [ic, oc] in place.
        gemm(
            g.ic,
            g.oc,
            hw,
            Mat::new(w, 0, 1, g.ic),
            Mat::rows(dy, i * g.oc * hw, hw),
            d,
            hw,
            false,
            inner,
        );
    });
}

/// Adjoint of `im2col`: adds `col[(c * kh + ki) * kw + kj, (oy - oy0) * ow + ox]` (the `block /
/// ow` output rows from `oy0`) into the input tap it was read from, for channels `c0..`; `dx`
/// holds those channels' planes.
#[allow(clippy::too_many_arguments)]
fn col2im(col: &[f32], g: &Geom, conv: &Conv, oy0: usize, block: usize, dx: &mut [f32], par: bool) {
    let ohw = block;
    let [sh, sw] = conv.strides;
    let [dh, dw] = conv.dilations;
    let [pt, pl, _, _] = conv.pads;
    let (hw, kk) = (g.h * g.w, g.kh * g.kw);
    // One task per channel: the kernel rows of a channel all write the same plane.
    let chan = |c: usize, dst: &mut [f32]| {
        for r in c * kk..(c + 1) * kk {
            let (ki, kj) = ((r / g.kw) % g.kh, r % g.kw);
            let src = &col[r * ohw..(r + 1) * ohw];
            let off = (kj * dw) as isize - pl as isize;
            let (lo, hi) = valid_range(g.ow, sw, off, g.w);
            if lo >= hi {
                continue;
            }
            for (oy, row) in src.chunks(g.ow).enumerate() {
                let iy = ((oy0 + oy) * sh + ki * dh) as isize - pt as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                let in_row = &mut dst[iy as usize * g.w..][..g.w];
                let start = ((lo * sw) as isize + off) as usize;
                if sw == 1 {
                    for (d, &v) in in_row[start..start + hi - lo].iter_mut().zip(&row[lo..hi]) {
                        *d += v;
                    }
                } else {
                    for (d, &v) in in_row[start..].iter_mut().step_by(sw).zip(&row[lo..hi]) {
                        *d += v;
                    }
                }
            }
        }
    };
    if par {
        dx.par_chunks_mut(hw)
            .enumerate()
            .for_each(|(c, d)| chan(c, d));
    } else {
        dx.chunks_mut(hw).enumerate().for_each(|(c, d)| chan(c, d));
    }
}

fn col2im_conv_vjp(dy: &[f32], g: &Geom, conv: &Conv, par: bool, dx: &mut [f32]) {
    let (ohw, hw) = (g.oh * g.ow, g.h * g.w);
    let (icg, ocg) = (g.ic / g.groups, g.oc / g.groups);
    let kdim = icg * g.kh * g.kw;
    let wt = &conv.weight.data[..];
    let rows = col_rows(g, kdim);
    per_sample(dx, g.ic * hw, g.n, par, |i, d, inner| {
        let mut col = vec![0.0f32; kdim * rows * g.ow];
        d.fill(0.0);
        for (gi, dg) in d.chunks_mut(icg * hw).enumerate() {
            for oy0 in (0..g.oh).step_by(rows) {
                let block = rows.min(g.oh - oy0) * g.ow;
                let col = &mut col[..kdim * block];
                // W_g is [ocg, kdim]; swapped strides read W_g^T [kdim, ocg] in place; dy's
                // rows oy0.. of each channel are columns with stride ohw.
                gemm(
                    kdim,
                    ocg,
                    block,
                    Mat::new(wt, gi * ocg * kdim, 1, kdim),
                    Mat::new(dy, (i * g.oc + gi * ocg) * ohw + oy0 * g.ow, ohw, 1),
                    col,
                    block,
                    false,
                    inner,
                );
                col2im(col, g, conv, oy0, block, dg, inner);
            }
        }
    });
}
