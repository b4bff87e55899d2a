//! Op coverage: each supported ONNX op goes through the importer, then the CPU backend is
//! compared with tract's own output on the same model, and the GPU backend with the CPU backend.
//! Tolerance: max |Δ| / max |reference| ≤ 1e-4 for both comparisons.

mod common;
use common::*;

const TOL: f32 = 1e-4;

/// Imports `bytes`, runs a batch of 2 random samples of `shape` on tract, CPU and GPU, compares.
fn check(name: &str, bytes: &[u8], shape: &[usize]) {
    let model = netlens::model::import::import_bytes(bytes, name)
        .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
    let mut full = vec![2];
    full.extend_from_slice(shape);
    let x = random(&full, name.len() as u64);
    let reference = run_tract(bytes, &x);
    let cpu_out = run_backend(&cpu(), &model, &x);
    assert_eq!(
        cpu_out.data.len(),
        reference.data.len(),
        "{name}: CPU output size vs tract {:?}",
        reference.shape
    );
    let e_cpu = rel_err(&cpu_out.data, &reference.data, 1e-3);
    assert!(e_cpu <= TOL, "{name}: CPU vs tract rel err {e_cpu}");
    let gpu_out = run_backend(gpu(), &model, &x);
    let e_gpu = rel_err(&gpu_out.data, &cpu_out.data, 1e-3);
    assert!(e_gpu <= TOL, "{name}: GPU vs CPU rel err {e_gpu}");
}

fn unary_model(op: &str, attrs: Vec<tract_onnx::pb::AttributeProto>, opset: i64) -> Vec<u8> {
    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(opset);
    b.node(op, &["input"], &["y"], attrs);
    b.build("y")
}

#[test]
fn conv_bias_pad() {
    let mut b = OnnxBuilder::new(&[3, 9, 7]);
    let w = b.weight("w", &[5, 3, 3, 3]);
    let bias = b.weight("b", &[5]);
    b.node(
        "Conv",
        &["input", &w, &bias],
        &["y"],
        vec![a_ints("pads", &[1, 1, 1, 1])],
    );
    check("conv_bias_pad", &b.build("y"), &[3, 9, 7]);
}

#[test]
fn conv_grouped_strided_dilated() {
    let mut b = OnnxBuilder::new(&[4, 13, 11]);
    let w = b.weight("w", &[6, 2, 3, 2]);
    b.node(
        "Conv",
        &["input", &w],
        &["y"],
        vec![
            a_int("group", 2),
            a_ints("strides", &[2, 1]),
            a_ints("dilations", &[2, 2]),
            a_ints("pads", &[1, 0, 2, 1]),
        ],
    );
    check("conv_grouped_strided_dilated", &b.build("y"), &[4, 13, 11]);
}

#[test]
fn conv_depthwise_asymmetric_pads() {
    // TF "SAME" with stride 2 on an even size pads only after: [top, left, bottom, right] = [0, 0, 1, 1].
    let mut b = OnnxBuilder::new(&[6, 10, 8]);
    let w = b.weight("w", &[6, 1, 3, 3]);
    let bias = b.weight("b", &[6]);
    b.node(
        "Conv",
        &["input", &w, &bias],
        &["y"],
        vec![
            a_int("group", 6),
            a_ints("strides", &[2, 2]),
            a_ints("pads", &[0, 0, 1, 1]),
        ],
    );
    check("conv_depthwise_asymmetric_pads", &b.build("y"), &[6, 10, 8]);
}

#[test]
fn conv_auto_pad_same_upper_and_big_gemm_tile() {
    let mut b = OnnxBuilder::new(&[17, 9, 9]);
    let w = b.weight("w", &[70, 17, 5, 5]);
    b.node(
        "Conv",
        &["input", &w],
        &["y"],
        vec![a_str("auto_pad", "SAME_UPPER"), a_ints("strides", &[2, 2])],
    );
    check("conv_auto_pad_same_upper", &b.build("y"), &[17, 9, 9]);
}

#[test]
fn conv_pointwise() {
    let mut b = OnnxBuilder::new(&[33, 7, 5]);
    let w = b.weight("w", &[65, 33, 1, 1]);
    let bias = b.weight("b", &[65]);
    b.node("Conv", &["input", &w, &bias], &["y"], vec![]);
    check("conv_pointwise", &b.build("y"), &[33, 7, 5]);
}

