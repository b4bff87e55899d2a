//! LogSoftmax's CPU kernels against an f64 reference: the forward on logits far beyond exp's f32
//! range, and the VJP against central differences of the f64 forward, on every axis.

use super::naive::to64;
use super::rand_vec;
use crate::cpu::logsoftmax::{log_softmax, log_softmax_vjp};

/// The f64 forward over `axis` of `xs`.
fn lsm64(x: &[f64], xs: &[usize], axis: usize) -> Vec<f64> {
    let k = xs[axis];
    let inner: usize = xs[axis + 1..].iter().product();
    let mut y = vec![0.0; x.len()];
    for (src, dst) in x.chunks(k * inner).zip(y.chunks_mut(k * inner)) {
        for i in 0..inner {
            let m = (0..k).map(|j| src[j * inner + i]).fold(f64::MIN, f64::max);
            let lse = (0..k)
                .map(|j| (src[j * inner + i] - m).exp())
                .sum::<f64>()
                .ln()
                + m;
            for j in 0..k {
                dst[j * inner + i] = src[j * inner + i] - lse;
            }
        }
    }
    y
}

#[test]
fn log_softmax_forward_matches_f64_on_huge_logits() {
    let xs = [2, 3, 4, 5];
    let x: Vec<f32> = rand_vec(120, 3).iter().map(|v| v * 200.0).collect();
    let mut worst = 0f64;
    for axis in 1..4 {
        let mut y = vec![0.0; x.len()];
        log_softmax(&x, &xs, axis, &mut y).unwrap();
        let want = lsm64(&to64(&x), &xs, axis);
        let peak = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (i, (&g, w)) in y.iter().zip(&want).enumerate() {
            assert!(g.is_finite(), "axis {axis}: element {i} is {g}");
            worst = worst.max((f64::from(g) - w).abs() / peak);
        }
    }
    assert!(worst < 1e-6, "max |Δ| / max |ref| = {worst:e}");
    eprintln!("log_softmax forward vs f64: worst max|Δ|/max|ref| {worst:e}");
}

#[test]
fn log_softmax_vjp_matches_f64_central_differences() {
    const H: f64 = 1e-3;
    let xs = [2, 3, 4, 5];
    let x: Vec<f32> = rand_vec(120, 8).iter().map(|v| v * 3.0).collect();
    let u = rand_vec(120, 9);
    let x64 = to64(&x);
    let mut worst = 0f64;
    for axis in 1..4 {
        let mut y = vec![0.0; x.len()];
        log_softmax(&x, &xs, axis, &mut y).unwrap();
        let mut got = vec![0.0; x.len()];
        log_softmax_vjp(&y, &xs, axis, &u, &mut got).unwrap();
        let obj = |x: &[f64]| -> f64 {
            lsm64(x, &xs, axis)
                .iter()
                .zip(&u)
                .map(|(y, &u)| y * f64::from(u))
                .sum()
        };
        let fd: Vec<f64> = (0..x.len())
            .map(|j| {
                let mut xp = x64.clone();
                xp[j] += H;
                let mut xm = x64.clone();
                xm[j] -= H;
                (obj(&xp) - obj(&xm)) / (2.0 * H)
            })
            .collect();
        let rms = (fd.iter().map(|v| v * v).sum::<f64>() / fd.len() as f64).sqrt();
        assert!(rms > 1e-3, "axis {axis}: degenerate check");
        for (j, (&g, &d)) in got.iter().zip(&fd).enumerate() {
            let e = (f64::from(g) - d).abs() / (d.abs() + rms);
            assert!(
                e <= 1e-4,
                "axis {axis}: d/dx[{j}]: VJP {g}, central difference {d}"
            );
            worst = worst.max(e);
        }
    }
    eprintln!("log_softmax VJP vs f64 central differences: worst |Δ|/(|fd|+rms) {worst:e}");
}
