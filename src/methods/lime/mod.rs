//! LIME (Ribeiro et al. 2016; MATLAB `imageLIME`, Captum `Lime`): explain one prediction by a
//! simple surrogate fitted to the model's scores on copies of the image with random subsets of
//! its segments replaced by a fill value.
//!
//! The perturbed copies are built by the backend from the one uploaded image and the uploaded
//! label map ([`Backend::perturb`] with segment masks): which segments a sample keeps is a hash of
//! `(seed, sample, segment)`, computed alike on the device and on the host, so the on/off matrix
//! never crosses the bus and a seed gives the same samples on every backend. Sample 0 is the
//! unperturbed image (all segments on); it counts as one of `num_samples`. Samples run in chunks
//! of `mini_batch`, one forward each (on the GPU one submission per chunk, the masking kernel
//! riding along), and all logits come back in one read-back.

pub mod segment;
pub mod surrogate;

use super::attribution::{
    explain_each, Attribute, Attribution, Extras, HostResult, Named, SurrogateFit, Target,
};
use super::occlusion::MaskValue;
use super::perturbation::Perturbations;
use super::{check_image_and_classes, mini_batch, scores, Score};
use crate::backend::{segment_kept, Backend, Fill, HostTensor, MaskSource};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::progress::{Progress, Silent};
pub use segment::LabelMap;
use surrogate::{Design, TreeLimits};

/// How the image is cut into interpretable features.
#[derive(Clone, Debug, PartialEq)]
pub enum Segmentation {
    /// A regular grid of about `num_features` cells (7×7 for 49 on a square input).
    Grid,
    /// SLIC superpixels, about `num_features` of them (MATLAB's default segmentation).
    Slic {
        /// Spatial against colour distance (10 in MATLAB `superpixels` and scikit-image).
        compactness: f32,
    },
    /// The user's own segments, one label per input pixel.
    Labels(LabelMap),
}

/// The surrogate fitted to the perturbed scores (MATLAB's `Model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Surrogate {
    /// Weighted ridge regression; importance = coefficient (signed).
    Linear,
    /// Weighted regression tree (`fitrtree` defaults); importance = impurity decrease
    /// (non-negative). MATLAB's default.
    #[default]
    Tree,
}

/// LIME settings; `Default` is MATLAB `imageLIME`'s defaults with a logit score.
#[derive(Clone, Debug, PartialEq)]
pub struct Lime {
    /// Perturbed samples, the unperturbed image included (MATLAB `NumSamples`, 2048).
    pub num_samples: usize,
    /// Target number of segments for grid and SLIC (MATLAB `NumFeatures`, 49).
    pub num_features: usize,
    /// How the image is cut into segments (MATLAB `Segmentation`).
    pub segmentation: Segmentation,
    /// The surrogate model (MATLAB `Model`).
    pub surrogate: Surrogate,
    /// Width of the similarity kernel `exp(-d²/width²)` on the cosine distance `d` between a
    /// sample's on/off vector and the all-on vector. 0.25 is MATLAB's `KernelWidth` default
    /// (Captum's image examples use 1.0, which weighs all samples nearly alike).
    pub kernel_width: f64,
    /// Ridge penalty of the linear surrogate (intercept unpenalised); 1.0 as scikit-learn's
    /// `Ridge`, which the `lime` package uses.
    pub ridge: f64,
    /// Growth limits of the tree surrogate.
    pub tree: TreeLimits,
    /// What "off" segments show; the per-channel image mean by default.
    pub mask_value: MaskValue,
    /// Samples per forward; `None`: as many as fit 64 MiB of input, at most 128.
    pub mini_batch: Option<usize>,
    /// Seed of the on/off samples; the same seed gives the same samples on every backend.
    pub seed: u64,
    /// The explained score (logit or softmax probability).
    pub score: Score,
    /// Segments shown in [`LimeMap::top_segments`] (and the CLI's top-k overlay).
    pub top_k: usize,
}

impl Default for Lime {
    fn default() -> Self {
        Lime {
            num_samples: 2048,
            num_features: 49,
            segmentation: Segmentation::Slic { compactness: 10.0 },
            surrogate: Surrogate::Tree,
            kernel_width: 0.25,
            ridge: 1.0,
            tree: TreeLimits::default(),
            mask_value: MaskValue::Auto,
            mini_batch: None,
            seed: 0,
            score: Score::Logit,
            top_k: 5,
        }
    }
}

