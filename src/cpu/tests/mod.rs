//! CPU backend tests: ops against naive references (`ops`), and whole graphs through
//! `Backend::forward` (here): fusion, in-place reuse, taps, batch splitting, errors.

mod edges;
mod grad;
mod layernorm;
mod logsoftmax;
mod naive;
mod ops;
mod vjp;

use std::sync::Arc;

use super::CpuBackend;
use crate::backend::{Backend, HostTensor};
use crate::error::ErrorKind;
use crate::model::{
    Binary, BinaryKind, Const, Conv, Graph, Linear, Model, Node, Op, Unary, Value, ValueId,
};

/// Deterministic values in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= 1e-5 * (1.0 + w.abs()) || (g.is_infinite() && g == w);
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

struct Builder {
    values: Vec<Value>,
    nodes: Vec<Node>,
}

impl Builder {
    fn new(input: &[usize]) -> Self {
        Builder {
            values: vec![Value {
                name: "input".into(),
                shape: input.to_vec(),
            }],
            nodes: vec![],
        }
    }
    fn add(&mut self, op: Op, inputs: &[ValueId], shape: &[usize]) -> ValueId {
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
    fn model(self, output: ValueId) -> Model {
        let graph = Graph {
            values: self.values,
            nodes: self.nodes,
            input: 0,
            output,
        };
        Model {
            graph,
            name: "test".into(),
        }
    }
}

fn conv(
    ic: usize,
    oc: usize,
    k: usize,
    groups: usize,
    stride: usize,
    pad: usize,
    seed: u64,
) -> Conv {
    let ws = vec![oc, ic / groups, k, k];
    let n = ws.iter().product();
    Conv {
        weight: Const::new(ws, rand_vec(n, seed).iter().map(|v| v * 0.5).collect()),
        bias: Some(Const::new(vec![oc], rand_vec(oc, seed + 1))),
        groups,
        strides: [stride; 2],
        dilations: [1; 2],
        pads: [pad; 4],
    }
}

const RELU6: Unary = Unary::Clip { min: 0.0, max: 6.0 };

/// A MobileNetV2-like net on 3x11x9 images: stem conv, inverted residual block with a residual
/// add, global pool, reshape, linear, softmax. Returns the model and the ids of interesting values.
fn mobilenet_like() -> (Model, [ValueId; 4]) {
    let mut b = Builder::new(&[3, 11, 9]);
    let stem = b.add(Op::Conv(conv(3, 8, 3, 1, 2, 1, 1)), &[0], &[8, 6, 5]);
    let stem_act = b.add(Op::Unary(RELU6), &[stem], &[8, 6, 5]);
    let expand = b.add(
        Op::Conv(conv(8, 12, 1, 1, 1, 0, 3)),
        &[stem_act],
        &[12, 6, 5],
    );
    let expand_act = b.add(Op::Unary(RELU6), &[expand], &[12, 6, 5]);
    let dw = b.add(
        Op::Conv(conv(12, 12, 3, 12, 1, 1, 5)),
        &[expand_act],
        &[12, 6, 5],
    );
    let dw_act = b.add(Op::Unary(RELU6), &[dw], &[12, 6, 5]);
    let project = b.add(Op::Conv(conv(12, 8, 1, 1, 1, 0, 7)), &[dw_act], &[8, 6, 5]);
    let add = Op::Binary(Binary {
        kind: BinaryKind::Add,
        konst: None,
        konst_is_lhs: false,
    });
    let res = b.add(add, &[stem_act, project], &[8, 6, 5]);
    let gap = b.add(Op::GlobalPool { max: false }, &[res], &[8, 1, 1]);
    let flat = b.add(Op::Reshape, &[gap], &[8]);
    let lin = Linear {
        weight: Const::new(vec![5, 8], rand_vec(40, 9)),
        bias: Some(Const::new(vec![5], rand_vec(5, 10))),
    };
    let logits = b.add(Op::Linear(lin), &[flat], &[5]);
    let prob = b.add(Op::Softmax { axis: 1 }, &[logits], &[5]);
    (b.model(prob), [stem, dw, res, logits])
}

/// The same net through the naive references, one op at a time.
fn mobilenet_like_reference(m: &Model, x: &[f32], n: usize) -> Vec<Vec<f32>> {
    let g = &m.graph;
    let mut vals: Vec<Vec<f32>> = vec![x.to_vec()];
    for node in &g.nodes {
        let xs = g.values[node.inputs[0]].full_shape(n);
        let ys = g.values[node.output].full_shape(n);
        let a = &vals[node.inputs[0]];
        let y = match &node.op {
            Op::Conv(c) => naive::conv(a, &xs, c, ys[2], ys[3]),
            Op::Unary(u) => a.iter().map(|&v| u.apply(v)).collect(),
            Op::Binary(bin) => {
                let b = &vals[node.inputs[1]];
                naive::binary(
                    bin.kind,
                    a,
                    &xs,
                    b,
                    &g.values[node.inputs[1]].full_shape(n),
                    &ys,
                )
            }
            Op::GlobalPool { .. } => naive::reduce(a, &xs, crate::model::ReduceKind::Mean, &[2, 3]),
            Op::Reshape => a.clone(),
            Op::Linear(l) => {
                let bias = l.bias.as_ref().map(|b| &b.data[..]);
                naive::linear(a, xs[xs.len() - 1], &l.weight.data, bias, l.weight.shape[0])
            }
            Op::Softmax { axis } => naive::softmax(a, &xs, *axis),
            op => panic!("reference lacks {}", op.kind_name()),
        };
        vals.push(y);
    }
    vals
}

fn input(n: usize, shape: &[usize], seed: u64) -> Arc<HostTensor> {
    let mut full = vec![n];
    full.extend_from_slice(shape);
    let len = full.iter().product();
    Arc::new(HostTensor::new(full, rand_vec(len, seed)).unwrap())
}

#[test]
fn graph_matches_reference_with_taps() {
    let (m, taps) = mobilenet_like();
    let cpu = CpuBackend::new();
    for n in [1, 2, 5] {
        let x = input(n, m.input_shape(), 100 + n as u64);
        // `stem` and `dw` are pre-activation values the executor would otherwise fuse away.
        let mut want_taps = taps.to_vec();
        want_taps.extend([0, taps[0]]);
        let f = cpu.forward(&m, &x, &want_taps).unwrap();
        let reference = mobilenet_like_reference(&m, &x.data, n);
        assert_close(
            &f.output.data,
            &reference[m.graph.output],
            &format!("output, batch {n}"),
        );
        assert_eq!(f.output.shape, vec![n, 5]);
        assert_eq!(f.taps.len(), want_taps.len());
        for (v, t) in &f.taps {
            assert_eq!(t.shape, m.graph.values[*v].full_shape(n));
            assert_close(&t.data, &reference[*v], &format!("tap {v}, batch {n}"));
        }
    }
}

#[test]
fn batch_equals_per_sample() {
    let (m, taps) = mobilenet_like();
    let cpu = CpuBackend::new();
    let n = 7;
    let x = input(n, m.input_shape(), 7);
    let whole = cpu.forward(&m, &x, &taps).unwrap();
    let sl = x.sample_len();
    for i in 0..n {
        let xi = Arc::new(
            HostTensor::new(
                x.shape[1..].iter().fold(vec![1], |mut s, &d| {
                    s.push(d);
                    s
                }),
                x.data[i * sl..(i + 1) * sl].to_vec(),
            )
            .unwrap(),
        );
        let one = cpu.forward(&m, &xi, &taps).unwrap();
        assert_close(
            one.output.sample(0),
            whole.output.sample(i),
            &format!("sample {i}"),
        );
        for ((_, a), (_, b)) in one.taps.iter().zip(&whole.taps) {
            assert_close(a.sample(0), b.sample(i), &format!("tap of sample {i}"));
        }
    }
}

#[test]
fn in_place_paths_keep_semantics() {
    // x*2 (konst rhs, in place), 1 - that (konst lhs), then v + v (same value twice: no in place),
    // then Div by a broadcast value from a global pool (value lhs stays, value rhs broadcast).
    let mut b = Builder::new(&[3, 4, 5]);
    let k = |kind, shape: Vec<usize>, data: Vec<f32>, lhs| {
        Op::Binary(Binary {
            kind,
            konst: Some(Const::new(shape, data)),
            konst_is_lhs: lhs,
        })
    };
    let v = |kind| {
        Op::Binary(Binary {
            kind,
            konst: None,
            konst_is_lhs: false,
        })
    };
    let relu = b.add(Op::Unary(Unary::Relu), &[0], &[3, 4, 5]);
    let m2 = b.add(
        k(
            BinaryKind::Mul,
            vec![5],
            vec![2.0, 3.0, 4.0, 5.0, 6.0],
            false,
        ),
        &[relu],
        &[3, 4, 5],
    );
    let sub = b.add(
        k(BinaryKind::Sub, vec![3, 1, 1], vec![1.0, 2.0, 3.0], true),
        &[m2],
        &[3, 4, 5],
    );
    let dbl = b.add(v(BinaryKind::Add), &[sub, sub], &[3, 4, 5]);
    let gp = b.add(Op::GlobalPool { max: true }, &[dbl], &[3, 1, 1]);
    let div = b.add(v(BinaryKind::Div), &[gp, dbl], &[3, 4, 5]);
    let aff = Op::ChannelAffine {
        scale: Const::new(vec![3], vec![0.5, -1.0, 2.0]),
        shift: Const::new(vec![3], vec![0.1, 0.2, 0.3]),
    };
    let out = b.add(aff, &[div], &[3, 4, 5]);
    let flat = b.add(Op::Reshape, &[out], &[60]);
    let m = b.model(flat);
    let x = input(2, &[3, 4, 5], 77);
    let f = CpuBackend::new().forward(&m, &x, &[relu]).unwrap();
    let want: Vec<f32> = (0..120)
        .map(|i| {
            let c = i / 20 % 3;
            let s = |j: usize| 2.0 * ((1 + c) as f32 - x.data[j].max(0.0) * (2 + j % 5) as f32);
            let plane = i / 20 * 20;
            let mx = (plane..plane + 20).map(s).fold(f32::NEG_INFINITY, f32::max);
            mx / s(i) * [0.5, -1.0, 2.0][c] + [0.1, 0.2, 0.3][c]
        })
        .collect();
    assert_close(&f.output.data, &want, "in-place chain");
    let relu_want: Vec<f32> = x.data.iter().map(|v| v.max(0.0)).collect();
    assert_close(
        &f.taps[0].1.data,
        &relu_want,
        "tapped value is not overwritten",
    );
    assert_eq!(x.data.len(), 120, "input untouched");
}

#[test]
fn user_errors_are_bad_input() {
    let (m, _) = mobilenet_like();
    let cpu = CpuBackend::new();
    let x = input(2, m.input_shape(), 1);
    let e = cpu.forward(&m, &x, &[999]).err().unwrap();
    assert_eq!(e.kind, ErrorKind::BadInput);
    let wrong = input(2, &[3, 9, 11], 1);
    assert_eq!(
        cpu.forward(&m, &wrong, &[]).err().unwrap().kind,
        ErrorKind::BadInput
    );
    let empty = Arc::new(HostTensor::new(vec![0, 3, 11, 9], vec![]).unwrap());
    assert_eq!(
        cpu.forward(&m, &empty, &[]).err().unwrap().kind,
        ErrorKind::BadInput
    );
}

#[test]
fn upload_read_roundtrip() {
    let cpu = CpuBackend::new();
    let t = HostTensor::new(vec![2, 3], rand_vec(6, 3)).unwrap();
    let u = cpu.upload(&t).unwrap();
    assert_eq!(cpu.shape(&u), vec![2, 3]);
    assert_eq!(cpu.read(&u).unwrap(), t);
}
