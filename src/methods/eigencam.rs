//! EigenCAM (Muhammad & Yeasin 2020; pytorch-grad-cam `EigenCAM`): the feature layer's
//! activations projected on their first principal component. Class-agnostic and gradient-free:
//! one forward. As pytorch-grad-cam's `get_2d_projection`: the `[h·w, K]` matrix of locations ×
//! channels is centred over the locations, and each location's row is projected on the first
//! right singular vector (`A·v₁ = σ₁·u₁`), computed here in f64 from the smaller Gram matrix
//! with Jacobi rotations. The sign of a singular vector is arbitrary (pgc inherits LAPACK's); the
//! map is oriented so that its largest magnitude is positive, pgc's own sign correction
//! (`get_2d_projection_with_sign_correction`, Seg-Eigen-CAM Eq. 13).

use super::attribution::{Attribute, Attribution, MapKind, Named, Target};
use super::gradcam::{cam_maps, feature_layer, CamMap};
use super::options::{CamLayerArgs, Context, MethodOptions};
use super::Score;
use crate::backend::{Backend, HostTensor};
use crate::error::{Error, Result};
use crate::model::Model;

/// EigenCAM options.
#[derive(Clone, Debug, PartialEq)]
pub struct EigenCam {
    /// The feature layer; `None` picks the input of the last global average pooling.
    pub layer: Option<String>,
    /// Apply ReLU to the map (pytorch-grad-cam does).
    pub relu: bool,
}

impl Default for EigenCam {
    fn default() -> Self {
        EigenCam {
            layer: None,
            relu: true,
        }
    }
}

impl EigenCam {
    /// The map of the single image `x` `[1, C, H, W]`, once per class in `classes` (the map does
    /// not depend on the class; the score does).
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
    ) -> Result<Vec<CamMap>> {
        cam_maps(self, b, model, x, classes)
    }
}

/// The projection runs on the host: the activations are read back (one read-back inside
/// `attribute_batch`), and the maps are uploaded and upsampled on the backend.
impl Named for EigenCam {
    fn name(&self) -> &'static str {
        "eigencam"
    }
}

impl<B: Backend> Attribute<B> for EigenCam {
    fn attribute_batch(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
    ) -> Result<Attribution<B::Tensor>> {
        let targets = target.classes(b, model, inputs)?;
        let layer = feature_layer(model, self.layer.as_deref())?;
        let f = b.forward(model, &b.upload(inputs)?, &[layer])?;
        let acts = f
            .tap(layer)
            .ok_or_else(|| Error::internal("backend returned no feature-layer tensor"))?;
        let acts = b.read(acts)?;
        let [n, k, h, w] = acts.shape[..] else {
            return Err(Error::internal("a feature layer that is not [N, K, h, w]"));
        };
        let mut data = Vec::with_capacity(n * h * w);
        for i in 0..n {
            let map = principal_projection(acts.sample(i), k, h * w);
            data.extend(map.iter().map(|&v| if self.relu { v.max(0.0) } else { v }));
        }
        let lowres = b.upload(&HostTensor::new(vec![n, 1, h, w], data)?)?;
        let (in_h, in_w) = (inputs.shape[2], inputs.shape[3]);
        Ok(Attribution {
            method: self.name(),
            kind: MapKind::PerPixel,
            maps: b.resize_bilinear(&lowres, in_h, in_w)?,
            lowres: Some(lowres),
            layer: Some(model.graph.values[layer].name.clone()),
            logits: f.output,
            targets,
            score: Score::Logit,
            baseline_logits: None,
            extras: Vec::new(),
        })
    }
}

