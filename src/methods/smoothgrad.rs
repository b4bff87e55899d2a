//! SmoothGrad (Smilkov et al.), SmoothGrad² and VarGrad (Adebayo et al.): gradients of N noisy
//! copies, run in budget-sized chunks and averaged where they are (memory is flat in N).

use super::attribution::{Attribute, Attribution, MapKind, Named, Target};
use super::path::PathRun;
use super::{check_class, check_single_image, PixelAttribution, Score};
use crate::backend::{Backend, HostTensor};
use crate::error::{Error, Result};
use crate::model::{BinaryKind, Model};
use crate::progress::{Progress, Silent};

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
    /// Attributes `class` on the single image `x` `[1, C, H, W]` with `gradients` calls over
    /// `samples + 1` samples in chunks (one when they fit): [`Attribute::attribute_batch`] read
    /// back once.
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        class: usize,
    ) -> Result<PixelAttribution> {
        check_single_image(model, x)?;
        check_class(model, class)?;
        let a = self.explain(b, model, x, &[class], &Silent)?.read(b)?;
        a.pixel_attributions()
            .pop()
            .ok_or_else(|| Error::internal("SmoothGrad returned no map"))
    }

    /// Per image, `samples` noisy copies and the clean image last (for its score), generated where
    /// the image lives, chunk by chunk; each chunk's gradients (all images' copies in one
    /// `gradients` call) are folded into running sums of `g/n` and `g²/n` there too.
    fn explain<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        targets: &[usize],
        progress: &dyn Progress,
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
        // The clean image runs as sample n, weighing 0: it is there for the score only.
        let sigmas: Vec<f32> = (0..inputs.batch())
            .map(|i| {
                let (lo, hi) = inputs
                    .sample(i)
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                        (l.min(v), h.max(v))
                    });
                self.noise * (hi - lo)
            })
            .collect();
        let (sum, sum_sq) = match self.variant {
            Variant::SmoothGrad => (true, false),
            Variant::SmoothGradSq => (false, true),
            Variant::VarGrad => (true, true),
        };
        let run = PathRun {
            method: self.name(),
            per: n + 1,
            score: self.score,
            sum,
            sum_sq,
            rows: &[n],
            progress,
        };
        let sums = run.run(
            b,
            model,
            inputs,
            targets,
            |s| if s < n { 1.0 / n as f32 } else { 0.0 },
            |i, image, first, count| {
                let sigma: Vec<f32> = (first..first + count)
                    .map(|s| if s < n { sigmas[i] } else { 0.0 })
                    .collect();
                b.path_chunk(
                    image,
                    image,
                    &vec![1.0; count],
                    &sigma,
                    self.seed,
                    first as u32,
                )
            },
        )?;
        let missing = || Error::internal("SmoothGrad summed nothing");
        let maps = match self.variant {
            Variant::SmoothGrad => sums.sum.ok_or_else(missing)?,
            Variant::SmoothGradSq => sums.sum_sq.ok_or_else(missing)?,
            Variant::VarGrad => {
                let mean = sums.sum.ok_or_else(missing)?;
                let sq_mean = b.elementwise(&mean, &mean, BinaryKind::Mul)?;
                b.elementwise(&sums.sum_sq.ok_or_else(missing)?, &sq_mean, BinaryKind::Sub)?
            }
        };
        let logits = sums.rows.into_iter().next().ok_or_else(missing)?;
        Ok(Attribution {
            method: self.name(),
            kind: MapKind::PerElement,
            maps,
            lowres: None,
            layer: None,
            logits,
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
        self.attribute_batch_with_progress(b, model, inputs, target, &Silent)
    }

    fn attribute_batch_with_progress(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
        progress: &dyn Progress,
    ) -> Result<Attribution<B::Tensor>> {
        let targets = target.classes(b, model, inputs)?;
        self.explain(b, model, inputs, &targets, progress)
    }
}
