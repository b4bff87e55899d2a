//! Attribution methods, each written once against the [`Backend`] surface.
//!
//! Every local method has one entry shape, [`attribution::Attribute::attribute_batch`]: a batch
//! of images and a target in, an [`attribution::Attribution`] left on the backend out. Its own
//! `attribute` (one image `[1, C, H, W]`, several classes, host results) is that entry followed by
//! one read-back. A method builds its whole batch (classes, noisy copies, interpolation steps,
//! occluded copies) up front: a gradient method costs one `gradients` call (one forward +
//! backward submission on the GPU), its last steps (averages, products, CAM weighting) recorded
//! where the gradients are; a perturbation method (occlusion, LIME, Score-CAM, RISE) costs one
//! `perturb` + forward per mini-batch (one submission: single-kernel ops ride with the next
//! forward); and the results cross to the host once.

pub mod attribution;
pub mod cam;
pub mod deepdream;
pub mod eigencam;
mod formula_cam;
pub mod gradcam;
pub mod guided_gradcam;
pub mod hirescam;
pub mod integrated_gradients;
pub mod lime;
pub mod metrics;
pub mod objective;
pub mod occlusion;
pub mod options;
mod path;
mod perturbation;
pub mod registry;
pub mod rise;
pub mod saliency;
pub mod scorecam;
pub mod smoothgrad;
pub mod tsne;
pub mod xgradcam;

/// Every local attribution method, in the order the report shows them and the bench times them:
/// one line per method, next to its `pub mod` line above, so a new method is its own file plus
/// two lines here ([`registry`] says how to write one).
#[rustfmt::skip]
pub fn registered<B: Backend>() -> Vec<registry::MethodEntry<B>> {
    use gradcam::CamVariant;
    use options::{
        CamOptions, GuidedGradCamOptions, GuidedOptions, IgOptions, LimeOptions, OcclusionOptions,
        SaliencyOptions, ScoreCamOptions, SmoothGradOptions,
    };
    use registry::{entry, gradcam_entry};
    vec![
        entry::<B, CamOptions>("cam", "CAM", "Classic CAM (feature layer → global average pooling → fully connected)."),
        gradcam_entry::<B>("gradcam", "Grad-CAM", "Grad-CAM.", CamVariant::GradCam),
        gradcam_entry::<B>("gradcam++", "Grad-CAM++", "Grad-CAM++.", CamVariant::GradCamPlusPlus),
        gradcam_entry::<B>("layercam", "LayerCAM", "LayerCAM.", CamVariant::LayerCam),
        entry::<B, hirescam::HiResCamOptions>("hirescam", "HiResCAM", "HiResCAM (pytorch-grad-cam HiResCAM): activations times their gradients, summed over channels."),
        entry::<B, xgradcam::XGradCamOptions>("xgradcam", "XGrad-CAM", "XGrad-CAM (pytorch-grad-cam XGradCAM): channels weighted by activation-weighted gradients."),
        entry::<B, eigencam::EigenCamOptions>("eigencam", "EigenCAM", "EigenCAM (pytorch-grad-cam EigenCAM): the feature layer's first principal component."),
        entry::<B, OcclusionOptions>("occlusion", "Occlusion sensitivity", "Occlusion sensitivity (MATLAB occlusionSensitivity, Captum Occlusion), batched on the device."),
        entry::<B, LimeOptions>("lime", "LIME", "LIME (MATLAB imageLIME, Captum Lime): a surrogate fitted to scores of segment-masked copies."),
        entry::<B, rise::RiseOptions>("rise", "RISE", "RISE (Petsiuk et al.): random smooth masks weighted by the class score under each."),
        entry::<B, ScoreCamOptions>("scorecam", "Score-CAM", "Score-CAM (pytorch-grad-cam ScoreCAM): channel weights from scores of map-masked copies."),
        entry::<B, SaliencyOptions>("saliency", "Vanilla gradient", "Vanilla gradient (or gradient × input with --times-input) per pixel."),
        entry::<B, SmoothGradOptions>("smoothgrad", "SmoothGrad", "SmoothGrad, SmoothGrad² or VarGrad over noisy copies."),
        entry::<B, IgOptions>("ig", "Integrated Gradients", "Integrated Gradients."),
        entry::<B, GuidedOptions>("guided", "Guided backprop", "Guided backprop."),
        entry::<B, GuidedGradCamOptions>("guided-gradcam", "Guided Grad-CAM", "Guided backprop times the upsampled Grad-CAM."),
    ]
}

pub mod activations;
pub mod dataset_features;
pub mod extremes;
pub mod finite;

use crate::backend::{Backend, HostTensor, Seed};
use crate::error::{Error, Result};
use crate::model::Model;

