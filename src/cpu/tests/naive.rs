//! Deliberately naive reference implementations: plain loops over every output element and every
//! tap, f64 accumulation, bounds checks instead of precomputed ranges. The `*64` forms work in
//! f64 end to end, for finite differences; the others round their result to f32.

use crate::model::{strides_of, BinaryKind, Conv, Pool, PoolKind, ReduceKind, Unary};

pub fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

pub fn to32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

pub fn conv(x: &[f32], xs: &[usize], c: &Conv, oh: usize, ow: usize) -> Vec<f32> {
    to32(&conv64(&to64(x), xs, c, oh, ow))
}

pub fn linear(x: &[f32], k: usize, w: &[f32], b: Option<&[f32]>, o: usize) -> Vec<f32> {
    to32(&linear64(&to64(x), k, w, b, o))
}

pub fn binary(
    k: BinaryKind,
    a: &[f32],
    as_: &[usize],
    b: &[f32],
    bs: &[usize],
    os: &[usize],
) -> Vec<f32> {
    to32(&binary64(k, &to64(a), as_, &to64(b), bs, os))
}

pub fn pool(x: &[f32], xs: &[usize], p: &Pool, oh: usize, ow: usize) -> Vec<f32> {
    to32(&pool64(&to64(x), xs, p, oh, ow))
}

pub fn reduce(x: &[f32], xs: &[usize], kind: ReduceKind, axes: &[usize]) -> Vec<f32> {
    to32(&reduce64(&to64(x), xs, kind, axes))
}

pub fn softmax(x: &[f32], xs: &[usize], axis: usize) -> Vec<f32> {
    to32(&softmax64(&to64(x), xs, axis))
}

pub fn lrn(x: &[f32], xs: &[usize], size: usize, alpha: f32, beta: f32, bias: f32) -> Vec<f32> {
    to32(&lrn64(&to64(x), xs, size, alpha, beta, bias))
}

/// `Unary::apply` in f64.
pub fn unary64(u: Unary, x: f64) -> f64 {
    match u {
        Unary::Relu => x.max(0.0),
        Unary::LeakyRelu { alpha } => {
            if x >= 0.0 {
                x
            } else {
                alpha as f64 * x
            }
        }
        Unary::Clip { min, max } => x.max(min as f64).min(max as f64),
        Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Unary::Tanh => x.tanh(),
        Unary::HardSigmoid { alpha, beta } => (alpha as f64 * x + beta as f64).clamp(0.0, 1.0),
        Unary::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        Unary::Erf => erf64(x),
        Unary::Exp => x.exp(),
        Unary::Neg => -x,
        Unary::Sqrt => x.sqrt(),
        Unary::Reciprocal => 1.0 / x,
        Unary::Gelu { tanh: false } => 0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2)),
        Unary::Gelu { tanh: true } => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
        }
        Unary::Pow { p } => x.powf(p as f64),
    }
}

/// erf in f64 by its Maclaurin series, `2/√π Σₙ (-1)ⁿ x^(2n+1) / (n! (2n+1))`: a formula apart
/// from the CPU backend's. Terms stay below ~200 for |x| ≤ 3.5, so cancellation costs at most
/// ~1e-13; beyond, `1 - |erf| < 1e-6` and the continued fraction of erfc takes over.
pub fn erf64(x: f64) -> f64 {
    let a = x.abs();
    if a > 3.5 {
        // erfc(a) = e^(-a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...)))), evaluated bottom-up.
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / f;
        return (1.0 - erfc).copysign(x);
    }
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        let t = term / (2 * n + 1) as f64;
        sum += t;
        if t.abs() < 1e-18 * sum.abs() {
            break;
        }
    }
    std::f64::consts::FRAC_2_SQRT_PI * sum
}

pub fn conv64(x: &[f64], xs: &[usize], c: &Conv, oh: usize, ow: usize) -> Vec<f64> {
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
                                s += xv * wv as f64;
                            }
                        }
                    }
                    y[((b * oc + o) * oh + oy) * ow + ox] = s;
                }
            }
        }
    }
    y
}

