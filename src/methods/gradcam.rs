//! The Grad-CAM family, each variant a few lines over one shared base (as in pytorch-grad-cam):
//! one `gradients` call taps the feature layer and its gradient for every requested class.

use super::attribution::{Attribute, Attribution, MapKind, Target};
use super::saliency::Saliency;
use super::{check_single_image, normalize_min_max, repeat, score_seed, Score};
use crate::backend::{Backend, CamWeighting, GradRule, HostTensor};
use crate::error::{Error, Result};
use crate::model::{Model, ValueId};

/// Which Grad-CAM weighting of the feature layer's channels to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CamVariant {
    /// Selvaraju et al.: channel weights are the spatial mean of the gradient.
    #[default]
    GradCam,
    /// Chattopadhyay et al., with pytorch-grad-cam's closed form for the alphas.
    GradCamPlusPlus,
    /// Jiang et al.: positive gradients weight each location.
    LayerCam,
}

impl CamVariant {
    /// The variant's short name as the CLI spells it (`gradcam`, `gradcam++`, `layercam`).
    pub fn name(self) -> &'static str {
        match self {
            CamVariant::GradCam => "gradcam",
            CamVariant::GradCamPlusPlus => "gradcam++",
            CamVariant::LayerCam => "layercam",
        }
    }

    /// How the variant weighs the feature layer's channels.
    pub fn weighting(self) -> CamWeighting {
        match self {
            CamVariant::GradCam => CamWeighting::GradMean,
            CamVariant::GradCamPlusPlus => CamWeighting::GradPlusPlus,
            CamVariant::LayerCam => CamWeighting::PositiveGrad,
        }
    }
}

/// A class activation map.
#[derive(Clone, Debug)]
pub struct CamMap {
    /// The explained class index.
    pub class: usize,
    /// The explained score (logit or probability) of `class` on the original image.
    pub score: f32,
    /// The layer the map was computed on (ONNX tensor name).
    pub layer: String,
    /// `[h, w]` at the layer's resolution.
    pub lowres: HostTensor,
    /// `[H, W]`, bilinearly upsampled to the input.
    pub upsampled: HostTensor,
}

/// Grad-CAM options (pytorch-grad-cam's `GradCAM`, `GradCAMPlusPlus`, `LayerCAM`; MATLAB
/// `gradCAM`).
#[derive(Clone, Debug)]
pub struct GradCam {
    /// Which channel weighting (default [`CamVariant::GradCam`]).
    pub variant: CamVariant,
    /// The feature layer; `None` picks the input of the last global average pooling.
    pub layer: Option<String>,
    /// Which score the gradient is taken of (default the logit).
    pub score: Score,
    /// Apply ReLU to the map (the papers do).
    pub relu: bool,
}

impl Default for GradCam {
    fn default() -> Self {
        GradCam {
            variant: CamVariant::GradCam,
            layer: None,
            score: Score::Logit,
            relu: true,
        }
    }
}

/// The spatial feature layer a CAM method works on: the named one, or the CAM layer.
pub fn feature_layer(model: &Model, name: Option<&str>) -> Result<ValueId> {
    let v = match name {
        Some(n) => model.layer(n)?,
        None => model.graph.cam_layer().ok_or_else(|| {
            Error::bad_input(format!(
                "model '{}' has no global average pooling, so no default feature layer; name one with --layer",
                model.name
            ))
        })?,
    };
    let shape = &model.graph.values[v].shape;
    if shape.len() != 3 {
        return Err(Error::bad_input(format!(
            "layer '{}' has shape [N, {shape:?}]; CAM methods need a spatial [N, C, h, w] layer",
            model.graph.values[v].name
        )));
    }
    Ok(v)
}