/// The LIME result for one class, as MATLAB returns it plus the fit quality.
#[derive(Clone, Debug)]
pub struct LimeMap {
    /// The explained class.
    pub class: usize,
    /// The explained score of `class` on the unperturbed image.
    pub score: f32,
    /// `[H, W]`: each pixel carries its segment's importance (MATLAB `scoreMap`).
    pub score_map: HostTensor,
    /// `[H, W]`: the segment id of each pixel (MATLAB `featureMap`).
    pub feature_map: HostTensor,
    /// One value per segment (MATLAB `featureImportance`).
    pub feature_importance: Vec<f32>,
    /// Weighted R² of the surrogate on the samples.
    pub r2: f64,
    /// The `top_k` segment ids by importance, most important first.
    pub top_segments: Vec<usize>,
}

/// The most samples per forward when MiniBatchSize is automatic.
const AUTO_BATCH_MAX: usize = 128;

impl Lime {
    /// The segments of `x` (`[1, C, H, W]`) under this segmentation.
    pub fn segments(&self, x: &HostTensor) -> Result<LabelMap> {
        let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
        match &self.segmentation {
            Segmentation::Grid => segment::grid(self.num_features, h, w),
            Segmentation::Slic { compactness } => {
                segment::slic(&x.data, (c, h, w), self.num_features, *compactness)
            }
            Segmentation::Labels(m) => {
                m.check_size(h, w)?;
                Ok(m.clone())
            }
        }
    }

    /// The on/off matrix of the samples: row `s`, column `k` is [`segment_kept`]`(seed, s, k)`.
    pub fn design(&self, segments: usize) -> Vec<bool> {
        (0..self.num_samples)
            .flat_map(|s| (0..segments).map(move |k| (s, k)))
            .map(|(s, k)| segment_kept(self.seed, s as u32, k as u32))
            .collect()
    }

    /// Refuses a sample count the surrogate cannot use or the memory budget cannot hold.
    ///
    /// Fewer samples than segments + 1 leave the surrogate underdetermined: `k` coefficients
    /// and an intercept from fewer equations. The ridge penalty would make the linear fit
    /// well-posed, but its coefficients would then be set by the penalty rather than by the
    /// model (with `--num-samples 1`, only the unperturbed image: an all-zero map), and the tree
    /// cannot split on a feature it never saw off; so both are refused rather than warned about.
    ///
    /// The surrogate needs every sample at once (the tree splits the whole sample set), so its
    /// memory cannot be chunked: the design matrix (`k` bytes per sample), the weights, each
    /// class's scores, predictions and the tree's index lists (about 64 bytes per sample), and
    /// the logits (checked with the forwards) are weighed against the budget before any forward.
    fn check_samples<B: Backend>(&self, b: &B, model: &Model, segments: usize) -> Result<()> {
        if self.num_samples < segments + 1 {
            return Err(Error::bad_input(format!(
                "LIME needs at least as many samples as segments + 1 to fit its surrogate: \
                 {} samples for {segments} segments; raise --num-samples to {} or lower \
                 --num-features",
                self.num_samples,
                segments + 1
            )));
        }
        let per_sample = segments as u128 + 64 + 12 * model.num_classes() as u128;
        b.budget().check(
            &format!(
                "LIME's surrogate over {} samples of {segments} segments",
                self.num_samples
            ),
            per_sample.saturating_mul(self.num_samples as u128),
        )
    }