pub fn linear64(x: &[f64], k: usize, w: &[f32], b: Option<&[f32]>, o: usize) -> Vec<f64> {
    let rows = x.len() / k;
    let mut y = vec![0.0; rows * o];
    for r in 0..rows {
        for j in 0..o {
            let mut s = b.map_or(0.0, |b| b[j] as f64);
            for i in 0..k {
                s += x[r * k + i] * w[j * k + i] as f64;
            }
            y[r * o + j] = s;
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
fn bcast_at(x: &[f64], xs: &[usize], idx: &[usize]) -> f64 {
    let off = idx.len() - xs.len();
    let mut flat = 0;
    for d in 0..xs.len() {
        let i = if xs[d] == 1 { 0 } else { idx[off + d] };
        flat = flat * xs[d] + i;
    }
    x[flat]
}

pub fn binary64(
    k: BinaryKind,
    a: &[f64],
    as_: &[usize],
    b: &[f64],
    bs: &[usize],
    os: &[usize],
) -> Vec<f64> {
    (0..os.iter().product())
        .map(|i| {
            let idx = unravel(i, os);
            let (x, z) = (bcast_at(a, as_, &idx), bcast_at(b, bs, &idx));
            match k {
                BinaryKind::Add => x + z,
                BinaryKind::Sub => x - z,
                BinaryKind::Mul => x * z,
                BinaryKind::Div => x / z,
            }
        })
        .collect()
}

pub fn pool64(x: &[f64], xs: &[usize], p: &Pool, oh: usize, ow: usize) -> Vec<f64> {
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
                        let v = x[plane * (h * w) as usize + (iy * w + ix) as usize];
                        mx = mx.max(v);
                        sum += v;
                        inb += 1;
                    }
                }
                y.push(match p.kind {
                    PoolKind::Max => mx,
                    PoolKind::Avg {
                        count_include_pad: true,
                    } => sum / padded as f64,
                    PoolKind::Avg {
                        count_include_pad: false,
                    } => sum / inb as f64,
                });
            }
        }
    }
    y
}

pub fn reduce64(x: &[f64], xs: &[usize], kind: ReduceKind, axes: &[usize]) -> Vec<f64> {
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
            acc[o].max(v)
        } else {
            acc[o] + v
        };
    }
    let count: usize = axes.iter().map(|&a| xs[a]).product();
    acc.iter()
        .map(|&v| {
            if kind == ReduceKind::Mean {
                v / count as f64
            } else {
                v
            }
        })
        .collect()
}

/// `y[idx] = x[map(idx)]` over the output shape, or `fill` where `map` returns `None`.
pub fn gather<T: Copy>(
    x: &[T],
    xs: &[usize],
    ys: &[usize],
    fill: T,
    map: impl Fn(&[usize]) -> Option<Vec<usize>>,
) -> Vec<T> {
    let st = strides_of(xs);
    (0..ys.iter().product())
        .map(|i| match map(&unravel(i, ys)) {
            Some(src) => x[src.iter().zip(&st).map(|(a, b)| a * b).sum::<usize>()],
            None => fill,
        })
        .collect()
}

pub fn softmax64(x: &[f64], xs: &[usize], axis: usize) -> Vec<f64> {
    let st = strides_of(xs);
    (0..x.len())
        .map(|i| {
            let idx = unravel(i, xs);
            let base = i - idx[axis] * st[axis];
            let row: Vec<f64> = (0..xs[axis]).map(|j| x[base + j * st[axis]]).collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            (x[i] - m).exp() / s
        })
        .collect()
}

pub fn lrn64(x: &[f64], xs: &[usize], size: usize, alpha: f32, beta: f32, bias: f32) -> Vec<f64> {
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
                    let v = x[i - idx[1] * st[1] + cc as usize * st[1]];
                    s += v * v;
                }
            }
            x[i] / (bias as f64 + alpha as f64 / size as f64 * s).powf(beta as f64)
        })
        .collect()
}
