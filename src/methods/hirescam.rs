//! HiResCAM (Draelos & Carin 2020; pytorch-grad-cam `HiResCAM`): the feature layer's
//! activations times their gradients, element by element, summed over the channels. Unlike
//! Grad-CAM's spatially averaged gradients, each location keeps its own gradient, so for a model
//! ending in global pooling + linear layer the map sums exactly to the score's share of the layer.

use super::attribution::{Attribute, Attribution, Named, Target};
use super::gradcam::{cam_maps, gradient_cam, CamMap, CamSettings, CamWeights};
use super::options::{CamLayerArgs, Context, MethodOptions};
use super::Score;
use crate::backend::{Backend, HostTensor};
use crate::error::Result;
use crate::model::Model;

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

impl Default for HiResCam {
    fn default() -> Self {
        HiResCam {
            layer: None,
            score: Score::Logit,
            relu: true,
        }
    }
}

/// The weights are the gradients themselves: `Σ_k g_k ∘ A_k`.
impl CamWeights for HiResCam {
    fn weights<B: Backend>(&self, _: &B, _: &B::Tensor, grads: &B::Tensor) -> Result<B::Tensor> {
        Ok(grads.clone())
    }
}

impl HiResCam {
    /// One map per class in `classes` for the single image `x` `[1, C, H, W]`.
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

/// The maps are computed on the backend: nothing is read back before [`Attribution::read`].
impl Named for HiResCam {
    fn name(&self) -> &'static str {
        "hirescam"
    }
}

impl<B: Backend> Attribute<B> for HiResCam {
    fn attribute_batch(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
    ) -> Result<Attribution<B::Tensor>> {
        let targets = target.classes(b, model, inputs)?;
        let cam = CamSettings {
            name: self.name(),
            layer: self.layer.as_deref(),
            score: self.score,
            relu: self.relu,
        };
        gradient_cam(self, &cam, b, model, inputs, &targets)
    }
}

/// `hirescam`'s own options: the layer and the ReLU, as the Grad-CAM family's.
#[derive(clap::Args, Clone, Debug)]
pub struct HiResCamOptions {
    #[command(flatten)]
    cam: CamLayerArgs,
}

impl MethodOptions for HiResCamOptions {
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        let (layer, relu) = (self.cam.layer.clone(), !self.cam.no_relu);
        Ok(Box::new(HiResCam {
            layer,
            score: ctx.score,
            relu,
        }))
    }
    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({"relu": !self.cam.no_relu})
    }
    fn summary(&self) -> String {
        "CAM layer".into()
    }
}
