//! Each op function against its naive reference on small odd shapes.

use super::naive;
use super::{assert_close, rand_vec};
use crate::cpu::{conv, eltwise, layout, linear, lrn, pool, reduce, softmax};
use crate::model::{
    window_out_len, BinaryKind, Const, Conv, Linear, Pool, PoolKind, ReduceKind, Unary,
};

#[allow(clippy::too_many_arguments)]
pub(super) fn check_conv(
    xs: [usize; 4],
    oc: usize,
    k: [usize; 2],
    groups: usize,
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
    act: Option<Unary>,
) {
    let ws = vec![oc, xs[1] / groups, k[0], k[1]];
    let c = Conv {
        weight: Const::new(ws.clone(), rand_vec(ws.iter().product(), 11)),
        bias: Some(Const::new(vec![oc], rand_vec(oc, 12))),
        groups,
        strides,
        dilations,
        pads,
    };
    let oh = window_out_len(
        xs[2],
        k[0],
        strides[0],
        dilations[0],
        pads[0],
        pads[2],
        false,
    )
    .unwrap();
    let ow = window_out_len(
        xs[3],
        k[1],
        strides[1],
        dilations[1],
        pads[1],
        pads[3],
        false,
    )
    .unwrap();
    let x = rand_vec(xs.iter().product(), 13);
    let mut want = naive::conv(&x, &xs, &c, oh, ow);
    if let Some(a) = act {
        want.iter_mut().for_each(|v| *v = a.apply(*v));
    }
    let ys = [xs[0], oc, oh, ow];
    for par in [false, true] {
        let mut y = vec![f32::NAN; want.len()];
        conv::conv2d(&x, &xs, &c, &ys, act, par, &mut y).unwrap();
        assert_close(
            &y,
            &want,
            &format!("conv {xs:?} oc {oc} k {k:?} g {groups} par {par}"),
        );
    }
}

#[test]
fn conv_general_groups_stride_dilation_asymmetric_pads() {
    check_conv(
        [2, 4, 7, 9],
        6,
        [3, 2],
        2,
        [2, 1],
        [1, 2],
        [1, 0, 2, 1],
        None,
    );
    check_conv(
        [1, 3, 11, 8],
        5,
        [3, 3],
        1,
        [2, 2],
        [1, 1],
        [1, 1, 1, 1],
        None,
    );
    check_conv(
        [3, 6, 5, 6],
        9,
        [2, 3],
        3,
        [1, 2],
        [2, 1],
        [0, 2, 1, 0],
        None,
    );
    // 1x1 with stride: not the pointwise fast path.
    check_conv(
        [2, 5, 7, 9],
        3,
        [1, 1],
        1,
        [2, 2],
        [1, 1],
        [0, 0, 0, 0],
        None,
    );
}

#[test]
fn conv_pointwise() {
    check_conv([2, 5, 6, 7], 3, [1, 1], 1, [1, 1], [1, 1], [0; 4], None);
    // Big enough to split the sgemm across threads, by columns and by rows.
    check_conv(
        [1, 64, 20, 30],
        70,
        [1, 1],
        1,
        [1, 1],
        [1, 1],
        [0; 4],
        Some(Unary::Relu),
    );
    check_conv([1, 64, 7, 7], 200, [1, 1], 1, [1, 1], [1, 1], [0; 4], None);
}

#[test]
fn conv_depthwise() {
    let clip = Some(Unary::Clip { min: 0.0, max: 0.5 });
    check_conv(
        [2, 6, 9, 8],
        6,
        [3, 3],
        6,
        [2, 2],
        [1, 1],
        [1, 1, 1, 1],
        clip,
    );
    check_conv(
        [2, 5, 10, 7],
        5,
        [3, 3],
        5,
        [1, 1],
        [1, 1],
        [1, 1, 1, 1],
        None,
    );
    check_conv(
        [1, 7, 9, 11],
        7,
        [3, 2],
        7,
        [1, 2],
        [2, 2],
        [2, 0, 1, 3],
        None,
    );
    check_conv(
        [1, 3, 13, 12],
        3,
        [5, 5],
        3,
        [2, 2],
        [1, 1],
        [2, 2, 2, 2],
        None,
    );
    // Stride 3 with a 2-dilated kernel: three column phases, taps in two of them.
    check_conv(
        [1, 4, 17, 16],
        4,
        [3, 3],
        4,
        [3, 3],
        [2, 2],
        [1, 2, 0, 1],
        Some(Unary::Relu),
    );
    // Channel multiplier 2.
    check_conv(
        [2, 3, 6, 7],
        6,
        [3, 3],
        3,
        [1, 1],
        [1, 1],
        [1, 1, 1, 1],
        None,
    );
}