impl GradCam {
    /// One map per class in `classes` for the single image `x` `[1, C, H, W]`: the image repeated
    /// once per class through [`Attribute::attribute_batch`], one `gradients` call and one
    /// read-back.
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
    ) -> Result<Vec<CamMap>> {
        check_single_image(model, x)?;
        let a = self.explain(b, model, &repeat(x, classes.len()), classes)?;
        a.read(b)?.cam_maps()
    }

    /// One `gradients` call that taps the layer and its gradient; the map and its upsampling
    /// are computed where the activations live.
    fn explain<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        targets: &[usize],
    ) -> Result<Attribution<B::Tensor>> {
        let layer = feature_layer(model, self.layer.as_deref())?;
        let batch = b.upload(inputs)?;
        let seed = score_seed(b, model, self.score, targets)?;
        let g = b.gradients(model, &batch, &seed, GradRule::Standard, &[layer], &[layer])?;
        let missing = || Error::internal("backend returned no feature-layer tensors");
        let acts = g.tap(layer).ok_or_else(missing)?;
        let grads = g.layer_grad(layer).ok_or_else(missing)?;
        let lowres = b.cam_combine(acts, grads, self.variant.weighting(), self.relu)?;
        let (in_h, in_w) = (inputs.shape[2], inputs.shape[3]);
        Ok(Attribution {
            method: self.name(),
            kind: MapKind::PerPixel,
            maps: b.resize_bilinear(&lowres, in_h, in_w)?,
            lowres: Some(lowres),
            layer: Some(model.graph.values[layer].name.clone()),
            logits: g.output,
            targets: targets.to_vec(),
            score: self.score,
        })
    }
}

/// The maps are computed on the backend: nothing is read back before [`Attribution::read`].
impl Attribute for GradCam {
    fn name(&self) -> &'static str {
        self.variant.name()
    }

    fn attribute_batch<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
    ) -> Result<Attribution<B::Tensor>> {
        let targets = target.classes(b, model, inputs)?;
        self.explain(b, model, inputs, &targets)
    }
}

/// A class activation map left on the backend: what [`GradCam::attribute_device`] returns.
#[derive(Clone, Debug)]
pub struct DeviceCam<T> {
    /// `[1, 1, h, w]` at the feature layer's resolution, ReLU'd if asked; not upsampled, not
    /// normalised (the GPU backend's `map_texture` does both on the device).
    pub map: T,
    /// The model's output `[1, classes]` for the image, for the score without a second pass.
    pub output: T,
    /// The feature layer (ONNX tensor name).
    pub layer: String,
}

impl GradCam {
    /// The map of one class without reading anything back: [`Attribute::attribute_batch`] for
    /// one image, as the low-resolution map and the logits. On the GPU nothing here waits for the
    /// device, so a frame loop can call it (see `netlens::gpu::embed`).
    pub fn attribute_device<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        class: usize,
    ) -> Result<DeviceCam<B::Tensor>> {
        check_single_image(model, x)?;
        let a = self.attribute_batch(b, model, x, &Target::Class(class))?;
        Ok(DeviceCam {
            map: a
                .lowres
                .ok_or_else(|| Error::internal("Grad-CAM without its low-res map"))?,
            output: a.logits,
            layer: a.layer.unwrap_or_default(),
        })
    }
}

/// Guided Grad-CAM: guided backprop `[C, H, W]` times the min-max normalised, upsampled Grad-CAM.
pub fn guided_gradcam<B: Backend>(
    b: &B,
    model: &Model,
    x: &HostTensor,
    classes: &[usize],
    cam: &GradCam,
) -> Result<Vec<(CamMap, HostTensor)>> {
    let guided = Saliency {
        score: cam.score,
        times_input: false,
        rule: GradRule::Guided,
    }
    .attribute(b, model, x, classes)?;
    let maps = cam.attribute(b, model, x, classes)?;
    Ok(maps
        .into_iter()
        .zip(guided)
        .map(|(m, gb)| {
            let mask = normalize_min_max(&m.upsampled);
            let hw = mask.data.len();
            let data = gb
                .map
                .data
                .iter()
                .enumerate()
                .map(|(i, v)| v * mask.data[i % hw])
                .collect();
            (
                m,
                HostTensor {
                    shape: gb.map.shape.clone(),
                    data,
                },
            )
        })
        .collect())
}
