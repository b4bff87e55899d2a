//! Maximal and minimal activating images (MATLAB's "visualize activations" example: the images
//! of a data set that score highest and lowest for a class), over a whole data set.
//!
//! Definition, for a class `k` with score `s_k(i)` (logit or softmax probability of `k` on image
//! `i`):
//! - **top-k**: the `k` images with the highest `s_k` among *all* images of the data set, whatever
//!   their label. If the model separates the classes, they all carry label `k`; an image of another
//!   class among them is a confident mistake.
//! - **bottom-k**: the `k` images with the lowest `s_k` among the images *labelled* `k` (all
//!   images if none is labelled `k`): the least typical members of the class, which is where the
//!   misclassified ones show up.
//!
//! With a layer channel as the objective (`s(i)` = mean of channel `c` of the layer on image `i`)
//! there is one group: top-k and bottom-k over all images.
//!
//! Every listed image carries its label and the model's prediction, so misclassified ones
//! (label ≠ prediction) can be marked; montages frame them in red.
//!
//! Cost: one data-set pass ([`features`]); the montages reload only the listed images.

use super::dataset_features::{features, Reduce};
use super::{check_class, Score};
use crate::backend::{Backend, HostTensor};
use crate::error::{Error, Result};
use crate::input::{Dataset, Preprocess};
use crate::model::Model;
use crate::progress::Progress;
use crate::viz::montage::{montage, upscale_for, Layout, Montage, Tile};

/// What ranks the images.
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// A class's logit or probability, one group per class.
    Class(Score),
    /// The spatial mean of channel `channel` of layer `layer` (an ONNX tensor name), one group.
    Channel {
        /// The layer (ONNX tensor name).
        layer: String,
        /// The channel of `layer` whose spatial mean ranks the images.
        channel: usize,
    },
}

/// Settings of a maximal/minimal activating images run.
#[derive(Clone, Debug, PartialEq)]
pub struct Extremes {
    /// Images per list.
    pub k: usize,
    /// What ranks the images (default the class logit).
    pub objective: Objective,
    /// Images per forward.
    pub batch: usize,
    /// Classes to report; `None`: the classes among the labels, or if there are no labels, the
    /// predicted classes.
    pub classes: Option<Vec<usize>>,
}

impl Default for Extremes {
    fn default() -> Self {
        Extremes {
            k: 5,
            objective: Objective::Class(Score::Logit),
            batch: 256,
            classes: None,
        }
    }
}

/// One image in a ranked list.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// Index into the data set's items.
    pub index: usize,
    /// The objective's value on this image.
    pub score: f32,
    /// The ground-truth class, if the image is labelled with a class of the model.
    pub label: Option<usize>,
    /// The model's top-1 class.
    pub predicted: usize,
}

impl Ranked {
    /// A labelled image the model gets wrong.
    pub fn misclassified(&self) -> bool {
        self.label.is_some_and(|l| l != self.predicted)
    }
}

/// The lists of one class (or of the channel).
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// `None` for a channel objective.
    pub class: Option<usize>,
    /// Highest scores first.
    pub top: Vec<Ranked>,
    /// Lowest scores first.
    pub bottom: Vec<Ranked>,
}

/// The outcome over a data set.
#[derive(Clone, Debug)]
pub struct ExtremesResult {
    /// `[N, K]`.
    pub logits: HostTensor,
    /// Per image, the label's class in the model (see [`Dataset::targets`]).
    pub targets: Vec<Option<usize>>,
    /// Per image, the model's top-1 class.
    pub predictions: Vec<usize>,
    /// Per image, the channel objective's score (`None` for class objectives, whose scores
    /// follow from `logits`).
    pub channel_scores: Option<Vec<f32>>,
    /// One group per reported class, or a single one for a channel objective.
    pub groups: Vec<Group>,
}

impl ExtremesResult {
    /// Indices of the labelled images the model gets wrong.
    pub fn misclassified(&self) -> Vec<usize> {
        (0..self.predictions.len())
            .filter(|&i| self.targets[i].is_some_and(|t| t != self.predictions[i]))
            .collect()
    }

    /// Top-1 accuracy over the labelled images, if any.
    pub fn accuracy(&self) -> Option<f64> {
        let labelled = self.targets.iter().filter(|t| t.is_some()).count();
        (labelled > 0).then(|| (labelled - self.misclassified().len()) as f64 / labelled as f64)
    }
}

