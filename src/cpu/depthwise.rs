//! Depthwise convolution (groups = input channels) and its VJP, the ops MobileNets spend most of
//! their memory traffic in. Each input plane is copied once into a zero-padded scratch, split into
//! `sh × sw` phases (padded row `q * sh + rp`, column `m * sw + cp` sits in phase `(rp, cp)` at
//! `(q, m)`). Then one kernel tap over a whole output plane is one contiguous multiply-add over
//! `oh × phase_w` values (a few columns per row are computed and dropped), whatever the stride or
//! dilation: long loops the compiler vectorises (8 lanes with AVX2, chosen at run time) even for
//! 7×7 planes, and no border cases. The VJP is the exact transpose: each tap adds `w * dy` into
//! the phases, which are then gathered back into the input plane.

use rayon::prelude::*;

use super::eltwise::unary_inplace;
use super::geom::Geom;
use super::simd::avx2_dispatch;
use crate::error::{Error, Result};
use crate::model::{Conv, Unary};

/// The phase layout of one plane's padded input.
struct Phases {
    sh: usize,
    sw: usize,
    /// Rows and columns per phase, and the phase's length (one spare row: the dropped columns of
    /// the last output row read up to `phase_w` past its end).
    rows: usize,
    phase_w: usize,
    phase_len: usize,
    /// Per phase column: the first input column it holds, where that lands, how many it holds.
    fills: Vec<(usize, usize, usize)>,
    /// Per kernel tap `ki * kw + kj`: where its source starts in the scratch.
    taps: Vec<usize>,
    w: usize,
    pt: usize,
    kw: usize,
    ow: usize,
    /// Output values per plane in the scratch layout: `oh * phase_w`.
    span: usize,
}

impl Phases {
    /// The layout for `g` and `conv`, or an error when its scratch would not fit in memory
    /// (checked arithmetic: the importer bounds the attributes, this is the second line).
    fn new(g: &Geom, conv: &Conv) -> Result<Self> {
        let [dh, dw] = conv.dilations;
        let [pt, pl, _, _] = conv.pads;
        // With a single output row (column) the stride never moves the window, so any stride
        // gives the same result as 1. Using 1 keeps one phase instead of `stride` mostly empty
        // ones: a stride past the input (legal, e.g. 9 on a 7-wide plane) would otherwise cost
        // memory in proportion to the stride.
        let sh = if g.oh == 1 { 1 } else { conv.strides[0] };
        let sw = if g.ow == 1 { 1 } else { conv.strides[1] };
        let too_big = || {
            Error::bad_input(format!(
                "depthwise conv {}x{} -> {}x{} with kernel {}x{}, strides {:?}, dilations {:?}: \
                 its scratch size overflows",
                g.h, g.w, g.oh, g.ow, g.kh, g.kw, conv.strides, conv.dilations
            ))
        };
        let extra = |k: usize, d: usize, s: usize| {
            k.checked_sub(1)
                .and_then(|k| k.checked_mul(d))
                .map(|e| e / s)
        };
        let rows = extra(g.kh, dh, sh)
            .and_then(|e| e.checked_add(g.oh))
            .ok_or_else(too_big)?;
        let phase_w = extra(g.kw, dw, sw)
            .and_then(|e| e.checked_add(g.ow))
            .ok_or_else(too_big)?;
        let phase_len = rows
            .checked_add(1)
            .and_then(|r| r.checked_mul(phase_w))
            .ok_or_else(too_big)?;
        // The whole scratch, `sh * sw * phase_len`, must be addressable.
        sh.checked_mul(sw)
            .and_then(|p| p.checked_mul(phase_len))
            .filter(|&n| n <= isize::MAX as usize / std::mem::size_of::<f32>())
            .ok_or_else(too_big)?;
        let fills = (0..sw)
            .map(|cp| {
                let c0 = (cp + sw - pl % sw) % sw;
                let m0 = ((c0 + pl) / sw).min(phase_w);
                let n = g.w.saturating_sub(c0).div_ceil(sw).min(phase_w - m0);
                (c0, m0, n)
            })
            .collect();
        let taps = (0..g.kh * g.kw)
            .map(|t| {
                let (r, c) = ((t / g.kw) * dh, (t % g.kw) * dw);
                let phase = (r % sh) * sw + c % sw;
                phase * phase_len + (r / sh) * phase_w + c / sw
            })
            .collect();
        Ok(Phases {
            sh,
            sw,
            rows,
            phase_w,
            phase_len,
            fills,
            taps,
            w: g.w,
            pt,
            kw: g.kw,
            ow: g.ow,
            span: g.oh * phase_w,
        })
    }
}

