//! The one-page report of `netlens explain`: the image, the top-5 predictions and every local
//! method's map for one class, side by side (MATLAB's UNPIC as a static page). The page is one
//! self-contained HTML file; every picture is an inline base64 PNG, so it can be mailed or
//! archived as is.
//!
//! [`panels`] computes the maps on any backend; [`html`] renders a [`Report`]. A method that
//! does not apply to the model (CAM without global average pooling) becomes a panel with a
//! note instead of a picture.

mod html;
mod panels;

pub use html::{base64, html, CHECK_ID};
pub use panels::{panels, strongest_channel, Settings, StrongestChannel};

use std::path::Path;

use crate::backend::HostTensor;
use crate::error::{Error, Result};
use crate::input::{self, Preprocess, Sidecar};
use crate::model::Model;

/// One method's map in the report.
#[derive(Clone, Debug)]
pub struct Panel {
    /// The method, as a reader knows it ("Grad-CAM").
    pub title: String,
    /// Its key parameters ("layer …, 16 steps, Gauss-Legendre").
    pub params: String,
    /// Wall time of the method call, read-back included, in seconds.
    pub seconds: f64,
    /// The backend that ran it ([`crate::Backend::name`]).
    pub backend: String,
    /// The map over the image, as an encoded PNG; `None` when the method does not apply.
    pub png: Option<Vec<u8>>,
    /// Why the method does not apply, or a remark on the result (IG's convergence delta).
    pub note: Option<String>,
    /// Where the panel's result holds NaN or ±Inf (an overflow inside the model); empty when
    /// all is finite.
    pub non_finite: Vec<crate::methods::finite::NonFinite>,
}

/// One of the top predictions.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Prediction {
    /// The class index.
    pub class: usize,
    /// The class's label from the sidecar, or "class k" without labels.
    pub label: String,
    /// Softmax probability of the class on the image.
    pub probability: f32,
}

/// Everything the page shows.
#[derive(Clone, Debug)]
pub struct Report {
    /// The model's display name (its file stem).
    pub model: String,
    /// The image as the user named it.
    pub image_name: String,
    /// The model's input as it sees it (after resize and crop), as an encoded PNG.
    pub image_png: Vec<u8>,
    /// The top predictions (five, or fewer for smaller models), most probable first.
    pub predictions: Vec<Prediction>,
    /// The explained class and its label.
    pub class: usize,
    /// The label of `class`.
    pub class_label: String,
    /// The backend the predictions came from ([`crate::Backend::name`]).
    pub backend: String,
    /// One panel per local method, in page order.
    pub panels: Vec<Panel>,
    /// Wall time of the whole report, model loading included.
    pub seconds: f64,
}

/// Encodes interleaved 8-bit RGB as PNG bytes.
pub fn png_bytes(width: usize, height: usize, rgb: Vec<u8>) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_raw(width as u32, height as u32, rgb)
        .ok_or_else(|| Error::internal("image buffer does not match its size"))?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| Error::internal(format!("PNG encoding failed: {e}")))?;
    Ok(out.into_inner())
}

/// The preprocessing of `model_path`: the named preset, else the sidecar's, else ImageNet's for
/// 3-channel inputs and plain /255 otherwise; with the sidecar's labels, if any.
pub fn preprocessing(
    model_path: &Path,
    model: &Model,
    preset: Option<&str>,
) -> Result<(Preprocess, Option<Vec<String>>)> {
    let sidecar = Sidecar::for_model(model_path)?;
    let labels = match &sidecar {
        Some(s) => s.labels()?,
        None => None,
    };
    let pre = match (preset, sidecar.and_then(|s| s.preprocess)) {
        (Some(p), _) => Preprocess::from_name(p)?,
        (None, Some(p)) => p,
        (None, None) if model.input_shape()[0] == 3 => Preprocess::imagenet(),
        (None, None) => Preprocess::unit(),
    };
    Ok((pre, labels))
}

/// One image as the model's input `[1, C, H, W]`, with the preprocessing used and the labels.
pub fn model_input(
    model_path: &Path,
    model: &Model,
    image: &Path,
    preset: Option<&str>,
) -> Result<(HostTensor, Preprocess, Option<Vec<String>>)> {
    let (pre, labels) = preprocessing(model_path, model, preset)?;
    let x = input::image_tensor(image, &pre, model.input_shape())?;
    // A sidecar's tiny `std` can make finite pixels non-finite inputs.
    input::check_finite(&x)
        .map_err(|e| e.context(format!("{} after preprocessing", image.display())))?;
    Ok((x, pre, labels))
}

/// The label of class `k`, or "class k" without labels.
pub fn label(labels: Option<&[String]>, k: usize) -> String {
    labels
        .and_then(|l| l.get(k).cloned())
        .unwrap_or_else(|| format!("class {k}"))
}
