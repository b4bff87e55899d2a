//! Op coverage for the transformer ops (issue 13), beside `tests/ops.rs` (which is near its size
//! limit) and in the same way: each ONNX op goes through the importer, then the CPU backend is
//! compared with tract's output on the same model (or, where tract lacks the op, with a float64
//! evaluation written out here), and the GPU backend with the CPU backend.
//! Tolerance: max |Δ| / max |reference| ≤ 1e-4 for both comparisons.

mod common;
use common::*;
use netlens::HostTensor;

const TOL: f32 = 1e-4;

/// Imports `bytes`, runs a batch of 2 random samples of `shape` (scaled by `spread`) on the CPU
/// and GPU backends, compares the CPU with `reference(x)` and the GPU with the CPU. Returns the
/// two errors.
fn check_with(
    name: &str,
    bytes: &[u8],
    shape: &[usize],
    spread: f32,
    reference: impl Fn(&HostTensor) -> HostTensor,
) -> (f32, f32) {
    let model = netlens::model::import::import_bytes(bytes, name)
        .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
    let mut full = vec![2];
    full.extend_from_slice(shape);
    let mut x = random(&full, name.len() as u64);
    x.data.iter_mut().for_each(|v| *v *= spread);
    let want = reference(&x);
    let cpu_out = run_backend(&cpu(), &model, &x);
    assert_eq!(
        cpu_out.data.len(),
        want.data.len(),
        "{name}: CPU output size vs reference {:?}",
        want.shape
    );
    let e_cpu = rel_err(&cpu_out.data, &want.data, 1e-3);
    assert!(e_cpu <= TOL, "{name}: CPU vs reference rel err {e_cpu}");
    let gpu_out = run_backend(gpu(), &model, &x);
    let e_gpu = rel_err(&gpu_out.data, &cpu_out.data, 1e-3);
    assert!(e_gpu <= TOL, "{name}: GPU vs CPU rel err {e_gpu}");
    eprintln!("{name}: CPU vs reference {e_cpu:e}, GPU vs CPU {e_gpu:e}");
    (e_cpu, e_gpu)
}

/// [`check_with`] against tract.
fn check(name: &str, bytes: &[u8], shape: &[usize]) {
    check_with(name, bytes, shape, 1.0, |x| run_tract(bytes, x));
}

fn kinds(bytes: &[u8]) -> Vec<&'static str> {
    let model = netlens::model::import::import_bytes(bytes, "kinds").unwrap();
    model.graph.nodes.iter().map(|n| n.op.kind_name()).collect()
}

/// LayerNormalization (opset 17) over the last axis with bias, as ViT/Swin/ConvNeXt export it,
/// after a Conv so the rows have a mean and spread of their own.
#[test]
fn layer_norm_last_axis() {
    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(17);
    let w = b.weight("w", &[4, 3, 1, 1]);
    let scale = b.weight("scale", &[6]);
    let bias = b.weight("bias", &[6]);
    b.node("Conv", &["input", &w], &["c"], vec![]);
    b.node(
        "LayerNormalization",
        &["c", &scale, &bias],
        &["y"],
        vec![a_int("axis", -1), a_float("epsilon", 1e-5)],
    );
    let bytes = b.build("y");
    assert_eq!(kinds(&bytes), ["Conv", "LayerNormalization"]);
    assert!(netlens::model::import::supported_ops().contains(&"LayerNormalization"));
    check("layer_norm_last_axis", &bytes, &[3, 5, 6]);
}

/// Over the two trailing axes from axis 2, no bias, a scale of shape [1, 6] broadcast over the
/// normalised [5, 6], and a large epsilon.
#[test]
fn layer_norm_two_axes_broadcast_scale_no_bias() {
    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(17);
    let scale = b.weight("scale", &[1, 6]);
    b.node(
        "LayerNormalization",
        &["input", &scale],
        &["y"],
        vec![a_int("axis", 2), a_float("epsilon", 0.1)],
    );
    check("layer_norm_two_axes", &b.build("y"), &[3, 5, 6]);
}

fn import_err(bytes: &[u8]) -> netlens::Error {
    netlens::model::import::import_bytes(bytes, "bad").unwrap_err()
}

