//! LIME's surrogate models, fitted on the host in f64 to the model's scores over binary
//! "segment kept" vectors: a weighted ridge regression and a weighted regression tree.

use crate::error::{Error, Result};

/// A fitted surrogate.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    /// One value per segment: the linear coefficient, or the tree's impurity decrease.
    pub importance: Vec<f64>,
    /// The surrogate's prediction for each sample.
    pub predictions: Vec<f64>,
    /// Weighted coefficient of determination on the samples.
    pub r2: f64,
}

/// The binary design matrix, `n` rows of `k` on/off values.
pub struct Design<'a> {
    /// Samples (rows).
    pub n: usize,
    /// Segments (columns).
    pub k: usize,
    /// Row-major, `n * k`: whether sample `s` keeps segment `j`.
    pub z: &'a [bool],
}

impl Design<'_> {
    fn row(&self, s: usize) -> &[bool] {
        &self.z[s * self.k..(s + 1) * self.k]
    }
}

/// `exp(-d² / width²)`, `d` the cosine distance between each row and the all-on vector:
/// `d = 1 - sqrt(m / k)` for a row with `m` segments on, and 1 for the empty row.
pub fn kernel_weights(x: &Design, width: f64) -> Vec<f64> {
    (0..x.n)
        .map(|s| {
            let m = x.row(s).iter().filter(|&&b| b).count();
            let d = if m == 0 {
                1.0
            } else {
                1.0 - (m as f64 / x.k as f64).sqrt()
            };
            (-(d * d) / (width * width)).exp()
        })
        .collect()
}

/// `1 - Σ w (y - ŷ)² / Σ w (y - ȳ)²` with `ȳ` the weighted mean; 1 for constant `y` fitted
/// exactly.
pub fn weighted_r2(y: &[f64], pred: &[f64], w: &[f64]) -> f64 {
    let sw: f64 = w.iter().sum();
    let mean = y.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() / sw;
    let res: f64 = y
        .iter()
        .zip(pred)
        .zip(w)
        .map(|((a, p), b)| b * (a - p).powi(2))
        .sum();
    let tot: f64 = y.iter().zip(w).map(|(a, b)| b * (a - mean).powi(2)).sum();
    if tot <= 0.0 {
        return if res <= 0.0 { 1.0 } else { 0.0 };
    }
    1.0 - res / tot
}

/// Weighted ridge regression `y ≈ b + Σ β_k z_k`: minimises `Σ w (y - b - z·β)² + λ |β|²` with the
/// intercept unpenalised (columns centred on their weighted means), solving the normal equations
/// by Cholesky in f64.
pub fn ridge(x: &Design, y: &[f64], w: &[f64], lambda: f64) -> Result<Fit> {
    let (n, k) = (x.n, x.k);
    let sw: f64 = w.iter().sum();
    if sw.is_nan() || sw <= 0.0 {
        return Err(Error::internal("LIME: all sample weights are zero"));
    }
    let mut mean = vec![0f64; k];
    let mut ymean = 0.0;
    for s in 0..n {
        for (m, &b) in mean.iter_mut().zip(x.row(s)) {
            if b {
                *m += w[s];
            }
        }
        ymean += w[s] * y[s];
    }
    mean.iter_mut().for_each(|m| *m /= sw);
    ymean /= sw;
    // A = Xcᵀ W Xc + λI, r = Xcᵀ W (y - ȳ).
    let mut a = vec![0f64; k * k];
    let mut r = vec![0f64; k];
    let mut xc = vec![0f64; k];
    for s in 0..n {
        for (j, (c, &b)) in xc.iter_mut().zip(x.row(s)).enumerate() {
            *c = b as u8 as f64 - mean[j];
        }
        let ws = w[s];
        let yc = y[s] - ymean;
        for i in 0..k {
            let wi = ws * xc[i];
            r[i] += wi * yc;
            let row = &mut a[i * k..i * k + i + 1];
            for (v, &xj) in row.iter_mut().zip(&xc[..=i]) {
                *v += wi * xj;
            }
        }
    }
    for i in 0..k {
        a[i * k + i] += lambda;
        for j in 0..i {
            a[j * k + i] = a[i * k + j];
        }
    }
    let beta = cholesky_solve(&mut a, &r, k)?;
    let intercept = ymean - mean.iter().zip(&beta).map(|(m, b)| m * b).sum::<f64>();
    let predictions: Vec<f64> = (0..n)
        .map(|s| {
            intercept
                + x.row(s)
                    .iter()
                    .zip(&beta)
                    .filter(|(&b, _)| b)
                    .map(|(_, v)| v)
                    .sum::<f64>()
        })
        .collect();
    let r2 = weighted_r2(y, &predictions, w);
    Ok(Fit {
        importance: beta,
        predictions,
        r2,
    })
}

