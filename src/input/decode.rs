//! PNG/JPEG decoding into float pixels, whatever the file's color type and bit depth.

use std::fmt::Display;
use std::io::{BufRead, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

use super::Image;
use crate::error::{Error, Result};

/// Largest accepted side, in pixels.
pub const MAX_SIDE: u32 = 16384;
/// Largest accepted pixel count.
pub const MAX_PIXELS: u64 = 256 * 1024 * 1024;

/// Largest decoded pixel buffer, in bytes, at the source's own sample type (16384² 8-bit RGB is
/// 768 MiB; 16384² 8-bit RGBA is exactly 1 GiB). Preprocessing converts and resizes row by row
/// from this buffer, so it is the bulk of the memory an image costs (see the README's input
/// section); a file that would need more is refused with exit 2 before anything is allocated.
pub const MAX_DECODED_BYTES: u64 = 1 << 30;

/// Decoder-internal allocations (row buffers, zlib window, JPEG component planes) on top of the
/// output buffer.
const DECODER_SLACK: u64 = 64 << 20;

/// Decodes the file, checking the declared size before any pixel buffer is allocated so that a
/// tiny file claiming a huge image fails fast instead of exhausting memory.
pub(super) fn decode(path: &Path) -> Result<DynamicImage> {
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
    let format = supported_format(&head, &shown)?;
    let file = std::fs::File::open(path)
        .map_err(|e| Error::bad_input(format!("cannot read image file {shown}: {e}")))?;
    decode_from(std::io::BufReader::new(file), format, &shown)
}

/// [`decode`] on a file already in memory; `shown` names it in errors. This is also the fuzzing
/// entry point, so it must return an error, never panic, on any bytes.
pub(super) fn decode_bytes(bytes: &[u8], shown: &dyn Display) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(Error::bad_input(format!(
            "image file {shown} is empty (0 bytes)"
        )));
    }
    let format = supported_format(&bytes[..bytes.len().min(32)], shown)?;
    decode_from(Cursor::new(bytes), format, shown)
}

fn supported_format(head: &[u8], shown: &dyn Display) -> Result<ImageFormat> {
    match image::guess_format(head) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => Ok(f),
        Ok(f) => Err(Error::bad_input(format!(
            "{shown} is a {f:?} image; only PNG and JPEG are supported"
        ))),
        Err(_) => Err(Error::bad_input(format!(
            "{shown} is not a PNG or JPEG image (its contents start with neither signature)"
        ))),
    }
}

fn decode_from<R: BufRead + Seek>(
    mut input: R,
    format: ImageFormat,
    shown: &dyn Display,
) -> Result<DynamicImage> {
    let io_err =
        |e: std::io::Error| Error::bad_input(format!("cannot read image file {shown}: {e}"));
    if format == ImageFormat::Png {
        let start = input.stream_position().map_err(io_err)?;
        let verdict = check_png_palette(&mut input);
        input.seek(SeekFrom::Start(start)).map_err(io_err)?;
        verdict.map_err(|why| {
            Error::bad_input(format!("cannot decode image {shown} (corrupt PNG): {why}"))
        })?;
    }
    let mut reader = ImageReader::new(input);
    reader.set_format(format);
    let mut limits = Limits::default();
    // Room for the largest buffer the size checks below admit, so that their clearer messages
    // fire first; the limit still caps what the decoders allocate internally.
    limits.max_alloc = Some(MAX_DECODED_BYTES + DECODER_SLACK);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| decode_error(shown, e))?;
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
    let bytes = decoder.total_bytes();
    if bytes > MAX_DECODED_BYTES {
        return Err(Error::bad_input(format!(
            "image {shown} is {w}x{h} {:?}: decoding it needs {} MiB, over the {} MiB decode \
             budget (netlens decodes at most {MAX_SIDE} px a side, {} Mpixel and {} MiB of \
             samples)",
            decoder.color_type(),
            bytes >> 20,
            MAX_DECODED_BYTES >> 20,
            MAX_PIXELS >> 20,
            MAX_DECODED_BYTES >> 20
        )));
    }
    DynamicImage::from_decoder(decoder).map_err(|e| decode_error(shown, e))
}

/// Refuses the palette chunks that make the `png` crate (0.18) panic instead of returning an
/// error: a PLTE whose length is not a whole number of RGB entries, and, in a palette image, a
/// tRNS with more entries than the PLTE (both found by tests/fuzz_inputs.rs; the inputs are in
/// assets/fuzz/crashes/). Only chunk headers before the first IDAT are read; the caller rewinds.
fn check_png_palette<R: Read + Seek>(r: &mut R) -> std::result::Result<(), String> {
    let mut buf = [0u8; 8];
    if r.read_exact(&mut buf).is_err() {
        return Ok(()); // too short: the decoder reports it
    }
    let mut palette_image = false;
    let mut plte: Option<u32> = None;
    let mut trns: Option<u32> = None;
    // Unreadable or truncated chunk streams are left to the decoder's own error.
    while r.read_exact(&mut buf).is_ok() {
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let kind = [buf[4], buf[5], buf[6], buf[7]];
        match &kind {
            b"IDAT" | b"IEND" => break,
            b"IHDR" => {
                let mut ihdr = [0u8; 13];
                if len != 13 || r.read_exact(&mut ihdr).is_err() {
                    break;
                }
                palette_image = ihdr[9] == 3;
                if r.seek(SeekFrom::Current(4)).is_err() {
                    break;
                }
                continue;
            }
            b"PLTE" => plte = Some(len),
            b"tRNS" => trns = Some(len),
            _ => {}
        }
        if r.seek(SeekFrom::Current(i64::from(len) + 4)).is_err() {
            break;
        }
    }
    if let Some(len) = plte {
        if len % 3 != 0 {
            return Err(format!(
                "its PLTE chunk is {len} bytes, not a whole number of 3-byte entries"
            ));
        }
    }
    if let (true, Some(t)) = (palette_image, trns) {
        let entries = plte.unwrap_or(0) / 3;
        if t > entries {
            return Err(format!(
                "its tRNS chunk has {t} entries for a palette of {entries}"
            ));
        }
    }
    Ok(())
}

fn decode_error(shown: &dyn Display, e: ImageError) -> Error {
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
pub(super) const SCALE16: f32 = 255.0 / 65535.0;

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

pub(super) fn rgb_from(img: &DynamicImage) -> Image {
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
