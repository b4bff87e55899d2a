//! LayerNorm on the GPU (`layernorm.wgsl`) against the CPU backend: forward (also against the
//! plain reference loops, every value tapped) and input gradient, on rows shorter and longer
//! than the 256-thread workgroup, with and without bias, after other ops so the input is not
//! the raw random image.

use super::tests::{assert_close, check_all, gpu, konst, rand_vec, serial, Builder};
use crate::backend::{Backend, GradRule, HostTensor, Seed};
use crate::cpu::CpuBackend;
use crate::model::*;

fn ln(axis: usize, len: usize, bias: bool, seed: u64) -> Op {
    let scale = konst(&[len], seed);
    Op::LayerNorm {
        axis,
        epsilon: 1e-5,
        scale: Const::new(vec![len], scale.data.iter().map(|v| v + 1.0).collect()),
        bias: bias.then(|| konst(&[len], seed + 1)),
    }
}

/// `max |got - want| / max |want|`.
fn rel(got: &[f32], want: &[f32]) -> f32 {
    let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / peak
}

/// `[3, 4, 70]` normalised from each axis: rows of 70 (under one workgroup), 280 and 840 (each
/// thread sums several elements); the input scaled and shifted so rows have a non-zero mean.
fn model(axis: usize, bias: bool) -> (Model, ValueId) {
    let s = [3, 4, 70];
    let mut b = Builder::new(&s);
    let shift = Op::Binary(Binary {
        kind: BinaryKind::Add,
        konst: Some(Const::new(vec![1], vec![0.7])),
        konst_is_lhs: false,
    });
    let x = b.add(shift, &[0], &s);
    let len: usize = s[axis - 1..].iter().product();
    let y = b.add(ln(axis, len, bias, 7 + axis as u64), &[x], &s);
    (b.model(y), y)
}

#[test]
fn layer_norm_forward_matches_cpu_and_reference() {
    let _serial = serial();
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let mut worst = 0f32;
    for axis in [1, 2, 3] {
        for bias in [true, false] {
            let (m, _) = model(axis, bias);
            check_all(&gpu, &m, 2, 3);
            let shape = m.graph.values[0].full_shape(2);
            let input = HostTensor::new(shape.clone(), rand_vec(3 * 4 * 70 * 2, 5)).unwrap();
            let cx = cpu.upload(&input).unwrap();
            let want = cpu
                .read(&cpu.forward(&m, &cx, &[]).unwrap().output)
                .unwrap();
            let got = gpu.forward(&m, &gpu.upload(&input).unwrap(), &[]).unwrap();
            let got = gpu.read(&got.output).unwrap();
            assert_close(
                &got,
                &want,
                1e-4,
                &format!("layer norm axis {axis} bias {bias}"),
            );
            worst = worst.max(rel(&got.data, &want.data));
        }
    }
    eprintln!("layer_norm GPU vs CPU forward: worst max|Δ|/max|ref| {worst:e}");
}

#[test]
fn layer_norm_vjp_matches_cpu() {
    let _serial = serial();
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let mut worst = 0f32;
    for axis in [1, 2, 3] {
        for bias in [true, false] {
            let (m, y) = model(axis, bias);
            let shape = m.graph.values[0].full_shape(2);
            let n: usize = shape.iter().product();
            let input = HostTensor::new(shape.clone(), rand_vec(n, 5)).unwrap();
            let gy = HostTensor::new(shape.clone(), rand_vec(n, 99)).unwrap();
            let run = |be: &dyn Fn(&HostTensor, &HostTensor) -> HostTensor| be(&input, &gy);
            let want = run(&|x, g| {
                let seed = Seed::Grad {
                    at: y,
                    grad: cpu.upload(g).unwrap(),
                };
                let r = cpu
                    .gradients(
                        &m,
                        &cpu.upload(x).unwrap(),
                        &seed,
                        GradRule::Standard,
                        &[],
                        &[],
                    )
                    .unwrap();
                cpu.read(&r.input_grad).unwrap()
            });
            let got = run(&|x, g| {
                let seed = Seed::Grad {
                    at: y,
                    grad: gpu.upload(g).unwrap(),
                };
                let r = gpu
                    .gradients(
                        &m,
                        &gpu.upload(x).unwrap(),
                        &seed,
                        GradRule::Standard,
                        &[],
                        &[],
                    )
                    .unwrap();
                gpu.read(&r.input_grad).unwrap()
            });
            assert!(want.data.iter().any(|&v| v != 0.0), "zero oracle gradient");
            let what = format!("layer norm VJP axis {axis} bias {bias}");
            assert_close(&got, &want, 1e-4, &what);
            worst = worst.max(rel(&got.data, &want.data));
        }
    }
    eprintln!("layer_norm GPU vs CPU input gradient: worst max|Δ|/max|ref| {worst:e}");
}
