//! A layer's activations on one image (MATLAB `activations`): the raw tensor, per-channel
//! statistics, the strongest channel, a montage of every channel and the strongest channel laid
//! over the image.
//!
//! Cost: one forward with the layer tapped (on the GPU one submission) and one read-back of the
//! tap; everything after that is on the host.

use super::check_single_image;
use crate::backend::{Backend, HostTensor};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::viz::montage::{channel_montage, Colormap, Montage};

/// Statistics of one channel over its spatial positions.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ChannelStats {
    /// The channel index.
    pub channel: usize,
    /// Mean over the channel's positions.
    pub mean: f32,
    /// Largest value.
    pub max: f32,
    /// Smallest value.
    pub min: f32,
    /// Population standard deviation.
    pub std: f32,
    /// Fraction of positions with a value above 0.
    pub positive_fraction: f32,
}

/// A layer's activation on one image.
#[derive(Clone, Debug)]
pub struct LayerActivations {
    /// The layer's ONNX tensor name.
    pub layer: String,
    /// `[C, h, w]`: the activation without the batch axis. Layers without spatial axes are
    /// shaped `[C, 1, 1]`, and other ranks are folded to three axes (channel, rows, last axis).
    pub tensor: HostTensor,
    /// The activation exactly as tapped, batch axis included.
    pub raw_shape: Vec<usize>,
    /// One entry per channel, in channel order.
    pub stats: Vec<ChannelStats>,
    /// The channel with the highest mean (the first of equals).
    pub strongest: usize,
}

/// Runs `x` (`[1, C, H, W]`) through `model` and returns the activation of `layer` (an ONNX
/// tensor name; unknown names are bad input with suggestions).
pub fn activations<B: Backend>(
    b: &B,
    model: &Model,
    x: &HostTensor,
    layer: &str,
) -> Result<LayerActivations> {
    check_single_image(model, x)?;
    let v = model.layer(layer)?;
    let f = b.forward(model, &b.upload(x)?, &[v])?;
    let tap = f
        .tap(v)
        .ok_or_else(|| Error::internal("the backend returned no tap for the layer"))?;
    let raw = b.read(tap)?;
    let tensor = as_chw(&raw)?;
    let stats = channel_stats(&tensor);
    let strongest = stats
        .iter()
        .fold(None::<&ChannelStats>, |best, s| match best {
            Some(top) if top.mean >= s.mean => Some(top),
            _ => Some(s),
        })
        .map_or(0, |s| s.channel);
    Ok(LayerActivations {
        layer: layer.to_string(),
        tensor,
        raw_shape: raw.shape,
        stats,
        strongest,
    })
}

impl LayerActivations {
    /// Number of channels `C`.
    pub fn channels(&self) -> usize {
        self.tensor.shape[0]
    }

    /// Channel `c` as an `[h, w]` map.
    pub fn channel(&self, c: usize) -> HostTensor {
        let (h, w) = (self.tensor.shape[1], self.tensor.shape[2]);
        HostTensor {
            shape: vec![h, w],
            data: self.tensor.data[c * h * w..(c + 1) * h * w].to_vec(),
        }
    }

    /// Every channel, min-max normalised on its own, on a square-ish grid with 1-pixel gutters;
    /// small maps are upscaled (nearest) so that a tile is at least `min_side` pixels.
    pub fn montage(&self, colormap: Colormap, min_side: usize) -> Montage {
        channel_montage(&self.tensor, colormap, min_side)
    }

    /// The strongest channel resized (bilinear) to `height × width` and laid over `image`
    /// (interleaved RGB in [0, 1], e.g. [`crate::viz::display_image`]) in Turbo, as RGB bytes.
    pub fn strongest_overlay(&self, image: &[f32], height: usize, width: usize) -> Vec<u8> {
        let map = super::upsample_bilinear(&self.channel(self.strongest), height, width);
        crate::viz::overlay(image, &map)
    }
}

/// Drops the batch axis of a one-sample tap and folds it to `[C, h, w]`.
fn as_chw(raw: &HostTensor) -> Result<HostTensor> {
    if raw.shape.first() != Some(&1) || raw.shape.len() < 2 {
        return Err(Error::internal(format!(
            "expected a one-sample activation, got shape {:?}",
            raw.shape
        )));
    }
    let s = &raw.shape[1..];
    let shape = match s.len() {
        1 => vec![s[0], 1, 1],
        2 => vec![s[0], 1, s[1]],
        n => vec![s[0], s[1..n - 1].iter().product(), s[n - 1]],
    };
    HostTensor::new(shape, raw.data.clone())
}

/// Per-channel statistics of a `[C, h, w]` tensor, accumulated in f64.
pub fn channel_stats(t: &HostTensor) -> Vec<ChannelStats> {
    let c = t.shape[0];
    let hw = t.sample_len();
    (0..c)
        .map(|ch| {
            let plane = &t.data[ch * hw..(ch + 1) * hw];
            let n = plane.len().max(1) as f64;
            let mean = plane.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = plane
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            ChannelStats {
                channel: ch,
                mean: mean as f32,
                max: plane.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                min: plane.iter().copied().fold(f32::INFINITY, f32::min),
                std: var.sqrt() as f32,
                positive_fraction: (plane.iter().filter(|&&v| v > 0.0).count() as f64 / n) as f32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_folding() {
        let raw = HostTensor::new(vec![1, 2, 2], vec![-1.0, 3.0, 2.0, 2.0]).unwrap();
        let t = as_chw(&raw).unwrap();
        assert_eq!(t.shape, [2, 1, 2]);
        let s = channel_stats(&t);
        assert_eq!(
            (s[0].mean, s[0].max, s[0].min, s[0].std),
            (1.0, 3.0, -1.0, 2.0)
        );
        assert_eq!(s[0].positive_fraction, 0.5);
        assert_eq!(
            (s[1].mean, s[1].std, s[1].positive_fraction),
            (2.0, 0.0, 1.0)
        );
        let dense = as_chw(&HostTensor::new(vec![1, 3], vec![0.0; 3]).unwrap()).unwrap();
        assert_eq!(dense.shape, [3, 1, 1]);
    }
}
