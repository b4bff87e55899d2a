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
mod sidecar;

use std::path::Path;

pub use dataset::{Dataset, Item};
pub use decode::{load_gray, load_rgb, MAX_PIXELS, MAX_SIDE};
pub use npy::{check_input_shape, load_input_npy, load_npy, write_npy};
pub use resize::resize_bilinear_u8;
pub use sidecar::{load_labels, Sidecar};

use crate::backend::HostTensor;
use crate::error::{Error, Result};

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
            .map(|p| {
                let l = (f64::from(p[0]) * 19595.0
                    + f64::from(p[1]) * 38470.0
                    + f64::from(p[2]) * 7471.0)
                    / 65536.0;
                if self.bit_depth == 8 {
                    (l + 0.5).floor() as f32
                } else {
                    l as f32
                }
            })
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

    fn with_channels(&self, channels: usize) -> Image {
        if channels == 1 {
            self.to_gray()
        } else {
            self.to_rgb()
        }
    }

    /// Samples rounded to 8 bits, the representation Pillow resizes.
    fn to_u8(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|&v| v.round().clamp(0.0, 255.0) as u8)
            .collect()
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
    let img = img.with_channels(c);
    let target = match pp.resize {
        Some(r) => Some(shorter_side_size(img.width, img.height, r)),
        None if pp.crop.is_none() => Some((w, h)),
        None => None,
    };
    let (rw, rh, pixels) = match target {
        Some((nw, nh)) if (nw, nh) != (img.width, img.height) => {
            if nw == 0 || nh == 0 || nw > MAX_SIDE as usize || nh > MAX_SIDE as usize {
                return Err(Error::bad_input(format!(
                    "image of {}x{} would be resized to {nw}x{nh}; its aspect ratio is too \
                     extreme",
                    img.width, img.height
                )));
            }
            let out = resize_bilinear_u8(&img.to_u8(), img.width, img.height, c, nw, nh);
            (nw, nh, out.into_iter().map(f32::from).collect())
        }
        _ => (img.width, img.height, img.data),
    };
    if rw < w || rh < h {
        return Err(Error::bad_input(format!(
            "image is {rw}x{rh} after resizing, smaller than the {w}x{h} crop the model needs"
        )));
    }
    let left = half_of_round_even(rw - w);
    let top = half_of_round_even(rh - h);
    let scale = pp.scale as f32;
    let mut data = vec![0f32; c * h * w];
    for (ch, plane) in data.chunks_exact_mut(h * w).enumerate() {
        let (mean, std) = stats[ch];
        for (y, row) in plane.chunks_exact_mut(w).enumerate() {
            let src = (top + y) * rw + left;
            for (x, out) in row.iter_mut().enumerate() {
                *out = (pixels[(src + x) * c + ch] / scale - mean) / std;
            }
        }
    }
    HostTensor::new(vec![1, c, h, w], data)
}

/// Loads an image file with the model's channel count and preprocesses it.
pub fn image_tensor(
    path: impl AsRef<Path>,
    pp: &Preprocess,
    input: &[usize],
) -> Result<HostTensor> {
    let path = path.as_ref();
    let channels = input.first().copied().unwrap_or(3);
    let img = load_image(path, channels)?;
    preprocess(&img, pp, input).map_err(|e| e.context(path.display()))
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
