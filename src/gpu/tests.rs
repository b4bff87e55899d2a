//! GPU kernels against plain Rust reference loops, on small graphs with awkward shapes.
//! These need an adapter (lavapipe is enough); without one they fail with the no-adapter
//! message rather than being skipped.

use super::{GpuBackend, GpuOptions};
use crate::backend::{Backend, HostTensor};
use crate::error::ErrorKind;
use crate::model::*;
use crate::Forward;
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::tests_reference::reference;

/// One device for the whole test binary, and one test on it at a time: wgpu's GL backend
/// (`WGPU_BACKEND=gl`) slowed ~150x with several devices busy in one process.
pub(super) fn shared_device() -> (wgpu::Device, wgpu::Queue) {
    static DEVICE: OnceLock<std::result::Result<(wgpu::Device, wgpu::Queue), String>> =
        OnceLock::new();
    match DEVICE.get_or_init(|| super::open_device().map_err(|e| e.to_string())) {
        Ok(dq) => dq.clone(),
        Err(e) => panic!("{e}"),
    }
}

pub(super) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn gpu_with(max_binding_bytes: Option<u64>) -> GpuBackend {
    let (device, queue) = shared_device();
    match GpuBackend::from_wgpu(device, queue, &GpuOptions { max_binding_bytes }) {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    }
}

pub(super) fn gpu() -> GpuBackend {
    gpu_with(None)
}

/// Deterministic values in [-1, 1).
pub(super) fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub(super) fn konst(shape: &[usize], seed: u64) -> Const {
    Const::new(shape.to_vec(), rand_vec(shape.iter().product(), seed))
}

pub(super) struct Builder {
    values: Vec<Value>,
    nodes: Vec<Node>,
}

impl Builder {
    pub(super) fn new(input: &[usize]) -> Builder {
        Builder {
            values: vec![Value {
                name: "input".into(),
                shape: input.to_vec(),
            }],
            nodes: vec![],
        }
    }
    pub(super) fn add(&mut self, op: Op, inputs: &[ValueId], shape: &[usize]) -> ValueId {
        let id = self.values.len();
        self.values.push(Value {
            name: format!("v{id}"),
            shape: shape.to_vec(),
        });
        self.nodes.push(Node {
            name: format!("n{id}"),
            op,
            inputs: inputs.to_vec(),
            output: id,
        });
        id
    }
    pub(super) fn model(self, output: ValueId) -> Model {
        Model {
            graph: Graph {
                values: self.values,
                nodes: self.nodes,
                input: 0,
                output,
            },
            name: "test".into(),
        }
    }
}

pub(super) fn assert_close(got: &HostTensor, want: &HostTensor, tol: f32, what: &str) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    for (i, (&a, &b)) in got.data.iter().zip(&want.data).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}: element {i} of {:?}: gpu {a} vs reference {b}",
            got.shape
        );
    }
}

/// Runs the model on the GPU with every value tapped and checks all of them.
pub(super) fn check_all(gpu: &GpuBackend, model: &Model, batch: usize, seed: u64) {
    let g = &model.graph;
    let shape = g.values[g.input].full_shape(batch);
    let input = HostTensor::new(shape.clone(), rand_vec(shape.iter().product(), seed)).unwrap();
    let want = reference(g, &input);
    let taps: Vec<ValueId> = (0..g.values.len()).collect();
    let x = gpu.upload(&input).unwrap();
    let fwd = gpu.forward(model, &x, &taps).unwrap();
    assert_close(
        &gpu.read(&fwd.output).unwrap(),
        want[g.output].as_ref().unwrap(),
        1e-4,
        "output",
    );
    for (v, t) in &fwd.taps {
        let what = format!(
            "value {} ({})",
            g.values[*v].name,
            g.producer(*v)
                .map_or("input", |n| g.nodes[n].op.kind_name())
        );
        assert_close(
            &gpu.read(t).unwrap(),
            want[*v].as_ref().unwrap(),
            1e-4,
            &what,
        );
    }
}

pub(super) fn conv(
    w: &[usize],
    bias: bool,
    groups: usize,
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
) -> Op {
    Op::Conv(Conv {
        weight: konst(w, w.iter().sum::<usize>() as u64),
        bias: bias.then(|| konst(&[w[0]], 7)),
        groups,
        strides,
        dilations,
        pads,
    })
}

