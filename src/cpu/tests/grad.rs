//! `Backend::gradients` on whole graphs: central differences of an f64 evaluation of the graph
//! (input and intermediate values perturbed one coordinate at a time), seeds, rules, batching,
//! errors.

use std::sync::Arc;

use super::naive::{self, to64};
use super::{conv, rand_vec, Builder, RELU6};
use crate::backend::{Backend, GradRule, HostTensor, Seed};
use crate::cpu::CpuBackend;
use crate::error::ErrorKind;
use crate::model::{Binary, BinaryKind, Const, Linear, Model, Op, ReduceKind, Unary, ValueId};

const H: f64 = 1e-3;

/// A MobileNetV2-like net on 3x7x7 images: stem conv (stride 2), inverted residual block
/// (pointwise, depthwise, pointwise, each but the last with ReLU6) with a residual add, global
/// pool, reshape, linear, softmax. Returns the model and [stem_act, dw (pre-activation), res,
/// logits].
fn little_mobilenet() -> (Model, [ValueId; 4]) {
    let mut b = Builder::new(&[3, 7, 7]);
    let stem = b.add(Op::Conv(conv(3, 4, 3, 1, 2, 1, 1)), &[0], &[4, 4, 4]);
    let stem_act = b.add(Op::Unary(RELU6), &[stem], &[4, 4, 4]);
    let expand = b.add(Op::Conv(conv(4, 6, 1, 1, 1, 0, 3)), &[stem_act], &[6, 4, 4]);
    let expand_act = b.add(Op::Unary(RELU6), &[expand], &[6, 4, 4]);
    let dw = b.add(
        Op::Conv(conv(6, 6, 3, 6, 1, 1, 5)),
        &[expand_act],
        &[6, 4, 4],
    );
    let dw_act = b.add(Op::Unary(RELU6), &[dw], &[6, 4, 4]);
    let project = b.add(Op::Conv(conv(6, 4, 1, 1, 1, 0, 7)), &[dw_act], &[4, 4, 4]);
    let add = Op::Binary(Binary {
        kind: BinaryKind::Add,
        konst: None,
        konst_is_lhs: false,
    });
    let res = b.add(add, &[stem_act, project], &[4, 4, 4]);
    let gap = b.add(Op::GlobalPool { max: false }, &[res], &[4, 1, 1]);
    let flat = b.add(Op::Reshape, &[gap], &[4]);
    let lin = Linear {
        weight: Const::new(
            vec![5, 4],
            rand_vec(20, 9).iter().map(|v| v * 2.0).collect(),
        ),
        bias: Some(Const::new(vec![5], rand_vec(5, 10))),
    };
    let logits = b.add(Op::Linear(lin), &[flat], &[5]);
    let prob = b.add(Op::Softmax { axis: 1 }, &[logits], &[5]);
    (b.model(prob), [stem_act, dw, res, logits])
}

/// Every value of the graph in f64 for a batch of `n`, with `over` replacing one computed value.
fn eval64(m: &Model, x: &[f64], n: usize, over: Option<(ValueId, &[f64])>) -> Vec<Vec<f64>> {
    let g = &m.graph;
    let mut vals: Vec<Vec<f64>> = vec![vec![]; g.values.len()];
    vals[g.input] = x.to_vec();
    for node in &g.nodes {
        let xs = g.values[node.inputs[0]].full_shape(n);
        let ys = g.values[node.output].full_shape(n);
        let a = &vals[node.inputs[0]];
        let y = match &node.op {
            Op::Conv(c) => naive::conv64(a, &xs, c, ys[2], ys[3]),
            Op::Unary(u) => a.iter().map(|&v| naive::unary64(*u, v)).collect(),
            Op::Binary(bin) => match &bin.konst {
                None => {
                    let bs = g.values[node.inputs[1]].full_shape(n);
                    naive::binary64(bin.kind, a, &xs, &vals[node.inputs[1]], &bs, &ys)
                }
                Some(k) if bin.konst_is_lhs => {
                    naive::binary64(bin.kind, &to64(&k.data), &k.shape, a, &xs, &ys)
                }
                Some(k) => naive::binary64(bin.kind, a, &xs, &to64(&k.data), &k.shape, &ys),
            },
            Op::GlobalPool { max } => {
                let kind = if *max {
                    ReduceKind::Max
                } else {
                    ReduceKind::Mean
                };
                naive::reduce64(a, &xs, kind, &[2, 3])
            }
            Op::Reshape => a.clone(),
            Op::Linear(l) => {
                let bias = l.bias.as_ref().map(|b| &b.data[..]);
                naive::linear64(a, xs[xs.len() - 1], &l.weight.data, bias, l.weight.shape[0])
            }
            Op::Softmax { axis } => naive::softmax64(a, &xs, *axis),
            op => panic!("eval64 lacks {}", op.kind_name()),
        };
        vals[node.output] = match over {
            Some((v, d)) if v == node.output => d.to_vec(),
            _ => y,
        };
    }
    vals
}

