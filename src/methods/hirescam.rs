//! HiResCAM (Draelos & Carin 2020; pytorch-grad-cam `HiResCAM`): the feature layer's
//! activations times their gradients, element by element, summed over the channels. Unlike
//! Grad-CAM's spatially averaged gradients, each location keeps its own gradient, so for a model
//! ending in global pooling + linear layer the map sums exactly to the score's share of the layer.

use super::formula_cam::formula_cam;
use super::gradcam::CamWeights;
use super::Score;
use crate::backend::Backend;
use crate::error::Result;

/// HiResCAM options.
#[derive(Clone, Debug, PartialEq)]
pub struct HiResCam {
    /// The feature layer; `None` picks the input of the last global average pooling.
    pub layer: Option<String>,
    /// Which score the gradient is taken of (default the logit).
    pub score: Score,
    /// Apply ReLU to the map (pytorch-grad-cam does).
    pub relu: bool,
}

/// The weights are the gradients themselves: `Σ_k g_k ∘ A_k`.
impl CamWeights for HiResCam {
    fn weights<B: Backend>(&self, _: &B, _: &B::Tensor, grads: &B::Tensor) -> Result<B::Tensor> {
        Ok(grads.clone())
    }
}

formula_cam!(HiResCam, "hirescam", HiResCamOptions);