/// Scratch of one thread: the padded phases and the output plane in scratch layout.
#[derive(Default)]
struct Scratch {
    padded: Vec<f32>,
    acc: Vec<f32>,
}

/// Runs `one(index, plane, scratch)` over the `len`-long planes of `y`, across threads with `par`,
/// with one scratch per thread.
fn each_plane(
    y: &mut [f32],
    len: usize,
    par: bool,
    one: impl Fn(usize, &mut [f32], &mut Scratch) + Sync + Send,
) {
    if par {
        y.par_chunks_mut(len)
            .enumerate()
            .for_each_init(Scratch::default, |s, (p, out)| one(p, out, s));
    } else {
        let mut scratch = Scratch::default();
        y.chunks_mut(len)
            .enumerate()
            .for_each(|(p, out)| one(p, out, &mut scratch));
    }
}

/// `y = act(depthwise(x))` over all samples and channels (channel multiplier `oc / ic`).
pub(super) fn depthwise(
    x: &[f32],
    g: &Geom,
    conv: &Conv,
    act: Option<Unary>,
    par: bool,
    y: &mut [f32],
) -> Result<()> {
    let mult = g.oc / g.ic;
    let (ohw, hw, kk) = (g.oh * g.ow, g.h * g.w, g.kh * g.kw);
    let ph = Phases::new(g, conv)?;
    let wt = &conv.weight.data[..];
    let bias = conv.bias.as_ref().map(|b| &b.data[..]);
    let one = |p: usize, out: &mut [f32], scratch: &mut Scratch| {
        let (n, o) = (p / g.oc, p % g.oc);
        let src = &x[(n * g.ic + o / mult) * hw..][..hw];
        let kernel = &wt[o * kk..(o + 1) * kk];
        let b = bias.map_or(0.0, |b| b[o]);
        plane(&ph, src, kernel, b, act, out, scratch);
    };
    each_plane(y, ohw, par, one);
    Ok(())
}

avx2_dispatch! {
    /// One output plane from one input plane `src`.
    fn plane(
        ph: &Phases,
        src: &[f32],
        kernel: &[f32],
        bias: f32,
        act: Option<Unary>,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) {
        let Scratch { padded, acc } = scratch;
        let (sw, phase_w) = (ph.sw, ph.phase_w);
        // Every element is written below (zeros where the padding is), so no clearing.
        padded.resize(ph.sh * sw * ph.phase_len, 0.0);
        for q in 0..=ph.rows {
            for rp in 0..ph.sh {
                let row = (q * ph.sh + rp)
                    .checked_sub(ph.pt)
                    .filter(|&r| r < src.len() / ph.w)
                    .map(|r| &src[r * ph.w..][..ph.w]);
                for (cp, &(c0, m0, n)) in ph.fills.iter().enumerate() {
                    let dst = &mut padded[(rp * sw + cp) * ph.phase_len + q * phase_w..][..phase_w];
                    let Some(row) = row else {
                        dst.fill(0.0);
                        continue;
                    };
                    dst[..m0].fill(0.0);
                    dst[m0 + n..].fill(0.0);
                    let (dst, from) = (&mut dst[m0..m0 + n], &row[c0.min(row.len())..]);
                    match sw {
                        1 => dst.copy_from_slice(&from[..n]),
                        2 if from.len() >= 2 * n => {
                            for (d, pair) in dst.iter_mut().zip(from.chunks_exact(2)) {
                                *d = pair[0];
                            }
                        }
                        _ => {
                            for (d, v) in dst.iter_mut().zip(from.chunks(sw)) {
                                *d = v[0];
                            }
                        }
                    }
                }
            }
        }
        acc.clear();
        acc.resize(ph.span, bias);
        let tap = |t: usize| &padded[ph.taps[t]..][..ph.span];
        for (ki, kr) in kernel.chunks(ph.kw).enumerate() {
            let t = ki * ph.kw;
            if ph.kw == 3 {
                // The three taps of a kernel row in one pass: a third of the accumulator traffic.
                let (s0, s1, s2) = (tap(t), tap(t + 1), tap(t + 2));
                let (w0, w1, w2) = (kr[0], kr[1], kr[2]);
                for (((d, &a), &b), &c) in acc.iter_mut().zip(s0).zip(s1).zip(s2) {
                    *d += w0 * a + w1 * b + w2 * c;
                }
            } else {
                for (kj, &wv) in kr.iter().enumerate() {
                    for (d, &v) in acc.iter_mut().zip(tap(t + kj)) {
                        *d += wv * v;
                    }
                }
            }
        }
        for (row, full) in out.chunks_mut(ph.ow).zip(acc.chunks(phase_w)) {
            row.copy_from_slice(&full[..ph.ow]);
        }
        if let Some(a) = act {
            unary_inplace(a, out);
        }
    }
}

