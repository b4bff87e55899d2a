//! Input-space affinities P on the CPU: the per-point perplexity search (the twin of the GPU
//! kernel `tsne_pcond`), dense for the exact path and over the nearest neighbours for Barnes-Hut,
//! then symmetrised: `P = (P_{j|i} + P_{i|j}) / 2N`.

use rayon::prelude::*;

/// The smallest affinity kept in dense P, so that log P stays finite (scikit-learn uses the f64
/// machine epsilon; f32 needs a larger floor).
pub const P_FLOOR: f32 = 1e-12;

/// Steps and entropy tolerance of the perplexity search (scikit-learn's values).
pub const SEARCH_STEPS: usize = 100;
/// The largest `|entropy - ln(perplexity)|`, in nats, at which a row's search stops early.
pub const SEARCH_TOL: f32 = 1e-5;

/// The conditional probabilities `p_{j|i}` of one point from its dissimilarities to the others
/// (`dist`, itself excluded), by bisection on the precision β so that the row's entropy is
/// `ln(perplexity)`. Distances are shifted by their minimum first, which leaves P unchanged and
/// keeps `exp` from underflowing on far-apart data. Returns β.
pub fn row_conditional(dist: &[f32], perplexity: f32, out: &mut [f32]) -> f32 {
    let dmin = dist.iter().copied().fold(f32::INFINITY, f32::min);
    let target = perplexity.ln();
    let (mut beta, mut lo, mut hi) = (1f32, f32::NEG_INFINITY, f32::INFINITY);
    for _ in 0..SEARCH_STEPS {
        let (mut sp, mut sdp) = (0f32, 0f32);
        for &d in dist {
            let e = (-(d - dmin) * beta).exp();
            sp += e;
            sdp += (d - dmin) * e;
        }
        let h = sp.ln() + beta * sdp / sp;
        let diff = h - target;
        if diff.abs() <= SEARCH_TOL {
            break;
        }
        if diff > 0.0 {
            lo = beta;
            beta = if hi.is_infinite() {
                beta * 2.0
            } else {
                (beta + hi) * 0.5
            };
        } else {
            hi = beta;
            beta = if lo.is_infinite() {
                beta * 0.5
            } else {
                (beta + lo) * 0.5
            };
        }
    }
    let mut sp = 0f32;
    for (o, &d) in out.iter_mut().zip(dist) {
        *o = (-(d - dmin) * beta).exp();
        sp += *o;
    }
    out.iter_mut().for_each(|o| *o /= sp);
    beta
}

/// `scale · ‖a − b‖²`.
pub fn sq_dist(a: &[f32], b: &[f32], scale: f32) -> f32 {
    scale * a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>()
}

/// Dense symmetric P `[N·N]` (zero diagonal, floored at [`P_FLOOR`]) of prepared features.
pub fn dense_p(x: &[f32], n: usize, d: usize, scale: f32, perplexity: f32) -> Vec<f32> {
    let mut cond = vec![0f32; n * n];
    cond.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let xi = &x[i * d..(i + 1) * d];
        let dist: Vec<f32> = (0..n)
            .filter(|&j| j != i)
            .map(|j| sq_dist(xi, &x[j * d..(j + 1) * d], scale))
            .collect();
        let mut p = vec![0f32; n - 1];
        row_conditional(&dist, perplexity, &mut p);
        for (k, j) in (0..n).filter(|&j| j != i).enumerate() {
            row[j] = p[k];
        }
    });
    let inv = 1.0 / (2.0 * n as f32);
    let mut p = vec![0f32; n * n];
    p.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for (j, v) in row.iter_mut().enumerate() {
            *v = if i == j {
                0.0
            } else {
                ((cond[i * n + j] + cond[j * n + i]) * inv).max(P_FLOOR)
            };
        }
    });
    p
}

/// Symmetric sparse P in CSR form.
#[derive(Clone, Debug, Default)]
pub struct SparseP {
    /// Row `i`'s entries are `indptr[i]..indptr[i + 1]`; `N + 1` offsets.
    pub indptr: Vec<usize>,
    /// Column `j` of each entry.
    pub indices: Vec<u32>,
    /// `p_ij` of each entry.
    pub values: Vec<f32>,
}

impl SparseP {
    /// `(j, p_ij)` of row `i`.
    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let r = self.indptr[i]..self.indptr[i + 1];
        self.indices[r.clone()]
            .iter()
            .zip(&self.values[r])
            .map(|(&j, &v)| (j as usize, v))
    }
}

/// P over each point's `min(N − 1, ⌊3·perplexity⌋ + 1)` nearest neighbours (scikit-learn's
/// count), found by brute force in parallel, then symmetrised.
pub fn sparse_p(x: &[f32], n: usize, d: usize, scale: f32, perplexity: f32) -> SparseP {
    let k = (n - 1).min((3.0 * perplexity) as usize + 1);
    let rows: Vec<Vec<(u32, f32)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &x[i * d..(i + 1) * d];
            let mut all: Vec<(f32, u32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (sq_dist(xi, &x[j * d..(j + 1) * d], scale), j as u32))
                .collect();
            if k < all.len() {
                all.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
                all.truncate(k);
            }
            let dist: Vec<f32> = all.iter().map(|a| a.0).collect();
            let mut p = vec![0f32; dist.len()];
            row_conditional(&dist, perplexity, &mut p);
            all.iter().zip(p).map(|(a, v)| (a.1, v)).collect()
        })
        .collect();
    // Symmetrise: every (i, j, p_{j|i}) also lands as (j, i); duplicates are summed.
    let mut lists: Vec<Vec<(u32, f32)>> = rows.clone();
    for (i, row) in rows.iter().enumerate() {
        for &(j, v) in row {
            lists[j as usize].push((i as u32, v));
        }
    }
    let inv = 1.0 / (2.0 * n as f32);
    let mut out = SparseP {
        indptr: vec![0],
        ..Default::default()
    };
    for mut list in lists {
        list.sort_by_key(|e| e.0);
        let mut at = 0;
        while at < list.len() {
            let j = list[at].0;
            let mut v = 0f32;
            while at < list.len() && list[at].0 == j {
                v += list[at].1;
                at += 1;
            }
            out.indices.push(j);
            out.values.push(v * inv);
        }
        out.indptr.push(out.indices.len());
    }
    out
}
