//! Vanilla gradients (Simonyan et al.), gradient × input, and guided backprop: one backward pass
//! for all requested classes at once (class `i` is sample `i`).

use super::{
    check_single_image, read2, repeat, samples, score_seed, scores, PixelAttribution, Score,
};
use crate::backend::{Backend, GradRule, HostTensor};
use crate::error::Result;
use crate::model::Model;

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
    /// Attributions of `x` (`[1, C, H, W]`) for each class in `classes`.
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
    ) -> Result<Vec<PixelAttribution>> {
        check_single_image(model, x)?;
        let batch = b.upload(&repeat(x, classes.len()))?;
        let seed = score_seed(b, model, self.score, classes)?;
        let g = b.gradients(model, &batch, &seed, self.rule, &[], &[])?;
        let [logits, grads] = read2(b, &g.output, &g.input_grad)?;
        let scores = scores(&logits, self.score, classes);
        Ok(samples(&grads)
            .into_iter()
            .zip(classes)
            .zip(scores)
            .map(|((mut map, &class), score)| {
                if self.times_input {
                    map.data.iter_mut().zip(&x.data).for_each(|(g, v)| *g *= v);
                }
                PixelAttribution { class, score, map }
            })
            .collect())
    }
}
