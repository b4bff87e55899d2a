//! One batched pass of a model over a [`Dataset`]: the logits of every image and, optionally, a
//! layer's activation reduced to one row per image. This is the building block of the global
//! methods (maximal/minimal activating images, t-SNE of a layer over a data set).
//!
//! The folder is read in chunks of `batch` images: each chunk is decoded in parallel on the host
//! and forwarded (on the GPU one upload and one submission; decoding the next chunk overlaps the
//! device's work on this one). Outputs stay on the backend and cross to the host with one
//! `read_many` per [`READ_BUDGET`] bytes, i.e. once at the end for small sets.
//!
//! ```no_run
//! # use netlens::{cpu::CpuBackend, input::{Dataset, Preprocess}, model::import::load_model};
//! # use netlens::methods::dataset_features::{features, Reduce};
//! # fn main() -> netlens::Result<()> {
//! let model = load_model("assets/models/tiny_digits.onnx")?;
//! let ds = Dataset::open("assets/digits_all")?;
//! let layer = model.layer("/features/features.11/Relu_output_0")?;
//! let f = features(&CpuBackend::new(), &model, &ds, &Preprocess::unit(), Some(layer),
//!                  Reduce::SpatialMean, 256, &netlens::progress::Silent)?;
//! assert_eq!(f.logits.shape[0], ds.len()); // [N, K]; f.features: Some([N, C])
//! # Ok(()) }
//! ```

use crate::backend::{Backend, HostTensor};
use crate::error::{Error, Result};
use crate::input::{Dataset, Preprocess};
use crate::model::{Model, ValueId};
use crate::progress::Progress;

/// Bytes of pending outputs that trigger a read-back; bounds device memory held by finished
/// chunks while keeping small data sets to one read-back.
pub const READ_BUDGET: usize = 128 << 20;

/// Largest feature matrix [`features`] builds on the host.
const MAX_FEATURE_BYTES: usize = 4 << 30;

/// How a layer's per-image activation becomes one feature row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reduce {
    /// All values, row-major: `D = C·h·w`.
    Flatten,
    /// The mean over spatial positions of each channel (global average pooling): `D = C`. A
    /// layer with no spatial axes (`[C]`) is taken as it is.
    #[default]
    SpatialMean,
}

/// The result of a data-set pass, rows in the data set's order.
#[derive(Clone, Debug)]
pub struct Features {
    /// `[N, K]` model outputs.
    pub logits: HostTensor,
    /// `[N, D]` reduced activations of the requested layer.
    pub features: Option<HostTensor>,
}

