//! GPU reverse mode against the CPU backend's `gradients` (the oracle), op by op on small graphs
//! with awkward shapes, plus rules, seeds, chunking and the one-submission guarantee.

use super::tests::{
    assert_close, conv, conv_out, gpu, gpu_with, mobilenet_like, rand_vec, serial, Builder,
};
use super::{GpuBackend, GpuOptions};
use crate::backend::{Backend, GradRule, HostTensor, Seed};
use crate::cpu::CpuBackend;
use crate::error::ErrorKind;
use crate::model::*;

#[derive(Clone)]
enum SeedSpec {
    /// A random gradient at the value.
    Random(ValueId),
    /// Softmax probability of per-sample targets at the value (logits).
    Prob(ValueId, Vec<usize>),
}

struct Grads {
    output: HostTensor,
    input: HostTensor,
    layers: Vec<HostTensor>,
}

fn host_seed(model: &Model, spec: &SeedSpec, batch: usize) -> Seed<HostTensor> {
    match spec {
        SeedSpec::Random(at) => {
            let shape = model.graph.values[*at].full_shape(batch);
            let n = shape.iter().product();
            Seed::Grad {
                at: *at,
                grad: HostTensor::new(shape, rand_vec(n, 99)).unwrap(),
            }
        }
        SeedSpec::Prob(at, t) => Seed::SoftmaxProb {
            at: *at,
            targets: t.clone(),
        },
    }
}

fn run_grads<B: Backend>(
    be: &B,
    model: &Model,
    input: &HostTensor,
    seed: &Seed<HostTensor>,
    rule: GradRule,
    wrt: &[ValueId],
) -> Grads {
    let x = be.upload(input).unwrap();
    let seed = match seed {
        Seed::Grad { at, grad } => Seed::Grad {
            at: *at,
            grad: be.upload(grad).unwrap(),
        },
        Seed::SoftmaxProb { at, targets } => Seed::SoftmaxProb {
            at: *at,
            targets: targets.clone(),
        },
    };
    let r = be.gradients(model, &x, &seed, rule, wrt, &[]).unwrap();
    Grads {
        output: be.read(&r.output).unwrap(),
        input: be.read(&r.input_grad).unwrap(),
        layers: r
            .layer_grads
            .iter()
            .map(|(_, t)| be.read(t).unwrap())
            .collect(),
    }
}

fn input_for(model: &Model, batch: usize, seed: u64) -> HostTensor {
    let shape = model.graph.values[model.graph.input].full_shape(batch);
    let n = shape.iter().product();
    HostTensor::new(shape, rand_vec(n, seed)).unwrap()
}

/// GPU vs CPU gradients of one model: output, input gradient and each `wrt` gradient.
fn check(
    gpu: &GpuBackend,
    model: &Model,
    batch: usize,
    spec: SeedSpec,
    rule: GradRule,
    wrt: &[ValueId],
    what: &str,
) {
    let input = input_for(model, batch, 5);
    let seed = host_seed(model, &spec, batch);
    let want = run_grads(&CpuBackend::new(), model, &input, &seed, rule, wrt);
    let got = run_grads(gpu, model, &input, &seed, rule, wrt);
    assert_close(&got.output, &want.output, 1e-4, &format!("{what}: output"));
    assert_close(
        &got.input,
        &want.input,
        1e-4,
        &format!("{what}: input grad"),
    );
    assert!(
        want.input.data.iter().any(|&v| v != 0.0) || rule != GradRule::Standard,
        "{what}: the oracle's input gradient is all zeros; the test checks nothing"
    );
    for (k, (g, w)) in got.layers.iter().zip(&want.layers).enumerate() {
        assert_close(g, w, 1e-4, &format!("{what}: grad of wrt #{k}"));
    }
}

/// `input -> op -> output`, seeded with a random gradient at the output.
pub(super) fn single(gpu: &GpuBackend, input: &[usize], op: Op, out: &[usize], what: &str) {
    let mut b = Builder::new(input);
    let y = b.add(op, &[0], out);
    let m = b.model(y);
    check(
        gpu,
        &m,
        2,
        SeedSpec::Random(y),
        GradRule::Standard,
        &[],
        what,
    );
}

