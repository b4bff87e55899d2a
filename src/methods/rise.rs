//! RISE (Petsiuk et al. 2018, "Randomized Input Sampling for Explanation"): the image under `N`
//! random smooth masks, each an `s × s` grid of cells kept with probability `p`, bilinearly
//! upsampled with a random shift ([`RiseMasks`]); the saliency of a pixel is the score-weighted
//! mean of the masks there, `Σ_i score_i · mask_i / (N · p)`.
//!
//! The masks are hashed from `(seed, i)` on the device ([`Backend::perturb`] with RISE masks,
//! the image times the mask) and run through the shared perturbation loop; the host recomputes
//! each mask with [`RiseMasks::mask`] to weight it by its score, so no mask crosses the bus.

use super::attribution::{explain_each, Attribute, Attribution, Extras, HostResult, Named, Target};
use super::options::{Context, MethodOptions, Preset};
use super::perturbation::Perturbations;
use super::{check_image_and_classes, mini_batch, scores, Score};
use crate::backend::{Backend, Fill, HostTensor, MaskSource, RiseMasks};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::progress::{Progress, Silent};

/// RISE settings; `Default` is the paper's (N = 4000, s = 7, p = 0.5, softmax probability).
#[derive(Clone, Debug, PartialEq)]
pub struct Rise {
    /// How many masks (`N`).
    pub num_masks: usize,
    /// Cells per side of each mask's low-resolution grid (`s`).
    pub grid: usize,
    /// The probability that a cell is kept (`p`).
    pub p: f32,
    /// Seed of the masks; the same seed gives the same masks on every backend.
    pub seed: u64,
    /// Masked images per forward; `None`: as many as fit 64 MiB of input, at most 64.
    pub mini_batch: Option<usize>,
    /// The explained score (the paper weighs masks by the class probability).
    pub score: Score,
}

impl Default for Rise {
    fn default() -> Self {
        Rise {
            num_masks: 4000,
            grid: 7,
            p: 0.5,
            seed: 0,
            mini_batch: None,
            score: Score::Probability,
        }
    }
}

/// The RISE result for one class.
#[derive(Clone, Debug)]
pub struct RiseMap {
    /// The explained class.
    pub class: usize,
    /// The explained score of `class` on the unmasked image.
    pub score: f32,
    /// `[H, W]`: `Σ_i score_i · mask_i / (N · p)`.
    pub saliency: HostTensor,
    /// The score of `class` under each mask, `N` of them.
    pub mask_scores: Vec<f32>,
}

/// The most masked images per forward when MiniBatchSize is automatic.
const AUTO_BATCH_MAX: usize = 64;

impl Rise {
    /// The mask generator of these settings.
    pub fn masks(&self) -> RiseMasks {
        RiseMasks {
            seed: self.seed,
            grid: self.grid,
            p: self.p,
        }
    }