/// Forwards every image of `ds` (preprocessed with `pre`) in chunks of `batch`, returning the
/// logits and, if `layer` is given, its activation reduced by `reduce`. Reports one step per
/// image to `progress`.
#[allow(clippy::too_many_arguments)]
pub fn features<B: Backend>(
    b: &B,
    model: &Model,
    ds: &Dataset,
    pre: &Preprocess,
    layer: Option<ValueId>,
    reduce: Reduce,
    batch: usize,
    progress: &dyn Progress,
) -> Result<Features> {
    if batch == 0 {
        return Err(Error::bad_input("batch size must be positive"));
    }
    if ds.is_empty() {
        return Err(Error::bad_input("the data set has no images"));
    }
    let n = ds.len();
    let k = model.num_classes();
    let layer_shape = layer.map(|v| model.graph.values[v].shape.clone());
    let d = layer_shape.as_deref().map(|s| feature_len(s, reduce));
    if let Some(d) = d {
        if n.saturating_mul(d).saturating_mul(4) > MAX_FEATURE_BYTES {
            return Err(Error::bad_input(format!(
                "{n} images × {d} features would not fit in memory; use the spatial mean of \
                 the layer or a later layer"
            )));
        }
    }
    let taps: Vec<ValueId> = layer.into_iter().collect();
    let per_image_bytes = 4 * (k + layer_shape.as_deref().map_or(0, |s| s.iter().product()));

    let mut logits = Vec::with_capacity(n * k);
    let mut feats = Vec::with_capacity(n * d.unwrap_or(0));
    let mut pending: Vec<B::Tensor> = Vec::new();
    let mut pending_bytes = 0;

    progress.start("images", n as u64);
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let x = ds.load(start..end, pre, model.input_shape())?;
        let f = b.forward(model, &b.upload(&x)?, &taps)?;
        pending.push(f.output.clone());
        if let Some(v) = layer {
            let t = f
                .tap(v)
                .ok_or_else(|| Error::internal("the backend returned no tap for the layer"))?;
            pending.push(t.clone());
        }
        drop(f);
        pending_bytes += (end - start) * per_image_bytes;
        if pending_bytes >= READ_BUDGET {
            read_pending(
                b,
                &mut pending,
                layer.is_some(),
                reduce,
                &mut logits,
                &mut feats,
            )?;
            pending_bytes = 0;
        }
        progress.advance((end - start) as u64);
        start = end;
    }
    read_pending(
        b,
        &mut pending,
        layer.is_some(),
        reduce,
        &mut logits,
        &mut feats,
    )?;
    progress.finish();

    let logits = HostTensor::new(vec![n, k], logits)?;
    let features = match d {
        Some(d) => Some(HostTensor::new(vec![n, d], feats)?),
        None => None,
    };
    Ok(Features { logits, features })
}

/// Reads the pending chunk outputs (output, then tap if `tapped`) and appends their rows.
fn read_pending<B: Backend>(
    b: &B,
    pending: &mut Vec<B::Tensor>,
    tapped: bool,
    reduce: Reduce,
    logits: &mut Vec<f32>,
    feats: &mut Vec<f32>,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let read = b.read_many(&pending.iter().collect::<Vec<_>>())?;
    pending.clear();
    let step = if tapped { 2 } else { 1 };
    for group in read.chunks(step) {
        logits.extend_from_slice(&group[0].data);
        if let Some(t) = group.get(1) {
            for i in 0..t.batch() {
                reduce_row(t.sample(i), &t.shape[1..], reduce, feats);
            }
        }
    }
    Ok(())
}

/// Length of one feature row of a layer with per-sample shape `shape`.
pub fn feature_len(shape: &[usize], reduce: Reduce) -> usize {
    match (reduce, shape) {
        (Reduce::SpatialMean, [c, _, ..]) => *c,
        _ => shape.iter().product(),
    }
}

/// Appends one image's reduced activation (per-sample shape `shape`) to `out`.
fn reduce_row(sample: &[f32], shape: &[usize], reduce: Reduce, out: &mut Vec<f32>) {
    match (reduce, shape) {
        (Reduce::SpatialMean, [c, _, ..]) => {
            let hw = sample.len() / (*c).max(1);
            out.extend(sample.chunks(hw.max(1)).map(|plane| {
                (plane.iter().map(|&v| f64::from(v)).sum::<f64>() / plane.len() as f64) as f32
            }));
        }
        _ => out.extend_from_slice(sample),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spatial_mean_rows() {
        let mut out = Vec::new();
        reduce_row(
            &[1.0, 3.0, 0.0, 4.0],
            &[2, 2],
            Reduce::SpatialMean,
            &mut out,
        );
        reduce_row(&[5.0, 6.0], &[2], Reduce::SpatialMean, &mut out);
        reduce_row(&[1.0, 2.0], &[1, 1, 2], Reduce::Flatten, &mut out);
        assert_eq!(out, [2.0, 2.0, 5.0, 6.0, 1.0, 2.0]);
        assert_eq!(feature_len(&[32, 7, 7], Reduce::SpatialMean), 32);
        assert_eq!(feature_len(&[32, 7, 7], Reduce::Flatten), 32 * 49);
        assert_eq!(feature_len(&[10], Reduce::SpatialMean), 10);
    }
}
