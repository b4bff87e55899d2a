//! Barnes-Hut t-SNE on the CPU (van der Maaten 2014): sparse P over nearest neighbours for the
//! attraction, a quadtree (2-D) or octree (3-D) for the repulsion, points in parallel with rayon.

use rayon::prelude::*;

use super::affinity::{sparse_p, SparseP};
use super::{descend, Schedule, TsneResult};
use crate::backend::HostTensor;
use crate::error::Result;
use crate::progress::Progress;

const NONE: u32 = u32::MAX;
/// Below this cell half-width (relative to the root's) points count as coincident, which bounds
/// the depth when several points share a position.
const MIN_HALF: f32 = 1e-7;

#[derive(Clone, Copy)]
struct Node {
    centre: [f32; 3],
    half: f32,
    /// Sum of positions while building, then the centre of mass.
    com: [f64; 3],
    count: u32,
    /// First of the 2^dims children, or NONE for a leaf.
    child: u32,
}

/// A space-partitioning tree over the embedding: every leaf holds one position (with a
/// multiplicity when points coincide).
struct Tree {
    nodes: Vec<Node>,
    dims: usize,
}

impl Tree {
    fn build(y: &[f32], dims: usize) -> Tree {
        let n = y.len() / dims;
        let (mut lo, mut hi) = ([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]);
        for p in y.chunks(dims) {
            for c in 0..dims {
                lo[c] = lo[c].min(p[c]);
                hi[c] = hi[c].max(p[c]);
            }
        }
        let mut centre = [0f32; 3];
        let mut half = 0f32;
        for c in 0..dims {
            centre[c] = 0.5 * (lo[c] + hi[c]);
            half = half.max(0.5 * (hi[c] - lo[c]));
        }
        let half = half * (1.0 + 1e-5) + 1e-12;
        let mut t = Tree {
            nodes: Vec::with_capacity(2 * n + 1),
            dims,
        };
        t.nodes.push(Node {
            centre,
            half,
            com: [0.0; 3],
            count: 0,
            child: NONE,
        });
        let min_half = half * MIN_HALF;
        for p in y.chunks(dims) {
            t.insert(p, min_half);
        }
        for node in t.nodes.iter_mut() {
            if node.count > 0 {
                for c in 0..dims {
                    node.com[c] /= node.count as f64;
                }
            }
        }
        t
    }

    fn quadrant(&self, node: usize, p: &[f32]) -> usize {
        let c = &self.nodes[node].centre;
        (0..self.dims).map(|k| ((p[k] > c[k]) as usize) << k).sum()
    }

    fn split(&mut self, node: usize) {
        let first = self.nodes.len() as u32;
        let Node { centre, half, .. } = self.nodes[node];
        for q in 0..1usize << self.dims {
            let mut cc = centre;
            for (k, c) in cc.iter_mut().enumerate().take(self.dims) {
                *c += if q >> k & 1 == 1 {
                    0.5 * half
                } else {
                    -0.5 * half
                };
            }
            self.nodes.push(Node {
                centre: cc,
                half: 0.5 * half,
                com: [0.0; 3],
                count: 0,
                child: NONE,
            });
        }
        self.nodes[node].child = first;
    }

    fn insert(&mut self, p: &[f32], min_half: f32) {
        let dims = self.dims;
        let mut at = 0usize;
        loop {
            let node = self.nodes[at];
            if node.child == NONE {
                if node.count == 0 {
                    self.add(at, p, 1);
                    return;
                }
                // A leaf holds one position: count/com give it back exactly.
                let q: Vec<f32> = (0..dims)
                    .map(|c| (node.com[c] / node.count as f64) as f32)
                    .collect();
                if q[..] == p[..dims] || node.half < min_half {
                    self.add(at, p, 1);
                    return;
                }
                self.split(at);
                let qi = self.nodes[at].child as usize + self.quadrant(at, &q);
                self.nodes[qi].count = node.count;
                self.nodes[qi].com = node.com;
            }
            self.add_only(at, p);
            at = self.nodes[at].child as usize + self.quadrant(at, p);
        }
    }

    fn add(&mut self, at: usize, p: &[f32], k: u32) {
        let node = &mut self.nodes[at];
        node.count += k;
        for (c, &v) in p.iter().enumerate().take(self.dims) {
            node.com[c] += v as f64 * k as f64;
        }
    }

    fn add_only(&mut self, at: usize, p: &[f32]) {
        self.add(at, p, 1);
    }

    /// Repulsion on a point at `yi`: `(Σ w² (yi − y), Σ w)` over the others, far cells taken
    /// whole when `width / distance < theta`.
    fn repulsion(&self, yi: &[f32], theta2: f32, stack: &mut Vec<u32>) -> ([f32; 3], f32) {
        let dims = self.dims;
        let (mut rep, mut z) = ([0f32; 3], 0f32);
        stack.clear();
        stack.push(0);
        while let Some(at) = stack.pop() {
            let node = &self.nodes[at as usize];
            if node.count == 0 {
                continue;
            }
            let mut diff = [0f32; 3];
            let mut d2 = 0f32;
            for c in 0..dims {
                diff[c] = yi[c] - node.com[c] as f32;
                d2 += diff[c] * diff[c];
            }
            let leaf = node.child == NONE;
            if leaf && d2 == 0.0 {
                // The point itself (and any coincident copies: w = 1, no force).
                z += (node.count - 1) as f32;
                continue;
            }
            let width = 2.0 * node.half;
            if leaf || width * width < theta2 * d2 {
                let w = 1.0 / (1.0 + d2);
                let m = node.count as f32;
                z += m * w;
                for c in 0..dims {
                    rep[c] += m * w * w * diff[c];
                }
            } else {
                stack.extend((0..1u32 << dims).map(|q| node.child + q));
            }
        }
        (rep, z)
    }
}