pub(super) fn conv_out(c: &Op, in_hw: [usize; 2]) -> [usize; 2] {
    let Op::Conv(c) = c else { unreachable!() };
    let k = c.kernel();
    [0, 1].map(|a| {
        window_out_len(
            in_hw[a],
            k[a],
            c.strides[a],
            c.dilations[a],
            c.pads[a],
            c.pads[a + 2],
            false,
        )
        .unwrap()
    })
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn convs_general_grouped_depthwise() {
    let _serial = serial();
    let gpu = gpu();
    let cases = [
        // Odd everything: non-square kernel, stride 2x1, dilation 1x2, asymmetric pads, bias.
        (
            [5, 3, 3, 2],
            3,
            1,
            [2, 1],
            [1, 2],
            [1, 0, 2, 1],
            [7, 9],
            true,
        ),
        // Two groups, output channels not a multiple of the tile.
        (
            [6, 3, 3, 3],
            6,
            2,
            [1, 1],
            [1, 1],
            [1, 1, 1, 1],
            [5, 6],
            false,
        ),
        // Depthwise with channel multiplier 2, stride 2, asymmetric pad.
        (
            [12, 1, 3, 3],
            6,
            6,
            [2, 2],
            [1, 1],
            [0, 1, 1, 0],
            [9, 8],
            true,
        ),
        // Depthwise, dilation 2.
        (
            [4, 1, 3, 3],
            4,
            4,
            [1, 1],
            [2, 2],
            [2, 2, 2, 2],
            [6, 7],
            false,
        ),
        // Spans several M, N and K tiles: 70 outputs, K = 20*9 = 180, M = 2*9*11.
        (
            [70, 20, 3, 3],
            20,
            1,
            [1, 1],
            [1, 1],
            [1, 1, 1, 1],
            [9, 11],
            true,
        ),
    ];
    for (i, (w, c_in, groups, strides, dil, pads, hw, bias)) in cases.into_iter().enumerate() {
        let mut b = Builder::new(&[c_in, hw[0], hw[1]]);
        let op = conv(&w, bias, groups, strides, dil, pads);
        let o = conv_out(&op, hw);
        let y = b.add(op, &[0], &[w[0], o[0], o[1]]);
        check_all(&gpu, &b.model(y), 2, i as u64);
    }
}

#[test]
fn conv_fuses_activation_only_when_unobserved() {
    let _serial = serial();
    let gpu = gpu();
    let mut b = Builder::new(&[4, 6, 5]);
    let c1 = b.add(
        conv(&[8, 4, 3, 3], true, 1, [1, 1], [1, 1], [1, 1, 1, 1]),
        &[0],
        &[8, 6, 5],
    );
    let r1 = b.add(
        Op::Unary(Unary::Clip {
            min: -0.2,
            max: 0.3,
        }),
        &[c1],
        &[8, 6, 5],
    );
    let c2 = b.add(
        conv(&[8, 1, 3, 3], false, 8, [1, 1], [1, 1], [1, 1, 1, 1]),
        &[r1],
        &[8, 6, 5],
    );
    let r2 = b.add(Op::Unary(Unary::Relu), &[c2], &[8, 6, 5]);
    let model = b.model(r2);
    // Tapping only the activations leaves both convs fusable.
    let input = HostTensor::new(vec![3, 4, 6, 5], rand_vec(360, 5)).unwrap();
    let want = reference(&model.graph, &input);
    let x = gpu.upload(&input).unwrap();
    gpu.reset_stats();
    let fwd = gpu.forward(&model, &x, &[r1]).unwrap();
    assert_eq!(
        gpu.stats().dispatches,
        2,
        "both activations fused into their convs"
    );
    assert_close(
        &gpu.read(&fwd.output).unwrap(),
        want[r2].as_ref().unwrap(),
        1e-4,
        "fused output",
    );
    assert_close(
        &gpu.read(fwd.tap(r1).unwrap()).unwrap(),
        want[r1].as_ref().unwrap(),
        1e-4,
        "fused tap",
    );
    // Tapping the conv output keeps it materialised, pre-activation.
    check_all(&gpu, &model, 3, 5);
}

#[test]
fn linear_over_rows() {
    let _serial = serial();
    let gpu = gpu();
    let mut b = Builder::new(&[3, 37]);
    let l = Op::Linear(Linear {
        weight: konst(&[70, 37], 3),
        bias: Some(konst(&[70], 4)),
    });
    let y = b.add(l, &[0], &[3, 70]);
    let l2 = Op::Linear(Linear {
        weight: konst(&[5, 70], 5),
        bias: None,
    });
    let z = b.add(l2, &[y], &[3, 5]);
    check_all(&gpu, &b.model(z), 5, 1);
}

#[test]
fn unary_ops() {
    let _serial = serial();
    let gpu = gpu();
    let ops = [
        Unary::Relu,
        Unary::LeakyRelu { alpha: 0.1 },
        Unary::Clip {
            min: -0.3,
            max: 0.5,
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
        Unary::Gelu { tanh: false },
        Unary::Gelu { tanh: true },
        Unary::Pow { p: 2.0 },
        Unary::Pow { p: 3.0 },
    ];
    let mut b = Builder::new(&[3, 5, 7]);
    let scale = b.add(
        Op::Binary(Binary {
            kind: BinaryKind::Mul,
            konst: Some(Const::new(vec![], vec![8.0])),
            konst_is_lhs: false,
        }),
        &[0],
        &[3, 5, 7],
    );
    let mut last = scale;
    for u in ops {
        // Each op reads the scaled input so every branch of every formula is exercised.
        last = b.add(Op::Unary(u), &[scale], &[3, 5, 7]);
    }
    // Sqrt, Reciprocal and fractional powers on their domain, exp(8x) > 0.
    let positive = b.add(Op::Unary(Unary::Exp), &[scale], &[3, 5, 7]);
    for u in [
        Unary::Sqrt,
        Unary::Reciprocal,
        Unary::Pow { p: 0.5 },
        Unary::Pow { p: -1.5 },
    ] {
        last = b.add(Op::Unary(u), &[positive], &[3, 5, 7]);
    }
    check_all(&gpu, &b.model(last), 2, 2);
}

#[test]
fn binary_broadcasting_and_affine() {
    let _serial = serial();
    let gpu = gpu();
    let s = [3, 4, 5];
    let mut b = Builder::new(&s);
    let bin = |kind, k: Option<Const>, lhs| {
        Op::Binary(Binary {
            kind,
            konst: k,
            konst_is_lhs: lhs,
        })
    };
    let a1 = b.add(
        bin(BinaryKind::Sub, Some(konst(&[4, 1], 1)), true),
        &[0],
        &s,
    );
    let a2 = b.add(
        bin(
            BinaryKind::Div,
            Some(Const::new(vec![5], vec![0.5, 1.5, -2.0, 3.0, 4.0])),
            false,
        ),
        &[a1],
        &s,
    );
    let a3 = b.add(
        bin(BinaryKind::Mul, Some(Const::new(vec![], vec![-1.5])), false),
        &[a2],
        &s,
    );
    let r1 = b.add(
        Op::Reduce {
            kind: ReduceKind::Sum,
            axes: vec![1],
            keepdims: true,
        },
        &[0],
        &[1, 4, 5],
    );
    let r2 = b.add(
        Op::Reduce {
            kind: ReduceKind::Max,
            axes: vec![3],
            keepdims: true,
        },
        &[0],
        &[3, 4, 1],
    );
    let a4 = b.add(bin(BinaryKind::Add, None, false), &[a3, r1], &s);
    let a5 = b.add(bin(BinaryKind::Mul, None, false), &[r1, r2], &s);
    let a6 = b.add(bin(BinaryKind::Sub, None, false), &[a5, a4], &s);
    let a7 = b.add(
        bin(BinaryKind::Add, Some(konst(&[1, 3, 4, 5], 9)), true),
        &[a6],
        &s,
    );
    let aff = Op::ChannelAffine {
        scale: konst(&[3], 11),
        shift: konst(&[3], 12),
    };
    let y = b.add(aff, &[a7], &s);
    check_all(&gpu, &b.model(y), 2, 3);
}

#[test]
fn pooling() {
    let _serial = serial();
    let gpu = gpu();
    let hw = [7, 6];
    let mut b = Builder::new(&[3, hw[0], hw[1]]);
    let pool = |kind, kernel, strides, dilations, pads| {
        Op::Pool(Pool {
            kind,
            kernel,
            strides,
            dilations,
            pads,
        })
    };
    // ceil_mode: 7 -> 3 with the last window [4, 7) clipped at 7; 6 -> 3 partial last window.
    let m = b.add(
        pool(PoolKind::Max, [3, 3], [2, 2], [1, 1], [0, 0, 0, 0]),
        &[0],
        &[3, 3, 3],
    );
    assert_eq!(window_out_len(6, 3, 2, 1, 0, 0, true), Some(3));
    let m2 = b.add(
        pool(PoolKind::Max, [2, 3], [1, 2], [2, 1], [1, 0, 0, 1]),
        &[0],
        &[3, 6, 3],
    );
    let a1 = b.add(
        pool(
            PoolKind::Avg {
                count_include_pad: false,
            },
            [3, 2],
            [2, 2],
            [1, 1],
            [1, 0, 1, 1],
        ),
        &[0],
        &[3, 4, 3],
    );
    assert_eq!(window_out_len(6, 2, 2, 1, 0, 1, true), Some(3));
    // count_include_pad with ceil mode: the last window runs past the padded extent.
    let a2 = b.add(
        pool(
            PoolKind::Avg {
                count_include_pad: true,
            },
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1, 1, 1],
        ),
        &[0],
        &[3, 4, 4],
    );
    assert_eq!(window_out_len(7, 3, 2, 1, 1, 1, true), Some(4));
    let g1 = b.add(Op::GlobalPool { max: false }, &[a2], &[3, 1, 1]);
    let g2 = b.add(Op::GlobalPool { max: true }, &[m2], &[3, 1, 1]);
    let g3 = b.add(Op::GlobalPool { max: true }, &[m], &[3, 1, 1]);
    let g4 = b.add(Op::GlobalPool { max: false }, &[a1], &[3, 1, 1]);
    let s1 = b.add(
        Op::Binary(Binary {
            kind: BinaryKind::Add,
            konst: None,
            konst_is_lhs: false,
        }),
        &[g1, g2],
        &[3, 1, 1],
    );
    let s2 = b.add(
        Op::Binary(Binary {
            kind: BinaryKind::Add,
            konst: None,
            konst_is_lhs: false,
        }),
        &[g3, g4],
        &[3, 1, 1],
    );
    let y = b.add(
        Op::Binary(Binary {
            kind: BinaryKind::Add,
            konst: None,
            konst_is_lhs: false,
        }),
        &[s1, s2],
        &[3, 1, 1],
    );
    check_all(&gpu, &b.model(y), 3, 4);
}

#[test]
fn reductions_softmax_lrn() {
    let _serial = serial();
    let gpu = gpu();
    let s = [4, 3, 5, 2];
    let mut b = Builder::new(&s);
    let red = |kind, axes: &[usize], keepdims| Op::Reduce {
        kind,
        axes: axes.to_vec(),
        keepdims,
    };
    let r1 = b.add(red(ReduceKind::Mean, &[2, 3], true), &[0], &[4, 1, 1, 2]);
    let r2 = b.add(red(ReduceKind::Max, &[1, 3], false), &[0], &[3, 2]);
    let r3 = b.add(red(ReduceKind::Sum, &[1, 2, 3, 4], false), &[0], &[]);
    let sm1 = b.add(Op::Softmax { axis: 1 }, &[0], &s);
    let sm3 = b.add(Op::Softmax { axis: 3 }, &[0], &s);
    let sm4 = b.add(Op::Softmax { axis: 4 }, &[sm1], &s);
    let l5 = b.add(
        Op::Lrn {
            size: 5,
            alpha: 0.3,
            beta: 0.75,
            bias: 2.0,
        },
        &[0],
        &s,
    );
    let l4 = b.add(
        Op::Lrn {
            size: 2,
            alpha: 1e-2,
            beta: 0.5,
            bias: 1.0,
        },
        &[sm3],
        &s,
    );
    let _ = (r1, r2, r3, sm4, l5);
    check_all(&gpu, &b.model(l4), 2, 6);
}

#[test]
fn layout_ops() {
    let _serial = serial();
    let gpu = gpu();
    let s = [3, 4, 5];
    let mut b = Builder::new(&s);
    let t = b.add(
        Op::Transpose {
            perm: vec![0, 2, 3, 1],
        },
        &[0],
        &[4, 5, 3],
    );
    let sl = b.add(
        Op::Slice {
            starts: vec![0, 2, 3, 4],
            steps: vec![1, -1, -1, -1],
        },
        &[0],
        &[3, 4, 5],
    );
    let sl2 = b.add(
        Op::Slice {
            starts: vec![0, 1, 0, 4],
            steps: vec![1, 1, 2, -2],
        },
        &[0],
        &[2, 2, 3],
    );
    let pd = b.add(
        Op::Pad {
            pads: vec![(0, 0), (1, 0), (1, 1), (1, 1)],
            value: -0.5,
        },
        &[sl2],
        &[3, 4, 5],
    );
    let c1 = b.add(Op::Concat { axis: 1 }, &[0, sl, pd], &[9, 4, 5]);
    let c1t = b.add(
        Op::Transpose {
            perm: vec![0, 3, 1, 2],
        },
        &[c1],
        &[5, 9, 4],
    );
    let _ = c1t;
    let c3 = b.add(Op::Concat { axis: 3 }, &[t, t], &[4, 5, 6]);
    let r = b.add(Op::Reshape, &[c3], &[120]);
    let l = b.add(
        Op::Linear(Linear {
            weight: konst(&[7, 120], 8),
            bias: None,
        }),
        &[r],
        &[7],
    );
    let _ = l;
    check_all(&gpu, &b.model(l), 2, 7);
}

/// A MobileNetV2-style classifier: stem conv + clip, inverted residual (1x1 expand, depthwise,
/// 1x1 project, Add), global pool, reshape, linear.
pub(super) fn mobilenet_like() -> Model {
    let relu6 = Op::Unary(Unary::Clip { min: 0.0, max: 6.0 });
    let mut b = Builder::new(&[3, 9, 11]);
    let stem = b.add(
        conv(&[8, 3, 3, 3], true, 1, [2, 2], [1, 1], [1, 1, 1, 1]),
        &[0],
        &[8, 5, 6],
    );
    let s6 = b.add(relu6.clone(), &[stem], &[8, 5, 6]);
    let ex = b.add(
        conv(&[24, 8, 1, 1], true, 1, [1, 1], [1, 1], [0, 0, 0, 0]),
        &[s6],
        &[24, 5, 6],
    );
    let ex6 = b.add(relu6.clone(), &[ex], &[24, 5, 6]);
    let dw = b.add(
        conv(&[24, 1, 3, 3], true, 24, [1, 1], [1, 1], [1, 1, 1, 1]),
        &[ex6],
        &[24, 5, 6],
    );
    let dw6 = b.add(relu6, &[dw], &[24, 5, 6]);
    let pr = b.add(
        conv(&[8, 24, 1, 1], true, 1, [1, 1], [1, 1], [0, 0, 0, 0]),
        &[dw6],
        &[8, 5, 6],
    );
    let add = Op::Binary(Binary {
        kind: BinaryKind::Add,
        konst: None,
        konst_is_lhs: false,
    });
    let res = b.add(add, &[s6, pr], &[8, 5, 6]);
    let gp = b.add(Op::GlobalPool { max: false }, &[res], &[8, 1, 1]);
    let fl = b.add(Op::Reshape, &[gp], &[8]);
    let fc = b.add(
        Op::Linear(Linear {
            weight: konst(&[10, 8], 21),
            bias: Some(konst(&[10], 22)),
        }),
        &[fl],
        &[10],
    );
    b.model(fc)
}

fn run(
    gpu: &GpuBackend,
    model: &Model,
    input: &HostTensor,
    taps: &[ValueId],
) -> (HostTensor, Vec<HostTensor>) {
    let x = gpu.upload(input).unwrap();
    let Forward { output, taps } = gpu.forward(model, &x, taps).unwrap();
    (
        gpu.read(&output).unwrap(),
        taps.iter().map(|(_, t)| gpu.read(t).unwrap()).collect(),
    )
}

#[test]
fn mobilenet_block_matches_reference() {
    let _serial = serial();
    check_all(&gpu(), &mobilenet_like(), 2, 11);
}

#[test]
fn chunked_batches_equal_single_samples() {
    let _serial = serial();
    let model = mobilenet_like();
    let g = &model.graph;
    let big = gpu();
    // The largest activation is 24*5*6 floats = 2880 bytes per sample: 4 KiB bindings hold one
    // sample per chunk, 8 KiB hold two.
    let taps = [
        g.value_by_name("v6").unwrap(),
        g.value_by_name("v10").unwrap(),
        0,
    ];
    for limit in [4096u64, 8192] {
        let small = gpu_with(Some(limit));
        assert_eq!(small.binding_limit(), limit);
        for batch in [1usize, 3, 17] {
            let shape = g.values[0].full_shape(batch);
            let input = HostTensor::new(
                shape.clone(),
                rand_vec(shape.iter().product(), batch as u64),
            )
            .unwrap();
            small.reset_stats();
            let (out, tapped) = run(&small, &model, &input, &taps);
            let s = small.stats();
            assert_eq!(
                s.submissions,
                1 + 1 + taps.len() as u64,
                "one forward submit plus one per read"
            );
            assert_eq!(s.readbacks, 1 + taps.len() as u64);
            assert_eq!(out.shape, vec![batch, 10]);
            let want = reference(g, &input);
            assert_close(
                &out,
                want[g.output].as_ref().unwrap(),
                1e-4,
                "chunked output vs reference",
            );
            for (t, &v) in tapped.iter().zip(&taps) {
                assert_close(
                    t,
                    want[v].as_ref().unwrap(),
                    1e-4,
                    "chunked tap vs reference",
                );
            }
            for i in 0..batch {
                let one =
                    HostTensor::new(g.values[0].full_shape(1), input.sample(i).to_vec()).unwrap();
                let (o1, t1) = run(&big, &model, &one, &taps);
                let got = HostTensor::new(vec![1, 10], out.sample(i).to_vec()).unwrap();
                assert_close(
                    &got,
                    &o1,
                    1e-5,
                    &format!("limit {limit}, batch {batch}, sample {i}"),
                );
                for (tb, ts) in tapped.iter().zip(&t1) {
                    let got = HostTensor::new(ts.shape.clone(), tb.sample(i).to_vec()).unwrap();
                    assert_close(
                        &got,
                        ts,
                        1e-5,
                        &format!("tap, limit {limit}, batch {batch}, sample {i}"),
                    );
                }
            }
        }
    }
}

#[test]
fn one_forward_is_one_submission_and_reuses_buffers() {
    let _serial = serial();
    let gpu = gpu();
    let model = mobilenet_like();
    let input = HostTensor::new(vec![4, 3, 9, 11], rand_vec(4 * 297, 3)).unwrap();
    let x = gpu.upload(&input).unwrap();
    let first = gpu.forward(&model, &x, &[5]).unwrap();
    let a = gpu.read(&first.output).unwrap();
    drop(first);
    let created = gpu.buffers_created();
    gpu.reset_stats();
    let second = gpu.forward(&model, &x, &[5]).unwrap();
    let s = gpu.stats();
    assert_eq!(s.submissions, 1);
    assert_eq!(s.uploads, 0, "weights are cached per model");
    assert_eq!(s.readbacks, 0);
    assert!(s.dispatches >= 7, "{s:?}");
    assert_eq!(
        gpu.buffers_created(),
        created,
        "second forward allocated new buffers"
    );
    let b = gpu.read(&second.output).unwrap();
    assert_eq!(a, b);
    let s = gpu.stats();
    assert_eq!(
        (s.submissions, s.readbacks, s.bytes_read),
        (2, 1, 4 * 10 * 4)
    );
}

#[test]
fn errors_are_reported_not_panicked() {
    let _serial = serial();
    let gpu = gpu();
    let model = mobilenet_like();
    let x = gpu.upload(&HostTensor::zeros(vec![2, 3, 9, 11])).unwrap();
    let e = gpu
        .forward(&model, &x, &[999])
        .err()
        .expect("unknown tap rejected");
    assert_eq!(e.kind, ErrorKind::BadInput);
    let wrong = gpu.upload(&HostTensor::zeros(vec![2, 3, 9, 10])).unwrap();
    assert_eq!(
        gpu.forward(&model, &wrong, &[])
            .err()
            .expect("wrong shape rejected")
            .kind,
        ErrorKind::BadInput
    );
    // One sample of the expanded activation (2880 bytes) cannot fit a 2 KiB binding.
    let tiny = gpu_with(Some(2048));
    let x = tiny.upload(&HostTensor::zeros(vec![1, 3, 9, 11])).unwrap();
    let e = tiny
        .forward(&model, &x, &[])
        .err()
        .expect("oversized sample rejected");
    assert_eq!(e.kind, ErrorKind::BadInput);
    assert!(
        e.message.contains("n3") && e.message.contains("Conv"),
        "{}",
        e.message
    );
}

#[test]
fn name_reports_adapter_and_api() {
    let _serial = serial();
    let gpu = gpu();
    let name = gpu.name();
    eprintln!("adapter: {name}");
    assert!(name.ends_with(']') && name.contains(" ["), "{name}");
    assert!(!super::list_adapters().is_empty());
}
