//! Everything between a file on disk and the model's input tensor: image decoding, Pillow-exact
//! resizing and cropping, normalisation presets, the per-model JSON sidecar, and `.npy` tensors.
//!
//! The preprocessing reproduces the Python pipeline the reference tensors were made with
//! (Pillow bilinear resize of the shorter side, centre crop, `/255`, `(x - mean) / std`, all in
//! float32), so that a PNG run through netlens gives the same input, to the bit, as the reference.

pub mod dataset;
mod decode;
mod npy;
mod resize;
mod rows;
mod sidecar;

use std::path::Path;

pub use dataset::{Dataset, Item};
pub use decode::{load_gray, load_rgb, MAX_DECODED_BYTES, MAX_PIXELS, MAX_SIDE};
pub use npy::{check_finite, check_input_shape, load_input_npy, load_npy, parse_npy, write_npy};
pub use resize::resize_bilinear_u8;
pub use sidecar::{load_labels, Sidecar};

use crate::backend::HostTensor;
use crate::error::{Error, Result};
use rows::{DecodedRows, ImageRows, Rows};

/// A decoded image: interleaved samples in 0..=255 (fractional for 16-bit sources), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Bit depth of the source samples (8 or 16; 32 for float sources): 8-bit data holds whole
    /// numbers, which is what lets conversions round exactly like Pillow.
    pub bit_depth: u8,
    /// `height * width * channels` samples, channels interleaved per pixel (HWC).
    pub data: Vec<f32>,
}

impl Image {
    /// Luminance with Pillow's `convert("L")` weights (ITU-R 601-2 in 16-bit fixed point, which
    /// sum to exactly 1, so a replicated gray image gets its own values back). 8-bit sources are
    /// rounded as Pillow rounds; others keep their fraction.
    pub fn to_gray(&self) -> Image {
        if self.channels == 1 {
            return self.clone();
        }
        let data = self
            .data
            .chunks_exact(3)
            .map(|p| rows::luma([p[0], p[1], p[2]], self.bit_depth))
            .collect();
        Image {
            channels: 1,
            data,
            ..*self
        }
    }

    /// Gray replicated into RGB; RGB is returned as is.
    pub fn to_rgb(&self) -> Image {
        if self.channels == 3 {
            return self.clone();
        }
        let data = self.data.iter().flat_map(|&g| [g, g, g]).collect();
        Image {
            channels: 3,
            data,
            ..*self
        }
    }
}

/// Loads an image with the channel count a model takes: 1 → [`load_gray`], 3 → [`load_rgb`].
pub fn load_image(path: impl AsRef<Path>, channels: usize) -> Result<Image> {
    match channels {
        1 => load_gray(path),
        3 => load_rgb(path),
        c => Err(Error::bad_input(format!(
            "cannot load {} for a model with {c} input channels (only 1 or 3 are supported)",
            path.as_ref().display()
        ))),
    }
}

/// How pixels become model input. Values are divided by `scale`, then `(x - mean[c]) / std[c]`;
/// `mean` and `std` hold one value per channel or a single value for all.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Resize (Pillow bilinear) so that the shorter side has this length, keeping the aspect
    /// ratio. `None`: no aspect-preserving resize; if `crop` is also `None`, an image that is not
    /// already the model's size is resized straight to it.
    pub resize: Option<usize>,
    /// Centre-crop a square of this side; must equal the model's input height and width. `None`:
    /// centre-crop to the model's height and width.
    pub crop: Option<usize>,
    /// Divisor applied to 0..=255 samples first (255 maps to 0..=1; 1 keeps raw pixel values).
    pub scale: f64,
    /// Per-channel mean subtracted after scaling (one value, or one per channel).
    pub mean: Vec<f64>,
    /// Per-channel standard deviation divided by last (one value, or one per channel).
    pub std: Vec<f64>,
}

