//! Row-at-a-time access to an image in the model's channel count, so that preprocessing never
//! holds a full-size float copy of a large image (a 16384² RGB image is 768 MiB as decoded bytes
//! and would be 3 GiB as f32).
//!
//! Each row holds exactly the f32 samples the whole-image path ([`Image`], [`Image::to_gray`],
//! [`Image::to_rgb`]) would hold, so that resizing stays bit-identical to Pillow.

use image::DynamicImage;

use super::decode::SCALE16;
use super::Image;

/// An image seen one row at a time, already converted to `channels()` channels.
pub(super) trait Rows {
    fn width(&self) -> usize;
    fn height(&self) -> usize;
    /// Fills `out` (`width * channels` samples, interleaved) with row `y`.
    fn row(&self, y: usize, out: &mut [f32]);
}

/// Pillow's `convert("L")` weights (ITU-R 601-2 in 16-bit fixed point). 8-bit sources are
/// rounded as Pillow rounds; others keep their fraction.
pub(super) fn luma(p: [f32; 3], bit_depth: u8) -> f32 {
    let l = (f64::from(p[0]) * 19595.0 + f64::from(p[1]) * 38470.0 + f64::from(p[2]) * 7471.0)
        / 65536.0;
    if bit_depth == 8 {
        (l + 0.5).floor() as f32
    } else {
        l as f32
    }
}

/// An already decoded [`Image`] viewed with `channels` channels.
pub(super) struct ImageRows<'a> {
    pub img: &'a Image,
    pub channels: usize,
}

impl Rows for ImageRows<'_> {
    fn width(&self) -> usize {
        self.img.width
    }
    fn height(&self) -> usize {
        self.img.height
    }
    fn row(&self, y: usize, out: &mut [f32]) {
        let src_c = self.img.channels;
        let len = self.img.width * src_c;
        let src = &self.img.data[y * len..(y + 1) * len];
        convert(
            src,
            src_c,
            src_c == 1,
            self.img.bit_depth,
            self.channels,
            |s| s,
            out,
        );
    }
}

/// Converts one row of `stride`-sample pixels whose first sample (gray) or first three (RGB)
/// are colour, mapping each sample with `f`, into `c` channels.
fn convert<T: Copy>(
    src: &[T],
    stride: usize,
    gray: bool,
    bit_depth: u8,
    c: usize,
    f: impl Fn(T) -> f32,
    out: &mut [f32],
) {
    for (px, o) in src.chunks_exact(stride).zip(out.chunks_exact_mut(c)) {
        if gray {
            o.fill(f(px[0]));
        } else {
            let rgb = [f(px[0]), f(px[1]), f(px[2])];
            if c == 3 {
                o.copy_from_slice(&rgb);
            } else {
                o[0] = luma(rgb, bit_depth);
            }
        }
    }
}

/// A decoded file in its own sample type (8 or 16 bit, gray or RGB, with or without alpha),
/// converted row by row as `load_rgb`/`load_gray` convert the whole image.
pub(super) struct DecodedRows<'a> {
    img: &'a DynamicImage,
    channels: usize,
}

impl<'a> DecodedRows<'a> {
    /// `None` for sample types PNG and JPEG do not produce (float); the caller converts those
    /// whole.
    pub fn new(img: &'a DynamicImage, channels: usize) -> Option<Self> {
        use DynamicImage as D;
        match img {
            D::ImageLuma8(_)
            | D::ImageLumaA8(_)
            | D::ImageRgb8(_)
            | D::ImageRgba8(_)
            | D::ImageLuma16(_)
            | D::ImageLumaA16(_)
            | D::ImageRgb16(_)
            | D::ImageRgba16(_) => Some(DecodedRows { img, channels }),
            _ => None,
        }
    }
}

impl Rows for DecodedRows<'_> {
    fn width(&self) -> usize {
        self.img.width() as usize
    }
    fn height(&self) -> usize {
        self.img.height() as usize
    }
    fn row(&self, y: usize, out: &mut [f32]) {
        use DynamicImage as D;
        let w = self.width();
        let c = self.channels;
        let u8f = f32::from;
        let u16f = |s: u16| f32::from(s) * SCALE16;
        fn line<T>(raw: &[T], w: usize, stride: usize, y: usize) -> &[T] {
            &raw[y * w * stride..(y + 1) * w * stride]
        }
        match self.img {
            D::ImageLuma8(b) => convert(line(b.as_raw(), w, 1, y), 1, true, 8, c, u8f, out),
            D::ImageLumaA8(b) => convert(line(b.as_raw(), w, 2, y), 2, true, 8, c, u8f, out),
            D::ImageRgb8(b) => convert(line(b.as_raw(), w, 3, y), 3, false, 8, c, u8f, out),
            D::ImageRgba8(b) => convert(line(b.as_raw(), w, 4, y), 4, false, 8, c, u8f, out),
            D::ImageLuma16(b) => convert(line(b.as_raw(), w, 1, y), 1, true, 16, c, u16f, out),
            D::ImageLumaA16(b) => convert(line(b.as_raw(), w, 2, y), 2, true, 16, c, u16f, out),
            D::ImageRgb16(b) => convert(line(b.as_raw(), w, 3, y), 3, false, 16, c, u16f, out),
            D::ImageRgba16(b) => convert(line(b.as_raw(), w, 4, y), 4, false, 16, c, u16f, out),
            // `new` admits only the variants above.
            _ => out.fill(0.0),
        }
    }
}