/// Which score of a class the attribution explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Score {
    /// The pre-softmax logit (Captum's and pytorch-grad-cam's default).
    #[default]
    Logit,
    /// The softmax probability.
    Probability,
}

impl Score {
    /// Parses a CLI score name: `logit`, or `prob` / `probability`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "logit" => Ok(Score::Logit),
            "prob" | "probability" => Ok(Score::Probability),
            other => Err(Error::bad_input(format!(
                "unknown score '{other}': use logit or prob"
            ))),
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

/// A pixel-space attribution for one class.
#[derive(Clone, Debug)]
pub struct PixelAttribution {
    /// The explained class index.
    pub class: usize,
    /// The explained score (logit or probability) of `class` on the original image.
    pub score: f32,
    /// Signed attribution in model-input space, `[C, H, W]`.
    pub map: HostTensor,
}

impl PixelAttribution {
    /// MATLAB's display form: max over channels of |attribution|, `[H, W]`.
    pub fn display(&self) -> HostTensor {
        channel_abs_max(&self.map)
    }
}

/// `max_c |x[c, h, w]|` of a `[C, H, W]` tensor.
pub fn channel_abs_max(map: &HostTensor) -> HostTensor {
    let (c, hw) = (map.shape[0], map.shape[1..].iter().product::<usize>());
    let data = (0..hw)
        .map(|i| {
            (0..c)
                .map(|ch| map.data[ch * hw + i].abs())
                .fold(0.0, f32::max)
        })
        .collect();
    HostTensor {
        shape: map.shape[1..].to_vec(),
        data,
    }
}

/// Checks that `x` is one image matching the model's input.
pub(crate) fn check_single_image(model: &Model, x: &HostTensor) -> Result<()> {
    let mut want = vec![1];
    want.extend_from_slice(model.input_shape());
    if x.shape != want {
        return Err(Error::bad_input(format!(
            "expected one image of shape {want:?}, got {:?}",
            x.shape
        )));
    }
    Ok(())
}

/// The checks every perturbation method starts with: `x` is one image `[1, C, H, W]` of the
/// model and every class is in range. Returns `(C, H, W)`.
pub(crate) fn check_image_and_classes(
    model: &Model,
    x: &HostTensor,
    classes: &[usize],
    method: &str,
) -> Result<(usize, usize, usize)> {
    check_single_image(model, x)?;
    if x.shape.len() != 4 {
        return Err(Error::bad_input(format!(
            "{method} needs an image input [1, C, H, W], got {:?}",
            x.shape
        )));
    }
    for &class in classes {
        check_class(model, class)?;
    }
    Ok((x.shape[1], x.shape[2], x.shape[3]))
}

/// Samples per forward of a perturbation method (MATLAB's MiniBatchSize): `requested` if given
/// (it must be positive), else as many images of `image_len` floats as fit the backend's
/// [`Backend::auto_chunk_bytes`], at most `max`.
pub(crate) fn mini_batch<B: Backend>(
    b: &B,
    requested: Option<usize>,
    image_len: usize,
    max: usize,
    method: &str,
) -> Result<usize> {
    match requested {
        Some(0) => Err(Error::bad_input(format!(
            "{method} mini-batch must be positive"
        ))),
        Some(n) => Ok(n),
        None => Ok((b.auto_chunk_bytes() / (image_len * 4).max(1)).clamp(1, max)),
    }
}

pub(crate) fn check_class(model: &Model, class: usize) -> Result<()> {
    let k = model.num_classes();
    if class >= k {
        return Err(Error::bad_input(format!(
            "class {class} is out of range: the model has {k} classes (0..{})",
            k - 1
        )));
    }
    Ok(())
}

/// The seed for `score` of `targets[i]` in sample `i`.
pub(crate) fn score_seed<B: Backend>(
    b: &B,
    model: &Model,
    score: Score,
    targets: &[usize],
) -> Result<Seed<B::Tensor>> {
    for &t in targets {
        check_class(model, t)?;
    }
    let at = model.graph.output;
    match score {
        Score::Probability => Ok(Seed::SoftmaxProb {
            at,
            targets: targets.to_vec(),
        }),
        Score::Logit => {
            let k = model.num_classes();
            let mut grad = HostTensor::zeros(vec![targets.len(), k]);
            for (i, &t) in targets.iter().enumerate() {
                grad.data[i * k + t] = 1.0;
            }
            Ok(Seed::Grad {
                at,
                grad: b.upload(&grad)?,
            })
        }
    }
}

/// The explained score of each sample's target, from read-back logits.
pub(crate) fn scores(logits: &HostTensor, score: Score, targets: &[usize]) -> Vec<f32> {
    let k = logits.sample_len();
    targets
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let row = &logits.data[i * k..(i + 1) * k];
            match score {
                Score::Logit => row[t],
                Score::Probability => {
                    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let z: f32 = row.iter().map(|v| (v - m).exp()).sum();
                    (row[t] - m).exp() / z
                }
            }
        })
        .collect()
}

