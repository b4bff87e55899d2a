//! Score-CAM (Wang et al. 2020; pytorch-grad-cam `ScoreCAM`): each channel of a feature layer is
//! upsampled to the input, min-max normalised and multiplied into the image; the channel's weight
//! is the softmax, over channels, of the class score on its masked image. Forward only.
//!
//! As pytorch-grad-cam does it: the upsampling is `UpsamplingBilinear2d` (aligned corners), the
//! normalisation `(u - min) / (max - min + 1e-8)` over the upsampled map, the map
//! `ReLU(Σ_k w_k A_k)` at the layer's resolution. The masked images are built by the backend
//! ([`Backend::perturb`] with the maps as masks, multiplied into the image) from the image and
//! the tapped activations where they already are, and run through the shared perturbation loop
//! in chunks of `mini_batch`; the activations, the original logits and every chunk's logits come
//! back in one read-back.

use super::attribution::{explain_each, Attribute, Attribution, Extras, HostResult, Named, Target};
use super::gradcam::{feature_layer, CamMap};
use super::perturbation::Perturbations;
use super::{check_image_and_classes, mini_batch, scores, upsample_bilinear, Score};
use crate::backend::{combine, Backend, Fill, HostTensor, MaskSource};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::progress::{Progress, Silent};

/// Score-CAM settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreCam {
    /// The feature layer; `None` picks the input of the last global average pooling.
    pub layer: Option<String>,
    /// The explained score (logit, pytorch-grad-cam's `ClassifierOutputTarget`, or probability).
    pub score: Score,
    /// Masked images per forward; `None`: as many as fit 64 MiB of input, at most 64
    /// (pytorch-grad-cam uses 16; the result does not depend on it).
    pub mini_batch: Option<usize>,
    /// Apply ReLU to the map (pytorch-grad-cam does).
    pub relu: bool,
}

impl Default for ScoreCam {
    fn default() -> Self {
        ScoreCam {
            layer: None,
            score: Score::Logit,
            mini_batch: None,
            relu: true,
        }
    }
}

/// A Score-CAM map with its channel weights.
#[derive(Clone, Debug)]
pub struct ScoreCamMap {
    /// The map, as the other CAM methods return it.
    pub cam: CamMap,
    /// Softmax over channels of the masked scores, one per channel of the layer.
    pub weights: Vec<f32>,
}

/// The most masked images per forward when MiniBatchSize is automatic.
const AUTO_BATCH_MAX: usize = 64;

impl ScoreCam {
    /// Score-CAM maps of `x` (`[1, C, H, W]`) for each class; all classes share the forwards.
    ///
    /// Cost on the GPU with `K` channels and `B = mini_batch`: one forward that taps the layer,
    /// `⌈K / B⌉` forwards of masked images (each carrying its masking kernels), one read-back.
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
    ) -> Result<Vec<ScoreCamMap>> {
        self.attribute_with_progress(b, model, x, classes, &Silent)
    }

    /// [`ScoreCam::attribute`], reporting each mini-batch to `progress`.
    pub fn attribute_with_progress<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
        progress: &dyn Progress,
    ) -> Result<Vec<ScoreCamMap>> {
        Ok(self.explain(b, model, x, classes, progress)?.0)
    }

    /// [`ScoreCam::attribute_with_progress`], also returning the logits of `x`, `[1, classes]`.
    fn explain<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
        progress: &dyn Progress,
    ) -> Result<(Vec<ScoreCamMap>, HostTensor)> {
        let (c, in_h, in_w) = check_image_and_classes(model, x, classes, "Score-CAM")?;
        let layer = feature_layer(model, self.layer.as_deref())?;
        let shape = model.graph.values[layer].shape.clone();
        let (k, h, w) = (shape[0], shape[1], shape[2]);
        let mini_batch = mini_batch(
            b,
            self.mini_batch,
            c * in_h * in_w,
            AUTO_BATCH_MAX,
            "Score-CAM",
        )?;
        if classes.is_empty() {
            return Ok((Vec::new(), HostTensor::zeros(vec![0, model.num_classes()])));
        }

        let image = b.upload(x)?;
        let tapped = b.forward(model, &image, &[layer])?;
        let acts = tapped
            .tap(layer)
            .ok_or_else(|| Error::internal("backend returned no feature-layer tensor"))?
            .clone();
        let run = Perturbations::<B> {
            image: &image,
            samples: k,
            mini_batch,
            fill: Fill::Multiply,
            method: "score-cam",
        };
        let source = |first, count| MaskSource::Maps {
            maps: &acts,
            first,
            count,
        };
        let (masked, read) = run.logits(b, model, source, &[&tapped.output, &acts], progress)?;
        let [original, acts] = <[HostTensor; 2]>::try_from(read)
            .map_err(|_| Error::internal("read-back returned fewer tensors than asked"))?;

        let name = model.graph.values[layer].name.clone();
        let maps = classes
            .iter()
            .map(|&class| {
                let s = scores(&masked, self.score, &vec![class; k]);
                let weights = softmax(&s);
                // One group of K channels: [1, K, h, w] into [1, h, w].
                let mut lowres = combine::weighted_sum(&acts, &weights, &[1, h, w])?;
                lowres.shape = vec![h, w];
                if self.relu {
                    lowres.data.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                let upsampled = upsample_bilinear(&lowres, in_h, in_w);
                Ok(ScoreCamMap {
                    cam: CamMap {
                        class,
                        score: scores(&original, self.score, &[class])[0],
                        layer: name.clone(),
                        lowres,
                        upsampled,
                    },
                    weights,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((maps, original))
    }
}

/// The channel weights come from the masked images' scores, which are read back to the host
/// (softmax over channels): each image costs one read-back inside `attribute_batch`, and the
/// returned maps are uploads of the host's results.
impl Named for ScoreCam {
    fn name(&self) -> &'static str {
        "scorecam"
    }
}

impl<B: Backend> Attribute<B> for ScoreCam {
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
        let layer = feature_layer(model, self.layer.as_deref())?;
        let head = (
            self.name(),
            self.score,
            Some(model.graph.values[layer].name.clone()),
        );
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
                        map: m.cam.upsampled,
                        lowres: Some(m.cam.lowres),
                        logits: logits.clone(),
                        extras: Extras {
                            channel_weights: Some(m.weights),
                            ..Extras::default()
                        },
                    })
                    .collect())
            },
        )
    }
}

fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = v.iter().map(|&x| ((x - m) as f64).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|&x| (x / z) as f32).collect()
}
