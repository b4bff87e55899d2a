//! Classic CAM (Zhou et al.): for networks ending in feature layer → global average pooling →
//! (flatten) → fully connected, the map of class c is `sum_k W[c, k] A_k`. Forward only, and the
//! sum is taken where the activations are.

use super::attribution::{Attribute, Attribution, MapKind, Named, Target};
use super::gradcam::CamMap;
use super::{check_class, check_single_image, repeat, Score};
use crate::backend::{Backend, HostTensor};
use crate::error::{Error, Result};
use crate::model::{Model, Op, ReduceKind, ValueId};

/// Finds the CAM structure: the feature layer and the classifier weights `[K, C]`.
pub fn cam_structure(model: &Model) -> Result<(ValueId, &crate::model::Linear)> {
    let g = &model.graph;
    let unsuitable = |why: String| {
        Error::bad_input(format!(
            "CAM needs feature layer → GlobalAveragePool → (Flatten) → Gemm at the end of the network; model '{}' {why}. Use gradcam instead",
            model.name
        ))
    };
    let pool = g
        .nodes
        .iter()
        .rev()
        .find(|n| matches!(&n.op, Op::GlobalPool { max: false }) || matches!(&n.op, Op::Reduce { kind: ReduceKind::Mean, axes, .. } if axes == &[2, 3]))
        .ok_or_else(|| unsuitable("has no global average pooling".into()))?;
    let mut v = pool.output;
    loop {
        let readers: Vec<_> = g.nodes.iter().filter(|n| n.inputs.contains(&v)).collect();
        match readers.as_slice() {
            [n] if matches!(n.op, Op::Reshape) => v = n.output,
            [n] => {
                return match &n.op {
                    Op::Linear(l) if n.output == g.output => Ok((pool.inputs[0], l)),
                    Op::Linear(_) => Err(unsuitable(
                        "has more layers after the fully connected one".into(),
                    )),
                    other => Err(unsuitable(format!(
                        "has {} after the pooling",
                        other.kind_name()
                    ))),
                };
            }
            _ => {
                return Err(unsuitable(
                    "does not feed the pooled features to a single fully connected layer".into(),
                ))
            }
        }
    }
}

/// Classic CAM maps of `x` (`[1, C, H, W]`) for each class: the image repeated once per class
/// through [`Cam`]'s [`Attribute::attribute_batch`], read back once.
pub fn cam<B: Backend>(
    b: &B,
    model: &Model,
    x: &HostTensor,
    classes: &[usize],
) -> Result<Vec<CamMap>> {
    check_single_image(model, x)?;
    for &c in classes {
        check_class(model, c)?;
    }
    Cam.explain(b, model, &repeat(x, classes.len()), classes)?
        .read(b)?
        .cam_maps()
}

/// Classic CAM as a method struct (it has no options), for the uniform [`Attribute`] entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cam;

impl Cam {
    /// One forward that taps the feature layer; the classifier's weights of each sample's class
    /// weigh the channels where the activations live. The score is always the logit.
    fn explain<B: Backend>(
        self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        targets: &[usize],
    ) -> Result<Attribution<B::Tensor>> {
        let (layer, linear) = cam_structure(model)?;
        let shape = &model.graph.values[layer].shape;
        let (channels, h, w) = (shape[0], shape[1], shape[2]);
        if linear.weight.shape[1] != channels {
            return Err(Error::bad_input(
                "the classifier's inputs do not match the pooled channels".to_string(),
            ));
        }
        let f = b.forward(model, &b.upload(inputs)?, &[layer])?;
        let acts = f
            .tap(layer)
            .ok_or_else(|| Error::internal("backend returned no tap"))?;
        let weights: Vec<f32> = targets
            .iter()
            .flat_map(|&c| &linear.weight.data[c * channels..(c + 1) * channels])
            .copied()
            .collect();
        let lowres = b.weighted_sum(acts, &weights, &[targets.len(), 1, h, w])?;
        Ok(Attribution {
            method: "cam",
            kind: MapKind::PerPixel,
            maps: b.resize_bilinear(&lowres, inputs.shape[2], inputs.shape[3])?,
            lowres: Some(lowres),
            layer: Some(model.graph.values[layer].name.clone()),
            logits: f.output,
            targets: targets.to_vec(),
            score: Score::Logit,
            baseline_logits: None,
            extras: Vec::new(),
        })
    }
}

/// The maps are computed on the backend: nothing is read back before [`Attribution::read`].
impl Named for Cam {
    fn name(&self) -> &'static str {
        "cam"
    }
}

impl<B: Backend> Attribute<B> for Cam {
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
