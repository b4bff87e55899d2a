//! The Grad-CAM family, each variant a weights formula over one shared base (as in
//! pytorch-grad-cam, where a variant overrides `get_cam_weights`): one `gradients` call taps the
//! feature layer and its gradient for every requested class, and the variant's [`CamWeights`]
//! turns them into weights with the backend's generic ops (reduce, element-wise, activation), so
//! each formula is written once and runs where the gradients are. HiResCAM and XGrad-CAM
//! (their own files) are a [`CamWeights`] each over [`gradient_cam`].

use super::attribution::{Attribute, Attribution, MapKind, Named, Target};
use super::saliency::Saliency;
use super::{check_single_image, normalize_min_max, repeat, score_seed, Score};
use crate::backend::{Backend, GradRule, HostTensor};
use crate::error::{Error, Result};
use crate::model::{BinaryKind, Model, ReduceKind, Unary, ValueId};

/// A CAM variant's weights formula (pytorch-grad-cam's `get_cam_weights`), composed of generic
/// backend ops so that it is defined once for every backend.
pub trait CamWeights {
    /// From the feature layer's activations and the gradient of the score w.r.t. them (both
    /// `[N, K, h, w]`), the weights the activations are multiplied by before the channels are
    /// summed: per channel `[N, K, 1, 1]`, or per element `[N, K, h, w]`.
    fn weights<B: Backend>(&self, b: &B, acts: &B::Tensor, grads: &B::Tensor) -> Result<B::Tensor>;
}

/// The map `Σ_k weights_k ∘ acts_k` over the channels, `[N, 1, h, w]`, then ReLU if `relu`.
pub fn weighted_map<B: Backend>(
    b: &B,
    acts: &B::Tensor,
    weights: &B::Tensor,
    relu: bool,
) -> Result<B::Tensor> {
    let weighted = b.elementwise(acts, weights, BinaryKind::Mul)?;
    let map = b.reduce(&weighted, ReduceKind::Sum, &[1])?;
    if relu {
        b.unary(&map, Unary::Relu)
    } else {
        Ok(map)
    }
}

/// A `[1, 1, 1, 1]` constant, broadcast by [`Backend::elementwise`] over any rank-4 operand.
pub fn scalar<B: Backend>(b: &B, v: f32) -> Result<B::Tensor> {
    b.upload(&HostTensor::new(vec![1, 1, 1, 1], vec![v])?)
}

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
}

impl CamWeights for CamVariant {
    fn weights<B: Backend>(&self, b: &B, acts: &B::Tensor, grads: &B::Tensor) -> Result<B::Tensor> {
        use BinaryKind::{Add, Div, Mul};
        match self {
            // The spatial mean of each channel's gradient.
            CamVariant::GradCam => b.reduce(grads, ReduceKind::Mean, &[2, 3]),
            // pytorch-grad-cam's closed form: α = g² / (2g² + Σ_hw(A)·g³ + 1e-6), weights
            // Σ_hw ReLU(g)·α (α is 0 where g is, as pgc's `where(grads != 0, α, 0)`).
            CamVariant::GradCamPlusPlus => {
                let g2 = b.elementwise(grads, grads, Mul)?;
                let g3 = b.elementwise(&g2, grads, Mul)?;
                let sum_a = b.reduce(acts, ReduceKind::Sum, &[2, 3])?;
                let denom = b.elementwise(
                    &b.elementwise(&g2, &g2, Add)?,
                    &b.elementwise(&g3, &sum_a, Mul)?,
                    Add,
                )?;
                let denom = b.elementwise(&denom, &scalar(b, 1e-6)?, Add)?;
                let alpha = b.elementwise(&g2, &denom, Div)?;
                let w = b.elementwise(&b.unary(grads, Unary::Relu)?, &alpha, Mul)?;
                b.reduce(&w, ReduceKind::Sum, &[2, 3])
            }
            // Each location's positive gradient.
            CamVariant::LayerCam => b.unary(grads, Unary::Relu),
        }
    }
}

// Defined in methods/mod.rs, beside the other shared result types, so that attribution.rs
// needs no import from this file (which imports attribution.rs).
pub use super::CamMap;

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

    fn explain<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        targets: &[usize],
    ) -> Result<Attribution<B::Tensor>> {
        let cam = CamSettings {
            name: self.name(),
            layer: self.layer.as_deref(),
            score: self.score,
            relu: self.relu,
        };
        gradient_cam(&self.variant, &cam, b, model, inputs, targets)
    }
}

/// What [`gradient_cam`] needs besides the formula.
#[derive(Clone, Copy, Debug)]
pub struct CamSettings<'a> {
    /// The method's name, for the attribution.
    pub name: &'static str,
    /// The feature layer; `None` picks the CAM layer.
    pub layer: Option<&'a str>,
    /// Which score the gradient is taken of.
    pub score: Score,
    /// Apply ReLU to the map.
    pub relu: bool,
}

/// The base of every gradient CAM: one `gradients` call that taps the layer and its gradient,
/// `formula`'s weights, the weighted map ([`weighted_map`]) and its upsampling, all computed
/// where the activations live. Sample `i` of `inputs` is explained for `targets[i]`.
pub fn gradient_cam<B: Backend, W: CamWeights>(
    formula: &W,
    cam: &CamSettings,
    b: &B,
    model: &Model,
    inputs: &HostTensor,
    targets: &[usize],
) -> Result<Attribution<B::Tensor>> {
    let layer = feature_layer(model, cam.layer)?;
    let batch = b.upload(inputs)?;
    let seed = score_seed(b, model, cam.score, targets)?;
    let g = b.gradients(model, &batch, &seed, GradRule::Standard, &[layer], &[layer])?;
    let missing = || Error::internal("backend returned no feature-layer tensors");
    let acts = g.tap(layer).ok_or_else(missing)?;
    let grads = g.layer_grad(layer).ok_or_else(missing)?;
    let weights = formula.weights(b, acts, grads)?;
    let lowres = weighted_map(b, acts, &weights, cam.relu)?;
    let (in_h, in_w) = (inputs.shape[2], inputs.shape[3]);
    Ok(Attribution {
        method: cam.name,
        kind: MapKind::PerPixel,
        maps: b.resize_bilinear(&lowres, in_h, in_w)?,
        lowres: Some(lowres),
        layer: Some(model.graph.values[layer].name.clone()),
        logits: g.output,
        targets: targets.to_vec(),
        score: cam.score,
        baseline_logits: None,
        extras: Vec::new(),
    })
}

/// One image's maps for several classes through `method`'s [`Attribute::attribute_batch`] (the
/// image repeated once per class) and one read-back: the `attribute` of the CAM methods.
pub fn cam_maps<B: Backend, A: Attribute<B>>(
    method: &A,
    b: &B,
    model: &Model,
    x: &HostTensor,
    classes: &[usize],
) -> Result<Vec<CamMap>> {
    check_single_image(model, x)?;
    if classes.is_empty() {
        return Ok(Vec::new());
    }
    let target = Target::PerSample(classes.to_vec());
    let a = method.attribute_batch(b, model, &repeat(x, classes.len()), &target)?;
    a.read(b)?.cam_maps()
}

/// The maps are computed on the backend: nothing is read back before [`Attribution::read`].
impl Named for GradCam {
    fn name(&self) -> &'static str {
        self.variant.name()
    }
}

impl<B: Backend> Attribute<B> for GradCam {
    fn attribute_batch(
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