impl Preprocess {
    /// torchvision's ImageNet recipe: shorter side 256, crop 224, ImageNet mean and std.
    pub fn imagenet() -> Self {
        Preprocess {
            resize: Some(256),
            crop: Some(224),
            scale: 255.0,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// TensorFlow's (EfficientNet-Lite) recipe: same geometry, `(x*255 - 127) / 128`.
    pub fn tf() -> Self {
        Preprocess {
            mean: vec![127.0 / 255.0],
            std: vec![128.0 / 255.0],
            ..Preprocess::imagenet()
        }
    }

    /// `x / 255` and nothing else; the image is resized to the model's size only if it differs.
    pub fn unit() -> Self {
        Preprocess {
            resize: None,
            crop: None,
            scale: 255.0,
            mean: vec![0.0],
            std: vec![1.0],
        }
    }

    /// A preset by name: `imagenet`, `tf` or `unit`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "imagenet" => Ok(Preprocess::imagenet()),
            "tf" => Ok(Preprocess::tf()),
            "unit" => Ok(Preprocess::unit()),
            other => Err(Error::bad_input(format!(
                "unknown preprocessing preset {other:?} (known: imagenet, tf, unit)"
            ))),
        }
    }

    /// Replaces mean and std (each one value, or one per channel).
    pub fn with_mean_std(self, mean: Vec<f64>, std: Vec<f64>) -> Result<Self> {
        let p = Preprocess { mean, std, ..self };
        p.validate()?;
        Ok(p)
    }

    /// Checks the settings on their own (the model's shape is checked by [`preprocess`]).
    pub fn validate(&self) -> Result<()> {
        if self.resize == Some(0) || self.crop == Some(0) {
            return Err(Error::bad_input(
                "preprocessing resize and crop must be positive",
            ));
        }
        if let (Some(r), Some(c)) = (self.resize, self.crop) {
            if c > r {
                return Err(Error::bad_input(format!(
                    "preprocessing crop {c} is larger than the resized shorter side {r}"
                )));
            }
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(Error::bad_input(format!(
                "preprocessing scale must be a positive number, got {}",
                self.scale
            )));
        }
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if !matches!(v.len(), 1 | 3) {
                return Err(Error::bad_input(format!(
                    "preprocessing {name} needs 1 or 3 values, got {}",
                    v.len()
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::bad_input(format!(
                    "preprocessing {name} {v:?} is not finite"
                )));
            }
        }
        if self.std.contains(&0.0) {
            return Err(Error::bad_input(format!(
                "preprocessing std {:?} contains 0",
                self.std
            )));
        }
        Ok(())
    }

    /// Per-channel (mean, std) as the f32 the reference pipeline computes with.
    fn channel_stats(&self, channels: usize) -> Result<Vec<(f32, f32)>> {
        let pick = |v: &[f64], name: &str| -> Result<Vec<f32>> {
            match v.len() {
                1 => Ok(vec![v[0] as f32; channels]),
                n if n == channels => Ok(v.iter().map(|&x| x as f32).collect()),
                n => Err(Error::bad_input(format!(
                    "preprocessing {name} has {n} values but the model takes {channels} \
                     channel(s)"
                ))),
            }
        };
        let mean = pick(&self.mean, "mean")?;
        let std = pick(&self.std, "std")?;
        Ok(mean.into_iter().zip(std).collect())
    }
}

impl Preprocess {
    /// The model-input value of pixel sample `pixel` (0..=255 for 8-bit images) on channel `ch`
    /// of a `channels`-channel input: `(pixel / scale - mean) / std`.
    pub fn input_value(&self, channels: usize, ch: usize, pixel: f32) -> Result<f32> {
        let (mean, std) = self.stat(channels, ch)?;
        Ok((pixel / self.scale as f32 - mean) / std)
    }

    /// The inverse of [`Preprocess::input_value`]: the pixel sample that maps to `x`.
    pub fn pixel_value(&self, channels: usize, ch: usize, x: f32) -> Result<f32> {
        let (mean, std) = self.stat(channels, ch)?;
        Ok((x * std + mean) * self.scale as f32)
    }

    fn stat(&self, channels: usize, ch: usize) -> Result<(f32, f32)> {
        self.validate()?;
        self.channel_stats(channels)?
            .get(ch)
            .copied()
            .ok_or_else(|| Error::internal(format!("channel {ch} of {channels}")))
    }