/// Which side of each breakpoint every ReLU-like input lies on: a central difference across a
/// change of side measures a kink, not the derivative.
fn sides(m: &Model, vals: &[Vec<f64>]) -> Vec<bool> {
    let mut s = vec![];
    for node in &m.graph.nodes {
        let bps = match node.op {
            Op::Unary(Unary::Clip { min, max }) => vec![min as f64, max as f64],
            Op::Unary(Unary::Relu | Unary::LeakyRelu { .. }) => vec![0.0],
            _ => continue,
        };
        for &v in &vals[node.inputs[0]] {
            s.extend(bps.iter().map(|&b| v > b));
        }
    }
    s
}

/// Compares `got` with central differences of `objective(eval64(...))` over every coordinate of
/// value `at` (the input, or an intermediate value through `over`); skips coordinates whose
/// step crosses a kink, and fails if more than a tenth are skipped.
fn check_fd(
    what: &str,
    m: &Model,
    x: &[f32],
    n: usize,
    at: ValueId,
    got: &[f32],
    objective: impl Fn(&[Vec<f64>]) -> f64,
) {
    let x64 = to64(x);
    let base = eval64(m, &x64, n, None);
    let v0 = base[at].clone();
    assert_eq!(got.len(), v0.len(), "{what}: gradient length");
    let eval = |j: usize, d: f64| {
        let mut v = v0.clone();
        v[j] += d;
        if at == m.graph.input {
            eval64(m, &v, n, None)
        } else {
            eval64(m, &x64, n, Some((at, &v)))
        }
    };
    let side0 = sides(m, &base);
    let mut fd = vec![None; v0.len()];
    for (j, f) in fd.iter_mut().enumerate() {
        let (p, q) = (eval(j, H), eval(j, -H));
        if sides(m, &p) == side0 && sides(m, &q) == side0 {
            *f = Some((objective(&p) - objective(&q)) / (2.0 * H));
        }
    }
    let skipped = fd.iter().filter(|f| f.is_none()).count();
    assert!(skipped * 10 <= fd.len(), "{what}: {skipped} kinks");
    let ok: Vec<f64> = fd.iter().flatten().copied().collect();
    let rms = (ok.iter().map(|v| v * v).sum::<f64>() / ok.len() as f64).sqrt();
    assert!(rms > 1e-3, "{what}: degenerate check, gradient is ~0");
    for (j, (&g, f)) in got.iter().zip(&fd).enumerate() {
        if let Some(d) = f {
            assert!(
                (g as f64 - d).abs() <= 1e-4 * (d.abs() + rms),
                "{what}: coordinate {j}: gradient {g}, central difference {d}"
            );
        }
    }
}

fn tensor(shape: Vec<usize>, data: Vec<f32>) -> Arc<HostTensor> {
    Arc::new(HostTensor::new(shape, data).unwrap())
}

fn batch_input(m: &Model, n: usize, seed: u64) -> Arc<HostTensor> {
    let mut shape = vec![n];
    shape.extend_from_slice(m.input_shape());
    let len = shape.iter().product();
    tensor(shape, rand_vec(len, seed))
}

fn one_hot(n: usize, k: usize, targets: &[usize]) -> Arc<HostTensor> {
    let mut d = vec![0.0; n * k];
    for (i, &t) in targets.iter().enumerate() {
        d[i * k + t] = 1.0;
    }
    tensor(vec![n, k], d)
}

#[test]
fn logit_gradient_wrt_input_and_layers() {
    let (m, [stem_act, dw, res, logits]) = little_mobilenet();
    let cpu = CpuBackend::new();
    let n = 2;
    let targets = [1, 3];
    let x = batch_input(&m, n, 3);
    let seed = Seed::Grad {
        at: logits,
        grad: one_hot(n, 5, &targets),
    };
    let wrt = [stem_act, dw];
    let r = cpu
        .gradients(&m, &x, &seed, GradRule::Standard, &wrt, &[res, dw])
        .unwrap();
    // The forward half matches a plain forward.
    let f = cpu.forward(&m, &x, &[res, dw]).unwrap();
    assert_eq!(r.output.data, f.output.data);
    assert_eq!(r.tap(res).unwrap().data, f.tap(res).unwrap().data);
    assert_eq!(r.tap(dw).unwrap().data, f.tap(dw).unwrap().data);
    assert_eq!(r.input_grad.shape, x.shape);

    let objective = |v: &[Vec<f64>]| -> f64 { (0..n).map(|i| v[logits][i * 5 + targets[i]]).sum() };
    check_fd(
        "d logit / d input",
        &m,
        &x.data,
        n,
        0,
        &r.input_grad.data,
        objective,
    );
    // `stem_act` feeds both the block and the residual add: its gradient is the sum of both.
    for w in wrt {
        let got = r.layer_grad(w).unwrap();
        assert_eq!(got.shape, m.graph.values[w].full_shape(n));
        check_fd(
            &format!("d logit / d value {w}"),
            &m,
            &x.data,
            n,
            w,
            &got.data,
            objective,
        );
    }
}