impl Extremes {
    /// Ranks the images of `ds` (preprocessed with `pre`; labels mapped to classes through the
    /// model's class names `names`, see [`Dataset::targets`]).
    pub fn run<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        ds: &Dataset,
        pre: &Preprocess,
        names: Option<&[String]>,
        progress: &dyn Progress,
    ) -> Result<ExtremesResult> {
        if self.k == 0 {
            return Err(Error::bad_input("k must be positive"));
        }
        let channel = match &self.objective {
            Objective::Channel { layer, channel } => {
                let v = model.layer(layer)?;
                let c = model.graph.values[v].shape.first().copied().unwrap_or(1);
                if *channel >= c {
                    return Err(Error::bad_input(format!(
                        "channel {channel} is out of range: layer '{layer}' has {c} channels (0..{})",
                        c.saturating_sub(1)
                    )));
                }
                Some((v, *channel))
            }
            Objective::Class(_) => None,
        };
        if let Some(cs) = &self.classes {
            for &c in cs {
                check_class(model, c)?;
            }
        }
        let f = features(
            b,
            model,
            ds,
            pre,
            channel.map(|(v, _)| v),
            Reduce::SpatialMean,
            self.batch,
            progress,
        )?;
        let n = ds.len();
        let k = model.num_classes();
        let targets = ds.targets(names, k);
        let predictions: Vec<usize> = (0..n).map(|i| argmax(f.logits.sample(i))).collect();
        let ranked = |i: usize, score: f32| Ranked {
            index: i,
            score,
            label: targets[i],
            predicted: predictions[i],
        };
        let all: Vec<usize> = (0..n).collect();

        let (groups, channel_scores) = match (&self.objective, channel, &f.features) {
            (Objective::Channel { .. }, Some((_, c)), Some(feats)) => {
                let s: Vec<f32> = (0..n).map(|i| feats.sample(i)[c]).collect();
                let group = Group {
                    class: None,
                    top: extreme(&all, &s, self.k, true)
                        .into_iter()
                        .map(|i| ranked(i, s[i]))
                        .collect(),
                    bottom: extreme(&all, &s, self.k, false)
                        .into_iter()
                        .map(|i| ranked(i, s[i]))
                        .collect(),
                };
                (vec![group], Some(s))
            }
            (Objective::Class(score), _, _) => {
                let classes = self.classes.clone().unwrap_or_else(|| {
                    let mut seen: Vec<usize> = targets.iter().flatten().copied().collect();
                    if seen.is_empty() {
                        seen = predictions.clone();
                    }
                    seen.sort_unstable();
                    seen.dedup();
                    seen
                });
                let groups = classes
                    .iter()
                    .map(|&class| {
                        let s = super::scores(&f.logits, *score, &vec![class; n]);
                        let members: Vec<usize> = all
                            .iter()
                            .copied()
                            .filter(|&i| targets[i] == Some(class))
                            .collect();
                        let pool = if members.is_empty() { &all } else { &members };
                        Group {
                            class: Some(class),
                            top: extreme(&all, &s, self.k, true)
                                .into_iter()
                                .map(|i| ranked(i, s[i]))
                                .collect(),
                            bottom: extreme(pool, &s, self.k, false)
                                .into_iter()
                                .map(|i| ranked(i, s[i]))
                                .collect(),
                        }
                    })
                    .collect();
                (groups, None)
            }
            _ => {
                return Err(Error::internal(
                    "the data-set pass returned no layer features",
                ))
            }
        };
        Ok(ExtremesResult {
            logits: f.logits,
            targets,
            predictions,
            channel_scores,
            groups,
        })
    }
}

/// The `k` members of `pool` with the highest (`top`) or lowest scores, best first; ties keep
/// data-set order.
fn extreme(pool: &[usize], s: &[f32], k: usize, top: bool) -> Vec<usize> {
    let mut idx = pool.to_vec();
    idx.sort_by(|&a, &b| {
        if top {
            s[b].total_cmp(&s[a])
        } else {
            s[a].total_cmp(&s[b])
        }
    });
    idx.truncate(k);
    idx
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Frame colour of misclassified tiles.
pub const MISCLASSIFIED: [u8; 3] = [230, 20, 20];

/// A group's images as a montage: the top list on the first row, the bottom list on the second,
/// misclassified images framed in red, each tile upscaled (nearest) to at least `min_side`.
pub fn group_montage(
    ds: &Dataset,
    pre: &Preprocess,
    model: &Model,
    group: &Group,
    min_side: usize,
) -> Result<Montage> {
    let listed: Vec<&Ranked> = group.top.iter().chain(&group.bottom).collect();
    let indices: Vec<usize> = listed.iter().map(|r| r.index).collect();
    let x = ds.load_items(&indices, pre, model.input_shape())?;
    let (h, w) = (x.shape[2], x.shape[3]);
    let tile = |i: usize, r: &Ranked| {
        let one = HostTensor {
            shape: vec![1, x.shape[1], h, w],
            data: x.sample(i).to_vec(),
        };
        Tile {
            width: w,
            height: h,
            rgb: crate::viz::display_image(&one, pre),
            frame: r.misclassified().then_some(MISCLASSIFIED),
        }
    };
    let blank = Tile {
        width: w,
        height: h,
        rgb: vec![1.0; h * w * 3],
        frame: None,
    };
    let cols = group.top.len().max(group.bottom.len());
    let mut tiles = Vec::with_capacity(2 * cols);
    for (row, list) in [&group.top, &group.bottom].into_iter().enumerate() {
        let offset = if row == 0 { 0 } else { group.top.len() };
        for (j, r) in list.iter().enumerate() {
            tiles.push(tile(offset + j, r));
        }
        tiles.extend(std::iter::repeat_n(blank.clone(), cols - list.len()));
    }
    Ok(montage(
        &tiles,
        &Layout {
            cols: Some(cols),
            scale: upscale_for(h.max(w), min_side),
            frame: 3,
            gutter: 2,
            ..Layout::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_order_and_ties() {
        let s = [0.5, 2.0, -1.0, 2.0, 0.0];
        let all = [0, 1, 2, 3, 4];
        assert_eq!(extreme(&all, &s, 3, true), [1, 3, 0]);
        assert_eq!(extreme(&all, &s, 2, false), [2, 4]);
        assert_eq!(extreme(&[0, 4], &s, 5, false), [4, 0]);
    }
}