#[test]
fn conv_vjps_general_grouped_depthwise() {
    let _serial = serial();
    let gpu = gpu();
    let cases = [
        // (in c, h, w), weight, groups, strides, dilations, pads
        ([3, 7, 6], [5, 3, 3, 2], 1, [2, 1], [1, 2], [1, 0, 2, 1]),
        ([4, 6, 7], [6, 2, 3, 3], 2, [1, 2], [1, 1], [0, 2, 1, 0]),
        ([4, 9, 8], [4, 1, 3, 3], 4, [2, 2], [1, 1], [1, 0, 0, 1]),
        ([3, 7, 7], [6, 1, 3, 2], 3, [1, 1], [2, 1], [2, 1, 2, 1]),
        ([1, 6, 5], [3, 1, 2, 2], 1, [1, 1], [1, 1], [0, 0, 0, 0]),
        // Above 8 input channels per group: the implicit-GEMM path, with the same oddities.
        ([12, 7, 6], [9, 12, 3, 2], 1, [2, 1], [1, 2], [1, 0, 2, 1]),
        ([20, 6, 7], [6, 10, 3, 3], 2, [1, 2], [2, 1], [0, 2, 1, 0]),
        ([18, 8, 7], [6, 9, 2, 3], 2, [2, 2], [1, 1], [1, 0, 0, 1]),
        // Enough channels and pixels for several 64-wide GEMM tiles on each axis.
        ([67, 6, 5], [5, 67, 3, 3], 1, [1, 1], [1, 1], [1, 1, 1, 1]),
        ([5, 9, 10], [70, 5, 1, 1], 1, [1, 1], [1, 1], [0, 0, 0, 0]),
    ];
    for (i, (x, w, groups, s, d, p)) in cases.into_iter().enumerate() {
        let op = conv(&w, i % 2 == 0, groups, s, d, p);
        let [oh, ow] = conv_out(&op, [x[1], x[2]]);
        single(&gpu, &x, op, &[w[0], oh, ow], &format!("conv case {i}"));
    }
}

#[test]
fn conv_relu_fusion_keeps_the_mask() {
    let _serial = serial();
    let gpu = gpu();
    let mut b = Builder::new(&[3, 6, 5]);
    let c = b.add(
        conv(&[4, 3, 3, 3], true, 1, [1, 1], [1, 1], [1, 1, 1, 1]),
        &[0],
        &[4, 6, 5],
    );
    let r = b.add(Op::Unary(Unary::Relu), &[c], &[4, 6, 5]);
    let c2 = b.add(
        conv(&[3, 4, 3, 3], false, 1, [2, 2], [1, 1], [0, 0, 0, 0]),
        &[r],
        &[3, 2, 2],
    );
    let cl = b.add(
        Op::Unary(Unary::Clip {
            min: -0.2,
            max: 0.3,
        }),
        &[c2],
        &[3, 2, 2],
    );
    let m = b.model(cl);
    for rule in [GradRule::Standard, GradRule::Guided, GradRule::Deconvnet] {
        check(&gpu, &m, 2, SeedSpec::Random(cl), rule, &[], "conv+relu");
        // The conv output as a wrt value must not be fused away.
        check(
            &gpu,
            &m,
            2,
            SeedSpec::Random(cl),
            rule,
            &[c, c2],
            "wrt conv",
        );
    }
}

#[test]
fn linear_vjp() {
    let _serial = serial();
    let gpu = gpu();
    for (rows, k, o) in [(3, 70, 65), (1, 5, 3)] {
        let op = Op::Linear(Linear {
            weight: Const::new(vec![o, k], rand_vec(o * k, 3)),
            bias: Some(Const::new(vec![o], rand_vec(o, 4))),
        });
        single(&gpu, &[rows, k], op, &[rows, o], "linear");
    }
}

