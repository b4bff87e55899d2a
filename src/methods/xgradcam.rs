//! XGrad-CAM (Fu et al. 2020; pytorch-grad-cam `XGradCAM`): each channel weighted by its
//! gradient averaged with the channel's own activations as weights,
//! `w_k = Σ_hw (g_k ∘ A_k) / (Σ_hw A_k + 1e-7)`, the weighting the paper derives from its
//! sensitivity and conservation axioms.

use super::attribution::{Attribute, Attribution, Named, Target};
use super::gradcam::{cam_maps, gradient_cam, scalar, CamMap, CamSettings, CamWeights};
use super::options::{CamLayerArgs, Context, MethodOptions};
use super::Score;
use crate::backend::{Backend, HostTensor};
use crate::error::Result;
use crate::model::{BinaryKind, Model, ReduceKind};

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

impl Default for XGradCam {
    fn default() -> Self {
        XGradCam {
            layer: None,
            score: Score::Logit,
            relu: true,
        }
    }
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

impl XGradCam {
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
impl Named for XGradCam {
    fn name(&self) -> &'static str {
        "xgradcam"
    }
}

impl<B: Backend> Attribute<B> for XGradCam {
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

/// `xgradcam`'s own options: the layer and the ReLU, as the Grad-CAM family's.
#[derive(clap::Args, Clone, Debug)]
pub struct XGradCamOptions {
    #[command(flatten)]
    cam: CamLayerArgs,
}

impl MethodOptions for XGradCamOptions {
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        let (layer, relu) = (self.cam.layer.clone(), !self.cam.no_relu);
        Ok(Box::new(XGradCam {
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