/// `dx = depthwise(x)ᵀ · dy`, overwriting all of `dx` (one input plane collects from the `mult`
/// output planes of its channel).
pub(super) fn depthwise_vjp(
    dy: &[f32],
    g: &Geom,
    conv: &Conv,
    par: bool,
    dx: &mut [f32],
) -> Result<()> {
    let mult = g.oc / g.ic;
    let (ohw, hw, kk) = (g.oh * g.ow, g.h * g.w, g.kh * g.kw);
    let ph = Phases::new(g, conv)?;
    let wt = &conv.weight.data[..];
    let one = |p: usize, out: &mut [f32], scratch: &mut Scratch| {
        let (n, c) = (p / g.ic, p % g.ic);
        let Scratch { padded, acc } = scratch;
        padded.clear();
        padded.resize(ph.sh * ph.sw * ph.phase_len, 0.0);
        for m in 0..mult {
            let o = c * mult + m;
            let dy_plane = &dy[(n * g.oc + o) * ohw..][..ohw];
            plane_vjp(&ph, dy_plane, &wt[o * kk..(o + 1) * kk], acc, padded);
        }
        gather(&ph, padded, out);
    };
    each_plane(dx, hw, par, one);
    Ok(())
}

avx2_dispatch! {
    /// Adds the VJP of one output plane `dy` into the phase-layout gradient `padded`.
    fn plane_vjp(ph: &Phases, dy: &[f32], kernel: &[f32], acc: &mut Vec<f32>, padded: &mut [f32]) {
        // dy in the scratch layout; the dropped columns get zero, so they add nothing.
        acc.clear();
        acc.resize(ph.span, 0.0);
        for (full, row) in acc.chunks_mut(ph.phase_w).zip(dy.chunks(ph.ow)) {
            full[..ph.ow].copy_from_slice(row);
        }
        for (&start, &wv) in ph.taps.iter().zip(kernel) {
            for (d, &v) in padded[start..][..ph.span].iter_mut().zip(acc.iter()) {
                *d += wv * v;
            }
        }
    }
}

/// The input plane's gradient from the phase layout: the transpose of the copy into phases
/// (padding positions are dropped; input pixels no tap reads get zero).
fn gather(ph: &Phases, padded: &[f32], out: &mut [f32]) {
    let sw = ph.sw;
    for (r, row) in out.chunks_mut(ph.w).enumerate() {
        let (q, rp) = ((r + ph.pt) / ph.sh, (r + ph.pt) % ph.sh);
        if q > ph.rows {
            row.fill(0.0);
            continue;
        }
        if sw > 1 {
            row.fill(0.0);
        }
        for (cp, &(c0, m0, n)) in ph.fills.iter().enumerate() {
            // A phase column holding no input column (with a stride past the input width its
            // first column `c0` lies beyond the row; with a left pad past every window, none
            // is read) has nothing to give back; the row is zero where nothing else writes.
            if n == 0 {
                if sw == 1 {
                    row.fill(0.0);
                }
                continue;
            }
            let src = &padded[(rp * sw + cp) * ph.phase_len + q * ph.phase_w..][m0..m0 + n];
            if sw == 1 {
                row[..c0].fill(0.0);
                row[c0..c0 + n].copy_from_slice(src);
                row[c0 + n..].fill(0.0);
            } else {
                for (d, &v) in row[c0..].iter_mut().step_by(sw).zip(src) {
                    *d = v;
                }
            }
        }
    }
}