/// Normalising over the batch axis, a Mean output the graph reads, and a scale that does not
/// fit are bad input naming the node, not a panic.
#[test]
fn layer_norm_refusals_name_the_node() {
    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(17);
    let scale = b.weight("scale", &[2, 3, 5, 6]);
    b.node(
        "LayerNormalization",
        &["input", &scale],
        &["y"],
        vec![a_int("axis", 0)],
    );
    let e = import_err(&b.build("y"));
    assert_eq!(e.kind, netlens::ErrorKind::BadInput);
    assert!(
        e.message.contains("LayerNormalization_0") && e.message.contains("batch axis"),
        "{}",
        e.message
    );

    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(17);
    let scale = b.weight("scale", &[6]);
    b.node(
        "LayerNormalization",
        &["input", &scale],
        &["n", "mean"],
        vec![],
    );
    b.node("Add", &["n", "mean"], &["y"], vec![]);
    let e = import_err(&b.build("y"));
    assert!(
        e.message.contains("LayerNormalization_0") && e.message.contains("Mean output"),
        "{}",
        e.message
    );

    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(17);
    let scale = b.weight("scale", &[5]);
    b.node("LayerNormalization", &["input", &scale], &["y"], vec![]);
    let e = import_err(&b.build("y"));
    assert!(
        e.message.contains("LayerNormalization_0") && e.message.contains("does not broadcast"),
        "{}",
        e.message
    );
}

fn gelu_model(approximate: Option<&str>) -> Vec<u8> {
    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(20);
    let attrs = approximate
        .map(|a| a_str("approximate", a))
        .into_iter()
        .collect();
    b.node("Gelu", &["input"], &["y"], attrs);
    b.build("y")
}

/// Gelu (opset 20), exact and tanh forms, against tract, on inputs spread over [-4, 4).
#[test]
fn gelu_exact_and_tanh() {
    for (name, approximate) in [
        ("gelu_default", None),
        ("gelu_none", Some("none")),
        ("gelu_tanh", Some("tanh")),
    ] {
        let bytes = gelu_model(approximate);
        assert_eq!(kinds(&bytes), ["Gelu"]);
        let (e_cpu, _) = check_with(name, &bytes, &[3, 5, 6], 4.0, |x| run_tract(&bytes, x));
        // The two forms differ by about TOL (1.2e-4, `apart` below): a tighter bound tells
        // them apart.
        assert!(e_cpu < 1e-6, "{name}: CPU vs tract {e_cpu}");
    }
    let mut x = random(&[2, 3, 5, 6], 3);
    x.data.iter_mut().for_each(|v| *v *= 4.0);
    let exact = run_tract(&gelu_model(None), &x);
    let tanh = run_tract(&gelu_model(Some("tanh")), &x);
    let apart = rel_err(&exact.data, &tanh.data, 1e-3);
    eprintln!("gelu: exact vs tanh form {apart:e}");
    assert!(apart > 1e-5, "the two forms differ by only {apart}");
    assert!(netlens::model::import::supported_ops().contains(&"Gelu"));
    let e = import_err(&gelu_model(Some("fast")));
    assert!(
        e.message.contains("Gelu_0") && e.message.contains("\"fast\""),
        "{}",
        e.message
    );
}

