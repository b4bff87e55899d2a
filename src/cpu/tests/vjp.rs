//! Every op's VJP against central differences of an f64 forward (`naive`), coordinate by
//! coordinate: `VJP(u)[j]` vs `(<u, f(x + h e_j)> - <u, f(x - h e_j)>) / 2h` for a random
//! cotangent `u`. Inputs avoid kinks (ReLU-like breakpoints, max ties) by more than `h`.

use super::naive::{self, to64};
use super::rand_vec;
use crate::backend::GradRule;
use crate::cpu::{conv, eltwise, layout, linear, lrn, pool, reduce, softmax};
use crate::model::{
    window_out_len, BinaryKind, Const, Conv, Linear, Pool, PoolKind, ReduceKind, Unary,
};

const H: f64 = 1e-3;

/// Compares `vjp(u)` with per-coordinate central differences of `<u, f(x)>`.
fn check(what: &str, x: &[f32], f: impl Fn(&[f64]) -> Vec<f64>, vjp: impl Fn(&[f32]) -> Vec<f32>) {
    let x64 = to64(x);
    let n_out = f(&x64).len();
    let u = rand_vec(n_out, 0xC0 + x.len() as u64);
    let got = vjp(&u);
    assert_eq!(got.len(), x.len(), "{what}: gradient length");
    let obj = |x: &[f64]| -> f64 { f(x).iter().zip(&u).map(|(y, &u)| y * u as f64).sum() };
    let fd: Vec<f64> = (0..x.len())
        .map(|j| {
            let mut xp = x64.clone();
            xp[j] += H;
            let mut xm = x64.clone();
            xm[j] -= H;
            (obj(&xp) - obj(&xm)) / (2.0 * H)
        })
        .collect();
    let rms = (fd.iter().map(|v| v * v).sum::<f64>() / fd.len().max(1) as f64).sqrt();
    assert!(rms > 1e-3, "{what}: degenerate check, gradient is ~0");
    for (j, (&g, &d)) in got.iter().zip(&fd).enumerate() {
        let tol = 1e-4 * (d.abs() + rms);
        assert!(
            (g as f64 - d).abs() <= tol,
            "{what}: d/dx[{j}]: VJP {g}, central difference {d}"
        );
    }
}

