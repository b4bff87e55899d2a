//! SmoothGrad (Smilkov et al.), SmoothGrad² and VarGrad (Adebayo et al.): gradients of N noisy
//! copies, run as one batch.

use super::{check_class, check_single_image, read2, score_seed, scores, PixelAttribution, Score};
use crate::backend::{Backend, GradRule, HostTensor};
use crate::error::{Error, Result};
use crate::model::Model;

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
    /// `samples + 1` samples.
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        class: usize,
    ) -> Result<PixelAttribution> {
        check_single_image(model, x)?;
        check_class(model, class)?;
        if self.samples == 0 {
            return Err(Error::bad_input("samples must be at least 1"));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(Error::bad_input(format!(
                "noise must be a non-negative fraction, got {}",
                self.noise
            )));
        }
        let (lo, hi) = x
            .data
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let sigma = (self.noise * (hi - lo)) as f64;
        let n = self.samples;
        // n noisy copies, then the clean image as the last sample, for the score it explains;
        // the noise is generated where the image lives.
        let sigmas: Vec<f32> = std::iter::repeat_n(sigma as f32, n).chain([0.0]).collect();
        let image = b.upload(x)?;
        let batch = b.path_batch(&image, &image, &vec![1.0; n + 1], &sigmas, self.seed)?;
        let targets = vec![class; n + 1];
        let seed = score_seed(b, model, self.score, &targets)?;
        let g = b.gradients(model, &batch, &seed, GradRule::Standard, &[], &[])?;
        let [logits, grads] = read2(b, &g.output, &g.input_grad)?;
        let score = scores(&logits, self.score, &targets)[n];
        let len = x.data.len();
        let (mut sum, mut sq) = (vec![0.0f64; len], vec![0.0f64; len]);
        for i in 0..n {
            for (j, &g) in grads.sample(i).iter().enumerate() {
                sum[j] += g as f64;
                sq[j] += (g as f64) * (g as f64);
            }
        }
        let nf = n as f64;
        let data = (0..len)
            .map(|j| {
                let mean = sum[j] / nf;
                (match self.variant {
                    Variant::SmoothGrad => mean,
                    Variant::SmoothGradSq => sq[j] / nf,
                    Variant::VarGrad => sq[j] / nf - mean * mean,
                }) as f32
            })
            .collect();
        Ok(PixelAttribution {
            class,
            score,
            map: HostTensor {
                shape: x.shape[1..].to_vec(),
                data,
            },
        })
    }
}