/// Reads two tensors in one read-back.
pub(crate) fn read2<B: Backend>(
    b: &B,
    first: &B::Tensor,
    second: &B::Tensor,
) -> Result<[HostTensor; 2]> {
    let mut v = b.read_many(&[first, second])?;
    match (v.pop(), v.pop()) {
        (Some(s), Some(f)) => Ok([f, s]),
        _ => Err(Error::internal(
            "read-back returned fewer tensors than asked",
        )),
    }
}

/// Each target `per` times: the targets of a grouped batch.
pub(crate) fn repeat_each(targets: &[usize], per: usize) -> Vec<usize> {
    targets
        .iter()
        .flat_map(|&t| std::iter::repeat_n(t, per))
        .collect()
}

/// Row `row` of each group of `per` rows of `[groups · per, K]` logits, `[groups, K]`, picked
/// where they are by a one-hot weighted sum (exact: the other rows count as 0 · finite).
pub(crate) fn pick_rows<B: Backend>(
    b: &B,
    logits: &B::Tensor,
    groups: usize,
    per: usize,
    row: usize,
) -> Result<B::Tensor> {
    let k = b.shape(logits).get(1).copied().unwrap_or(0);
    let mut one_hot = vec![0.0; per];
    one_hot[row] = 1.0;
    b.weighted_sum(logits, &one_hot.repeat(groups), &[groups, k])
}

/// `n` copies of one image, stacked into a batch.
pub(crate) fn repeat(x: &HostTensor, n: usize) -> HostTensor {
    let mut shape = x.shape.clone();
    shape[0] = n;
    HostTensor {
        shape,
        data: x.data.repeat(n),
    }
}

/// Splits a `[N, ...]` tensor into its samples, each with the batch axis dropped.
pub(crate) fn samples(t: &HostTensor) -> Vec<HostTensor> {
    let shape = t.shape[1..].to_vec();
    (0..t.batch())
        .map(|i| HostTensor {
            shape: shape.clone(),
            data: t.sample(i).to_vec(),
        })
        .collect()
}

/// Bilinear resize of a `[h, w]` map to `[out_h, out_w]` with half-pixel centres (OpenCV's
/// INTER_LINEAR and PyTorch's `align_corners=False`).
pub fn upsample_bilinear(map: &HostTensor, out_h: usize, out_w: usize) -> HostTensor {
    let (h, w) = (map.shape[0], map.shape[1]);
    let src = |o: usize, out: usize, inp: usize| -> (usize, usize, f32) {
        let x = ((o as f32 + 0.5) * inp as f32 / out as f32 - 0.5).max(0.0);
        let i0 = (x.floor() as usize).min(inp - 1);
        let i1 = (i0 + 1).min(inp - 1);
        (i0, i1, x - i0 as f32)
    };
    let mut data = Vec::with_capacity(out_h * out_w);
    for oy in 0..out_h {
        let (y0, y1, fy) = src(oy, out_h, h);
        for ox in 0..out_w {
            let (x0, x1, fx) = src(ox, out_w, w);
            let top = map.data[y0 * w + x0] * (1.0 - fx) + map.data[y0 * w + x1] * fx;
            let bottom = map.data[y1 * w + x0] * (1.0 - fx) + map.data[y1 * w + x1] * fx;
            data.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    HostTensor {
        shape: vec![out_h, out_w],
        data,
    }
}

/// Min-max normalisation to [0, 1] (pytorch-grad-cam's `scale_cam_image`).
pub fn normalize_min_max(map: &HostTensor) -> HostTensor {
    let min = map.data.iter().copied().fold(f32::INFINITY, f32::min);
    let shifted: Vec<f32> = map.data.iter().map(|v| v - min).collect();
    let max = shifted.iter().copied().fold(0.0, f32::max);
    HostTensor {
        shape: map.shape.clone(),
        data: shifted.iter().map(|v| v / (1e-7 + max)).collect(),
    }
}

/// Stacks `[n_i, K]` tensors into one `[Σ n_i, K]`.
pub(crate) fn concat_rows(parts: Vec<HostTensor>) -> Result<HostTensor> {
    let k = parts.first().map_or(0, |p| p.sample_len());
    if parts.iter().any(|p| p.sample_len() != k) {
        return Err(Error::internal(
            "occlusion chunks returned different output sizes",
        ));
    }
    let n = parts.iter().map(|p| p.batch()).sum();
    let data = parts.into_iter().flat_map(|p| p.data).collect();
    HostTensor::new(vec![n, k], data)
}
