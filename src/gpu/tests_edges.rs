//! GPU forward and VJP against the CPU backend on legal but unusual window geometries (issue
//! 11): strides larger than the input, 1×1 planes, kernels as large as the padded input, for the
//! direct and implicit-GEMM conv kernels (grouped and depthwise included) and the pools. The CPU
//! side is itself checked against float64 references in `cpu/tests/edges.rs`.

use super::tests::{conv, conv_out, gpu, serial};
use super::tests_grad::single;
use crate::model::*;

#[test]
fn conv_vjps_on_edge_geometries() {
    let _serial = serial();
    let gpu = gpu();
    let cases = [
        // (in c, h, w), weight, groups, strides, dilations, pads
        // Stride past the input: MobileNetV2's 7×7 depthwise block with strides [1, 9].
        ([3, 7, 7], [3, 1, 3, 3], 3, [1, 9], [1, 1], [1, 1, 1, 1]),
        ([3, 7, 7], [3, 1, 3, 3], 3, [9, 9], [1, 1], [1, 1, 1, 1]),
        ([2, 7, 7], [2, 1, 3, 3], 2, [10, 10], [1, 1], [4, 4, 2, 2]),
        ([3, 7, 7], [4, 3, 3, 3], 1, [1, 9], [1, 1], [1, 1, 1, 1]),
        ([12, 7, 7], [5, 12, 3, 3], 1, [9, 10], [1, 1], [1, 1, 1, 1]),
        // 1×1 planes.
        ([3, 1, 1], [4, 3, 1, 1], 1, [1, 1], [1, 1], [0, 0, 0, 0]),
        ([3, 1, 1], [4, 3, 3, 3], 1, [1, 1], [1, 1], [1, 1, 1, 1]),
        ([4, 1, 1], [8, 1, 3, 3], 4, [2, 2], [1, 1], [1, 1, 1, 1]),
        ([12, 1, 1], [6, 12, 3, 3], 1, [1, 1], [1, 1], [1, 1, 1, 1]),
        // Kernel equal to the padded input (dilated too).
        ([2, 5, 5], [3, 2, 7, 7], 1, [1, 1], [1, 1], [1, 1, 1, 1]),
        ([3, 5, 6], [3, 1, 7, 8], 3, [1, 1], [1, 1], [1, 1, 1, 1]),
        ([2, 5, 5], [2, 2, 3, 3], 1, [1, 1], [3, 3], [1, 1, 1, 1]),
        ([10, 4, 4], [3, 10, 4, 4], 1, [2, 2], [1, 1], [0, 0, 0, 0]),
    ];
    for (i, (x, w, groups, s, d, p)) in cases.into_iter().enumerate() {
        let op = conv(&w, i % 2 == 0, groups, s, d, p);
        let [oh, ow] = conv_out(&op, [x[1], x[2]]);
        single(
            &gpu,
            &x,
            op,
            &[w[0], oh, ow],
            &format!("edge conv case {i}: x {x:?} w {w:?} s {s:?} d {d:?} p {p:?}"),
        );
    }
}

#[test]
fn pool_vjps_on_edge_geometries() {
    let _serial = serial();
    let gpu = gpu();
    let kinds = [
        PoolKind::Max,
        PoolKind::Avg {
            count_include_pad: false,
        },
        PoolKind::Avg {
            count_include_pad: true,
        },
    ];
    // (in c, h, w), kernel, strides, dilations, pads
    let cases = [
        ([2, 7, 7], [3, 3], [1, 9], [1, 1], [1, 1, 1, 1]),
        ([2, 7, 7], [2, 2], [8, 10], [1, 1], [0, 0, 0, 0]),
        ([3, 1, 1], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
        ([3, 1, 1], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
        ([2, 5, 5], [5, 5], [1, 1], [1, 1], [0, 0, 0, 0]),
        ([2, 5, 6], [7, 8], [2, 2], [1, 1], [1, 1, 1, 1]),
        ([2, 5, 5], [3, 3], [1, 1], [2, 2], [0, 0, 0, 0]),
    ];
    for kind in kinds {
        for (x, k, s, d, p) in cases {
            let oh = window_out_len(x[1], k[0], s[0], d[0], p[0], p[2], false).unwrap();
            let ow = window_out_len(x[2], k[1], s[1], d[1], p[1], p[3], false).unwrap();
            let op = Op::Pool(Pool {
                kind,
                kernel: k,
                strides: s,
                dilations: d,
                pads: p,
            });
            single(
                &gpu,
                &x,
                op,
                &[x[0], oh, ow],
                &format!("edge {kind:?} x {x:?} k {k:?} s {s:?} d {d:?} p {p:?}"),
            );
        }
    }
}