    /// RISE maps of `x` (`[1, C, H, W]`) for each class; all classes share the forwards.
    ///
    /// Cost on the GPU with `B = mini_batch`: one forward of the unmasked image, `⌈N / B⌉`
    /// forwards of masked images (each carrying its masking kernel), one read-back.
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
    ) -> Result<Vec<RiseMap>> {
        self.attribute_with_progress(b, model, x, classes, &Silent)
    }

    /// [`Rise::attribute`], reporting each mini-batch to `progress`.
    pub fn attribute_with_progress<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
        progress: &dyn Progress,
    ) -> Result<Vec<RiseMap>> {
        Ok(self.explain(b, model, x, classes, progress)?.0)
    }

    /// [`Rise::attribute_with_progress`], also returning the logits of `x`, `[1, classes]`.
    fn explain<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
        progress: &dyn Progress,
    ) -> Result<(Vec<RiseMap>, HostTensor)> {
        let (c, h, w) = check_image_and_classes(model, x, classes, "RISE")?;
        if self.num_masks == 0 {
            return Err(Error::bad_input("RISE needs at least one mask"));
        }
        let mini_batch = mini_batch(b, self.mini_batch, c * h * w, AUTO_BATCH_MAX, "RISE")?;
        if classes.is_empty() {
            return Ok((Vec::new(), HostTensor::zeros(vec![0, model.num_classes()])));
        }
        let masks = self.masks();
        let image = b.upload(x)?;
        let unmasked = b.forward(model, &image, &[])?.output;
        let run = Perturbations::<B> {
            image: &image,
            samples: self.num_masks,
            mini_batch,
            fill: Fill::Multiply,
            method: "rise",
        };
        let source = |first, count| MaskSource::Rise {
            masks,
            first,
            count,
        };
        let (logits, mut read) = run.logits(b, model, source, &[&unmasked], progress)?;
        let original = read
            .pop()
            .ok_or_else(|| Error::internal("read-back returned fewer tensors than asked"))?;

        let n = self.num_masks;
        let per_class: Vec<Vec<f32>> = classes
            .iter()
            .map(|&class| scores(&logits, self.score, &vec![class; n]))
            .collect();
        let mut sums = vec![vec![0f64; h * w]; classes.len()];
        for i in 0..n {
            let mask = masks.mask(i as u32, h, w);
            for (sum, s) in sums.iter_mut().zip(&per_class) {
                let s = f64::from(s[i]);
                for (acc, &m) in sum.iter_mut().zip(&mask) {
                    *acc += s * f64::from(m);
                }
            }
        }
        let norm = n as f64 * f64::from(self.p);
        let maps = classes
            .iter()
            .zip(per_class)
            .zip(sums)
            .map(|((&class, mask_scores), sum)| {
                Ok(RiseMap {
                    class,
                    score: scores(&original, self.score, &[class])[0],
                    saliency: HostTensor::new(
                        vec![h, w],
                        sum.iter().map(|&v| (v / norm) as f32).collect(),
                    )?,
                    mask_scores,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((maps, original))
    }
}

/// The saliency is weighted on the host by the scores read back there: each image costs one
/// read-back inside `attribute_batch`, and the returned maps are uploads of the host's results.
impl Named for Rise {
    fn name(&self) -> &'static str {
        "rise"
    }
}

impl<B: Backend> Attribute<B> for Rise {
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
        let head = (self.name(), self.score, None);
        explain_each(
            b,
            model,
            inputs,
            target,
            head,
            progress,
            |x, classes, progress| {
                let (maps, logits) = self.explain(b, model, x, classes, progress)?;
                Ok(maps
                    .into_iter()
                    .map(|m| HostResult {
                        map: m.saliency,
                        lowres: None,
                        logits: logits.clone(),
                        extras: Extras::default(),
                    })
                    .collect())
            },
        )
    }
}

/// `rise`'s own options.
#[derive(clap::Args, Clone, Debug)]
pub struct RiseOptions {
    /// Random masks (N; the paper uses 4000).
    #[arg(long, default_value_t = 4000)]
    pub masks: usize,
    /// Cells per side of each mask's low-resolution grid (s).
    #[arg(long, default_value_t = 7)]
    pub grid: usize,
    /// Probability that a cell is kept (p).
    #[arg(long, default_value_t = 0.5)]
    pub p: f32,
    /// Seed of the masks (the same seed gives the same masks on every backend).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Masked images per forward; default from the adapter's limits.
    #[arg(long)]
    pub mini_batch: Option<usize>,
}

impl MethodOptions for RiseOptions {
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        let rise = Rise {
            num_masks: self.masks,
            grid: self.grid,
            p: self.p,
            seed: self.seed,
            mini_batch: self.mini_batch,
            score: ctx.score,
        };
        // Checked before anything runs, as `perturb` would on the first chunk.
        if rise.num_masks == 0 || rise.grid == 0 || !(rise.p > 0.0 && rise.p <= 1.0) {
            return Err(Error::bad_input(
                "RISE needs --masks > 0, --grid > 0 and --p in (0, 1]",
            ));
        }
        Ok(Box::new(rise))
    }
    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({"masks": self.masks, "grid": self.grid, "p": self.p,
            "seed": self.seed, "mini_batch": self.mini_batch})
    }
    fn summary(&self) -> String {
        format!(
            "{} masks, {}×{} cells, p = {}",
            self.masks, self.grid, self.grid, self.p
        )
    }
    /// The report and the bench use 128 masks: the paper's 4000 take minutes on a CPU.
    fn presets() -> Vec<Preset> {
        vec![Preset {
            name: "rise",
            title: "RISE",
            args: &["--masks", "128"],
        }]
    }
}