#[test]
fn softmax_prob_seed() {
    let (m, [_, _, _, logits]) = little_mobilenet();
    let n = 2;
    let targets = vec![2, 0];
    let x = batch_input(&m, n, 5);
    let seed = Seed::SoftmaxProb {
        at: logits,
        targets: targets.clone(),
    };
    let r = CpuBackend::new()
        .gradients(&m, &x, &seed, GradRule::Standard, &[], &[])
        .unwrap();
    let prob = m.graph.output;
    let objective = |v: &[Vec<f64>]| -> f64 { (0..n).map(|i| v[prob][i * 5 + targets[i]]).sum() };
    check_fd(
        "d prob / d input",
        &m,
        &x.data,
        n,
        0,
        &r.input_grad.data,
        objective,
    );

    // The same seed entering one op later, through the softmax VJP.
    let through = Seed::Grad {
        at: prob,
        grad: one_hot(n, 5, &targets),
    };
    let r2 = CpuBackend::new()
        .gradients(&m, &x, &through, GradRule::Standard, &[], &[])
        .unwrap();
    super::assert_close(
        &r2.input_grad.data,
        &r.input_grad.data,
        "softmax seed vs VJP",
    );
}

/// Batch results equal per-sample results, on both schedules (whole batch with ops across
/// threads, and samples across threads).
#[test]
fn batch_equals_per_sample() {
    let (m, [stem_act, dw, _, logits]) = little_mobilenet();
    let n = 3;
    let targets = [4, 0, 2];
    let x = batch_input(&m, n, 9);
    let sl = x.sample_len();
    let grad = tensor(vec![n, 5], rand_vec(n * 5, 10));
    for threads in [2, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let cpu = CpuBackend::new();
            for rule in [GradRule::Standard, GradRule::Guided, GradRule::Deconvnet] {
                for prob in [true, false] {
                    let seed_for = |lo: usize, hi: usize| {
                        if prob {
                            Seed::SoftmaxProb {
                                at: logits,
                                targets: targets[lo..hi].to_vec(),
                            }
                        } else {
                            Seed::Grad {
                                at: logits,
                                grad: tensor(vec![hi - lo, 5], grad.data[lo * 5..hi * 5].to_vec()),
                            }
                        }
                    };
                    let whole = cpu
                        .gradients(&m, &x, &seed_for(0, n), rule, &[stem_act, dw], &[dw])
                        .unwrap();
                    for i in 0..n {
                        let mut shape = x.shape.clone();
                        shape[0] = 1;
                        let xi = tensor(shape, x.data[i * sl..(i + 1) * sl].to_vec());
                        let one = cpu
                            .gradients(&m, &xi, &seed_for(i, i + 1), rule, &[stem_act, dw], &[dw])
                            .unwrap();
                        let what = format!("sample {i}, {rule:?}, prob {prob}, {threads} threads");
                        super::assert_close(
                            one.input_grad.sample(0),
                            whole.input_grad.sample(i),
                            &what,
                        );
                        for ((_, a), (_, b)) in one.layer_grads.iter().zip(&whole.layer_grads) {
                            super::assert_close(a.sample(0), b.sample(i), &what);
                        }
                        super::assert_close(one.output.sample(0), whole.output.sample(i), &what);
                        super::assert_close(
                            one.taps[0].1.sample(0),
                            whole.taps[0].1.sample(i),
                            &what,
                        );
                    }
                }
            }
        });
    }
}

