//! The importer refuses impossible or oversized attributes (issue 11): every attribute it lowers
//! is checked against its input with checked arithmetic, and every value is bounded per sample,
//! with a bad-input error naming the ONNX node. Legal edge cases (strides past the input, 1×1
//! planes, kernels equal to the padded input) import with the ONNX shapes.

mod common;
use common::*;
use netlens::model::import::import_bytes;
use tract_onnx::pb;

/// Imports `bytes` and expects a bad-input error whose message holds every needle.
fn refused(bytes: &[u8], needles: &[&str]) {
    let e = match import_bytes(bytes, "t") {
        Ok(m) => panic!(
            "imported; output shape [N, {:?}]",
            m.graph.values[m.graph.output].shape
        ),
        Err(e) => e,
    };
    assert_eq!(e.kind, netlens::ErrorKind::BadInput, "{e}");
    for n in needles {
        assert!(e.message.contains(n), "'{n}' not in: {}", e.message);
    }
}

fn out_shape(bytes: &[u8]) -> Vec<usize> {
    let m = import_bytes(bytes, "t").unwrap_or_else(|e| panic!("{e}"));
    m.graph.values[m.graph.output].shape.clone()
}

/// `input [c, h, w] -> Conv(weight [oc, c / group, k0, k1], attrs) -> y`; the node is `Conv_0`.
fn conv_model(input: &[i64], w: &[i64], attrs: Vec<pb::AttributeProto>) -> Vec<u8> {
    let mut b = OnnxBuilder::new(input);
    let w = b.weight("w", w);
    b.node("Conv", &["input", &w], &["y"], attrs);
    b.build("y")
}

fn pool_model(op: &str, input: &[i64], attrs: Vec<pb::AttributeProto>) -> Vec<u8> {
    let mut b = OnnxBuilder::new(input);
    b.node(op, &["input"], &["y"], attrs);
    b.build("y")
}

#[test]
fn conv_attributes_out_of_range_are_refused_naming_the_node() {
    let w = [4, 1, 3, 3];
    let bad: &[(&str, &[i64], &str)] = &[
        ("pads", &[i64::MAX, 1, 1, 1], "pads"),
        ("pads", &[1, 1 << 62, 1, 1], "pads"),
        ("pads", &[1, 1, 1 << 32, 1], "pads"),
        ("pads", &[-1, 0, 0, 0], "negative"),
        ("strides", &[1 << 62, 2], "strides"),
        ("strides", &[1, 1 << 31], "strides"),
        ("strides", &[0, 1], "strides"),
        ("dilations", &[1 << 40, 1], "dilations"),
        ("dilations", &[1, -3], "negative"),
    ];
    for &(attr, v, needle) in bad {
        let m = conv_model(&[4, 7, 7], &w, vec![a_int("group", 4), a_ints(attr, v)]);
        refused(&m, &["Conv_0", needle]);
    }
    // Pads within the limit but an output past 2^28 elements per sample (m_21816's case).
    let m = conv_model(
        &[4, 8, 8],
        &[48, 4, 3, 3],
        vec![a_ints("pads", &[1, 1, 1 << 20, 1])],
    );
    refused(&m, &["Conv_0", "elements per sample"]);
    // A group that does not divide, or overflows.
    for g in [3, 0, -2, i64::MAX] {
        let m = conv_model(&[4, 7, 7], &w, vec![a_int("group", g)]);
        refused(&m, &["Conv_0", "group"]);
    }
}

#[test]
fn kernel_larger_than_the_padded_input_is_refused() {
    // ONNX requires every output dimension to be at least 1.
    let m = conv_model(
        &[2, 5, 5],
        &[3, 2, 8, 3],
        vec![a_ints("pads", &[1, 1, 1, 1])],
    );
    refused(&m, &["Conv_0", "larger than the padded input"]);
    let m = conv_model(
        &[2, 5, 5],
        &[3, 2, 3, 3],
        vec![a_ints("dilations", &[1, 4])],
    );
    refused(&m, &["Conv_0", "width"]);
    for op in ["MaxPool", "AveragePool"] {
        let m = pool_model(op, &[2, 4, 4], vec![a_ints("kernel_shape", &[5, 5])]);
        refused(&m, &[&format!("{op}_0"), "larger than the padded input"]);
        let m = pool_model(
            op,
            &[2, 4, 4],
            vec![
                a_ints("kernel_shape", &[3, 3]),
                a_ints("strides", &[1, 1 << 40]),
            ],
        );
        refused(&m, &[&format!("{op}_0"), "strides"]);
        let m = pool_model(
            op,
            &[2, 4, 4],
            vec![
                a_ints("kernel_shape", &[3, 3]),
                a_ints("pads", &[0, 0, 1 << 33, 0]),
            ],
        );
        refused(&m, &[&format!("{op}_0"), "pads"]);
    }
}