#[test]
fn gemm_trans_b_alpha_beta() {
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    let w = b.weight("w", &[10, 60]);
    let c = b.weight("c", &[10]);
    b.node("Flatten", &["input"], &["f"], vec![]);
    b.node(
        "Gemm",
        &["f", &w, &c],
        &["y"],
        vec![
            a_int("transB", 1),
            a_float("alpha", 0.5),
            a_float("beta", 2.0),
        ],
    );
    check("gemm_trans_b", &b.build("y"), &[3, 4, 5]);
}

#[test]
fn gemm_plain_b() {
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    let w = b.weight("w", &[60, 7]);
    let c = b.weight("c", &[1, 7]);
    b.node("Flatten", &["input"], &["f"], vec![]);
    b.node("Gemm", &["f", &w, &c], &["y"], vec![]);
    check("gemm_plain_b", &b.build("y"), &[3, 4, 5]);
}

#[test]
fn matmul_const_rhs() {
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    let w = b.weight("w", &[5, 9]);
    b.node("MatMul", &["input", &w], &["y"], vec![]);
    check("matmul", &b.build("y"), &[3, 4, 5]);
}

#[test]
fn relu() {
    check("relu", &unary_model("Relu", vec![], 13), &[3, 5, 6]);
}

#[test]
fn leaky_relu() {
    check(
        "leaky_relu",
        &unary_model("LeakyRelu", vec![a_float("alpha", 0.2)], 13),
        &[3, 5, 6],
    );
}

#[test]
fn clip_inputs_and_attrs() {
    let mut b = OnnxBuilder::new(&[3, 5, 6]);
    let lo = b.init("lo", &[], vec![-0.3]);
    let hi = b.init("hi", &[], vec![0.4]);
    b.node("Clip", &["input", &lo, &hi], &["y"], vec![]);
    check("clip_opset13", &b.build("y"), &[3, 5, 6]);
    let old = unary_model("Clip", vec![a_float("min", 0.0), a_float("max", 0.5)], 9);
    check("clip_opset9", &old, &[3, 5, 6]);
}

#[test]
fn sigmoid() {
    check("sigmoid", &unary_model("Sigmoid", vec![], 13), &[3, 5, 6]);
}

#[test]
fn tanh() {
    check("tanh", &unary_model("Tanh", vec![], 13), &[3, 5, 6]);
}

#[test]
fn hard_sigmoid() {
    check(
        "hard_sigmoid",
        &unary_model(
            "HardSigmoid",
            vec![a_float("alpha", 0.3), a_float("beta", 0.4)],
            13,
        ),
        &[3, 5, 6],
    );
}

#[test]
fn hard_swish() {
    check(
        "hard_swish",
        &unary_model("HardSwish", vec![], 14),
        &[3, 5, 6],
    );
}

/// Erf (GELU's core) end to end: imported, listed by `info` and `supported_ops`, CPU against
/// tract, GPU against CPU.
#[test]
fn erf() {
    let bytes = unary_model("Erf", vec![], 13);
    let model = netlens::model::import::import_bytes(&bytes, "erf").unwrap();
    let kinds: Vec<&str> = model.graph.nodes.iter().map(|n| n.op.kind_name()).collect();
    assert_eq!(kinds, ["Erf"]);
    assert!(netlens::model::import::supported_ops().contains(&"Erf"));
    check("erf", &bytes, &[3, 5, 6]);
}

/// Exp, Neg, Sqrt and Reciprocal (LayerNorm's and attention's unfolded pieces) against tract;
/// Sqrt and Reciprocal read Exp's positive output, their domain.
#[test]
fn exp_neg_sqrt_reciprocal() {
    let mut b = OnnxBuilder::new(&[3, 5, 6]);
    b.node("Exp", &["input"], &["e"], vec![]);
    b.node("Neg", &["input"], &["n"], vec![]);
    b.node("Sqrt", &["e"], &["s"], vec![]);
    b.node("Reciprocal", &["e"], &["r"], vec![]);
    b.node("Add", &["n", "s"], &["ns"], vec![]);
    b.node("Add", &["ns", "r"], &["y"], vec![]);
    let bytes = b.build("y");
    let model = netlens::model::import::import_bytes(&bytes, "exp_neg_sqrt_reciprocal").unwrap();
    let kinds: Vec<&str> = model.graph.nodes.iter().map(|n| n.op.kind_name()).collect();
    for op in ["Exp", "Neg", "Sqrt", "Reciprocal"] {
        assert!(kinds.contains(&op), "{op} missing from {kinds:?}");
        assert!(netlens::model::import::supported_ops().contains(&op));
    }
    check("exp_neg_sqrt_reciprocal", &bytes, &[3, 5, 6]);
}

