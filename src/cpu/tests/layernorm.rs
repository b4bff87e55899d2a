//! LayerNorm's CPU kernels against an f64 reference: the forward on rows with a large offset
//! (where a one-pass f32 variance would cancel), and the VJP against central differences of the
//! f64 forward, coordinate by coordinate, as `vjp.rs` does for the other ops.

use super::naive::to64;
use super::rand_vec;
use crate::cpu::layernorm::{layer_norm, layer_norm_vjp};

/// The f64 forward: rows of `len`, two-pass variance.
fn ln64(x: &[f64], len: usize, eps: f64, scale: &[f32], bias: Option<&[f32]>) -> Vec<f64> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(len) {
        let n = len as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let r = 1.0 / (var + eps).sqrt();
        for (j, v) in row.iter().enumerate() {
            let b = bias.map_or(0.0, |b| f64::from(b[j]));
            y.push((v - mean) * r * f64::from(scale[j]) + b);
        }
    }
    y
}

/// Rows of `len` values `a * u + offset_row` for uniform `u` in [-1, 1).
fn rows(n_rows: usize, len: usize, a: f32, offset: f32, seed: u64) -> Vec<f32> {
    let u = rand_vec(n_rows * len, seed);
    u.iter()
        .enumerate()
        .map(|(i, v)| a * v + offset * (1.0 + (i / len) as f32))
        .collect()
}

#[test]
fn layer_norm_forward_matches_f64_even_far_from_zero() {
    // (rows, len, spread, offset, eps, with bias)
    let cases = [
        (3, 5, 1.0, 0.0, 1e-5, true),
        (4, 77, 2.0, 0.3, 1e-5, false),
        (2, 300, 0.01, 1000.0, 1e-5, true),
        (5, 8, 1e-3, 0.0, 0.5, true),
    ];
    let mut worst = 0f64;
    for (k, &(n, len, a, off, eps, with_bias)) in cases.iter().enumerate() {
        let x = rows(n, len, a, off, 10 + k as u64);
        let scale: Vec<f32> = rand_vec(len, 20 + k as u64)
            .iter()
            .map(|v| v + 1.5)
            .collect();
        let bias = rand_vec(len, 30 + k as u64);
        let bias = with_bias.then_some(bias.as_slice());
        let mut y = vec![0.0; x.len()];
        layer_norm(&x, len, eps, &scale, bias, &mut y).unwrap();
        let want = ln64(&to64(&x), len, f64::from(eps), &scale, bias);
        let peak = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        let err = y
            .iter()
            .zip(&want)
            .fold(0f64, |m, (&g, w)| m.max((f64::from(g) - w).abs()))
            / peak;
        // The third case has a spread of 0.01 around 1000..2000: a one-pass f32 variance
        // (E[x²] - mean², both ~1e6 and equal to 7 digits) would have no correct digit left.
        assert!(err < 1e-5, "case {k}: max |Δ| / max |ref| = {err:e}");
        worst = worst.max(err);
    }
    eprintln!("layer_norm forward vs f64: worst max|Δ|/max|ref| {worst:e}");
}

#[test]
fn layer_norm_vjp_matches_f64_central_differences() {
    const H: f64 = 1e-3;
    // (rows, len, spread, eps)
    let cases = [(3, 5, 1.0, 1e-5), (2, 77, 2.0, 1e-5), (4, 6, 0.3, 0.05)];
    let mut worst = 0f64;
    for (k, &(n, len, a, eps)) in cases.iter().enumerate() {
        let x = rows(n, len, a, 0.2, 40 + k as u64);
        let scale: Vec<f32> = rand_vec(len, 50 + k as u64)
            .iter()
            .map(|v| v + 0.5)
            .collect();
        let u = rand_vec(x.len(), 60 + k as u64);
        let mut got = vec![0.0; x.len()];
        layer_norm_vjp(&x, len, eps, &scale, &u, &mut got).unwrap();
        let x64 = to64(&x);
        let obj = |x: &[f64]| -> f64 {
            ln64(x, len, f64::from(eps), &scale, None)
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
        assert!(rms > 1e-3, "case {k}: degenerate check, gradient is ~0");
        for (j, (&g, &d)) in got.iter().zip(&fd).enumerate() {
            let e = (f64::from(g) - d).abs() / (d.abs() + rms);
            assert!(
                e <= 1e-4,
                "case {k}: d/dx[{j}]: VJP {g}, central difference {d}"
            );
            worst = worst.max(e);
        }
    }
    eprintln!("layer_norm VJP vs f64 central differences: worst |Δ|/(|fd|+rms) {worst:e}");
}

/// Bad sizes are internal errors, not panics.
#[test]
fn layer_norm_refuses_mismatched_sizes() {
    let x = vec![0.0; 12];
    let mut y = vec![0.0; 12];
    assert!(layer_norm(&x, 5, 1e-5, &[1.0; 5], None, &mut y).is_err());
    assert!(layer_norm(&x, 4, 1e-5, &[1.0; 3], None, &mut y).is_err());
    assert!(layer_norm(&x, 4, 1e-5, &[1.0; 4], Some(&[0.0; 3]), &mut y).is_err());
    assert!(layer_norm_vjp(&x, 0, 1e-5, &[], &x, &mut y).is_err());
}