#[test]
fn legal_edge_geometries_import_with_onnx_shapes() {
    // Stride past the input: one output column.
    let m = conv_model(
        &[3, 7, 7],
        &[3, 1, 3, 3],
        vec![
            a_int("group", 3),
            a_ints("strides", &[1, 9]),
            a_ints("pads", &[1, 1, 1, 1]),
        ],
    );
    assert_eq!(out_shape(&m), vec![3, 7, 1]);
    // 1×1 plane with a 3×3 kernel equal to the padded input.
    let m = conv_model(
        &[2, 1, 1],
        &[4, 2, 3, 3],
        vec![a_ints("pads", &[1, 1, 1, 1])],
    );
    assert_eq!(out_shape(&m), vec![4, 1, 1]);
    let m = pool_model(
        "MaxPool",
        &[2, 5, 5],
        vec![
            a_ints("kernel_shape", &[7, 7]),
            a_ints("pads", &[1, 1, 1, 1]),
        ],
    );
    assert_eq!(out_shape(&m), vec![2, 1, 1]);
    // A stride at the limit is accepted (it only ever gives one output here).
    let m = pool_model(
        "AveragePool",
        &[2, 5, 5],
        vec![
            a_ints("kernel_shape", &[2, 2]),
            a_ints("strides", &[1 << 28, 1 << 28]),
        ],
    );
    assert_eq!(out_shape(&m), vec![2, 1, 1]);
}

#[test]
fn oversized_or_overflowing_shapes_elsewhere_are_refused() {
    // Pad past the limit, and pads that overflow.
    for pads in [
        vec![0, 0, 0, 0, 0, 0, 1 << 30, 0],
        vec![0, 0, 0, 0, 0, 0, i64::MAX, 5],
    ] {
        let mut b = OnnxBuilder::new(&[2, 4, 4]);
        let p = b.init_i64("p", &[8], pads);
        b.node("Pad", &["input", &p], &["y"], vec![]);
        refused(&b.build("y"), &["Pad_0"]);
    }
    // Reshape to a target whose product wraps around to the element count.
    let mut b = OnnxBuilder::new(&[2, 4, 4]);
    let s = b.init_i64("s", &[3], vec![0, 1 << 33, 1 << 31]);
    b.node("Reshape", &["input", &s], &["y"], vec![]);
    refused(&b.build("y"), &["Reshape_0"]);
    // Split with an absurd num_outputs (once sized a list by it).
    let mut b = OnnxBuilder::new(&[4, 2, 2]).opset(18);
    b.node(
        "Split",
        &["input"],
        &["y", "z"],
        vec![a_int("axis", 1), a_int("num_outputs", 1 << 62)],
    );
    refused(&b.build("y"), &["Split_0", "num_outputs"]);
    // Split sizes that wrap around to the axis length.
    let mut b = OnnxBuilder::new(&[4, 2, 2]);
    let s = b.init_i64("s", &[3], vec![i64::MAX, i64::MAX, 6]);
    b.node(
        "Split",
        &["input", &s],
        &["y", "z", "u"],
        vec![a_int("axis", 1)],
    );
    refused(&b.build("y"), &["Split_0"]);
    // Slice with step i64::MIN: one element, not an overflow.
    let mut b = OnnxBuilder::new(&[4, 2, 2]);
    let st = b.init_i64("st", &[1], vec![-1]);
    let en = b.init_i64("en", &[1], vec![i64::MIN]);
    let ax = b.init_i64("ax", &[1], vec![1]);
    let sp = b.init_i64("sp", &[1], vec![i64::MIN]);
    b.node("Slice", &["input", &st, &en, &ax, &sp], &["y"], vec![]);
    assert_eq!(out_shape(&b.build("y")), vec![1, 2, 2]);
    // Unsqueeze with a repeated axis.
    let mut b = OnnxBuilder::new(&[4, 2, 2]);
    let ax = b.init_i64("ax", &[2], vec![1, 1]);
    b.node("Unsqueeze", &["input", &ax], &["y"], vec![]);
    refused(&b.build("y"), &["Unsqueeze_0", "repeat"]);
    // LRN with a window size past the limit.
    let mut b = OnnxBuilder::new(&[4, 2, 2]);
    b.node("LRN", &["input"], &["y"], vec![a_int("size", i64::MAX)]);
    refused(&b.build("y"), &["LRN_0", "size"]);
    // Binary broadcasting of two activations, [1, 2^15, 1] + [1, 1, 2^15], to 2^30 elements
    // per sample.
    let mut b = OnnxBuilder::new(&[1, 1, 1]);
    let ph = b.init_i64("ph", &[8], vec![0, 0, 0, 0, 0, 0, (1 << 15) - 1, 0]);
    let pw = b.init_i64("pw", &[8], vec![0, 0, 0, 0, 0, 0, 0, (1 << 15) - 1]);
    b.node("Pad", &["input", &ph], &["a"], vec![]);
    b.node("Pad", &["input", &pw], &["b"], vec![]);
    b.node("Add", &["a", "b"], &["y"], vec![]);
    refused(&b.build("y"), &["Add_2", "elements per sample"]);
}