/// Squeeze-excite shape: x * sigmoid(gap(x)) broadcasts [C,1,1] against [C,H,W], both computed.
#[test]
fn binary_ops_broadcast_between_activations() {
    for op in ["Add", "Sub", "Mul", "Div"] {
        let mut b = OnnxBuilder::new(&[4, 5, 3]);
        b.node("GlobalAveragePool", &["input"], &["g"], vec![]);
        b.node("Sigmoid", &["g"], &["s"], vec![]);
        let (lhs, rhs) = if op == "Div" {
            ("input", "s")
        } else {
            ("s", "input")
        };
        b.node(op, &[lhs, rhs], &["y"], vec![]);
        check(&format!("binary_{op}_act_act"), &b.build("y"), &[4, 5, 3]);
    }
}

#[test]
fn binary_ops_with_constants_on_either_side() {
    for op in ["Add", "Sub", "Mul", "Div"] {
        let mut b = OnnxBuilder::new(&[4, 5, 3]);
        let k = b.init("k", &[4, 1, 1], vec![1.5, -2.0, 3.0, 0.75]);
        let row = b.init("row", &[3], vec![2.0, -1.25, 4.0]);
        b.node(op, &[&k, "input"], &["a"], vec![]);
        b.node(op, &["a", &row], &["y"], vec![]);
        check(&format!("binary_{op}_const"), &b.build("y"), &[4, 5, 3]);
    }
}

#[test]
fn batchnorm_folded_into_conv() {
    let mut b = OnnxBuilder::new(&[3, 6, 6]);
    let w = b.weight("w", &[4, 3, 3, 3]);
    let names: Vec<String> = ["g", "beta", "mean"]
        .iter()
        .map(|n| b.weight(n, &[4]))
        .collect();
    let var = b.init("var", &[4], vec![0.5, 1.0, 2.0, 0.25]);
    b.node("Conv", &["input", &w], &["c"], vec![]);
    b.node(
        "BatchNormalization",
        &["c", &names[0], &names[1], &names[2], &var],
        &["y"],
        vec![a_float("epsilon", 1e-3)],
    );
    let bytes = b.build("y");
    let model = netlens::model::import::import_bytes(&bytes, "bn").unwrap();
    assert_eq!(
        model.graph.nodes.len(),
        1,
        "BatchNormalization should fold into the Conv"
    );
    assert_eq!(model.graph.values[model.graph.output].name, "y");
    check("batchnorm_folded", &bytes, &[3, 6, 6]);
}

#[test]
fn batchnorm_unfolded() {
    let mut b = OnnxBuilder::new(&[4, 5, 6]);
    let names: Vec<String> = ["g", "beta", "mean"]
        .iter()
        .map(|n| b.weight(n, &[4]))
        .collect();
    let var = b.init("var", &[4], vec![0.5, 1.0, 2.0, 0.25]);
    b.node("Relu", &["input"], &["r"], vec![]);
    b.node(
        "BatchNormalization",
        &["r", &names[0], &names[1], &names[2], &var],
        &["y"],
        vec![],
    );
    let bytes = b.build("y");
    let model = netlens::model::import::import_bytes(&bytes, "bn").unwrap();
    assert!(model
        .graph
        .nodes
        .iter()
        .any(|n| n.op.kind_name() == "ChannelAffine"));
    check("batchnorm_unfolded", &bytes, &[4, 5, 6]);
}

#[test]
fn maxpool_ceil_mode_partial_window() {
    let mut b = OnnxBuilder::new(&[3, 8, 7]);
    b.node(
        "MaxPool",
        &["input"],
        &["y"],
        vec![
            a_ints("kernel_shape", &[3, 3]),
            a_ints("strides", &[2, 2]),
            a_int("ceil_mode", 1),
        ],
    );
    let bytes = b.build("y");
    let model = netlens::model::import::import_bytes(&bytes, "mp").unwrap();
    assert_eq!(model.graph.values[model.graph.output].shape, vec![3, 4, 3]);
    check("maxpool_ceil", &bytes, &[3, 8, 7]);
}