    /// LIME maps of `x` (`[1, C, H, W]`) for each class in `classes`; all classes share the same
    /// forwards.
    ///
    /// Cost on the GPU with `B = mini_batch`: `⌈num_samples / B⌉` forward submissions (each
    /// carrying its masking kernel) and one read-back (one more submission).
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
    ) -> Result<Vec<LimeMap>> {
        self.attribute_with_progress(b, model, x, classes, &Silent)
    }

    /// [`Lime::attribute`], reporting each mini-batch to `progress`.
    pub fn attribute_with_progress<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
        progress: &dyn Progress,
    ) -> Result<Vec<LimeMap>> {
        Ok(self.explain(b, model, x, classes, progress)?.0)
    }

    /// [`Lime::attribute_with_progress`], also returning the logits of `x`, `[1, classes]`.
    fn explain<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
        progress: &dyn Progress,
    ) -> Result<(Vec<LimeMap>, HostTensor)> {
        let (c, h, w) = check_image_and_classes(model, x, classes, "LIME")?;
        if self.num_samples == 0 {
            return Err(Error::bad_input(
                "LIME needs at least one sample (NumSamples)",
            ));
        }
        if self.num_samples > u32::MAX as usize {
            return Err(Error::bad_input("LIME: at most 2^32 samples"));
        }
        if !(self.kernel_width > 0.0 && self.kernel_width.is_finite()) {
            return Err(Error::bad_input(format!(
                "LIME kernel width must be positive, got {}",
                self.kernel_width
            )));
        }
        if self.ridge.is_nan() || self.ridge < 0.0 {
            return Err(Error::bad_input("LIME ridge penalty must not be negative"));
        }
        let value = self.mask_value.resolve(x, c)?;
        let segments = self.segments(x)?;
        self.check_samples(b, model, segments.count)?;
        let mini_batch = mini_batch(b, self.mini_batch, c * h * w, AUTO_BATCH_MAX, "LIME")?;
        if classes.is_empty() {
            return Ok((Vec::new(), HostTensor::zeros(vec![0, model.num_classes()])));
        }

        let image = b.upload(x)?;
        let labels = b.upload(&segments.tensor())?;
        let run = Perturbations::<B> {
            image: &image,
            samples: self.num_samples,
            mini_batch,
            fill: Fill::Constant(&value),
            method: "lime",
        };
        let source = |first, count| MaskSource::Segments {
            labels: &labels,
            seed: self.seed,
            first,
            count,
        };
        let (logits, _) = run.logits(b, model, source, &[], progress)?;

        let k = segments.count;
        let z = self.design(k);
        let design = Design {
            n: self.num_samples,
            k,
            z: &z,
        };
        let weights = surrogate::kernel_weights(&design, self.kernel_width);
        let feature_map = segments.tensor();
        let original = HostTensor::new(vec![1, logits.sample_len()], logits.sample(0).to_vec())?;
        let maps = classes
            .iter()
            .map(|&class| {
                let y: Vec<f64> = scores(&logits, self.score, &vec![class; self.num_samples])
                    .into_iter()
                    .map(f64::from)
                    .collect();
                let fit = match self.surrogate {
                    Surrogate::Linear => surrogate::ridge(&design, &y, &weights, self.ridge)?,
                    Surrogate::Tree => surrogate::tree(&design, &y, &weights, self.tree),
                };
                let importance: Vec<f32> = fit.importance.iter().map(|&v| v as f32).collect();
                let score_map = HostTensor {
                    shape: vec![h, w],
                    data: segments
                        .labels
                        .iter()
                        .map(|&l| importance[l as usize])
                        .collect(),
                };
                Ok(LimeMap {
                    class,
                    score: y[0] as f32,
                    score_map,
                    feature_map: feature_map.clone(),
                    top_segments: top_k(&importance, self.top_k),
                    feature_importance: importance,
                    r2: fit.r2,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((maps, original))
    }
}

/// The surrogate is fitted on the host to the scores read back there: each image costs one
/// read-back inside `attribute_batch`, and the returned maps ([`LimeMap::score_map`]) are uploads
/// of the host's results.
impl Named for Lime {
    fn name(&self) -> &'static str {
        "lime"
    }
}

impl<B: Backend> Attribute<B> for Lime {
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
                        map: m.score_map,
                        lowres: None,
                        logits: logits.clone(),
                        extras: Extras {
                            surrogate: Some(SurrogateFit {
                                segments: m.feature_map,
                                importance: m.feature_importance,
                                top_segments: m.top_segments,
                                r2: m.r2,
                            }),
                            ..Extras::default()
                        },
                    })
                    .collect())
            },
        )
    }
}

/// Indices of the `k` largest values, largest first (ties by lower index).
fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// The image with only the `segments` kept and the rest dimmed, for the top-k overlay:
/// interleaved RGB in [0, 1] (`image` as [`crate::viz::display_image`] gives it).
pub fn highlight_segments(image: &[f32], labels: &[u32], segments: &[usize]) -> Vec<f32> {
    image
        .chunks(3)
        .zip(labels)
        .flat_map(|(px, &l)| {
            let keep = segments.contains(&(l as usize));
            px.iter()
                .map(move |&v| if keep { v } else { 0.25 * v + 0.1 })
                .collect::<Vec<_>>()
        })
        .collect()
}