#[test]
fn oversized_input_is_refused() {
    let m = conv_model(&[3, 1 << 20, 1 << 20], &[4, 3, 3, 3], vec![]);
    refused(&m, &["input 'input'", "elements per sample"]);
}

/// Constant folding sees the same hostile attributes: each case once panicked, wrapped or
/// allocated without bound.
#[test]
fn constant_folding_refuses_bad_attributes_and_huge_results() {
    let with_folded = |build: &dyn Fn(&mut OnnxBuilder)| {
        let mut b = OnnxBuilder::new(&[4, 2, 2]);
        build(&mut b);
        b.node("Relu", &["input"], &["y"], vec![]);
        b.build("y")
    };
    // A Transpose perm naming an axis the constant lacks.
    let m = with_folded(&|b| {
        let c = b.init("c", &[2, 3], vec![0.0; 6]);
        b.node("Transpose", &[&c], &["t"], vec![a_ints("perm", &[0, 5])]);
    });
    refused(&m, &["Transpose_0", "perm"]);
    // A Concat of constants that disagree off the axis.
    let m = with_folded(&|b| {
        let c1 = b.init("c1", &[2, 3], vec![0.0; 6]);
        let c2 = b.init("c2", &[1, 3], vec![0.0; 3]);
        b.node("Concat", &[&c1, &c2], &["t"], vec![a_int("axis", 1)]);
    });
    refused(&m, &["Concat_0"]);
    // Integer overflow in shape arithmetic.
    let m = with_folded(&|b| {
        let c1 = b.init_i64("c1", &[1], vec![i64::MAX]);
        let c2 = b.init_i64("c2", &[1], vec![2]);
        b.node("Mul", &[&c1, &c2], &["t"], vec![]);
    });
    refused(&m, &["Mul_0", "overflow"]);
    // A Gather whose repeated indices would build 2^29 elements from 2^15.
    let m = with_folded(&|b| {
        let c = b.init("c", &[1, 1 << 15], vec![0.5; 1 << 15]);
        let i = b.init_i64("i", &[1 << 14], vec![0; 1 << 14]);
        b.node("Gather", &[&c, &i], &["t"], vec![a_int("axis", 0)]);
    });
    refused(&m, &["Gather_0"]);
    // Broadcasting two constants to 2^30 elements.
    let m = with_folded(&|b| {
        let c1 = b.init("c1", &[1 << 15, 1], vec![0.5; 1 << 15]);
        let c2 = b.init("c2", &[1, 1 << 15], vec![0.5; 1 << 15]);
        b.node("Add", &[&c1, &c2], &["t"], vec![]);
    });
    refused(&m, &["Add_0", "limit"]);
}