/// x -> Clip(-1.5, 2.5) -> * k -> Relu -> * k2, seeded with ones, worked by hand.
#[test]
fn guided_and_deconvnet_by_hand() {
    let mut b = Builder::new(&[6]);
    let mul = |k: [f32; 6]| {
        Op::Binary(Binary {
            kind: BinaryKind::Mul,
            konst: Some(Const::new(vec![6], k.to_vec())),
            konst_is_lhs: false,
        })
    };
    let clip = Unary::Clip {
        min: -1.5,
        max: 2.5,
    };
    let c = b.add(Op::Unary(clip), &[0], &[6]);
    let mm = b.add(mul([1.0, -1.0, -1.0, 1.0, 1.0, -1.0]), &[c], &[6]);
    let r = b.add(Op::Unary(Unary::Relu), &[mm], &[6]);
    let out = b.add(mul([2.0, 3.0, -1.0, 1.0, -2.0, 1.0]), &[r], &[6]);
    let m = b.model(out);
    let x = tensor(vec![1, 6], vec![1.0, 2.0, -1.0, -2.0, 3.0, -3.0]);
    let seed = Seed::Grad {
        at: out,
        grad: tensor(vec![1, 6], vec![1.0; 6]),
    };
    let cpu = CpuBackend::new();
    for (rule, at_mm, at_x) in [
        (
            GradRule::Standard,
            [2.0, 0.0, -1.0, 0.0, -2.0, 1.0],
            [2.0, 0.0, 1.0, 0.0, 0.0, 0.0],
        ),
        (
            GradRule::Guided,
            [2.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            [2.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        (
            GradRule::Deconvnet,
            [2.0, 3.0, 0.0, 1.0, 0.0, 1.0],
            [2.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        ),
    ] {
        let g = cpu.gradients(&m, &x, &seed, rule, &[mm], &[]).unwrap();
        assert_eq!(
            g.layer_grad(mm).unwrap().data,
            at_mm,
            "{rule:?} at relu input"
        );
        assert_eq!(g.input_grad.data, at_x, "{rule:?} at input");
    }
}

#[test]
fn seed_position_and_wrt_edge_cases() {
    let (m, [stem_act, _, res, logits]) = little_mobilenet();
    let n = 2;
    let x = batch_input(&m, n, 11);
    let len = 4 * 4 * 4;
    let grad = tensor(vec![n, 4, 4, 4], rand_vec(n * len, 12));
    let seed = Seed::Grad {
        at: res,
        grad: grad.clone(),
    };
    let r = CpuBackend::new()
        .gradients(
            &m,
            &x,
            &seed,
            GradRule::Standard,
            &[logits, res, 0, stem_act],
            &[],
        )
        .unwrap();
    // After the seed: zeros. At the seed: the seed. At the input: the input gradient.
    assert!(r.layer_grad(logits).unwrap().data.iter().all(|&v| v == 0.0));
    assert_eq!(r.layer_grad(res).unwrap().data, grad.data);
    assert_eq!(r.layer_grad(0).unwrap().data, r.input_grad.data);
    assert!(r.input_grad.data.iter().any(|&v| v != 0.0));
    // Seeding the input itself: the gradient is the seed.
    let xs = tensor(x.shape.clone(), rand_vec(x.data.len(), 13));
    let r = CpuBackend::new()
        .gradients(
            &m,
            &x,
            &Seed::Grad {
                at: 0,
                grad: xs.clone(),
            },
            GradRule::Standard,
            &[stem_act],
            &[],
        )
        .unwrap();
    assert_eq!(r.input_grad.data, xs.data);
    assert!(r
        .layer_grad(stem_act)
        .unwrap()
        .data
        .iter()
        .all(|&v| v == 0.0));
}

#[test]
fn user_errors_are_bad_input() {
    let (m, [_, _, _, logits]) = little_mobilenet();
    let cpu = CpuBackend::new();
    let x = batch_input(&m, 2, 1);
    let ok = Seed::Grad {
        at: logits,
        grad: one_hot(2, 5, &[0, 1]),
    };
    let bad = |seed: &Seed<Arc<HostTensor>>, wrt: &[ValueId], taps: &[ValueId]| {
        let e = cpu
            .gradients(&m, &x, seed, GradRule::Standard, wrt, taps)
            .err()
            .expect("an error");
        assert_eq!(e.kind, ErrorKind::BadInput, "{}", e.message);
    };
    bad(
        &Seed::Grad {
            at: logits,
            grad: one_hot(1, 5, &[0]),
        },
        &[],
        &[],
    );
    bad(
        &Seed::Grad {
            at: logits,
            grad: tensor(vec![2, 4], vec![0.0; 8]),
        },
        &[],
        &[],
    );
    bad(
        &Seed::Grad {
            at: 999,
            grad: one_hot(2, 5, &[0, 1]),
        },
        &[],
        &[],
    );
    bad(
        &Seed::SoftmaxProb {
            at: logits,
            targets: vec![0, 5],
        },
        &[],
        &[],
    );
    bad(
        &Seed::SoftmaxProb {
            at: logits,
            targets: vec![0],
        },
        &[],
        &[],
    );
    bad(&ok, &[999], &[]);
    bad(&ok, &[], &[999]);
    assert!(cpu
        .gradients(&m, &x, &ok, GradRule::Standard, &[], &[])
        .is_ok());
}