/// Values `[-1, 1)` on a grid of step `2/n` in random order: no two within `2h` for `n <= 900`,
/// so max/argmax never switch under the finite-difference step.
fn distinct(n: usize, seed: u64) -> Vec<f32> {
    let keys = rand_vec(n, seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    let mut x = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        x[i] = rank as f32 * 2.0 / n as f32 - 1.0 + 0.3 / n as f32;
    }
    x
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn check_conv(
    xs: [usize; 4],
    oc: usize,
    k: [usize; 2],
    groups: usize,
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
) {
    let ws = vec![oc, xs[1] / groups, k[0], k[1]];
    let c = Conv {
        weight: Const::new(ws.clone(), rand_vec(numel(&ws), 11)),
        bias: Some(Const::new(vec![oc], rand_vec(oc, 12))),
        groups,
        strides,
        dilations,
        pads,
    };
    let win = |d: usize| {
        window_out_len(
            xs[2 + d],
            k[d],
            strides[d],
            dilations[d],
            pads[d],
            pads[d + 2],
            false,
        )
        .unwrap()
    };
    let ys = [xs[0], oc, win(0), win(1)];
    let x = rand_vec(numel(&xs), 13);
    for par in [false, true] {
        check(
            &format!("conv {xs:?} oc {oc} k {k:?} g {groups} s {strides:?} d {dilations:?} p {pads:?} par {par}"),
            &x,
            |x| naive::conv64(x, &xs, &c, ys[2], ys[3]),
            |u| {
                let mut dx = vec![f32::NAN; x.len()];
                conv::conv2d_vjp(u, &ys, &c, &xs, par, &mut dx).unwrap();
                dx
            },
        );
    }
}

#[test]
fn conv_general() {
    check_conv([2, 4, 7, 9], 6, [3, 2], 2, [2, 1], [1, 2], [1, 0, 2, 1]);
    check_conv([1, 3, 11, 8], 5, [3, 3], 1, [2, 2], [1, 1], [1, 1, 1, 1]);
    check_conv([3, 6, 5, 6], 9, [2, 3], 3, [1, 2], [2, 1], [0, 2, 1, 0]);
    // 1x1 with stride and 3x3 stride 3: taps that skip input pixels (their gradient is 0).
    check_conv([2, 5, 7, 9], 3, [1, 1], 1, [2, 2], [1, 1], [0; 4]);
    check_conv([1, 2, 8, 7], 3, [3, 3], 1, [3, 3], [1, 1], [0, 1, 2, 0]);
}

#[test]
fn conv_pointwise() {
    check_conv([2, 5, 6, 7], 3, [1, 1], 1, [1, 1], [1, 1], [0; 4]);
    check_conv([1, 9, 3, 5], 11, [1, 1], 1, [1, 1], [1, 1], [0; 4]);
}

#[test]
fn conv_depthwise() {
    check_conv([2, 6, 9, 8], 6, [3, 3], 6, [2, 2], [1, 1], [1, 1, 1, 1]);
    check_conv([2, 5, 10, 7], 5, [3, 3], 5, [1, 1], [1, 1], [1, 1, 1, 1]);
    check_conv([1, 7, 9, 11], 7, [3, 2], 7, [1, 2], [2, 2], [2, 0, 1, 3]);
    check_conv([1, 3, 13, 12], 3, [5, 5], 3, [2, 2], [1, 1], [2, 2, 2, 2]);
    check_conv([1, 3, 10, 11], 3, [3, 3], 3, [3, 3], [1, 1], [0, 1, 1, 0]);
    check_conv([1, 4, 17, 16], 4, [3, 3], 4, [3, 3], [2, 2], [1, 2, 0, 1]);
    // Channel multiplier 2.
    check_conv([2, 3, 6, 7], 6, [3, 3], 3, [1, 1], [1, 1], [1, 1, 1, 1]);
}

#[test]
fn linear_vjp() {
    for (xs, o) in [(vec![3, 2, 7], 5), (vec![2, 9], 4)] {
        let k = *xs.last().unwrap();
        let lin = Linear {
            weight: Const::new(vec![o, k], rand_vec(o * k, 3)),
            bias: Some(Const::new(vec![o], rand_vec(o, 4))),
        };
        let x = rand_vec(numel(&xs), 5);
        let b = lin.bias.as_ref().unwrap();
        check(
            &format!("linear {xs:?} -> {o}"),
            &x,
            |x| naive::linear64(x, k, &lin.weight.data, Some(&b.data), o),
            |u| {
                let mut dx = vec![f32::NAN; x.len()];
                linear::linear_vjp(u, &lin, &xs, false, &mut dx).unwrap();
                dx
            },
        );
    }
}

const UNARIES: [Unary; 19] = [
    Unary::Relu,
    Unary::LeakyRelu { alpha: 0.3 },
    Unary::LeakyRelu { alpha: -0.5 },
    Unary::Clip {
        min: -1.0,
        max: 2.0,
    },
    Unary::Sigmoid,
    Unary::Tanh,
    Unary::HardSigmoid {
        alpha: 0.2,
        beta: 0.5,
    },
    Unary::HardSwish,
    Unary::Erf,
    Unary::Exp,
    Unary::Neg,
    Unary::Sqrt,
    Unary::Reciprocal,
    Unary::Gelu { tanh: false },
    Unary::Gelu { tanh: true },
    Unary::Pow { p: 2.0 },
    Unary::Pow { p: 3.0 },
    Unary::Pow { p: 0.5 },
    Unary::Pow { p: -1.5 },
];

fn breakpoints(u: Unary) -> Vec<f32> {
    match u {
        Unary::Relu | Unary::LeakyRelu { .. } => vec![0.0],
        Unary::Clip { min, max } => vec![min, max],
        Unary::HardSigmoid { alpha, beta } => vec![-beta / alpha, (1.0 - beta) / alpha],
        Unary::HardSwish => vec![-3.0, 3.0],
        Unary::Sigmoid | Unary::Tanh | Unary::Erf | Unary::Exp | Unary::Neg => vec![],
        Unary::Gelu { .. } | Unary::Pow { .. } => vec![],
        // Differentiable on their domain, x > 0 (see `domain`).
        Unary::Sqrt | Unary::Reciprocal => vec![],
    }
}

/// Moves `x` into the op's differentiable domain: Sqrt, Reciprocal and Pow with a negative or
/// fractional exponent get `|x| + 0.5`.
fn domain(u: Unary, x: f32) -> f32 {
    match u {
        Unary::Sqrt | Unary::Reciprocal => x.abs() + 0.5,
        Unary::Pow { p } if p < 0.0 || p.fract() != 0.0 => x.abs() + 0.5,
        _ => x,
    }
}

#[test]
fn unary_vjp() {
    for u in UNARIES {
        for (n, scale) in [(2 * 3 * 5, 4.0), (7 * 11, 5.0)] {
            let mut x: Vec<f32> = rand_vec(n, 7)
                .iter()
                .map(|v| domain(u, v * scale))
                .collect();
            for bp in breakpoints(u) {
                for v in &mut x {
                    if (*v - bp).abs() < 0.05 {
                        *v = bp + 0.05f32.copysign(*v - bp);
                    }
                }
            }
            let y: Vec<f32> = x.iter().map(|&v| u.apply(v)).collect();
            let saved = if crate::ops::unary::vjp_reads_input(u) {
                &x
            } else {
                &y
            };
            check(
                &format!("{u:?} on {n}"),
                &x,
                |x| x.iter().map(|&v| naive::unary64(u, v)).collect(),
                |g| {
                    let mut g = g.to_vec();
                    crate::ops::unary::vjp_inplace(u, GradRule::Standard, saved, &mut g).unwrap();
                    g
                },
            );
        }
    }
}

#[test]
fn unary_rules() {
    // Forward inputs on both sides of each active region, gradients of both signs.
    let x = [1.0f32, 2.0, -1.0, -2.0, 3.0, -3.0];
    let g = [2.0f32, -1.0, 3.0, -2.0, -0.5, 0.5];
    let run = |u: Unary, rule| {
        let y: Vec<f32> = x.iter().map(|&v| u.apply(v)).collect();
        let saved = if crate::ops::unary::vjp_reads_input(u) {
            x.to_vec()
        } else {
            y
        };
        let mut d = g.to_vec();
        crate::ops::unary::vjp_inplace(u, rule, &saved, &mut d).unwrap();
        d
    };
    let relu = Unary::Relu;
    assert_eq!(
        run(relu, GradRule::Standard),
        [2.0, -1.0, 0.0, 0.0, -0.5, 0.0]
    );
    assert_eq!(run(relu, GradRule::Guided), [2.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(
        run(relu, GradRule::Deconvnet),
        [2.0, 0.0, 3.0, 0.0, 0.0, 0.5]
    );
    let clip = Unary::Clip {
        min: -1.5,
        max: 2.5,
    };
    assert_eq!(
        run(clip, GradRule::Standard),
        [2.0, -1.0, 3.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(run(clip, GradRule::Guided), [2.0, 0.0, 3.0, 0.0, 0.0, 0.0]);
    assert_eq!(
        run(clip, GradRule::Deconvnet),
        [2.0, 0.0, 3.0, 0.0, 0.0, 0.5]
    );
    let leaky = Unary::LeakyRelu { alpha: 0.25 };
    assert_eq!(
        run(leaky, GradRule::Standard),
        [2.0, -1.0, 0.75, -0.5, -0.5, 0.125]
    );
    assert_eq!(
        run(leaky, GradRule::Guided),
        [2.0, 0.0, 0.75, 0.0, 0.0, 0.125]
    );
    assert_eq!(
        run(leaky, GradRule::Deconvnet),
        [2.0, 0.0, 3.0, 0.0, 0.0, 0.5]
    );
    // Other ops ignore the rule.
    let sig = Unary::Sigmoid;
    assert_eq!(run(sig, GradRule::Guided), run(sig, GradRule::Standard));
    assert_eq!(run(sig, GradRule::Deconvnet), run(sig, GradRule::Standard));
}

#[test]
fn channel_affine_vjp() {
    let (scale, shift) = (rand_vec(3, 1), rand_vec(3, 2));
    for xs in [vec![2, 3, 5], vec![2, 3]] {
        let inner: usize = xs[2..].iter().product();
        let x = rand_vec(numel(&xs), 8);
        check(
            &format!("affine {xs:?}"),
            &x,
            |x| {
                x.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let c = i / inner % 3;
                        v * scale[c] as f64 + shift[c] as f64
                    })
                    .collect()
            },
            |u| {
                let mut g = u.to_vec();
                eltwise::channel_affine_vjp_inplace(&mut g, &xs, &scale).unwrap();
                g
            },
        );
    }
}

/// The operand data `binary_vjp` reads for `kind` and side; the executor passes `None` otherwise.
fn needed(kind: BinaryKind, lhs: bool, is_a: bool) -> bool {
    match kind {
        BinaryKind::Add | BinaryKind::Sub => false,
        BinaryKind::Mul => lhs != is_a,
        BinaryKind::Div => !lhs || !is_a,
    }
}

#[test]
fn binary_vjp_broadcasts_both_ways() {
    let cases: [(&[usize], &[usize], &[usize]); 6] = [
        (&[2, 3, 1, 5], &[2, 1, 4, 1], &[2, 3, 4, 5]),
        (&[2, 3, 4, 5], &[4, 1], &[2, 3, 4, 5]),
        (&[3, 1, 1], &[2, 3, 4, 5], &[2, 3, 4, 5]),
        (&[2, 3, 4, 5], &[], &[2, 3, 4, 5]),
        (&[2, 7], &[2, 7], &[2, 7]),
        (&[1, 3, 1], &[2, 1, 5], &[2, 3, 5]),
    ];
    for (as_, bs, os) in cases {
        let a = rand_vec(numel(as_), 21);
        // Away from 0 so Div stays smooth.
        let b: Vec<f32> = rand_vec(numel(bs), 22).iter().map(|v| v + 2.5).collect();
        for kind in [
            BinaryKind::Add,
            BinaryKind::Sub,
            BinaryKind::Mul,
            BinaryKind::Div,
        ] {
            for lhs in [true, false] {
                let x = if lhs { &a } else { &b };
                let vjp = |u: &[f32]| {
                    let mut dx = vec![f32::NAN; x.len()];
                    let pa = needed(kind, lhs, true).then_some(&a[..]);
                    let pb = needed(kind, lhs, false).then_some(&b[..]);
                    eltwise::binary_vjp(kind, lhs, pa, as_, pb, bs, u, os, &mut dx).unwrap();
                    dx
                };
                check(
                    &format!("{kind:?} {as_:?} {bs:?} d/d{}", if lhs { "a" } else { "b" }),
                    x,
                    |x| {
                        if lhs {
                            naive::binary64(kind, x, as_, &to64(&b), bs, os)
                        } else {
                            naive::binary64(kind, &to64(&a), as_, x, bs, os)
                        }
                    },
                    vjp,
                );
            }
        }
    }
}

pub(super) fn check_pool(
    xs: [usize; 4],
    kind: PoolKind,
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    pads: [usize; 4],
    ceil: bool,
) {
    let p = Pool {
        kind,
        kernel: k,
        strides: s,
        dilations: d,
        pads,
    };
    let oh = window_out_len(xs[2], k[0], s[0], d[0], pads[0], pads[2], ceil).unwrap();
    let ow = window_out_len(xs[3], k[1], s[1], d[1], pads[1], pads[3], ceil).unwrap();
    let ys = [xs[0], xs[1], oh, ow];
    let x = distinct(numel(&xs), 31);
    for par in [false, true] {
        check(
            &format!("{kind:?} {xs:?} k {k:?} s {s:?} d {d:?} pads {pads:?} ceil {ceil} par {par}"),
            &x,
            |x| naive::pool64(x, &xs, &p, oh, ow),
            |u| {
                let mut dx = vec![f32::NAN; x.len()];
                pool::pool2d_vjp(&x, &xs, &p, u, &ys, par, &mut dx).unwrap();
                dx
            },
        );
    }
}

#[test]
fn pooling_vjp() {
    let avg_in = PoolKind::Avg {
        count_include_pad: true,
    };
    let avg_ex = PoolKind::Avg {
        count_include_pad: false,
    };
    for kind in [PoolKind::Max, avg_in, avg_ex] {
        // ceil mode with a partial last window.
        check_pool([1, 2, 6, 7], kind, [3, 3], [2, 2], [1, 1], [0; 4], true);
        check_pool(
            [2, 3, 8, 7],
            kind,
            [3, 2],
            [2, 1],
            [1, 1],
            [1, 0, 1, 1],
            true,
        );
        check_pool(
            [2, 3, 9, 10],
            kind,
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1, 0, 1],
            false,
        );
        check_pool(
            [1, 2, 9, 8],
            kind,
            [2, 3],
            [1, 2],
            [2, 2],
            [1, 2, 1, 0],
            true,
        );
    }
}

#[test]
fn max_pool_tie_goes_to_first_tap() {
    let p = Pool {
        kind: PoolKind::Max,
        kernel: [2, 2],
        strides: [2, 2],
        dilations: [1, 1],
        pads: [0; 4],
    };
    let x = [0.0, 5.0, 5.0, 5.0];
    let mut dx = [9.0; 4];
    pool::pool2d_vjp(&x, &[1, 1, 2, 2], &p, &[1.5], &[1, 1, 1, 1], false, &mut dx).unwrap();
    assert_eq!(dx, [0.0, 1.5, 0.0, 0.0]);
    let mut dx = [9.0; 4];
    pool::global_pool_vjp(&x, &[1, 1, 2, 2], true, &[1.5], &mut dx).unwrap();
    assert_eq!(dx, [0.0, 1.5, 0.0, 0.0]);
    let mut dx = [9.0; 4];
    reduce::reduce_vjp(&x, &[1, 4], ReduceKind::Max, &[1], &[1.5], &mut dx).unwrap();
    assert_eq!(dx, [0.0, 1.5, 0.0, 0.0]);
}

#[test]
fn global_pool_and_reduce_vjp() {
    for xs in [[2, 3, 4, 5], [1, 2, 3, 1]] {
        let x = distinct(numel(&xs), 41);
        for max in [false, true] {
            let kind = if max {
                ReduceKind::Max
            } else {
                ReduceKind::Mean
            };
            check(
                &format!("global pool {xs:?} max {max}"),
                &x,
                |x| naive::reduce64(x, &xs, kind, &[2, 3]),
                |u| {
                    let mut dx = vec![f32::NAN; x.len()];
                    pool::global_pool_vjp(&x, &xs, max, u, &mut dx).unwrap();
                    dx
                },
            );
        }
    }
    let xs = [2, 3, 4, 5];
    let x = distinct(120, 42);
    for kind in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max] {
        for axes in [&[1usize, 3][..], &[2], &[1, 2, 3], &[3]] {
            check(
                &format!("{kind:?} {axes:?}"),
                &x,
                |x| naive::reduce64(x, &xs, kind, axes),
                |u| {
                    let mut dx = vec![f32::NAN; x.len()];
                    reduce::reduce_vjp(&x, &xs, kind, axes, u, &mut dx).unwrap();
                    dx
                },
            );
        }
    }
}

#[test]
fn transpose_slice_pad_vjp() {
    for (xs, perm) in [
        (vec![2, 3, 4, 5], vec![0, 2, 3, 1]),
        (vec![2, 3, 4, 5], vec![0, 3, 1, 2]),
        (vec![3, 5, 2], vec![0, 2, 1]),
    ] {
        let x = rand_vec(numel(&xs), 51);
        let ys: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
        check(
            &format!("transpose {perm:?} of {xs:?}"),
            &x,
            |x| {
                naive::gather(x, &xs, &ys, 0.0, |i| {
                    let mut src = vec![0; i.len()];
                    for (d, &p) in perm.iter().enumerate() {
                        src[p] = i[d];
                    }
                    Some(src)
                })
            },
            |u| {
                let mut dx = vec![f32::NAN; x.len()];
                layout::transpose_vjp(u, &xs, &perm, &mut dx).unwrap();
                dx
            },
        );
    }
    // Negative and positive steps together.
    for (xs, starts, steps, ys) in [
        (
            vec![2, 3, 4, 5],
            vec![0i64, 2, 3, 0],
            vec![1i64, -1, -2, 2],
            vec![2usize, 3, 2, 3],
        ),
        (vec![2, 5, 7], vec![0, 4, 1], vec![1, -2, 3], vec![2, 3, 2]),
    ] {
        let x = rand_vec(numel(&xs), 52);
        check(
            &format!("slice {starts:?}:{steps:?} of {xs:?}"),
            &x,
            |x| {
                naive::gather(x, &xs, &ys, 0.0, |i| {
                    Some(
                        (0..xs.len())
                            .map(|d| (starts[d] + i[d] as i64 * steps[d]) as usize)
                            .collect(),
                    )
                })
            },
            |u| {
                let mut dx = vec![f32::NAN; x.len()];
                layout::slice_vjp(u, &ys, &starts, &steps, &xs, &mut dx).unwrap();
                dx
            },
        );
    }
    for (xs, pads) in [
        (vec![2, 3, 4, 5], vec![(0, 0), (1, 0), (2, 1), (0, 3)]),
        (vec![1, 2, 3], vec![(0, 0), (0, 2), (1, 1)]),
    ] {
        let x = rand_vec(numel(&xs), 53);
        let ys: Vec<usize> = xs
            .iter()
            .zip(&pads)
            .map(|(&n, &(b, a))| n + b + a)
            .collect();
        check(
            &format!("pad {pads:?} of {xs:?}"),
            &x,
            |x| {
                naive::gather(x, &xs, &ys, -7.0, |i| {
                    (0..xs.len())
                        .map(|d| i[d].checked_sub(pads[d].0).filter(|&v| v < xs[d]))
                        .collect::<Option<Vec<_>>>()
                })
            },
            |u| {
                let mut dx = vec![f32::NAN; x.len()];
                layout::pad_vjp(u, &xs, &pads, &mut dx).unwrap();
                dx
            },
        );
    }
}

#[test]
fn concat_vjp() {
    for axis in [1, 3] {
        let shapes: Vec<Vec<usize>> = [2usize, 1, 3]
            .iter()
            .map(|&e| {
                let mut s = vec![2, 3, 2, 4];
                s[axis] = e;
                s
            })
            .collect();
        let data: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| rand_vec(numel(s), 60 + i as u64))
            .collect();
        let mut ys = shapes[0].clone();
        ys[axis] = shapes.iter().map(|s| s[axis]).sum();
        for which in 0..shapes.len() {
            let offset: usize = shapes[..which].iter().map(|s| s[axis]).sum();
            let forward = |x: &[f64]| {
                let parts: Vec<Vec<f64>> = (0..shapes.len())
                    .map(|k| {
                        if k == which {
                            x.to_vec()
                        } else {
                            to64(&data[k])
                        }
                    })
                    .collect();
                (0..numel(&ys))
                    .map(|i| {
                        let mut idx = naive::unravel(i, &ys);
                        let mut k = 0;
                        while idx[axis] >= shapes[k][axis] {
                            idx[axis] -= shapes[k][axis];
                            k += 1;
                        }
                        let st = crate::model::strides_of(&shapes[k]);
                        parts[k][idx.iter().zip(&st).map(|(a, b)| a * b).sum::<usize>()]
                    })
                    .collect()
            };
            check(
                &format!("concat axis {axis} input {which}"),
                &data[which],
                forward,
                |u| {
                    let mut dx = vec![f32::NAN; data[which].len()];
                    layout::concat_vjp(u, &ys, axis, offset, &shapes[which], &mut dx).unwrap();
                    dx
                },
            );
        }
    }
}

