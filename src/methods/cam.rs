//! Classic CAM (Zhou et al.): for networks ending in feature layer → global average pooling →
//! (flatten) → fully connected, the map of class c is `sum_k W[c, k] A_k`. Forward only.

use super::gradcam::{weighted_sum, CamMap};
use super::{check_class, check_single_image, upsample_bilinear};
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

/// Classic CAM maps of `x` (`[1, C, H, W]`) for each class.
pub fn cam<B: Backend>(
    b: &B,
    model: &Model,
    x: &HostTensor,
    classes: &[usize],
) -> Result<Vec<CamMap>> {
    check_single_image(model, x)?;
    let (layer, linear) = cam_structure(model)?;
    for &c in classes {
        check_class(model, c)?;
    }
    let shape = &model.graph.values[layer].shape;
    let (channels, h, w) = (shape[0], shape[1], shape[2]);
    if linear.weight.shape[1] != channels {
        return Err(Error::bad_input(
            "the classifier's inputs do not match the pooled channels".to_string(),
        ));
    }
    let input = b.upload(x)?;
    let f = b.forward(model, &input, &[layer])?;
    let tap = f
        .tap(layer)
        .ok_or_else(|| Error::internal("backend returned no tap"))?;
    let [acts, logits] = super::read2(b, tap, &f.output)?;
    let k = logits.sample_len();
    Ok(classes
        .iter()
        .map(|&class| {
            let weights = &linear.weight.data[class * channels..(class + 1) * channels];
            let lowres = HostTensor {
                shape: vec![h, w],
                data: weighted_sum(acts.sample(0), weights, h * w, false),
            };
            let upsampled = upsample_bilinear(&lowres, x.shape[2], x.shape[3]);
            CamMap {
                class,
                score: logits.data[class.min(k - 1)],
                layer: model.graph.values[layer].name.clone(),
                lowres,
                upsampled,
            }
        })
        .collect())
}
