//! Max / average pooling over the last two axes, and global pooling.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{Pool, PoolKind};

/// Kernel taps `k` (in order) whose position `start + k * dil` lies in `[lo, hi)`.
fn taps(start: isize, kernel: usize, dil: usize, lo: isize, hi: isize) -> (usize, usize) {
    let d = dil as isize;
    let first = if start >= lo {
        0
    } else {
        (lo - start + d - 1) / d
    };
    let end = if hi <= start {
        0
    } else {
        (hi - start + d - 1) / d
    };
    let first = (first as usize).min(kernel);
    (first, (end as usize).clamp(first, kernel))
}

pub(crate) fn pool2d(
    x: &[f32],
    xs: &[usize],
    pool: &Pool,
    ys: &[usize],
    par: bool,
    y: &mut [f32],
) -> Result<()> {
    let ok = xs.len() == 4
        && ys.len() == 4
        && xs[..2] == ys[..2]
        && x.len() == xs.iter().product::<usize>()
        && y.len() == ys.iter().product::<usize>()
        && !pool.strides.contains(&0)
        && !pool.dilations.contains(&0);
    if !ok {
        return Err(Error::internal(format!(
            "Pool {xs:?} -> {ys:?}: bad shapes or geometry"
        )));
    }
    let (h, w, oh, ow) = (xs[2], xs[3], ys[2], ys[3]);
    let [kh, kw] = pool.kernel;
    let [sh, sw] = pool.strides;
    let [dh, dw] = pool.dilations;
    let [pt, pl, pb, pr] = pool.pads.map(|p| p as isize);
    let (hi_h, hi_w) = (h as isize, w as isize);
    let plane = |src: &[f32], out: &mut [f32]| {
        for oy in 0..oh {
            let y0 = (oy * sh) as isize - pt;
            let (ka, kb) = taps(y0, kh, dh, 0, hi_h);
            let (pa, pbnd) = taps(y0, kh, dh, -pt, hi_h + pb);
            for ox in 0..ow {
                let x0 = (ox * sw) as isize - pl;
                let (ja, jb) = taps(x0, kw, dw, 0, hi_w);
                let v = match pool.kind {
                    PoolKind::Max => {
                        let mut m = f32::NEG_INFINITY;
                        for ki in ka..kb {
                            let row = &src[(y0 + (ki * dh) as isize) as usize * w..];
                            for kj in ja..jb {
                                m = m.max(row[(x0 + (kj * dw) as isize) as usize]);
                            }
                        }
                        m
                    }
                    PoolKind::Avg { count_include_pad } => {
                        let mut s = 0.0;
                        for ki in ka..kb {
                            let row = &src[(y0 + (ki * dh) as isize) as usize * w..];
                            for kj in ja..jb {
                                s += row[(x0 + (kj * dw) as isize) as usize];
                            }
                        }
                        let count = if count_include_pad {
                            let (qa, qb) = taps(x0, kw, dw, -pl, hi_w + pr);
                            (pbnd - pa) * (qb - qa)
                        } else {
                            (kb - ka) * (jb - ja)
                        };
                        if count == 0 {
                            0.0
                        } else {
                            s / count as f32
                        }
                    }
                };
                out[oy * ow + ox] = v;
            }
        }
    };
    let (hw, ohw) = (h * w, oh * ow);
    if ohw == 0 {
        return Ok(());
    }
    if par {
        y.par_chunks_mut(ohw)
            .enumerate()
            .for_each(|(p, o)| plane(&x[p * hw..(p + 1) * hw], o));
    } else {
        y.chunks_mut(ohw)
            .enumerate()
            .for_each(|(p, o)| plane(&x[p * hw..(p + 1) * hw], o));
    }
    Ok(())
}

/// Mean or max over H, W of `[N, C, H, W]`; `y` has `N * C` values.
pub(crate) fn global_pool(x: &[f32], xs: &[usize], max: bool, y: &mut [f32]) -> Result<()> {
    if xs.len() != 4 || x.len() != xs.iter().product::<usize>() || y.len() != xs[0] * xs[1] {
        return Err(Error::internal(format!("GlobalPool on {xs:?}: bad shapes")));
    }
    let hw = xs[2] * xs[3];
    if hw == 0 {
        y.fill(if max { f32::NEG_INFINITY } else { 0.0 });
        return Ok(());
    }
    for (o, plane) in y.iter_mut().zip(x.chunks(hw)) {
        *o = if max {
            plane.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        } else {
            plane.iter().sum::<f32>() / hw as f32
        };
    }
    Ok(())
}

