//! Legal but unusual window geometries through the importer (issue 11): strides larger than the
//! input, 1×1 planes and kernels equal to the padded input, for Conv (general, grouped,
//! depthwise) and the pools. The CPU backend is compared with tract and the GPU backend with the
//! CPU backend, as in tests/ops.rs: max |Δ| / max |reference| ≤ 1e-4.

mod common;
use common::*;
use tract_onnx::pb;

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
    assert_eq!(cpu_out.shape, reference.shape, "{name}: CPU shape vs tract");
    let e_cpu = rel_err(&cpu_out.data, &reference.data, 1e-3);
    assert!(e_cpu <= TOL, "{name}: CPU vs tract rel err {e_cpu}");
    let gpu_out = run_backend(gpu(), &model, &x);
    let e_gpu = rel_err(&gpu_out.data, &cpu_out.data, 1e-3);
    assert!(e_gpu <= TOL, "{name}: GPU vs CPU rel err {e_gpu}");
}

fn conv(name: &str, input: [i64; 3], w: [i64; 4], attrs: Vec<pb::AttributeProto>) {
    let mut b = OnnxBuilder::new(&input);
    let wn = b.weight("w", &w);
    let bias = b.weight("b", &[w[0]]);
    b.node("Conv", &["input", &wn, &bias], &["y"], attrs);
    check(name, &b.build("y"), &input.map(|d| d as usize));
}

#[test]
fn conv_stride_past_the_input() {
    for sw in [9, 10, 16, 31] {
        conv(
            &format!("dw_stride_1_{sw}"),
            [6, 7, 7],
            [6, 1, 3, 3],
            vec![
                a_int("group", 6),
                a_ints("strides", &[1, sw]),
                a_ints("pads", &[1, 1, 1, 1]),
            ],
        );
    }
    conv(
        "dw_stride_10_two_outputs",
        [2, 7, 7],
        [2, 1, 3, 3],
        vec![
            a_int("group", 2),
            a_ints("strides", &[10, 10]),
            a_ints("pads", &[4, 4, 2, 2]),
        ],
    );
    conv(
        "conv_stride_9_9",
        [12, 7, 7],
        [5, 12, 3, 3],
        vec![a_ints("strides", &[9, 9]), a_ints("pads", &[1, 1, 1, 1])],
    );
}

#[test]
fn conv_one_by_one_planes_and_kernel_equal_to_padded_input() {
    conv(
        "conv_1x1_plane_3x3",
        [3, 1, 1],
        [4, 3, 3, 3],
        vec![a_ints("pads", &[1, 1, 1, 1])],
    );
    conv(
        "dw_1x1_plane_stride_2",
        [4, 1, 1],
        [8, 1, 3, 3],
        vec![
            a_int("group", 4),
            a_ints("strides", &[2, 2]),
            a_ints("pads", &[1, 1, 1, 1]),
        ],
    );
    conv(
        "conv_kernel_is_padded_input",
        [2, 5, 5],
        [3, 2, 7, 7],
        vec![a_ints("pads", &[1, 1, 1, 1])],
    );
    conv(
        "dw_kernel_is_padded_input",
        [3, 5, 6],
        [3, 1, 7, 8],
        vec![a_int("group", 3), a_ints("pads", &[1, 1, 1, 1])],
    );
    conv(
        "conv_dilated_kernel_is_padded_input",
        [10, 5, 5],
        [3, 10, 3, 3],
        vec![a_ints("dilations", &[3, 3]), a_ints("pads", &[1, 1, 1, 1])],
    );
}

#[test]
fn pools_on_edge_geometries() {
    let cases: [(&str, [i64; 3], Vec<pb::AttributeProto>); 4] = [
        (
            "stride_past_input",
            [2, 7, 7],
            vec![
                a_ints("kernel_shape", &[3, 3]),
                a_ints("strides", &[1, 9]),
                a_ints("pads", &[1, 1, 1, 1]),
            ],
        ),
        (
            "one_by_one",
            [3, 1, 1],
            vec![
                a_ints("kernel_shape", &[3, 3]),
                a_ints("strides", &[2, 2]),
                a_ints("pads", &[1, 1, 1, 1]),
            ],
        ),
        (
            "kernel_is_padded_input",
            [2, 5, 6],
            vec![
                a_ints("kernel_shape", &[7, 8]),
                a_ints("pads", &[1, 1, 1, 1]),
            ],
        ),
        (
            "kernel_is_input",
            [2, 5, 5],
            vec![a_ints("kernel_shape", &[5, 5])],
        ),
    ];
    for (name, input, attrs) in cases {
        for (op, extra) in [
            ("MaxPool", None),
            ("AveragePool", None),
            ("AveragePool", Some(a_int("count_include_pad", 1))),
        ] {
            let mut b = OnnxBuilder::new(&input);
            let mut attrs = attrs.clone();
            attrs.extend(extra);
            b.node(op, &["input"], &["y"], attrs);
            check(
                &format!("{op}_{name}"),
                &b.build("y"),
                &input.map(|d| d as usize),
            );
        }
    }
}