#[test]
fn softmax_and_lrn_vjp() {
    for (xs, axis) in [([2, 3, 4], 1), ([2, 3, 4], 2), ([3, 7, 1], 1)] {
        let x: Vec<f32> = rand_vec(numel(&xs), 61).iter().map(|v| v * 3.0).collect();
        let mut y = vec![0.0; x.len()];
        softmax::softmax(&x, &xs, axis, &mut y).unwrap();
        check(
            &format!("softmax {xs:?} axis {axis}"),
            &x,
            |x| naive::softmax64(x, &xs, axis),
            |u| {
                let mut dx = vec![f32::NAN; x.len()];
                softmax::softmax_vjp(&y, &xs, axis, u, &mut dx).unwrap();
                dx
            },
        );
    }
    for (xs, size) in [
        ([2, 7, 3, 2], 3),
        ([2, 7, 3, 2], 4),
        ([1, 5, 2, 3], 5),
        ([1, 6, 1, 2], 1),
    ] {
        let x: Vec<f32> = rand_vec(numel(&xs), 62).iter().map(|v| v * 2.0).collect();
        check(
            &format!("lrn {xs:?} size {size}"),
            &x,
            |x| naive::lrn64(x, &xs, size, 0.3, 0.75, 1.5),
            |u| {
                let mut dx = vec![f32::NAN; x.len()];
                lrn::lrn_vjp(&x, &xs, size, 0.3, 0.75, 1.5, u, &mut dx).unwrap();
                dx
            },
        );
    }
}