/// Solves `A x = b` for symmetric positive definite `A` (`k × k`, overwritten by its factor).
fn cholesky_solve(a: &mut [f64], b: &[f64], k: usize) -> Result<Vec<f64>> {
    for j in 0..k {
        let mut d = a[j * k + j];
        for p in 0..j {
            d -= a[j * k + p] * a[j * k + p];
        }
        if d.is_nan() || d <= 0.0 {
            return Err(Error::bad_input(
                "LIME's ridge regression is singular; use a positive ridge penalty",
            ));
        }
        let d = d.sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let mut v = a[i * k + j];
            for p in 0..j {
                v -= a[i * k + p] * a[j * k + p];
            }
            a[i * k + j] = v / d;
        }
    }
    let mut x = b.to_vec();
    for i in 0..k {
        for p in 0..i {
            x[i] -= a[i * k + p] * x[p];
        }
        x[i] /= a[i * k + i];
    }
    for i in (0..k).rev() {
        for p in i + 1..k {
            x[i] -= a[p * k + i] * x[p];
        }
        x[i] /= a[i * k + i];
    }
    Ok(x)
}

/// Growth limits of [`tree`], MATLAB `fitrtree`'s names and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeLimits {
    /// At most this many splits; `None`: `n - 1`.
    pub max_num_splits: Option<usize>,
    /// A node with fewer samples is not split (MATLAB default 10).
    pub min_parent_size: usize,
    /// Each child keeps at least this many samples (MATLAB default 1).
    pub min_leaf_size: usize,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits {
            max_num_splits: None,
            min_parent_size: 10,
            min_leaf_size: 1,
        }
    }
}

