//! SmoothGrad (Smilkov et al.), SmoothGrad² and VarGrad (Adebayo et al.): gradients of N noisy
//! copies, run as one batch and averaged where they are.

use super::attribution::{Attribute, Attribution, MapKind, Named, Target};
use super::{
    check_class, check_single_image, grouped_batch, pick_rows, repeat_each, score_seed,
    PixelAttribution, Score,
};
use crate::backend::{Backend, GradRule, HostTensor};
use crate::error::{Error, Result};
use crate::model::{BinaryKind, Model};

/// How the noisy gradients are combined (Captum `NoiseTunnel`'s `nt_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Variant {
    /// Mean of the gradients.
    #[default]
    SmoothGrad,
    /// Mean of the squared gradients.
    SmoothGradSq,
    /// Variance of the gradients.
    VarGrad,
}

impl Variant {
    /// Parses Captum's `nt_type` names: `smoothgrad`, `smoothgrad_sq`, `vargrad`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "smoothgrad" => Variant::SmoothGrad,
            "smoothgrad_sq" => Variant::SmoothGradSq,
            "vargrad" => Variant::VarGrad,
            other => {
                return Err(Error::bad_input(format!(
                    "unknown SmoothGrad variant '{other}'"
                )))
            }
        })
    }
}

/// SmoothGrad options (Captum `NoiseTunnel` over `Saliency`).
#[derive(Clone, Debug)]
pub struct SmoothGrad {
    /// Noisy copies (Captum `nt_samples`, default 25); the clean image runs as one extra sample for
    /// the score.
    pub samples: usize,
    /// Noise standard deviation as a fraction of the input's range (max - min), as in the paper.
    pub noise: f32,
    /// How the gradients are combined (default plain SmoothGrad).
    pub variant: Variant,
    /// Which score the gradient is taken of (default the logit).
    pub score: Score,
    /// Seeds the Gaussian noise, so a run is reproducible.
    pub seed: u64,
}

impl Default for SmoothGrad {
    fn default() -> Self {
        SmoothGrad {
            samples: 25,
            noise: 0.15,
            variant: Variant::SmoothGrad,
            score: Score::Logit,
            seed: 0,
        }
    }
}

impl SmoothGrad {
    /// Attributes `class` on the single image `x` `[1, C, H, W]` with one `gradients` call over
    /// `samples + 1` samples: [`Attribute::attribute_batch`] read back once.
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        class: usize,
    ) -> Result<PixelAttribution> {
        check_single_image(model, x)?;
        check_class(model, class)?;
        let a = self.explain(b, model, x, &[class])?.read(b)?;
        a.pixel_attributions()
            .pop()
            .ok_or_else(|| Error::internal("SmoothGrad returned no map"))
    }

    /// Per image, `samples` noisy copies and the clean image last (for its score), generated where
    /// the image lives; all images' copies in one `gradients` call, combined there too.
    fn explain<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        targets: &[usize],
    ) -> Result<Attribution<B::Tensor>> {
        if self.samples == 0 {
            return Err(Error::bad_input("samples must be at least 1"));
        }
        // The variance of a single gradient is 0 everywhere: refuse rather than write a zero map.
        if self.variant == Variant::VarGrad && self.samples < 2 {
            return Err(Error::bad_input(
                "VarGrad needs at least 2 samples: the variance of one gradient is 0 everywhere",
            ));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(Error::bad_input(format!(
                "noise must be a non-negative fraction, got {}",
                self.noise
            )));
        }
        let n = self.samples;
        let batch = grouped_batch(b, inputs, |i, image| {
            let (lo, hi) = inputs
                .sample(i)
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                    (l.min(v), h.max(v))
                });
            let sigma = (self.noise * (hi - lo)) as f64;
            let sigmas: Vec<f32> = std::iter::repeat_n(sigma as f32, n).chain([0.0]).collect();
            b.path_batch(image, image, &vec![1.0; n + 1], &sigmas, self.seed)
        })?;
        let seed = score_seed(b, model, self.score, &repeat_each(targets, n + 1))?;
        let g = b.gradients(model, &batch, &seed, GradRule::Standard, &[], &[])?;
        // The clean image's weight is 0: it is there for the score only.
        let weights: Vec<f32> = std::iter::repeat_n(1.0 / n as f32, n)
            .chain([0.0])
            .collect::<Vec<_>>()
            .repeat(targets.len());
        let mean = |t: &B::Tensor| b.weighted_sum(t, &weights, &inputs.shape);
        let square = |t: &B::Tensor| b.elementwise(t, t, BinaryKind::Mul);
        let maps = match self.variant {
            Variant::SmoothGrad => mean(&g.input_grad)?,
            Variant::SmoothGradSq => mean(&square(&g.input_grad)?)?,
            Variant::VarGrad => {
                let mean_sq = mean(&square(&g.input_grad)?)?;
                let sq_mean = square(&mean(&g.input_grad)?)?;
                b.elementwise(&mean_sq, &sq_mean, BinaryKind::Sub)?
            }
        };
        Ok(Attribution {
            method: self.name(),
            kind: MapKind::PerElement,
            maps,
            lowres: None,
            layer: None,
            logits: pick_rows(b, &g.output, targets.len(), n + 1, n)?,
            targets: targets.to_vec(),
            score: self.score,
            baseline_logits: None,
            extras: Vec::new(),
        })
    }
}

/// The maps are combined on the backend: nothing is read back before [`Attribution::read`].
/// Each image gets the same noise (the seed's), as it would alone.
impl Named for SmoothGrad {
    fn name(&self) -> &'static str {
        match self.variant {
            Variant::SmoothGrad => "smoothgrad",
            Variant::SmoothGradSq => "smoothgrad_sq",
            Variant::VarGrad => "vargrad",
        }
    }
}

impl<B: Backend> Attribute<B> for SmoothGrad {
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