/// One sample's projection: `acts` is `[K, hw]`; returns `[hw]`, `A_c · v₁` where `A_c` is the
/// `[hw, K]` matrix centred over its rows and `v₁` its first right singular vector, oriented so
/// that the largest magnitude is positive.
pub fn principal_projection(acts: &[f32], k: usize, hw: usize) -> Vec<f32> {
    if k == 0 || hw == 0 {
        return vec![0.0; hw];
    }
    // Row-major [hw, K], centred per channel.
    let mut a = vec![0f64; hw * k];
    for c in 0..k {
        let ch = &acts[c * hw..(c + 1) * hw];
        let mean = ch.iter().map(|&v| f64::from(v)).sum::<f64>() / hw as f64;
        for (p, &v) in ch.iter().enumerate() {
            a[p * k + c] = f64::from(v) - mean;
        }
    }
    // A·v₁ = σ₁·u₁: from the eigenvector of whichever Gram matrix is smaller.
    let projection: Vec<f64> = if hw <= k {
        let gram = gram(&a, hw, k, true);
        let (lambda, u) = top_eigenvector(gram, hw);
        u.iter().map(|&x| x * lambda.max(0.0).sqrt()).collect()
    } else {
        let gram = gram(&a, hw, k, false);
        let (_, v) = top_eigenvector(gram, k);
        (0..hw)
            .map(|p| (0..k).map(|c| a[p * k + c] * v[c]).sum())
            .collect()
    };
    let (lo, hi) = projection
        .iter()
        .fold((0f64, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let sign = if -lo > hi { -1.0 } else { 1.0 };
    projection.iter().map(|&x| (sign * x) as f32).collect()
}

/// `A·Aᵀ` (`rows` × `rows`) if `outer`, else `Aᵀ·A` (`cols` × `cols`), for row-major `A`.
fn gram(a: &[f64], rows: usize, cols: usize, outer: bool) -> Vec<f64> {
    let n = if outer { rows } else { cols };
    let mut g = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let v: f64 = if outer {
                (0..cols).map(|c| a[i * cols + c] * a[j * cols + c]).sum()
            } else {
                (0..rows).map(|r| a[r * cols + i] * a[r * cols + j]).sum()
            };
            g[i * n + j] = v;
            g[j * n + i] = v;
        }
    }
    g
}

/// The largest eigenvalue of the symmetric `n × n` matrix `a` and its unit eigenvector, by
/// cyclic Jacobi rotations (to f64 precision; the matrices here are a few hundred wide at most).
fn top_eigenvector(mut a: Vec<f64>, n: usize) -> (f64, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _ in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|p| (p + 1..n).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q] * a[p * n + q])
            .sum();
        if off <= scale * 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..n {
                    let (x, y) = (a[r * n + p], a[r * n + q]);
                    a[r * n + p] = c * x - s * y;
                    a[r * n + q] = s * x + c * y;
                }
                for r in 0..n {
                    let (x, y) = (a[p * n + r], a[q * n + r]);
                    a[p * n + r] = c * x - s * y;
                    a[q * n + r] = s * x + c * y;
                }
                for r in 0..n {
                    let (x, y) = (v[r * n + p], v[r * n + q]);
                    v[r * n + p] = c * x - s * y;
                    v[r * n + q] = s * x + c * y;
                }
            }
        }
    }
    let top = (0..n)
        .max_by(|&i, &j| a[i * n + i].total_cmp(&a[j * n + j]))
        .unwrap_or(0);
    (a[top * n + top], (0..n).map(|r| v[r * n + top]).collect())
}

/// `eigencam`'s own options: the layer and the ReLU, as the Grad-CAM family's.
#[derive(clap::Args, Clone, Debug)]
pub struct EigenCamOptions {
    #[command(flatten)]
    cam: CamLayerArgs,
}

impl MethodOptions for EigenCamOptions {
    fn build<B: Backend>(&self, _: &Context) -> Result<Box<dyn Attribute<B>>> {
        let (layer, relu) = (self.cam.layer.clone(), !self.cam.no_relu);
        Ok(Box::new(EigenCam { layer, relu }))
    }
    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({"relu": !self.cam.no_relu})
    }
    fn summary(&self) -> String {
        "CAM layer".into()
    }
}