#[test]
fn maxpool_pads_dilations() {
    let mut b = OnnxBuilder::new(&[2, 9, 9]);
    b.node(
        "MaxPool",
        &["input"],
        &["y"],
        vec![
            a_ints("kernel_shape", &[3, 2]),
            a_ints("strides", &[1, 2]),
            a_ints("pads", &[1, 0, 1, 1]),
            a_ints("dilations", &[2, 1]),
        ],
    );
    check("maxpool_pads", &b.build("y"), &[2, 9, 9]);
}

#[test]
fn averagepool_count_include_pad_both_ways() {
    for include in [0, 1] {
        let mut b = OnnxBuilder::new(&[3, 7, 8]);
        b.node(
            "AveragePool",
            &["input"],
            &["y"],
            vec![
                a_ints("kernel_shape", &[3, 3]),
                a_ints("strides", &[2, 2]),
                a_ints("pads", &[1, 1, 1, 1]),
                a_int("count_include_pad", include),
            ],
        );
        check(
            &format!("avgpool_include_{include}"),
            &b.build("y"),
            &[3, 7, 8],
        );
    }
}

#[test]
fn global_pools() {
    for op in ["GlobalAveragePool", "GlobalMaxPool"] {
        let mut b = OnnxBuilder::new(&[5, 6, 7]);
        b.node(op, &["input"], &["y"], vec![]);
        check(op, &b.build("y"), &[5, 6, 7]);
    }
}

/// PyTorch's `x.view(x.size(0), -1)`: Shape → Gather → Unsqueeze → Concat → Reshape, folded.
#[test]
fn reshape_through_dynamic_batch_shape_chain() {
    let mut b = OnnxBuilder::new(&[2, 3, 4]);
    let zero = b.init_i64("zero", &[], vec![0]);
    let axes = b.init_i64("axes", &[1], vec![0]);
    let minus1 = b.init_i64("minus1", &[1], vec![-1]);
    b.node("Shape", &["input"], &["shape"], vec![]);
    b.node("Gather", &["shape", &zero], &["n"], vec![a_int("axis", 0)]);
    b.node("Unsqueeze", &["n", &axes], &["n1"], vec![]);
    b.node("Cast", &["n1"], &["n1c"], vec![a_int("to", 7)]);
    b.node(
        "Concat",
        &["n1c", &minus1],
        &["target"],
        vec![a_int("axis", 0)],
    );
    b.node("Reshape", &["input", "target"], &["y"], vec![]);
    let bytes = b.build("y");
    let model = netlens::model::import::import_bytes(&bytes, "chain").unwrap();
    assert_eq!(model.graph.nodes.len(), 1, "the shape chain must fold away");
    check("reshape_chain", &bytes, &[2, 3, 4]);
}

#[test]
fn flatten_squeeze_unsqueeze() {
    let mut b = OnnxBuilder::new(&[6, 1, 4]);
    let ax = b.init_i64("ax", &[1], vec![2]);
    let ax2 = b.init_i64("ax2", &[1], vec![-1]);
    b.node("Squeeze", &["input", &ax], &["s"], vec![]);
    b.node("Unsqueeze", &["s", &ax2], &["u"], vec![]);
    b.node("Relu", &["u"], &["r"], vec![]);
    b.node("Flatten", &["r"], &["y"], vec![]);
    check("flatten_squeeze", &b.build("y"), &[6, 1, 4]);
}

#[test]
fn transpose() {
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    b.node(
        "Transpose",
        &["input"],
        &["y"],
        vec![a_ints("perm", &[0, 3, 1, 2])],
    );
    check("transpose", &b.build("y"), &[3, 4, 5]);
}

/// ShuffleNet's channel shuffle: Reshape [N,g,C/g,H,W] → Transpose → Reshape back.
#[test]
fn channel_shuffle() {
    let mut b = OnnxBuilder::new(&[6, 3, 4]);
    let s1 = b.init_i64("s1", &[5], vec![0, 2, 3, 3, 4]);
    let s2 = b.init_i64("s2", &[4], vec![0, -1, 3, 4]);
    b.node("Reshape", &["input", &s1], &["r"], vec![]);
    b.node(
        "Transpose",
        &["r"],
        &["t"],
        vec![a_ints("perm", &[0, 2, 1, 3, 4])],
    );
    b.node("Reshape", &["t", &s2], &["y"], vec![]);
    check("channel_shuffle", &b.build("y"), &[6, 3, 4]);
}

#[test]
fn concat() {
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    b.node("Relu", &["input"], &["a"], vec![]);
    b.node("Sigmoid", &["input"], &["s"], vec![]);
    b.node(
        "Concat",
        &["a", "input", "s"],
        &["y"],
        vec![a_int("axis", 1)],
    );
    check("concat", &b.build("y"), &[3, 4, 5]);
}