/// Weighted least-squares CART on the binary features, grown breadth-first (as `fitrtree` does
/// under `MaxNumSplits`), each split taking the feature with the largest drop in weighted squared
/// error. Importance is MATLAB's `predictorImportance`: per feature, the summed risk decrease
/// (squared-error drop over the total weight) of its splits, divided by the number of splits.
pub fn tree(x: &Design, y: &[f64], w: &[f64], limits: TreeLimits) -> Fit {
    let (n, k) = (x.n, x.k);
    let max_splits = limits.max_num_splits.unwrap_or(n.saturating_sub(1));
    let total_w: f64 = w.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let mut importance = vec![0f64; k];
    let mut predictions = vec![0f64; n];
    let mut splits = 0usize;
    let mut queue = std::collections::VecDeque::new();
    queue.push_back((0..n).collect::<Vec<usize>>());
    // Per node: weight, weighted sum, weighted sum of squares of y, overall and where z_j = 1.
    let stats = |idx: &[usize]| {
        let (mut sw, mut sy, mut syy) = (0.0, 0.0, 0.0);
        for &s in idx {
            sw += w[s];
            sy += w[s] * y[s];
            syy += w[s] * y[s] * y[s];
        }
        (sw, sy, syy)
    };
    let sse = |(sw, sy, syy): (f64, f64, f64)| if sw > 0.0 { syy - sy * sy / sw } else { 0.0 };
    while let Some(idx) = queue.pop_front() {
        let node = stats(&idx);
        let mean = if node.0 > 0.0 { node.1 / node.0 } else { 0.0 };
        let mut best: Option<(f64, usize)> = None;
        if splits < max_splits && idx.len() >= limits.min_parent_size.max(2) {
            let mut on = vec![(0f64, 0f64, 0f64, 0usize); k];
            for &s in &idx {
                for (j, &b) in x.row(s).iter().enumerate() {
                    if b {
                        let o = &mut on[j];
                        o.0 += w[s];
                        o.1 += w[s] * y[s];
                        o.2 += w[s] * y[s] * y[s];
                        o.3 += 1;
                    }
                }
            }
            let parent = sse(node);
            for (j, &(ow, oy, oyy, count)) in on.iter().enumerate() {
                let min_leaf = limits.min_leaf_size.max(1);
                if count < min_leaf || idx.len() - count < min_leaf {
                    continue;
                }
                let off = (node.0 - ow, node.1 - oy, node.2 - oyy);
                let gain = parent - sse((ow, oy, oyy)) - sse(off);
                if gain > 1e-12 * parent.abs().max(1e-300) && best.is_none_or(|(g, _)| gain > g) {
                    best = Some((gain, j));
                }
            }
        }
        match best {
            Some((gain, j)) => {
                importance[j] += gain / total_w;
                splits += 1;
                let (right, left): (Vec<usize>, Vec<usize>) =
                    idx.iter().partition(|&&s| x.row(s)[j]);
                queue.push_back(left);
                queue.push_back(right);
            }
            None => idx.iter().for_each(|&s| predictions[s] = mean),
        }
    }
    if splits > 0 {
        importance.iter_mut().for_each(|v| *v /= splits as f64);
    }
    let r2 = weighted_r2(y, &predictions, w);
    Fit {
        importance,
        predictions,
        r2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(n: usize, k: usize) -> Vec<bool> {
        (0..n * k)
            .map(|i| crate::backend::segment_kept(5, (i / k) as u32, (i % k) as u32))
            .collect()
    }

    #[test]
    fn ridge_recovers_a_linear_function() {
        let (n, k) = (300, 6);
        let z = design(n, k);
        let x = Design { n, k, z: &z };
        let beta = [2.0, -1.0, 0.5, 0.0, 3.0, -0.25];
        let y: Vec<f64> = (0..n)
            .map(|s| {
                1.5 + (0..k)
                    .filter(|&j| z[s * k + j])
                    .map(|j| beta[j])
                    .sum::<f64>()
            })
            .collect();
        let w = kernel_weights(&x, 0.25);
        let fit = ridge(&x, &y, &w, 1e-9).unwrap();
        for (a, b) in fit.importance.iter().zip(beta) {
            assert!((a - b).abs() < 1e-6, "{:?}", fit.importance);
        }
        assert!(fit.r2 > 1.0 - 1e-9);
        // A penalty shrinks towards zero.
        let shrunk = ridge(&x, &y, &w, 100.0).unwrap();
        assert!(shrunk.importance[4].abs() < 3.0);
    }

    #[test]
    fn kernel_weights_follow_cosine_distance() {
        // All on, half on, none on.
        let z = [[true; 4], [true, true, false, false], [false; 4]].concat();
        let w = kernel_weights(&Design { n: 3, k: 4, z: &z }, 0.25);
        assert!((w[0] - 1.0).abs() < 1e-12);
        let d: f64 = 1.0 - 0.5f64.sqrt();
        assert!((w[1] - (-(d * d) / 0.0625).exp()).abs() < 1e-12);
        assert!((w[2] - (-16.0f64).exp()).abs() < 1e-18);
    }

    #[test]
    fn tree_splits_on_the_feature_that_matters() {
        let (n, k) = (200, 5);
        let z = design(n, k);
        let x = Design { n, k, z: &z };
        let y: Vec<f64> = (0..n)
            .map(|s| if z[s * k + 3] { 4.0 } else { 1.0 })
            .collect();
        let w = vec![1.0; n];
        let fit = tree(&x, &y, &w, TreeLimits::default());
        assert!(fit.r2 > 1.0 - 1e-12);
        let top = (0..k).max_by(|&a, &b| fit.importance[a].total_cmp(&fit.importance[b]));
        assert_eq!(top, Some(3));
        assert!(fit
            .importance
            .iter()
            .enumerate()
            .all(|(j, &v)| j == 3 || v == 0.0));
    }
}
