//! Deliberately naive reference implementations: plain loops over every output element and every
//! tap, f64 accumulation, bounds checks instead of precomputed ranges.

use crate::model::{strides_of, BinaryKind, Conv, Pool, PoolKind, ReduceKind};

pub fn conv(x: &[f32], xs: &[usize], c: &Conv, oh: usize, ow: usize) -> Vec<f32> {
    let (n, ic, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let ws = &c.weight.shape;
    let (oc, icg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let ocg = oc / c.groups;
    let mut y = vec![0.0; n * oc * oh * ow];
    for b in 0..n {
        for o in 0..oc {
            let grp = o / ocg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = c.bias.as_ref().map_or(0.0, |b| b.data[o] as f64);
                    for ci in 0..icg {
                        let chan = grp * icg + ci;
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let iy = (oy * c.strides[0] + ki * c.dilations[0]) as i64
                                    - c.pads[0] as i64;
                                let ix = (ox * c.strides[1] + kj * c.dilations[1]) as i64
                                    - c.pads[1] as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                    continue;
                                }
                                let xv = x[((b * ic + chan) * h + iy as usize) * w + ix as usize];
                                let wv = c.weight.data[((o * icg + ci) * kh + ki) * kw + kj];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[((b * oc + o) * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
    }
    y
}

pub fn linear(x: &[f32], k: usize, w: &[f32], b: Option<&[f32]>, o: usize) -> Vec<f32> {
    let rows = x.len() / k;
    let mut y = vec![0.0; rows * o];
    for r in 0..rows {
        for j in 0..o {
            let mut s = b.map_or(0.0, |b| b[j] as f64);
            for i in 0..k {
                s += x[r * k + i] as f64 * w[j * k + i] as f64;
            }
            y[r * o + j] = s as f32;
        }
    }
    y
}

/// Unravels a flat index of `shape`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

/// Reads `x` (shape `xs`, right-aligned, size-1 axes broadcast) at the output index `idx`.
fn bcast_at(x: &[f32], xs: &[usize], idx: &[usize]) -> f32 {
    let off = idx.len() - xs.len();
    let mut flat = 0;
    for d in 0..xs.len() {
        let i = if xs[d] == 1 { 0 } else { idx[off + d] };
        flat = flat * xs[d] + i;
    }
    x[flat]
}

pub fn binary(
    k: BinaryKind,
    a: &[f32],
    as_: &[usize],
    b: &[f32],
    bs: &[usize],
    os: &[usize],
) -> Vec<f32> {
    (0..os.iter().product())
        .map(|i| {
            let idx = unravel(i, os);
            let (x, z) = (bcast_at(a, as_, &idx) as f64, bcast_at(b, bs, &idx) as f64);
            (match k {
                BinaryKind::Add => x + z,
                BinaryKind::Sub => x - z,
                BinaryKind::Mul => x * z,
                BinaryKind::Div => x / z,
            }) as f32
        })
        .collect()
}

pub fn pool(x: &[f32], xs: &[usize], p: &Pool, oh: usize, ow: usize) -> Vec<f32> {
    let (n, c, h, w) = (xs[0], xs[1], xs[2] as i64, xs[3] as i64);
    let mut y = Vec::new();
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut mx, mut sum, mut inb, mut padded) = (f64::NEG_INFINITY, 0.0, 0, 0);
                for ki in 0..p.kernel[0] {
                    for kj in 0..p.kernel[1] {
                        let iy =
                            (oy * p.strides[0] + ki * p.dilations[0]) as i64 - p.pads[0] as i64;
                        let ix =
                            (ox * p.strides[1] + kj * p.dilations[1]) as i64 - p.pads[1] as i64;
                        let in_pad_y = iy >= -(p.pads[0] as i64) && iy < h + p.pads[2] as i64;
                        let in_pad_x = ix >= -(p.pads[1] as i64) && ix < w + p.pads[3] as i64;
                        if in_pad_y && in_pad_x {
                            padded += 1;
                        }
                        if iy < 0 || ix < 0 || iy >= h || ix >= w {
                            continue;
                        }
                        let v = x[plane * (h * w) as usize + (iy * w + ix) as usize] as f64;
                        mx = mx.max(v);
                        sum += v;
                        inb += 1;
                    }
                }
                y.push(match p.kind {
                    PoolKind::Max => mx as f32,
                    PoolKind::Avg {
                        count_include_pad: true,
                    } => (sum / padded as f64) as f32,
                    PoolKind::Avg {
                        count_include_pad: false,
                    } => (sum / inb as f64) as f32,
                });
            }
        }
    }
    y
}

pub fn reduce(x: &[f32], xs: &[usize], kind: ReduceKind, axes: &[usize]) -> Vec<f32> {
    let kept: Vec<usize> = (0..xs.len())
        .map(|d| if axes.contains(&d) { 1 } else { xs[d] })
        .collect();
    let ks = strides_of(&kept);
    let n: usize = kept.iter().product();
    let mut acc = vec![
        if kind == ReduceKind::Max {
            f64::NEG_INFINITY
        } else {
            0.0
        };
        n
    ];
    for (i, &v) in x.iter().enumerate() {
        let idx = unravel(i, xs);
        let o: usize = (0..xs.len())
            .filter(|d| !axes.contains(d))
            .map(|d| idx[d] * ks[d])
            .sum();
        acc[o] = if kind == ReduceKind::Max {
            acc[o].max(v as f64)
        } else {
            acc[o] + v as f64
        };
    }
    let count: usize = axes.iter().map(|&a| xs[a]).product();
    acc.iter()
        .map(|&v| if kind == ReduceKind::Mean { v / count as f64 } else { v } as f32)
        .collect()
}

/// `y[idx] = x[map(idx)]` over the output shape, or `fill` where `map` returns `None`.
pub fn gather(
    x: &[f32],
    xs: &[usize],
    ys: &[usize],
    fill: f32,
    map: impl Fn(&[usize]) -> Option<Vec<usize>>,
) -> Vec<f32> {
    let st = strides_of(xs);
    (0..ys.iter().product())
        .map(|i| match map(&unravel(i, ys)) {
            Some(src) => x[src.iter().zip(&st).map(|(a, b)| a * b).sum::<usize>()],
            None => fill,
        })
        .collect()
}

pub fn softmax(x: &[f32], xs: &[usize], axis: usize) -> Vec<f32> {
    let st = strides_of(xs);
    (0..x.len())
        .map(|i| {
            let idx = unravel(i, xs);
            let base = i - idx[axis] * st[axis];
            let row: Vec<f64> = (0..xs[axis])
                .map(|j| x[base + j * st[axis]] as f64)
                .collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            ((x[i] as f64 - m).exp() / s) as f32
        })
        .collect()
}

pub fn lrn(x: &[f32], xs: &[usize], size: usize, alpha: f32, beta: f32, bias: f32) -> Vec<f32> {
    let st = strides_of(xs);
    (0..x.len())
        .map(|i| {
            let idx = unravel(i, xs);
            let c = idx[1] as i64;
            let lo = c - ((size as i64 - 1) / 2);
            let hi = c + (size as i64 - 1 + 1) / 2;
            let mut s = 0.0f64;
            for cc in lo..=hi {
                if cc >= 0 && cc < xs[1] as i64 {
                    let v = x[i - idx[1] * st[1] + cc as usize * st[1]] as f64;
                    s += v * v;
                }
            }
            (x[i] as f64 / (bias as f64 + alpha as f64 / size as f64 * s).powf(beta as f64)) as f32
        })
        .collect()
}
