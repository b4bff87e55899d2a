//! PNG/JPEG decoding into float pixels, whatever the file's color type and bit depth.

use std::io::Read;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

use super::Image;
use crate::error::{Error, Result};

/// Largest accepted side, in pixels.
pub const MAX_SIDE: u32 = 16384;
/// Largest accepted pixel count.
pub const MAX_PIXELS: u64 = 256 * 1024 * 1024;

/// Decodes the file, checking the declared size before any pixel buffer is allocated so that a
/// tiny file claiming a huge image fails fast instead of exhausting memory.
fn decode(path: &Path) -> Result<DynamicImage> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::bad_input(format!("image file {shown} does not exist"))
        } else {
            Error::bad_input(format!("cannot read image file {shown}: {e}"))
        }
    })?;
    if meta.is_dir() {
        return Err(Error::bad_input(format!(
            "image path {shown} is a directory, not a file"
        )));
    }
    if meta.len() == 0 {
        return Err(Error::bad_input(format!(
            "image file {shown} is empty (0 bytes)"
        )));
    }
    // The contents decide, not the extension: a text file named .png should be reported as not
    // an image at all rather than as a corrupt PNG.
    let mut head = Vec::with_capacity(32);
    std::fs::File::open(path)
        .and_then(|f| f.take(32).read_to_end(&mut head))
        .map_err(|e| Error::bad_input(format!("cannot read image file {shown}: {e}")))?;
    let format = match image::guess_format(&head) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        Ok(f) => {
            return Err(Error::bad_input(format!(
                "{shown} is a {f:?} image; only PNG and JPEG are supported"
            )))
        }
        Err(_) => {
            return Err(Error::bad_input(format!(
                "{shown} is not a PNG or JPEG image (its contents start with neither signature)"
            )))
        }
    };
    let mut reader = ImageReader::open(path)
        .map_err(|e| Error::bad_input(format!("cannot read image file {shown}: {e}")))?;
    reader.set_format(format);
    let mut limits = Limits::default();
    // Room for the largest image the size check below admits (4 channels of 16 bits), so that the
    // clearer size message fires first.
    limits.max_alloc = Some(MAX_PIXELS * 8 + (64 << 20));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| decode_error(path, e))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::bad_input(format!(
            "image {shown} has no pixels ({w}x{h})"
        )));
    }
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(Error::bad_input(format!(
            "image {shown} is {w}x{h}, too large (at most {MAX_SIDE} px a side and {} Mpixel)",
            MAX_PIXELS >> 20
        )));
    }
    DynamicImage::from_decoder(decoder).map_err(|e| decode_error(path, e))
}

fn decode_error(path: &Path, e: ImageError) -> Error {
    let shown = path.display();
    match e {
        ImageError::Unsupported(e) => Error::bad_input(format!(
            "{shown} is not a supported image (PNG or JPEG): {e}"
        )),
        ImageError::Limits(e) => Error::bad_input(format!("image {shown} is too large: {e}")),
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::bad_input(format!("image file {shown} is truncated: {e}"))
        }
        e => Error::bad_input(format!(
            "cannot decode image {shown} (corrupt or truncated?): {e}"
        )),
    }
}

/// 16-bit samples map to 0..=255 without rounding so that no precision is lost before the caller
/// decides how to quantise.
const SCALE16: f32 = 255.0 / 65535.0;

/// Takes the first `keep` of every `stride` samples, scaled to 0..=255.
fn take<T: Copy>(samples: &[T], stride: usize, keep: usize, f: impl Fn(T) -> f32) -> Vec<f32> {
    samples
        .chunks_exact(stride)
        .flat_map(|px| px[..keep].iter().map(|&s| f(s)))
        .collect()
}

fn replicate(gray: Vec<f32>) -> Vec<f32> {
    gray.into_iter().flat_map(|g| [g, g, g]).collect()
}

/// Loads a PNG or JPEG as interleaved RGB in 0..=255. Gray is replicated, alpha is dropped (the
/// colour channels are taken as they are, as Pillow's `convert("RGB")` does), 16-bit samples are
/// scaled to 0..=255 keeping their fractional part.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<Image> {
    Ok(rgb_from(&decode(path.as_ref())?))
}

fn rgb_from(img: &DynamicImage) -> Image {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let u8f = f32::from;
    let u16f = |s: u16| f32::from(s) * SCALE16;
    let (data, bit_depth) = match img {
        DynamicImage::ImageLuma8(b) => (replicate(take(b.as_raw(), 1, 1, u8f)), 8),
        DynamicImage::ImageLumaA8(b) => (replicate(take(b.as_raw(), 2, 1, u8f)), 8),
        DynamicImage::ImageRgb8(b) => (take(b.as_raw(), 3, 3, u8f), 8),
        DynamicImage::ImageRgba8(b) => (take(b.as_raw(), 4, 3, u8f), 8),
        DynamicImage::ImageLuma16(b) => (replicate(take(b.as_raw(), 1, 1, u16f)), 16),
        DynamicImage::ImageLumaA16(b) => (replicate(take(b.as_raw(), 2, 1, u16f)), 16),
        DynamicImage::ImageRgb16(b) => (take(b.as_raw(), 3, 3, u16f), 16),
        DynamicImage::ImageRgba16(b) => (take(b.as_raw(), 4, 3, u16f), 16),
        other => (
            other
                .to_rgb32f()
                .as_raw()
                .iter()
                .map(|&s| (s * 255.0).clamp(0.0, 255.0))
                .collect(),
            32,
        ),
    };
    Image {
        width,
        height,
        channels: 3,
        bit_depth,
        data,
    }
}

/// Loads a PNG or JPEG as one channel in 0..=255: a gray file's own values, otherwise the
/// luminance of its RGB (see [`Image::to_gray`]).
pub fn load_gray(path: impl AsRef<Path>) -> Result<Image> {
    let path = path.as_ref();
    let img = decode(path)?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let gray = match &img {
        DynamicImage::ImageLuma8(b) => Some((take(b.as_raw(), 1, 1, f32::from), 8)),
        DynamicImage::ImageLumaA8(b) => Some((take(b.as_raw(), 2, 1, f32::from), 8)),
        DynamicImage::ImageLuma16(b) => {
            Some((take(b.as_raw(), 1, 1, |s| f32::from(s) * SCALE16), 16))
        }
        DynamicImage::ImageLumaA16(b) => {
            Some((take(b.as_raw(), 2, 1, |s| f32::from(s) * SCALE16), 16))
        }
        _ => None,
    };
    match gray {
        Some((data, bit_depth)) => Ok(Image {
            width,
            height,
            channels: 1,
            bit_depth,
            data,
        }),
        None => Ok(rgb_from(&img).to_gray()),
    }
}