#[test]
fn split() {
    let mut b = OnnxBuilder::new(&[7, 4, 3]);
    let sizes = b.init_i64("sizes", &[3], vec![2, 4, 1]);
    b.node(
        "Split",
        &["input", &sizes],
        &["a", "b", "c"],
        vec![a_int("axis", 1)],
    );
    b.node("Relu", &["b"], &["rb"], vec![]);
    b.node("Concat", &["c", "rb", "a"], &["y"], vec![a_int("axis", 1)]);
    check("split", &b.build("y"), &[7, 4, 3]);
}

#[test]
fn slice_steps_and_negative() {
    let mut b = OnnxBuilder::new(&[5, 9, 8]);
    let starts = b.init_i64("starts", &[3], vec![1, -2, 0]);
    let ends = b.init_i64("ends", &[3], vec![5, 0, 100]);
    let axes = b.init_i64("axes", &[3], vec![1, 2, 3]);
    let steps = b.init_i64("steps", &[3], vec![2, -3, 3]);
    b.node(
        "Slice",
        &["input", &starts, &ends, &axes, &steps],
        &["y"],
        vec![],
    );
    check("slice", &b.build("y"), &[5, 9, 8]);
}

#[test]
fn softmax() {
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    let w = b.weight("w", &[60, 10]);
    b.node("Flatten", &["input"], &["f"], vec![]);
    b.node("MatMul", &["f", &w], &["l"], vec![]);
    b.node("Softmax", &["l"], &["y"], vec![a_int("axis", 1)]);
    check("softmax", &b.build("y"), &[3, 4, 5]);
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    b.node("Softmax", &["input"], &["y"], vec![a_int("axis", 1)]);
    check("softmax_channels", &b.build("y"), &[3, 4, 5]);
}

#[test]
fn dropout_and_identity_are_removed() {
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    b.node("Dropout", &["input"], &["d"], vec![]);
    b.node("Identity", &["d"], &["i"], vec![]);
    b.node("Relu", &["i"], &["y"], vec![]);
    let bytes = b.build("y");
    let model = netlens::model::import::import_bytes(&bytes, "drop").unwrap();
    assert_eq!(model.graph.nodes.len(), 1);
    check("dropout_identity", &bytes, &[3, 4, 5]);
}

#[test]
fn lrn() {
    let mut b = OnnxBuilder::new(&[7, 4, 5]);
    b.node(
        "LRN",
        &["input"],
        &["y"],
        vec![
            a_int("size", 3),
            a_float("alpha", 0.5),
            a_float("beta", 0.75),
            a_float("bias", 2.0),
        ],
    );
    check("lrn", &b.build("y"), &[7, 4, 5]);
}

#[test]
fn pad_constant() {
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    let pads = b.init_i64("pads", &[8], vec![0, 1, 2, 0, 0, 0, 1, 3]);
    let v = b.init("v", &[], vec![0.25]);
    b.node("Pad", &["input", &pads, &v], &["y"], vec![]);
    check("pad", &b.build("y"), &[3, 4, 5]);
}

#[test]
fn reductions() {
    for (op, keep) in [("ReduceMean", 1), ("ReduceMax", 0)] {
        let mut b = OnnxBuilder::new(&[3, 4, 5]);
        b.node(
            op,
            &["input"],
            &["y"],
            vec![a_ints("axes", &[1, 3]), a_int("keepdims", keep)],
        );
        check(op, &b.build("y"), &[3, 4, 5]);
    }
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    let axes = b.init_i64("axes", &[2], vec![2, 3]);
    b.node(
        "ReduceSum",
        &["input", &axes],
        &["y"],
        vec![a_int("keepdims", 1)],
    );
    check("ReduceSum", &b.build("y"), &[3, 4, 5]);
}

#[test]
fn unsupported_op_names_op_and_node() {
    let mut b = OnnxBuilder::new(&[3, 4, 5]);
    b.node("Relu", &["input"], &["r"], vec![]);
    b.node("Hardmax", &["r"], &["y"], vec![]);
    let err = netlens::model::import::import_bytes(&b.build("y"), "hardmax").unwrap_err();
    assert_eq!(err.kind, netlens::ErrorKind::BadInput);
    assert!(
        err.message.contains("'Hardmax'") && err.message.contains("Hardmax_1"),
        "{}",
        err.message
    );
}