/// Gradient of `pool2d` w.r.t. its input, overwriting `dx` (shape `xs`). Max sends each output's
/// gradient to the first maximum of its window in scan order (rows, then columns), matching a
/// strict `>` scan; Avg spreads it over the window's in-bounds taps with the forward's divisor.
/// `x` is only read for Max.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pool2d_vjp(
    x: &[f32],
    xs: &[usize],
    pool: &Pool,
    dy: &[f32],
    ys: &[usize],
    par: bool,
    dx: &mut [f32],
) -> Result<()> {
    let is_max = pool.kind == PoolKind::Max;
    let ok = xs.len() == 4
        && ys.len() == 4
        && xs[..2] == ys[..2]
        && (!is_max || x.len() == xs.iter().product::<usize>())
        && dx.len() == xs.iter().product::<usize>()
        && dy.len() == ys.iter().product::<usize>()
        && !pool.strides.contains(&0)
        && !pool.dilations.contains(&0);
    if !ok {
        return Err(Error::internal(format!(
            "Pool VJP {xs:?} -> {ys:?}: bad shapes or geometry"
        )));
    }
    let (h, w, oh, ow) = (xs[2], xs[3], ys[2], ys[3]);
    let [kh, kw] = pool.kernel;
    let [sh, sw] = pool.strides;
    let [dh, dw] = pool.dilations;
    let [pt, pl, pb, pr] = pool.pads.map(|p| p as isize);
    let (hi_h, hi_w) = (h as isize, w as isize);
    let plane = |p: usize, out: &mut [f32]| {
        out.fill(0.0);
        let src = if is_max {
            &x[p * h * w..][..h * w]
        } else {
            &[][..]
        };
        let g = &dy[p * oh * ow..][..oh * ow];
        for oy in 0..oh {
            let y0 = (oy * sh) as isize - pt;
            let (ka, kb) = taps(y0, kh, dh, 0, hi_h);
            let (pa, pbnd) = taps(y0, kh, dh, -pt, hi_h + pb);
            for ox in 0..ow {
                let x0 = (ox * sw) as isize - pl;
                let (ja, jb) = taps(x0, kw, dw, 0, hi_w);
                let gv = g[oy * ow + ox];
                let at = |ki: usize, kj: usize| {
                    (y0 + (ki * dh) as isize) as usize * w + (x0 + (kj * dw) as isize) as usize
                };
                match pool.kind {
                    PoolKind::Max => {
                        let mut best: Option<(usize, f32)> = None;
                        for ki in ka..kb {
                            for kj in ja..jb {
                                let i = at(ki, kj);
                                if best.is_none_or(|(_, m)| src[i] > m) {
                                    best = Some((i, src[i]));
                                }
                            }
                        }
                        if let Some((i, _)) = best {
                            out[i] += gv;
                        }
                    }
                    PoolKind::Avg { count_include_pad } => {
                        let count = if count_include_pad {
                            let (qa, qb) = taps(x0, kw, dw, -pl, hi_w + pr);
                            (pbnd - pa) * (qb - qa)
                        } else {
                            (kb - ka) * (jb - ja)
                        };
                        if count == 0 {
                            continue;
                        }
                        let share = gv / count as f32;
                        for ki in ka..kb {
                            for kj in ja..jb {
                                out[at(ki, kj)] += share;
                            }
                        }
                    }
                }
            }
        }
    };
    let hw = h * w;
    if hw == 0 {
        return Ok(());
    }
    if par {
        dx.par_chunks_mut(hw)
            .enumerate()
            .for_each(|(p, o)| plane(p, o));
    } else {
        dx.chunks_mut(hw).enumerate().for_each(|(p, o)| plane(p, o));
    }
    Ok(())
}

/// Gradient of `global_pool`, overwriting `dx`: mean spreads `dy / (H·W)`, max sends `dy` to the
/// first maximum of the plane. `x` is only read for max.
pub(crate) fn global_pool_vjp(
    x: &[f32],
    xs: &[usize],
    max: bool,
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    let n: usize = xs.iter().product();
    if xs.len() != 4 || (max && x.len() != n) || dx.len() != n || dy.len() != xs[0] * xs[1] {
        return Err(Error::internal(format!(
            "GlobalPool VJP on {xs:?}: bad shapes"
        )));
    }
    let hw = xs[2] * xs[3];
    if hw == 0 {
        return Ok(());
    }
    for (p, (out, &g)) in dx.chunks_mut(hw).zip(dy).enumerate() {
        if max {
            out.fill(0.0);
            let plane = &x[p * hw..(p + 1) * hw];
            let mut best = 0;
            for (i, &v) in plane.iter().enumerate() {
                if v > plane[best] {
                    best = i;
                }
            }
            out[best] = g;
        } else {
            out.fill(g / hw as f32);
        }
    }
    Ok(())
}
