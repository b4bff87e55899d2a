//! Guided Grad-CAM (Selvaraju et al.) as a method object: guided backprop `[C, H, W]` times the
//! min-max normalised, upsampled Grad-CAM, the product the same as
//! [`guided_gradcam`](super::gradcam::guided_gradcam)'s.

use super::attribution::{Attribute, Attribution, MapKind, Named, Target};
use super::gradcam::GradCam;
use super::normalize_min_max;
use super::saliency::Saliency;
use crate::backend::{Backend, GradRule, HostTensor};
use crate::error::Result;
use crate::model::Model;

/// Guided Grad-CAM over the Grad-CAM `cam` describes (its layer, score and ReLU).
#[derive(Clone, Debug, Default)]
pub struct GuidedGradCam {
    /// The Grad-CAM whose map weighs guided backprop.
    pub cam: GradCam,
}

impl Named for GuidedGradCam {
    fn name(&self) -> &'static str {
        "guided-gradcam"
    }
}

/// Both factors are computed on the backend and read back once each; the product is formed on
/// the host (the normalisation needs each map's range) and uploaded.
impl<B: Backend> Attribute<B> for GuidedGradCam {
    fn attribute_batch(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
    ) -> Result<Attribution<B::Tensor>> {
        let targets = Target::PerSample(target.classes(b, model, inputs)?);
        let guided = Saliency {
            score: self.cam.score,
            times_input: false,
            rule: GradRule::Guided,
        }
        .attribute_batch(b, model, inputs, &targets)?
        .read(b)?;
        let cam = self
            .cam
            .attribute_batch(b, model, inputs, &targets)?
            .read(b)?;
        let mut maps = guided.maps.clone();
        let per = maps.sample_len();
        for (i, sample) in maps.data.chunks_mut(per.max(1)).enumerate() {
            let mask = normalize_min_max(&cam.map(i));
            let hw = mask.data.len();
            for (j, v) in sample.iter_mut().enumerate() {
                *v *= mask.data[j % hw];
            }
        }
        Ok(Attribution {
            method: Named::name(self),
            kind: MapKind::PerElement,
            maps: b.upload(&maps)?,
            lowres: None,
            layer: cam.layer,
            logits: b.upload(&cam.logits)?,
            targets: cam.targets,
            score: self.cam.score,
            baseline_logits: None,
            extras: Vec::new(),
        })
    }
}