#[test]
fn unary_vjps_and_rules() {
    let _serial = serial();
    let gpu = gpu();
    let ops = [
        Unary::Relu,
        Unary::LeakyRelu { alpha: 0.1 },
        Unary::Clip {
            min: -0.3,
            max: 0.4,
        },
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::HardSigmoid {
            alpha: 0.9,
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
    for u in ops {
        let mut b = Builder::new(&[3, 5, 7]);
        // Scale up so HardSwish/HardSigmoid see every branch.
        let s = b.add(
            Op::Binary(Binary {
                kind: BinaryKind::Mul,
                konst: Some(Const::new(vec![], vec![4.0])),
                konst_is_lhs: false,
            }),
            &[0],
            &[3, 5, 7],
        );
        // Sqrt, Reciprocal and fractional powers read exp(4x) > 0, their domain.
        let s = match u {
            Unary::Sqrt | Unary::Reciprocal | Unary::Pow { p: 0.5 | -1.5 } => {
                b.add(Op::Unary(Unary::Exp), &[s], &[3, 5, 7])
            }
            _ => s,
        };
        let y = b.add(Op::Unary(u), &[s], &[3, 5, 7]);
        let m = b.model(y);
        for rule in [GradRule::Standard, GradRule::Guided, GradRule::Deconvnet] {
            let what = format!("{u:?} {rule:?}");
            check(&gpu, &m, 2, SeedSpec::Random(y), rule, &[s], &what);
        }
    }
}

#[test]
fn binary_vjps_broadcast_and_const() {
    let _serial = serial();
    let gpu = gpu();
    for kind in [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Div,
    ] {
        let vv = |swap: bool| {
            let mut b = Builder::new(&[3, 4, 5]);
            // A positive operand keeps Div well conditioned.
            let e = b.add(Op::Unary(Unary::Sigmoid), &[0], &[3, 4, 5]);
            let r = b.add(
                Op::Reduce {
                    kind: ReduceKind::Mean,
                    axes: vec![2],
                    keepdims: true,
                },
                &[e],
                &[3, 1, 5],
            );
            let ins = if swap { [r, e] } else { [e, r] };
            let y = b.add(
                Op::Binary(Binary {
                    kind,
                    konst: None,
                    konst_is_lhs: false,
                }),
                &ins,
                &[3, 4, 5],
            );
            (b.model(y), y, e, r)
        };
        for swap in [false, true] {
            let (m, y, e, r) = vv(swap);
            let what = format!("{kind:?} value-value swap={swap}");
            check(
                &gpu,
                &m,
                2,
                SeedSpec::Random(y),
                GradRule::Standard,
                &[e, r],
                &what,
            );
        }
        for (kshape, lhs) in [(vec![4, 1], true), (vec![5], false), (vec![3, 4, 5], true)] {
            let n: usize = kshape.iter().product();
            let data: Vec<f32> = rand_vec(n, 8).iter().map(|v| v + 2.0).collect();
            let mut b = Builder::new(&[3, 4, 5]);
            let e = b.add(Op::Unary(Unary::Sigmoid), &[0], &[3, 4, 5]);
            let y = b.add(
                Op::Binary(Binary {
                    kind,
                    konst: Some(Const::new(kshape.clone(), data)),
                    konst_is_lhs: lhs,
                }),
                &[e],
                &[3, 4, 5],
            );
            let m = b.model(y);
            let what = format!("{kind:?} const {kshape:?} lhs={lhs}");
            check(
                &gpu,
                &m,
                2,
                SeedSpec::Random(y),
                GradRule::Standard,
                &[],
                &what,
            );
        }
        // The same value on both sides: both contributions accumulate (x-x and x/x have zero
        // gradient, which would check nothing).
        if matches!(kind, BinaryKind::Sub | BinaryKind::Div) {
            continue;
        }
        let mut b = Builder::new(&[2, 3, 4]);
        let e = b.add(Op::Unary(Unary::Sigmoid), &[0], &[2, 3, 4]);
        let y = b.add(
            Op::Binary(Binary {
                kind,
                konst: None,
                konst_is_lhs: false,
            }),
            &[e, e],
            &[2, 3, 4],
        );
        let m = b.model(y);
        check(
            &gpu,
            &m,
            2,
            SeedSpec::Random(y),
            GradRule::Standard,
            &[],
            "x∘x",
        );
    }
}

#[test]
fn affine_pool_reduce_vjps() {
    let _serial = serial();
    let gpu = gpu();
    single(
        &gpu,
        &[3, 4, 5],
        Op::ChannelAffine {
            scale: Const::new(vec![3], rand_vec(3, 1)),
            shift: Const::new(vec![3], rand_vec(3, 2)),
        },
        &[3, 4, 5],
        "channel affine",
    );
    let kinds = [
        PoolKind::Max,
        PoolKind::Avg {
            count_include_pad: false,
        },
        PoolKind::Avg {
            count_include_pad: true,
        },
    ];
    let windows = [
        ([3, 2], [2, 3], [1, 2], [1, 0, 1, 2]),
        ([2, 2], [2, 2], [1, 1], [0, 0, 0, 0]),
        ([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
    ];
    for kind in kinds {
        for (k, s, d, p) in windows {
            let (h, w) = (7, 8);
            let oh = window_out_len(h, k[0], s[0], d[0], p[0], p[2], false).unwrap();
            let ow = window_out_len(w, k[1], s[1], d[1], p[1], p[3], false).unwrap();
            let op = Op::Pool(Pool {
                kind,
                kernel: k,
                strides: s,
                dilations: d,
                pads: p,
            });
            single(
                &gpu,
                &[3, h, w],
                op,
                &[3, oh, ow],
                &format!("{kind:?} {k:?}"),
            );
        }
    }
    for max in [false, true] {
        single(
            &gpu,
            &[3, 5, 4],
            Op::GlobalPool { max },
            &[3, 1, 1],
            "global pool",
        );
    }
    for kind in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max] {
        for (axes, keep, out) in [
            (vec![1, 3], false, vec![4]),
            (vec![2], true, vec![3, 1, 5]),
            (vec![1, 2, 3], false, vec![]),
        ] {
            let op = Op::Reduce {
                kind,
                axes: axes.clone(),
                keepdims: keep,
            };
            single(&gpu, &[3, 4, 5], op, &out, &format!("{kind:?} {axes:?}"));
        }
    }
}

#[test]
fn layout_softmax_lrn_vjps() {
    let _serial = serial();
    let gpu = gpu();
    single(
        &gpu,
        &[3, 4, 5],
        Op::Transpose {
            perm: vec![0, 2, 3, 1],
        },
        &[4, 5, 3],
        "transpose",
    );
    single(
        &gpu,
        &[3, 7, 5],
        Op::Slice {
            starts: vec![0, 1, 6, 4],
            steps: vec![1, 1, -2, -3],
        },
        &[2, 4, 2],
        "slice",
    );
    single(
        &gpu,
        &[3, 4, 5],
        Op::Pad {
            pads: vec![(0, 0), (1, 0), (2, 1), (0, 3)],
            value: 0.5,
        },
        &[4, 7, 8],
        "pad",
    );
    single(&gpu, &[3, 4, 5], Op::Reshape, &[60], "reshape");
    for axis in [1, 3] {
        single(
            &gpu,
            &[3, 4, 5],
            Op::Softmax { axis },
            &[3, 4, 5],
            "softmax",
        );
    }
    for size in [3, 4] {
        let op = Op::Lrn {
            size,
            alpha: 0.5,
            beta: 0.75,
            bias: 1.5,
        };
        single(&gpu, &[6, 2, 3], op, &[6, 2, 3], "lrn");
    }
    // Concat of a value with a function of itself: both gradients reach the input.
    let mut b = Builder::new(&[2, 3, 4]);
    let t = b.add(Op::Unary(Unary::Tanh), &[0], &[2, 3, 4]);
    let c = b.add(Op::Concat { axis: 2 }, &[0, t, 0], &[2, 9, 4]);
    let m = b.model(c);
    check(
        &gpu,
        &m,
        2,
        SeedSpec::Random(c),
        GradRule::Standard,
        &[t],
        "concat",
    );
}

/// The MobileNet-like block: residual Add, Clip (ReLU6) with every rule, softmax-probability
/// seed on the logits, wrt intermediate values (one a Reshape alias, one the seed itself).
#[test]
fn mobilenet_rules_seeds_and_layers() {
    let _serial = serial();
    let gpu = gpu();
    let m = mobilenet_like();
    let g = &m.graph;
    let id = |n: &str| g.value_by_name(n).unwrap();
    let wrt = [id("v2"), id("v5"), id("v10"), g.output];
    for rule in [GradRule::Standard, GradRule::Guided, GradRule::Deconvnet] {
        check(
            &gpu,
            &m,
            3,
            SeedSpec::Prob(g.output, vec![2, 0, 9]),
            rule,
            &wrt,
            &format!("mobilenet {rule:?}"),
        );
    }
    // Seed inside the graph: later values (the logits) get zero gradient.
    let res = id("v8");
    check(
        &gpu,
        &m,
        2,
        SeedSpec::Random(res),
        GradRule::Standard,
        &[id("v5"), g.output],
        "seed at the residual sum",
    );
    let r = run_grads(
        &gpu,
        &m,
        &input_for(&m, 2, 5),
        &host_seed(&m, &SeedSpec::Random(res), 2),
        GradRule::Standard,
        &[g.output],
    );
    assert!(r.layers[0].data.iter().all(|&v| v == 0.0));
    // Seed at the input itself: the input gradient is the seed.
    check(
        &gpu,
        &m,
        2,
        SeedSpec::Random(g.input),
        GradRule::Standard,
        &[g.input],
        "seed at the input",
    );
}

#[test]
fn batch_equals_single_samples_and_chunks() {
    let _serial = serial();
    let m = mobilenet_like();
    let g = &m.graph;
    let wrt = [g.value_by_name("v5").unwrap()];
    let targets = vec![3, 7, 1, 0, 9];
    let input = input_for(&m, 5, 17);
    let seed = host_seed(&m, &SeedSpec::Prob(g.output, targets.clone()), 5);
    let big = gpu();
    let full = run_grads(&big, &m, &input, &seed, GradRule::Guided, &wrt);
    let want = run_grads(
        &CpuBackend::new(),
        &m,
        &input,
        &seed,
        GradRule::Guided,
        &wrt,
    );
    assert_close(&full.input, &want.input, 1e-4, "batch 5 vs cpu");
    // 24*5*6 floats = 2880 bytes per sample: 4 KiB bindings hold one sample per chunk, 8 KiB two.
    for limit in [4096u64, 8192] {
        let small = gpu_with(Some(limit));
        let r = run_grads(&small, &m, &input, &seed, GradRule::Guided, &wrt);
        assert_close(&r.output, &full.output, 1e-5, "chunked output");
        assert_close(&r.input, &full.input, 1e-5, "chunked input grad");
        assert_close(&r.layers[0], &full.layers[0], 1e-5, "chunked layer grad");
    }
    for (i, &t) in targets.iter().enumerate().take(3) {
        let one = HostTensor::new(g.values[0].full_shape(1), input.sample(i).to_vec()).unwrap();
        let s = host_seed(&m, &SeedSpec::Prob(g.output, vec![t]), 1);
        let r = run_grads(&big, &m, &one, &s, GradRule::Guided, &wrt);
        let got = HostTensor::new(r.input.shape.clone(), full.input.sample(i).to_vec()).unwrap();
        assert_close(&got, &r.input, 1e-5, &format!("sample {i} input grad"));
        let l = &full.layers[0];
        let got = HostTensor::new(r.layers[0].shape.clone(), l.sample(i).to_vec()).unwrap();
        assert_close(&got, &r.layers[0], 1e-5, &format!("sample {i} layer grad"));
    }
}

#[test]
fn one_gradients_call_is_one_submission() {
    let _serial = serial();
    // A device of its own: nothing else can touch this backend's counters.
    let (device, queue) = super::open_device().unwrap();
    let m = mobilenet_like();
    let input = input_for(&m, 5, 2);
    for limit in [None, Some(4096u64)] {
        let gpu = GpuBackend::from_wgpu(
            device.clone(),
            queue.clone(),
            &GpuOptions {
                max_binding_bytes: limit,
            },
        )
        .unwrap();
        let x = gpu.upload(&input).unwrap();
        let seed = Seed::SoftmaxProb {
            at: m.graph.output,
            targets: vec![1, 2, 3, 4, 5],
        };
        // Warm up (weights uploaded, pipelines built), then count.
        drop(
            gpu.gradients(&m, &x, &seed, GradRule::Standard, &[5], &[5])
                .unwrap(),
        );
        let created = gpu.buffers_created();
        gpu.reset_stats();
        let r = gpu
            .gradients(&m, &x, &seed, GradRule::Standard, &[5], &[5])
            .unwrap();
        let s = gpu.stats();
        assert_eq!(s.submissions, 1, "limit {limit:?}: {s:?}");
        assert_eq!(s.readbacks, 0);
        assert_eq!(
            gpu.buffers_created(),
            created,
            "limit {limit:?}: activations and gradients come back to the pool"
        );
        let _ = gpu.read(&r.input_grad).unwrap();
        assert_eq!(gpu.stats().submissions, 2);
    }
}

#[test]
fn gradient_errors_are_bad_input() {
    let _serial = serial();
    let gpu = gpu();
    let m = mobilenet_like();
    let out = m.graph.output;
    let x = gpu.upload(&input_for(&m, 2, 1)).unwrap();
    let bad_grad = gpu.upload(&HostTensor::zeros(vec![2, 9])).unwrap();
    let seeds = [
        Seed::Grad {
            at: out,
            grad: bad_grad,
        },
        Seed::SoftmaxProb {
            at: out,
            targets: vec![1],
        },
        Seed::SoftmaxProb {
            at: out,
            targets: vec![1, 10],
        },
        Seed::SoftmaxProb {
            at: 999,
            targets: vec![1, 1],
        },
    ];
    for seed in &seeds {
        let e = gpu
            .gradients(&m, &x, seed, GradRule::Standard, &[], &[])
            .err()
            .expect("an error");
        assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
    }
    let ok = Seed::SoftmaxProb {
        at: out,
        targets: vec![1, 1],
    };
    let e = gpu
        .gradients(&m, &x, &ok, GradRule::Standard, &[999], &[])
        .err()
        .expect("an error");
    assert_eq!(e.kind, ErrorKind::BadInput);
}