/// Pow with a constant exponent: the squares and roots of LayerNorm's unfolded form, odd and
/// negative integer powers of negative bases, fractional powers of negative bases (NaN) and of
/// zero (0 or inf), against tract on the CPU and the CPU on the GPU, element by element with
/// NaN equal to NaN and infinities equal to themselves.
#[test]
fn pow_constant_exponent() {
    let mut x = random(&[2, 3, 5, 6], 11);
    x.data.iter_mut().for_each(|v| *v *= 3.0);
    x.data[0] = 0.0;
    x.data[1] = 1.0;
    x.data[2] = -2.0;
    for p in [2.0f32, 0.5, 3.0, -1.0, -2.0, 1.5, -0.5, 0.0, 1.0] {
        let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(13);
        // A rank-0 exponent, as torch exports `x ** 2`.
        let e = b.init("e", &[], vec![p]);
        b.node("Pow", &["input", &e], &["y"], vec![]);
        let bytes = b.build("y");
        assert_eq!(kinds(&bytes), ["Pow"]);
        let model = netlens::model::import::import_bytes(&bytes, "pow").unwrap();
        let want = run_tract(&bytes, &x);
        let got_cpu = run_backend(&cpu(), &model, &x);
        let got_gpu = run_backend(gpu(), &model, &x);
        let finite_peak = want
            .data
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f32, |m, v| m.max(v.abs()));
        let mut worst = (0f32, 0f32);
        for (i, &w) in want.data.iter().enumerate() {
            let (c, g) = (got_cpu.data[i], got_gpu.data[i]);
            if !w.is_finite() {
                let same = |v: f32| (w.is_nan() && v.is_nan()) || v == w;
                assert!(
                    same(c) && same(g),
                    "x^{p} at x = {}: tract {w}, CPU {c}, GPU {g}",
                    x.data[i]
                );
                continue;
            }
            worst.0 = worst.0.max((c - w).abs() / finite_peak);
            worst.1 = worst.1.max((g - c).abs() / finite_peak);
        }
        assert!(
            worst.0 <= TOL && worst.1 <= TOL,
            "x^{p}: CPU vs tract, GPU vs CPU {worst:?}"
        );
        eprintln!(
            "pow {p}: CPU vs tract {:e}, GPU vs CPU {:e}",
            worst.0, worst.1
        );
    }
    // The exponent [1] works too; a computed or non-scalar exponent is refused naming the node.
    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(13);
    let e = b.init("e", &[1], vec![2.0]);
    b.node("Pow", &["input", &e], &["y"], vec![]);
    assert_eq!(kinds(&b.build("y")), ["Pow"]);
    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(13);
    let e = b.init("e", &[2], vec![2.0, 3.0]);
    b.node("Pow", &["input", &e], &["y"], vec![]);
    let err = import_err(&b.build("y"));
    assert!(
        err.message.contains("Pow_0") && err.message.contains("scalar exponent"),
        "{}",
        err.message
    );
    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(13);
    b.node("Pow", &["input", "input"], &["y"], vec![]);
    let err = import_err(&b.build("y"));
    assert!(
        err.message.contains("Pow_0") && err.message.contains("constant"),
        "{}",
        err.message
    );
}

/// LogSoftmax over the last axis and a middle one (opset 13), and at opset 11 from axis 2 of
/// [3, 5, 6], which flattens [5, 6] into one axis (a Reshape pair around the op), against tract.
#[test]
fn log_softmax_axes_and_old_opset_flattening() {
    for (name, opset, axis) in [
        ("lsm_last", 13, -1),
        ("lsm_mid", 13, 2),
        ("lsm_old_flat", 11, 2),
    ] {
        let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(opset);
        b.node("LogSoftmax", &["input"], &["y"], vec![a_int("axis", axis)]);
        let bytes = b.build("y");
        let k = kinds(&bytes);
        assert!(k.contains(&"LogSoftmax"), "{name}: {k:?}");
        check_with(name, &bytes, &[3, 5, 6], 20.0, |x| run_tract(&bytes, x));
    }
    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(13);
    b.node("LogSoftmax", &["input"], &["y"], vec![a_int("axis", 0)]);
    let e = import_err(&b.build("y"));
    assert!(
        e.message.contains("LogSoftmax_0") && e.message.contains("batch axis"),
        "{}",
        e.message
    );
}

/// LayerNorm's unfolded form, as older exporters write it: ReduceMean, Sub, Pow 2, ReduceMean,
/// Add ε, Sqrt, Div, Mul, Add, over the last axis, against tract.
#[test]
fn layer_norm_unfolded_form() {
    let mut b = OnnxBuilder::new(&[3, 5, 6]).opset(13);
    let two = b.init("two", &[], vec![2.0]);
    let eps = b.init("eps", &[], vec![1e-5]);
    let scale = b.weight("scale", &[6]);
    let bias = b.weight("bias", &[6]);
    let mean = || vec![a_ints("axes", &[-1]), a_int("keepdims", 1)];
    b.node("ReduceMean", &["input"], &["mu"], mean());
    b.node("Sub", &["input", "mu"], &["d"], vec![]);
    b.node("Pow", &["d", &two], &["d2"], vec![]);
    b.node("ReduceMean", &["d2"], &["var"], mean());
    b.node("Add", &["var", &eps], &["ve"], vec![]);
    b.node("Sqrt", &["ve"], &["sd"], vec![]);
    b.node("Div", &["d", "sd"], &["xh"], vec![]);
    b.node("Mul", &["xh", &scale], &["xs"], vec![]);
    b.node("Add", &["xs", &bias], &["y"], vec![]);
    let bytes = b.build("y");
    check_with("layer_norm_unfolded", &bytes, &[3, 5, 6], 3.0, |x| {
        run_tract(&bytes, x)
    });
}
