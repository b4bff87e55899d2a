//! XGrad-CAM (Fu et al. 2020; pytorch-grad-cam `XGradCAM`): each channel weighted by its
//! gradient averaged with the channel's own activations as weights,
//! `w_k = Σ_hw (g_k ∘ A_k) / (Σ_hw A_k + 1e-7)`, the weighting the paper derives from its
//! sensitivity and conservation axioms.

use super::formula_cam::formula_cam;
use super::gradcam::{scalar, CamWeights};
use super::Score;
use crate::backend::Backend;
use crate::error::Result;
use crate::model::{BinaryKind, ReduceKind};

/// XGrad-CAM options.
#[derive(Clone, Debug, PartialEq)]
pub struct XGradCam {
    /// The feature layer; `None` picks the input of the last global average pooling.
    pub layer: Option<String>,
    /// Which score the gradient is taken of (default the logit).
    pub score: Score,
    /// Apply ReLU to the map (pytorch-grad-cam does).
    pub relu: bool,
}

/// pytorch-grad-cam's order: each product divided by the channel's sum, then summed over h, w.
impl CamWeights for XGradCam {
    fn weights<B: Backend>(&self, b: &B, acts: &B::Tensor, grads: &B::Tensor) -> Result<B::Tensor> {
        let sum_a = b.reduce(acts, ReduceKind::Sum, &[2, 3])?;
        let sum_a = b.elementwise(&sum_a, &scalar(b, 1e-7)?, BinaryKind::Add)?;
        let ga = b.elementwise(grads, acts, BinaryKind::Mul)?;
        let w = b.elementwise(&ga, &sum_a, BinaryKind::Div)?;
        b.reduce(&w, ReduceKind::Sum, &[2, 3])
    }
}

formula_cam!(XGradCam, "xgradcam", XGradCamOptions);