#[test]
fn conv_activations_fused() {
    for act in [
        Unary::Relu,
        Unary::LeakyRelu { alpha: 0.1 },
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        Unary::HardSwish,
        Unary::Erf,
    ] {
        check_conv(
            [2, 3, 7, 6],
            4,
            [3, 3],
            1,
            [1, 1],
            [1, 1],
            [1, 1, 1, 1],
            Some(act),
        );
    }
}

#[test]
fn linear_matches_reference() {
    for (xs, o, par) in [
        (vec![3, 2, 7], 5, false),
        (vec![1, 300], 1000, true),
        (vec![37, 64], 90, true),
    ] {
        let k = *xs.last().unwrap();
        let lin = Linear {
            weight: Const::new(vec![o, k], rand_vec(o * k, 3)),
            bias: Some(Const::new(vec![o], rand_vec(o, 4))),
        };
        let x = rand_vec(xs.iter().product(), 5);
        let want = naive::linear(
            &x,
            k,
            &lin.weight.data,
            Some(&lin.bias.as_ref().unwrap().data),
            o,
        );
        let mut y = vec![f32::NAN; want.len()];
        linear::linear(&x, &xs, &lin, None, par, &mut y).unwrap();
        assert_close(&y, &want, &format!("linear {xs:?} -> {o}"));
    }
}

#[test]
fn unary_and_affine() {
    let x = rand_vec(2 * 3 * 5, 7)
        .iter()
        .map(|v| v * 8.0)
        .collect::<Vec<_>>();
    for u in [
        Unary::Relu,
        Unary::LeakyRelu { alpha: 0.3 },
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
    ] {
        // Sqrt and Reciprocal on their domain: NaN never equals NaN.
        let x: Vec<f32> = match u {
            Unary::Sqrt | Unary::Reciprocal => x.iter().map(|v| v.abs() + 0.5).collect(),
            Unary::Pow { p } if p < 0.0 || p.fract() != 0.0 => {
                x.iter().map(|v| v.abs() + 0.5).collect()
            }
            _ => x.clone(),
        };
        let mut y = vec![0.0; x.len()];
        eltwise::unary(u, &x, &mut y).unwrap();
        let want: Vec<f32> = x.iter().map(|&v| u.apply(v)).collect();
        assert_close(&y, &want, &format!("{u:?}"));
    }
    let (scale, shift) = (rand_vec(3, 1), rand_vec(3, 2));
    for xs in [vec![2, 3, 5], vec![2, 3]] {
        let x = &x[..xs.iter().product()];
        let inner: usize = xs[2..].iter().product();
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| v * scale[i / inner % 3] + shift[i / inner % 3])
            .collect();
        let mut y = vec![0.0; x.len()];
        eltwise::channel_affine(x, &xs, &scale, &shift, &mut y).unwrap();
        assert_close(&y, &want, "channel affine");
    }
}