/// The Barnes-Hut gradient (without the constant 4) and the estimated normaliser Z.
pub fn gradient(
    p: &SparseP,
    y: &[f32],
    dims: usize,
    exaggeration: f32,
    theta: f32,
) -> (Vec<f32>, f64) {
    let n = y.len() / dims;
    let tree = Tree::build(y, dims);
    let theta2 = theta * theta;
    let per: Vec<([f32; 3], [f32; 3], f32)> = (0..n)
        .into_par_iter()
        .map_init(Vec::new, |stack, i| {
            let yi = &y[i * dims..(i + 1) * dims];
            let mut attr = [0f32; 3];
            for (j, pij) in p.row(i) {
                let mut diff = [0f32; 3];
                let mut d2 = 0f32;
                for c in 0..dims {
                    diff[c] = yi[c] - y[j * dims + c];
                    d2 += diff[c] * diff[c];
                }
                let pw = pij / (1.0 + d2);
                for c in 0..dims {
                    attr[c] += pw * diff[c];
                }
            }
            let (rep, z) = tree.repulsion(yi, theta2, stack);
            (attr, rep, z)
        })
        .collect();
    let z: f64 = per.iter().map(|r| r.2 as f64).sum();
    let inv_z = (1.0 / z) as f32;
    let mut grad = vec![0f32; n * dims];
    for (i, (a, r, _)) in per.iter().enumerate() {
        for c in 0..dims {
            grad[i * dims + c] = exaggeration * a[c] - r[c] * inv_z;
        }
    }
    (grad, z)
}

/// `Σ_ij p_ij ln(p_ij / (w_ij / Z))` over the stored P, for a given Z.
fn kl_sparse(p: &SparseP, y: &[f32], dims: usize, z: f64) -> f32 {
    let n = y.len() / dims;
    let s: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            p.row(i)
                .filter(|&(_, v)| v > 0.0)
                .map(|(j, v)| {
                    let d2: f32 = (0..dims)
                        .map(|c| (y[i * dims + c] - y[j * dims + c]).powi(2))
                        .sum();
                    let v = v as f64;
                    v * (v.ln() + (1.0 + d2 as f64).ln())
                })
                .sum::<f64>()
        })
        .sum();
    (s + z.ln()) as f32
}

/// The exact normaliser `Σ_{i≠j} 1 / (1 + ‖y_i − y_j‖²)`, O(N²) in parallel.
fn exact_z(y: &[f32], dims: usize) -> f64 {
    let n = y.len() / dims;
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut z = 0f64;
            for j in 0..n {
                if j != i {
                    let d2: f32 = (0..dims)
                        .map(|c| (y[i * dims + c] - y[j * dims + c]).powi(2))
                        .sum();
                    z += 1.0 / (1.0 + d2 as f64);
                }
            }
            z
        })
        .sum()
}

/// Barnes-Hut t-SNE from prepared features. The KL history uses the tree's estimate of Z at
/// each check; the final KL uses the exact Z (over the sparse P, as scikit-learn reports it).
pub fn run(
    x: &HostTensor,
    scale: f32,
    perplexity: f32,
    y0: &HostTensor,
    s: &Schedule,
    theta: f32,
    progress: &dyn Progress,
) -> Result<TsneResult> {
    let (n, d) = (x.shape[0], x.shape[1]);
    let dims = y0.shape[1];
    let p = sparse_p(&x.data, n, d, scale, perplexity);
    let mut y = y0.data.clone();
    let mut update = vec![0f32; n * dims];
    let mut gains = vec![1f32; n * dims];
    let mut history = Vec::new();
    progress.start("t-SNE Barnes-Hut (CPU)", s.iterations as u64);
    for it in 0..s.iterations {
        let (exag, momentum, restart) = s.at(it);
        if restart {
            update.fill(0.0);
            gains.fill(1.0);
        }
        let (grad, z) = gradient(&p, &y, dims, exag, theta);
        if (it + 1) % s.kl_every == 0 {
            let kl = kl_sparse(&p, &y, dims, z);
            history.push((it + 1, kl));
            progress.message(&format!("KL {kl:.4}"));
        }
        descend(
            &mut y,
            &mut update,
            &mut gains,
            &grad,
            s.learn_rate,
            momentum,
        );
        progress.advance(1);
    }
    progress.finish();
    let kl = kl_sparse(&p, &y, dims, exact_z(&y, dims));
    Ok(TsneResult {
        embedding: HostTensor::new(vec![n, dims], y)?,
        kl,
        kl_history: history,
        iterations: s.iterations,
    })
}
