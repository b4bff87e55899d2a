//! Legal but unusual window geometries (issue 11): strides larger than the input, 1×1 planes and
//! kernels as large as the padded input, for the general, grouped and depthwise convolutions
//! and the pools. Forward against the naive reference (`ops::check_*`) and VJP against float64
//! central differences (`vjp::check_*`). The depthwise VJP once panicked on a stride past the
//! input width (MobileNetV2's 7×7 block with strides [1, 9]).

use super::{ops, vjp};
use crate::model::PoolKind;

/// `(input, out channels, kernel, groups, strides, dilations, pads)`.
type ConvCase = (
    [usize; 4],
    usize,
    [usize; 2],
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 4],
);

fn both_conv(cases: &[ConvCase]) {
    for &(xs, oc, k, g, s, d, p) in cases {
        ops::check_conv(xs, oc, k, g, s, d, p, None);
        vjp::check_conv(xs, oc, k, g, s, d, p);
    }
}

#[test]
fn depthwise_stride_past_the_input() {
    let mut cases: Vec<ConvCase> = Vec::new();
    // MobileNetV2's block 17 shape (3×3, pads 1, 7×7) with the widths that panicked, and the
    // ones that did not.
    for sw in [9, 10, 12, 16, 31] {
        cases.push(([1, 3, 7, 7], 3, [3, 3], 3, [1, sw], [1, 1], [1; 4]));
    }
    cases.push(([1, 3, 7, 7], 3, [3, 3], 3, [9, 1], [1, 1], [1; 4]));
    cases.push(([1, 3, 7, 7], 3, [3, 3], 3, [8, 8], [1, 1], [1; 4]));
    cases.push(([2, 2, 7, 7], 2, [3, 3], 2, [9, 9], [1, 1], [1; 4]));
    // Two outputs per axis with a stride past the input width (padded 13, windows at 0 and
    // 10): some phase columns hold no input column at all (their first column lies beyond the
    // row), and only the second window touches the input.
    cases.push(([1, 2, 7, 7], 2, [3, 3], 2, [10, 10], [1, 1], [4, 4, 2, 2]));
    cases.push(([1, 2, 5, 6], 4, [2, 3], 2, [6, 7], [1, 1], [1, 2, 2, 1]));
    both_conv(&cases);
}

#[test]
fn conv_stride_past_the_input() {
    both_conv(&[
        ([1, 3, 7, 7], 4, [3, 3], 1, [1, 9], [1, 1], [1; 4]),
        ([2, 3, 7, 7], 5, [3, 3], 1, [9, 9], [1, 1], [1; 4]),
        ([1, 4, 5, 6], 4, [3, 2], 2, [7, 11], [1, 1], [1, 0, 1, 2]),
        ([1, 2, 7, 7], 3, [3, 3], 1, [10, 10], [1, 1], [4, 4, 2, 2]),
    ]);
}

#[test]
fn conv_on_one_by_one_planes() {
    both_conv(&[
        // Pointwise, and a 3×3 over a 1×1 plane padded to exactly the kernel.
        ([2, 3, 1, 1], 4, [1, 1], 1, [1, 1], [1, 1], [0; 4]),
        ([2, 3, 1, 1], 4, [3, 3], 1, [1, 1], [1, 1], [1; 4]),
        ([1, 4, 1, 1], 4, [3, 3], 4, [1, 1], [1, 1], [1; 4]),
        ([1, 4, 1, 1], 8, [3, 3], 4, [2, 2], [1, 1], [1; 4]),
        ([1, 6, 1, 1], 4, [1, 1], 2, [3, 3], [1, 1], [0; 4]),
        // Padding around a 1×1 plane gives a larger output with stride 1.
        ([1, 3, 1, 1], 3, [2, 2], 3, [1, 1], [1, 1], [1; 4]),
    ]);
}

#[test]
fn conv_kernel_equal_to_the_padded_input() {
    both_conv(&[
        ([1, 2, 5, 5], 3, [7, 7], 1, [1, 1], [1, 1], [1; 4]),
        ([1, 2, 4, 4], 3, [4, 4], 1, [2, 2], [1, 1], [0; 4]),
        ([1, 3, 5, 6], 3, [7, 8], 3, [1, 1], [1, 1], [1; 4]),
        ([2, 3, 4, 5], 3, [4, 5], 3, [3, 3], [1, 1], [0; 4]),
        // Dilated: effective extent 2 * (3 - 1) + 1 = 5 + pads 1 + 1 = 7 on a 5×5 plane.
        ([1, 2, 5, 5], 2, [4, 4], 2, [1, 1], [2, 2], [0, 0, 2, 2]),
        ([1, 2, 5, 5], 2, [3, 3], 1, [1, 1], [3, 3], [1; 4]),
    ]);
}

#[test]
fn pools_on_edge_geometries() {
    let kinds = [
        PoolKind::Max,
        PoolKind::Avg {
            count_include_pad: false,
        },
        PoolKind::Avg {
            count_include_pad: true,
        },
    ];
    // (input, kernel, strides, dilations, pads, ceil)
    let cases = [
        // Stride past the input.
        ([1, 2, 7, 7], [3, 3], [1, 9], [1, 1], [1; 4], false),
        ([1, 2, 7, 7], [3, 3], [9, 9], [1, 1], [1; 4], true),
        ([1, 2, 7, 7], [2, 2], [8, 10], [1, 1], [0; 4], false),
        // 1×1 planes.
        ([2, 3, 1, 1], [1, 1], [1, 1], [1, 1], [0; 4], false),
        ([1, 3, 1, 1], [3, 3], [2, 2], [1, 1], [1; 4], false),
        ([1, 3, 1, 1], [2, 2], [1, 1], [1, 1], [1; 4], true),
        // Kernel equal to the (padded) input.
        ([1, 2, 5, 5], [5, 5], [1, 1], [1, 1], [0; 4], false),
        ([1, 2, 5, 6], [7, 8], [2, 2], [1, 1], [1; 4], false),
        ([1, 2, 5, 5], [3, 3], [1, 1], [2, 2], [0; 4], true),
    ];
    for kind in kinds {
        for (xs, k, s, d, p, ceil) in cases {
            ops::check_pool(xs, kind, k, s, d, p, ceil);
            vjp::check_pool(xs, kind, k, s, d, p, ceil);
        }
    }
}
