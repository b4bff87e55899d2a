//! Average Drop and Increase in Confidence (Chattopadhay et al. 2018, "Grad-CAM++"), as
//! pytorch-grad-cam's `DropInConfidence` and `IncreaseInConfidence`
//! (`metrics/cam_mult_image.py`): the image is multiplied by the map normalised to `[0, 1]`,
//! and the class score on it (`after`) is compared with the score on the image (`before`):
//! drop = `max(0, before - after)`, increase = 1 if `after > before` else 0. Like
//! pytorch-grad-cam, and unlike the paper's percentage, the drop is not divided by `before`;
//! averaged over images they are the paper's Average Drop (up to that scale) and Increase in
//! Confidence.
//!
//! The map is reduced to one value per pixel ([`relevance`]) and min-max normalised on the
//! device, `(r - min) / (max - min + 1e-8)` ([`MaskSource::Maps`] at the image's own size, whose
//! upsampling is then the identity); pytorch-grad-cam's CAMs come already scaled to `[0, 1]` by
//! `scale_cam_image` (`1e-7`), which this renormalises to within 1e-7. Cost: two forward
//! submissions (the image, the masked image) and one read-back.

use super::super::perturbation::Perturbations;
use super::super::{check_class, check_single_image, scores, Score};
use super::relevance;
use crate::backend::{top_k, Backend, Fill, HostTensor, MaskSource};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::progress::Silent;

/// The confidence change of one map.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfidenceChange {
    /// The class whose score was compared.
    pub class: usize,
    /// Its score on the image.
    pub before: f32,
    /// Its score on the image times the normalised map.
    pub after: f32,
    /// `max(0, before - after)`: pytorch-grad-cam's `DropInConfidence`.
    pub drop: f32,
    /// 1 if `after > before`, else 0: pytorch-grad-cam's `IncreaseInConfidence`.
    pub increase: f32,
}

/// The confidence change of `map` on `x` (`[1, C, H, W]`) for `class`, or when `None` the top
/// predicted class of `x`, on `score` (pytorch-grad-cam's metrics take whatever target the
/// caller gives: `ClassifierOutputSoftmaxTarget` is the probability, `ClassifierOutputTarget`
/// the logit).
pub fn confidence_change<B: Backend>(
    b: &B,
    model: &Model,
    x: &HostTensor,
    map: &HostTensor,
    class: Option<usize>,
    score: Score,
) -> Result<ConfidenceChange> {
    check_single_image(model, x)?;
    if x.shape.len() != 4 {
        return Err(Error::bad_input(format!(
            "the confidence metrics need an image input [1, C, H, W], got {:?}",
            x.shape
        )));
    }
    if let Some(c) = class {
        check_class(model, c)?;
    }
    let (h, w) = (x.shape[2], x.shape[3]);
    let r = relevance(map, h, w)?;
    let maps = b.upload(&HostTensor::new(vec![1, 1, h, w], r)?)?;
    let image = b.upload(x)?;
    let original = b.forward(model, &image, &[])?.output;
    let run = Perturbations::<B> {
        image: &image,
        samples: 1,
        mini_batch: 1,
        fill: Fill::Multiply,
        method: "confidence",
    };
    let source = |first, count| MaskSource::Maps {
        maps: &maps,
        first,
        count,
    };
    let (masked, mut read) = run.logits(b, model, source, &[&original], &Silent)?;
    let original = read
        .pop()
        .ok_or_else(|| Error::internal("read-back returned fewer tensors than asked"))?;
    let class = class.unwrap_or_else(|| top_k(&original.data, 1)[0]);
    let before = scores(&original, score, &[class])[0];
    let after = scores(&masked, score, &[class])[0];
    Ok(ConfidenceChange {
        class,
        before,
        after,
        drop: (before - after).max(0.0),
        increase: if after > before { 1.0 } else { 0.0 },
    })
}
