//! Objectives beyond a class score: the mean of a layer's channel (or of all its channels),
//! optionally restricted to a spatial region. Feature-visualisation and "what drives this unit"
//! questions ask for these; a class logit or probability goes through the class-score seed of
//! the gradient methods.

use super::{check_single_image, read2, repeat, samples, PixelAttribution};
use crate::backend::{Backend, GradRule, HostTensor, Seed};
use crate::error::{Error, Result};
use crate::model::{Model, ValueId};

/// A rectangle of a layer's spatial grid, in that layer's coordinates (rows, columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First row of the rectangle.
    pub top: usize,
    /// First column of the rectangle.
    pub left: usize,
    /// Rows covered.
    pub height: usize,
    /// Columns covered.
    pub width: usize,
}

impl Region {
    /// Parses `top,left,height,width`.
    pub fn parse(s: &str) -> Result<Region> {
        let v: Vec<usize> = s
            .split(',')
            .map(|p| p.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                Error::bad_input(format!(
                    "region '{s}': expected top,left,height,width (non-negative integers)"
                ))
            })?;
        match v[..] {
            [top, left, height, width] => Ok(Region {
                top,
                left,
                height,
                width,
            }),
            _ => Err(Error::bad_input(format!(
                "region '{s}': expected four numbers top,left,height,width"
            ))),
        }
    }
}

/// The mean of a layer's activation over the chosen channel (all channels when `None`) and the
/// chosen region (the whole grid when `None`).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerObjective {
    /// The layer whose activation is averaged.
    pub layer: ValueId,
    /// The channel averaged; `None` averages all channels.
    pub channel: Option<usize>,
    /// The spatial rectangle averaged; `None` takes the whole grid.
    pub region: Option<Region>,
}

impl LayerObjective {
    /// The per-sample seed gradient: `1/count` on the selected entries of one sample's
    /// activation of shape `shape` (`[C]`, `[C, H, W]` or any `[C, ...]`), zero elsewhere.
    fn seed_sample(&self, shape: &[usize]) -> Result<Vec<f32>> {
        let channels = shape.first().copied().unwrap_or(1);
        let plane: usize = shape.iter().skip(1).product();
        if let Some(c) = self.channel {
            if c >= channels {
                return Err(Error::bad_input(format!(
                    "channel {c} is out of range: the layer has {channels} channels (0..{})",
                    channels.saturating_sub(1)
                )));
            }
        }
        let in_region: Box<dyn Fn(usize) -> bool> = match self.region {
            None => Box::new(|_| true),
            Some(r) => {
                if shape.len() != 3 {
                    return Err(Error::bad_input(format!(
                        "a region needs a layer with spatial extent [C, H, W]; this one is {shape:?}"
                    )));
                }
                let (h, w) = (shape[1], shape[2]);
                if r.height == 0 || r.width == 0 || r.top + r.height > h || r.left + r.width > w {
                    return Err(Error::bad_input(format!(
                        "region {r:?} does not fit the layer's {h}x{w} grid (or is empty)"
                    )));
                }
                Box::new(move |i| {
                    let (y, x) = (i / w, i % w);
                    y >= r.top && y < r.top + r.height && x >= r.left && x < r.left + r.width
                })
            }
        };
        let selected: Vec<bool> = (0..plane).map(in_region).collect();
        let count = selected.iter().filter(|&&s| s).count() * self.channel.map_or(channels, |_| 1);
        let weight = 1.0 / count as f32;
        let mut grad = vec![0.0; channels * plane];
        for ch in (0..channels).filter(|&ch| self.channel.is_none_or(|c| c == ch)) {
            for (i, _) in selected.iter().enumerate().filter(|(_, &s)| s) {
                grad[ch * plane + i] = weight;
            }
        }
        Ok(grad)
    }

    /// The objective's value on each sample of a read-back activation `[N, ...]`.
    pub fn values(&self, activation: &HostTensor) -> Result<Vec<f32>> {
        let weights = self.seed_sample(&activation.shape[1..])?;
        Ok((0..activation.batch())
            .map(|i| {
                activation
                    .sample(i)
                    .iter()
                    .zip(&weights)
                    .map(|(a, w)| (a * w) as f64)
                    .sum::<f64>() as f32
            })
            .collect())
    }
}

/// The seed for a batch where sample `i` maximises `objectives[i]`; all must name one layer.
pub fn layer_seed<B: Backend>(
    b: &B,
    model: &Model,
    objectives: &[LayerObjective],
) -> Result<Seed<B::Tensor>> {
    let layer = match objectives.first() {
        Some(o) => o.layer,
        None => return Err(Error::internal("no objective given")),
    };
    if objectives.iter().any(|o| o.layer != layer) {
        return Err(Error::bad_input(
            "objectives of one batch must all name the same layer",
        ));
    }
    let shape = model.graph.values[layer].shape.clone();
    let mut full = vec![objectives.len()];
    full.extend_from_slice(&shape);
    let mut data = Vec::with_capacity(full.iter().product());
    for o in objectives {
        data.extend(o.seed_sample(&shape)?);
    }
    Ok(Seed::Grad {
        at: layer,
        grad: b.upload(&HostTensor::new(full, data)?)?,
    })
}

/// The gradient of each layer objective w.r.t. the input `x` (`[1, C, H, W]`), one backward pass
/// for all of them. `PixelAttribution::class` holds the objective's channel (0 for all channels)
/// and `score` its value on `x`.
pub fn layer_gradients<B: Backend>(
    b: &B,
    model: &Model,
    x: &HostTensor,
    objectives: &[LayerObjective],
    rule: GradRule,
    times_input: bool,
) -> Result<Vec<PixelAttribution>> {
    check_single_image(model, x)?;
    let seed = layer_seed(b, model, objectives)?;
    let layer = seed.at();
    let batch = b.upload(&repeat(x, objectives.len()))?;
    let g = b.gradients(model, &batch, &seed, rule, &[], &[layer])?;
    let tap = g
        .tap(layer)
        .ok_or_else(|| Error::internal("gradients returned no tap for the objective layer"))?;
    let [activation, grads] = read2(b, tap, &g.input_grad)?;
    let maps = samples(&grads);
    objectives
        .iter()
        .zip(maps)
        .enumerate()
        .map(|(i, (o, mut map))| {
            if times_input {
                map.data.iter_mut().zip(&x.data).for_each(|(g, v)| *g *= v);
            }
            let sample = HostTensor {
                shape: activation.shape[1..].to_vec(),
                data: activation.sample(i).to_vec(),
            };
            let mut one = sample.shape.clone();
            one.insert(0, 1);
            let value = o.values(&HostTensor::new(one, sample.data)?)?[0];
            Ok(PixelAttribution {
                class: o.channel.unwrap_or(0),
                score: value,
                map,
            })
        })
        .collect()
}