#[test]
fn binary_broadcasts_both_ways() {
    let cases: [(&[usize], &[usize], &[usize]); 5] = [
        (&[2, 3, 1, 5], &[2, 1, 4, 1], &[2, 3, 4, 5]),
        (&[2, 3, 4, 5], &[4, 1], &[2, 3, 4, 5]),
        (&[3, 1, 1], &[2, 3, 4, 5], &[2, 3, 4, 5]),
        (&[2, 3, 4, 5], &[], &[2, 3, 4, 5]),
        (&[2, 7], &[2, 7], &[2, 7]),
    ];
    for (as_, bs, os) in cases {
        let a = rand_vec(as_.iter().product(), 21);
        let b: Vec<f32> = rand_vec(bs.iter().product(), 22)
            .iter()
            .map(|v| v + 2.5)
            .collect();
        for kind in [
            BinaryKind::Add,
            BinaryKind::Sub,
            BinaryKind::Mul,
            BinaryKind::Div,
        ] {
            let want = naive::binary(kind, &a, as_, &b, bs, os);
            let mut y = vec![f32::NAN; want.len()];
            eltwise::binary(kind, &a, as_, &b, bs, &mut y, os).unwrap();
            assert_close(&y, &want, &format!("{kind:?} {as_:?} {bs:?}"));
            // In place, with the full-shape operand as accumulator on either side.
            if as_ == os {
                let mut acc = a.clone();
                eltwise::binary_assign(kind, &mut acc, os, &b, bs, true).unwrap();
                assert_close(&acc, &want, &format!("{kind:?} assign lhs"));
            }
            if bs == os {
                let mut acc = b.clone();
                eltwise::binary_assign(kind, &mut acc, os, &a, as_, false).unwrap();
                assert_close(&acc, &want, &format!("{kind:?} assign rhs"));
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
    let x = rand_vec(xs.iter().product(), 31);
    let want = naive::pool(&x, &xs, &p, oh, ow);
    for par in [false, true] {
        let mut y = vec![f32::NAN; want.len()];
        pool::pool2d(&x, &xs, &p, &[xs[0], xs[1], oh, ow], par, &mut y).unwrap();
        assert_close(
            &y,
            &want,
            &format!("{kind:?} {xs:?} k {k:?} pads {pads:?} ceil {ceil}"),
        );
    }
}

#[test]
fn pooling() {
    let avg_in = PoolKind::Avg {
        count_include_pad: true,
    };
    let avg_ex = PoolKind::Avg {
        count_include_pad: false,
    };
    for kind in [PoolKind::Max, avg_in, avg_ex] {
        // ceil mode with a partial last window (7 -> 3 windows of 3 at stride 2, last one clipped).
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
    // count_include_pad with the window clipped to the padded extent, not the full kernel.
    let p = Pool {
        kind: avg_in,
        kernel: [3, 3],
        strides: [2, 2],
        dilations: [1, 1],
        pads: [1, 1, 1, 1],
    };
    let x = vec![1.0f32; 4 * 4];
    let oh = window_out_len(4, 3, 2, 1, 1, 1, true).unwrap();
    let mut y = vec![0.0; oh * oh];
    pool::pool2d(&x, &[1, 1, 4, 4], &p, &[1, 1, oh, oh], false, &mut y).unwrap();
    assert_close(
        &y,
        &naive::pool(&x, &[1, 1, 4, 4], &p, oh, oh),
        "avg include pad ceil",
    );
}

#[test]
fn global_pool_and_reduce() {
    let xs = [2, 3, 4, 5];
    let x = rand_vec(120, 41);
    for max in [false, true] {
        let mut y = vec![0.0; 6];
        pool::global_pool(&x, &xs, max, &mut y).unwrap();
        let kind = if max {
            ReduceKind::Max
        } else {
            ReduceKind::Mean
        };
        assert_close(&y, &naive::reduce(&x, &xs, kind, &[2, 3]), "global pool");
    }
    for kind in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max] {
        for axes in [&[1usize, 3][..], &[2], &[1, 2, 3], &[3]] {
            let want = naive::reduce(&x, &xs, kind, axes);
            let mut y = vec![f32::NAN; want.len()];
            reduce::reduce(&x, &xs, kind, axes, &mut y).unwrap();
            assert_close(&y, &want, &format!("{kind:?} {axes:?}"));
        }
    }
}

#[test]
fn transpose_slice_concat_pad() {
    let xs = [2, 3, 4, 5];
    let x = rand_vec(120, 51);
    let perm = [0, 2, 3, 1];
    let ys = [2, 4, 5, 3];
    let want = naive::gather(&x, &xs, &ys, 0.0, |i| Some(vec![i[0], i[3], i[1], i[2]]));
    let mut y = vec![0.0; 120];
    layout::transpose(&x, &xs, &perm, &mut y).unwrap();
    assert_close(&y, &want, "transpose");

    // Negative and positive steps together.
    let (starts, steps, ys) = ([0i64, 2, 3, 0], [1i64, -1, -2, 2], [2usize, 3, 2, 3]);
    let want = naive::gather(&x, &xs, &ys, 0.0, |i| {
        Some(
            (0..4)
                .map(|d| (starts[d] + i[d] as i64 * steps[d]) as usize)
                .collect(),
        )
    });
    let mut y = vec![0.0; want.len()];
    layout::slice(&x, &xs, &starts, &steps, &ys, &mut y).unwrap();
    assert_close(&y, &want, "slice");
    assert!(layout::slice(&x, &xs, &[0, 0, 0, 0], &[1, -1, 1, 1], &ys, &mut y).is_err());

    for axis in [1, 3] {
        let (a, b) = (rand_vec(2 * 3 * 2 * 3, 52), rand_vec(2 * 3 * 2 * 2, 53));
        let (sa, sb, ys) = if axis == 1 {
            ([2, 3, 2, 3], [2, 2, 2, 3], [2, 5, 2, 3])
        } else {
            ([2, 3, 2, 3], [2, 3, 2, 2], [2, 3, 2, 5])
        };
        let b = &b[..sb.iter().product()];
        let want: Vec<f32> = (0..ys.iter().product())
            .map(|i| {
                let mut idx = naive::unravel(i, &ys);
                if idx[axis] < sa[axis] {
                    a[idx
                        .iter()
                        .zip(crate::model::strides_of(&sa))
                        .map(|(p, s)| p * s)
                        .sum::<usize>()]
                } else {
                    idx[axis] -= sa[axis];
                    b[idx
                        .iter()
                        .zip(crate::model::strides_of(&sb))
                        .map(|(p, s)| p * s)
                        .sum::<usize>()]
                }
            })
            .collect();
        let mut y = vec![0.0; want.len()];
        layout::concat(&[(&a, &sa[..]), (b, &sb[..])], axis, &ys, &mut y).unwrap();
        assert_close(&y, &want, &format!("concat axis {axis}"));
    }

    let pads = [(0, 0), (1, 0), (2, 1), (0, 3)];
    let ys: Vec<usize> = xs
        .iter()
        .zip(&pads)
        .map(|(&n, &(b, a))| n + b + a)
        .collect();
    let want = naive::gather(&x, &xs, &ys, -7.0, |i| {
        (0..4)
            .map(|d| i[d].checked_sub(pads[d].0).filter(|&v| v < xs[d]))
            .collect::<Option<Vec<_>>>()
    });
    let mut y = vec![0.0; want.len()];
    layout::pad(&x, &xs, &pads, -7.0, &mut y).unwrap();
    assert_close(&y, &want, "pad");
}

#[test]
fn softmax_and_lrn() {
    let xs = [2, 3, 4];
    let x: Vec<f32> = rand_vec(24, 61).iter().map(|v| v * 30.0).collect();
    for axis in [1, 2] {
        let mut y = vec![0.0; 24];
        softmax::softmax(&x, &xs, axis, &mut y).unwrap();
        assert_close(
            &y,
            &naive::softmax(&x, &xs, axis),
            &format!("softmax {axis}"),
        );
    }
    let xs = [2, 7, 3, 2];
    let x = rand_vec(84, 62);
    for size in [1, 3, 4, 5] {
        let mut y = vec![0.0; 84];
        lrn::lrn(&x, &xs, size, 0.3, 0.75, 1.5, &mut y).unwrap();
        assert_close(
            &y,
            &naive::lrn(&x, &xs, size, 0.3, 0.75, 1.5),
            &format!("lrn {size}"),
        );
    }
}

/// The CPU's erf is the oracle of the GPU's approximation: within 1e-7 of tabulated values
/// (Abramowitz & Stegun table 7.1, more digits from mpmath) and of the f64 series, odd, and ±1
/// far out.
#[test]
fn erf_matches_reference_values() {
    let table = [
        (0.0, 0.0),
        (1e-3, 0.001_128_378_790_969_236_3),
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (1.5, 0.966_105_146_475_310_7),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
        (3.9, 0.999_999_965_207_818_6),
        (4.5, 0.999_999_999_803_383_9),
    ];
    for (x, want) in table {
        for s in [1.0f64, -1.0] {
            let got = crate::model::erf((s * x) as f32) as f64;
            assert!(
                (got - s * want).abs() <= 1e-7,
                "erf({}) = {got}, want {}",
                s * x,
                s * want
            );
        }
    }
    for i in -600..=600 {
        let x = i as f32 / 100.0;
        let (got, want) = (crate::model::erf(x) as f64, naive::erf64(x as f64));
        assert!(
            (got - want).abs() <= 1e-7,
            "erf({x}) = {got}, series {want}"
        );
    }
    assert_eq!(crate::model::erf(f32::INFINITY), 1.0);
    assert_eq!(crate::model::erf(f32::NEG_INFINITY), -1.0);
    assert!(crate::model::erf(f32::NAN).is_nan());
}