    /// One model input (`[C, H, W]`, or `[1, C, H, W]`) back to interleaved 8-bit RGB, undoing
    /// the normalisation and rounding; gray inputs are replicated. Returns `(width, height,
    /// bytes)`.
    pub fn to_rgb8(&self, x: &HostTensor) -> Result<(usize, usize, Vec<u8>)> {
        let dims = match x.shape.as_slice() {
            [1, c, h, w] | [c, h, w] => [*c, *h, *w],
            other => {
                return Err(Error::bad_input(format!(
                    "expected one image [C, H, W], got {other:?}"
                )))
            }
        };
        let [c, h, w] = dims;
        let stats = self.channel_stats(c)?;
        let scale = self.scale as f32;
        let hw = h * w;
        let mut rgb = Vec::with_capacity(hw * 3);
        for i in 0..hw {
            for ch in 0..3 {
                let src = ch.min(c - 1);
                let (mean, std) = stats[src];
                let v = (x.data[src * hw + i] * std + mean) * scale;
                rgb.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
        Ok((w, h, rgb))
    }
}

/// Python's `round` on the half-integers a centre crop produces: ties go to the even neighbour.
fn half_of_round_even(d: usize) -> usize {
    let k = d / 2;
    if d % 2 == 1 && k % 2 == 1 {
        k + 1
    } else {
        k
    }
}

/// Pillow-style shorter-side target size, with Python's truncating `int(resize * long / short)`.
fn shorter_side_size(w: usize, h: usize, resize: usize) -> (usize, usize) {
    if w <= h {
        (resize, (resize as f64 * h as f64 / w as f64) as usize)
    } else {
        ((resize as f64 * w as f64 / h as f64) as usize, resize)
    }
}

/// Turns an image into the model's input `[1, C, H, W]`, where `input` is the model's
/// per-sample shape `[C, H, W]` (C = 1 or 3). Gray images are replicated for RGB models and RGB
/// images reduced to luminance for gray ones.
pub fn preprocess(img: &Image, pp: &Preprocess, input: &[usize]) -> Result<HostTensor> {
    if !matches!(img.channels, 1 | 3) || img.data.len() != img.width * img.height * img.channels {
        return Err(Error::bad_input(format!(
            "image of {}x{} with {} channel(s) holds {} samples; expected 1 or 3 channels and \
             width x height x channels samples",
            img.width,
            img.height,
            img.channels,
            img.data.len()
        )));
    }
    let channels = input.first().copied().unwrap_or(3);
    preprocess_rows(&ImageRows { img, channels }, pp, input)
}

/// [`preprocess`] reading the image one row at a time, already in the model's channel count:
/// the only full-size buffers are the caller's decoded image and, when resizing, the 8-bit
/// horizontally resized intermediate (`resized width × source height`).
fn preprocess_rows(img: &dyn Rows, pp: &Preprocess, input: &[usize]) -> Result<HostTensor> {
    pp.validate()?;
    let &[c, h, w] = input else {
        return Err(Error::bad_input(format!(
            "model input {input:?} is not an image [C, H, W]"
        )));
    };
    if !matches!(c, 1 | 3) || h == 0 || w == 0 {
        return Err(Error::bad_input(format!(
            "model input [{c}, {h}, {w}] is not an image with 1 or 3 channels"
        )));
    }
    let stats = pp.channel_stats(c)?;
    if let Some(k) = pp.crop {
        if (h, w) != (k, k) {
            return Err(Error::bad_input(format!(
                "preprocessing crops {k}x{k} but the model input is [{c}, {h}, {w}]"
            )));
        }
    }
    let (iw, ih) = (img.width(), img.height());
    let target = match pp.resize {
        Some(r) => Some(shorter_side_size(iw, ih, r)),
        None if pp.crop.is_none() => Some((w, h)),
        None => None,
    };
    let resized = match target {
        Some((nw, nh)) if (nw, nh) != (iw, ih) => {
            if nw == 0 || nh == 0 || nw > MAX_SIDE as usize || nh > MAX_SIDE as usize {
                return Err(Error::bad_input(format!(
                    "image of {iw}x{ih} would be resized to {nw}x{nh}; its aspect ratio is too \
                     extreme"
                )));
            }
            // Pillow resizes the 8-bit image: samples are rounded before resampling.
            let mut samples = vec![0f32; iw * c];
            let to_u8 = |y: usize, out: &mut [u8]| {
                img.row(y, &mut samples);
                for (o, &v) in out.iter_mut().zip(&samples) {
                    *o = v.round().clamp(0.0, 255.0) as u8;
                }
            };
            Some((
                nw,
                nh,
                resize::resize_bilinear_rows(to_u8, iw, ih, c, nw, nh),
            ))
        }
        _ => None,
    };
    let (rw, rh) = resized.as_ref().map_or((iw, ih), |&(nw, nh, _)| (nw, nh));
    if rw < w || rh < h {
        return Err(Error::bad_input(format!(
            "image is {rw}x{rh} after resizing, smaller than the {w}x{h} crop the model needs"
        )));
    }
    let left = half_of_round_even(rw - w);
    let top = half_of_round_even(rh - h);
    let scale = pp.scale as f32;
    let mut data = vec![0f32; c * h * w];
    let mut line = vec![0f32; rw * c];
    for y in 0..h {
        match &resized {
            Some((_, _, out)) => {
                let src = &out[(top + y) * rw * c..(top + y + 1) * rw * c];
                for (l, &v) in line.iter_mut().zip(src) {
                    *l = f32::from(v);
                }
            }
            None => img.row(top + y, &mut line),
        }
        for (ch, &(mean, std)) in stats.iter().enumerate() {
            let plane_row = &mut data[ch * h * w + y * w..ch * h * w + (y + 1) * w];
            for (x, out) in plane_row.iter_mut().enumerate() {
                *out = (line[(left + x) * c + ch] / scale - mean) / std;
            }
        }
    }
    HostTensor::new(vec![1, c, h, w], data)
}

/// Loads an image file with the model's channel count and preprocesses it, converting and
/// resizing row by row from the decoded buffer (see [`MAX_DECODED_BYTES`]).
pub fn image_tensor(
    path: impl AsRef<Path>,
    pp: &Preprocess,
    input: &[usize],
) -> Result<HostTensor> {
    let path = path.as_ref();
    let channels = input.first().copied().unwrap_or(3);
    check_channels(channels, &path.display())?;
    let img = decode::decode(path)?;
    decoded_tensor(&img, pp, input).map_err(|e| e.context(path.display()))
}

/// [`image_tensor`] on a file already in memory; `shown` names it in errors. This is also the
/// image fuzzing entry point, so it must return an error, never panic, on any bytes.
pub fn image_tensor_from_bytes(
    bytes: &[u8],
    shown: &dyn std::fmt::Display,
    pp: &Preprocess,
    input: &[usize],
) -> Result<HostTensor> {
    let channels = input.first().copied().unwrap_or(3);
    check_channels(channels, shown)?;
    let img = decode::decode_bytes(bytes, shown)?;
    decoded_tensor(&img, pp, input).map_err(|e| e.context(shown))
}

fn check_channels(channels: usize, shown: &dyn std::fmt::Display) -> Result<()> {
    if matches!(channels, 1 | 3) {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "cannot load {shown} for a model with {channels} input channels (only 1 or 3 are \
         supported)"
    )))
}

fn decoded_tensor(
    img: &image::DynamicImage,
    pp: &Preprocess,
    input: &[usize],
) -> Result<HostTensor> {
    let channels = input.first().copied().unwrap_or(3);
    match DecodedRows::new(img, channels) {
        Some(rows) => preprocess_rows(&rows, pp, input),
        // Float sources, which PNG and JPEG do not produce: converted whole.
        None => preprocess(&decode::rgb_from(img), pp, input),
    }
}

/// Concatenates tensors `[n_i, C, H, W]` (usually n_i = 1) along the batch axis.
pub fn batch(images: Vec<HostTensor>) -> Result<HostTensor> {
    let Some(first) = images.first() else {
        return Err(Error::bad_input("cannot make a batch of no images"));
    };
    let per_sample = first.shape.get(1..).unwrap_or(&[]).to_vec();
    if first.shape.len() < 2 {
        return Err(Error::bad_input(format!(
            "cannot batch a tensor of shape {:?}: it has no batch axis",
            first.shape
        )));
    }
    let mut n = 0;
    for (i, t) in images.iter().enumerate() {
        if t.shape.len() != first.shape.len() || t.shape[1..] != per_sample[..] {
            return Err(Error::bad_input(format!(
                "cannot batch inputs of different shapes: input 0 is {:?}, input {i} is {:?}",
                first.shape, t.shape
            )));
        }
        n += t.shape[0];
    }
    let mut data = Vec::with_capacity(images.iter().map(|t| t.data.len()).sum());
    for t in images {
        data.extend_from_slice(&t.data);
    }
    let mut shape = vec![n];
    shape.extend(per_sample);
    HostTensor::new(shape, data)
}

#[cfg(test)]
mod tests;
