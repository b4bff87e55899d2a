//! Vanilla gradients (Simonyan et al.), gradient × input, and guided backprop: one backward pass
//! for the whole batch (class `i` is sample `i`).

use super::attribution::{Attribute, Attribution, MapKind, Named, Target};
use super::{check_single_image, repeat, score_seed, PixelAttribution, Score};
use crate::backend::{Backend, GradRule, HostTensor};
use crate::error::Result;
use crate::model::{BinaryKind, Model};

/// Gradient saliency options: Captum's `Saliency` (without its absolute value), `InputXGradient`
/// and `GuidedBackprop` / `Deconvolution`.
#[derive(Clone, Debug, Default)]
pub struct Saliency {
    /// Which score the gradient is taken of (default the logit).
    pub score: Score,
    /// Multiply the gradient by the input (gradient × input).
    pub times_input: bool,
    /// Standard gradients, or guided backprop / deconvnet through ReLU-like ops.
    pub rule: GradRule,
}

impl Saliency {
    /// Attributions of `x` (`[1, C, H, W]`) for each class in `classes`: the image repeated once
    /// per class through [`Attribute::attribute_batch`], read back once.
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
    ) -> Result<Vec<PixelAttribution>> {
        check_single_image(model, x)?;
        let a = self.explain(b, model, &repeat(x, classes.len()), classes)?;
        Ok(a.read(b)?.pixel_attributions())
    }

    /// One `gradients` call over the batch; gradient × input is one more element-wise op where
    /// the gradients are, so nothing is read back.
    fn explain<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        targets: &[usize],
    ) -> Result<Attribution<B::Tensor>> {
        let batch = b.upload(inputs)?;
        let seed = score_seed(b, model, self.score, targets)?;
        let g = b.gradients(model, &batch, &seed, self.rule, &[], &[])?;
        let maps = if self.times_input {
            b.elementwise(&g.input_grad, &batch, BinaryKind::Mul)?
        } else {
            g.input_grad
        };
        Ok(Attribution {
            method: self.name(),
            kind: MapKind::PerElement,
            maps,
            lowres: None,
            layer: None,
            logits: g.output,
            targets: targets.to_vec(),
            score: self.score,
            baseline_logits: None,
            extras: Vec::new(),
        })
    }
}

/// The maps are computed on the backend: nothing is read back before [`Attribution::read`].
impl Named for Saliency {
    fn name(&self) -> &'static str {
        match (self.rule, self.times_input) {
            (GradRule::Standard, false) => "saliency",
            (GradRule::Standard, true) => "input-x-gradient",
            (GradRule::Guided, false) => "guided",
            (GradRule::Guided, true) => "guided-x-input",
            (GradRule::Deconvnet, false) => "deconvnet",
            (GradRule::Deconvnet, true) => "deconvnet-x-input",
        }
    }
}

impl<B: Backend> Attribute<B> for Saliency {
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
