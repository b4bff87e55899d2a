//! Pictures: colormaps and heat-map overlays, written as PNG.

pub mod curve;
pub mod montage;
pub mod scatter;

use std::path::Path;

use crate::backend::HostTensor;
use crate::error::{Error, Result};
use crate::input::Preprocess;

/// Google's Turbo colormap (Mikhailov's polynomial fit), `t` in [0, 1] → RGB in [0, 1].
pub fn turbo(t: f32) -> [f32; 3] {
    let x = t.clamp(0.0, 1.0) as f64;
    let v4 = [1.0, x, x * x, x * x * x];
    let v2 = [v4[2] * v4[2], v4[3] * v4[2]];
    let dot = |a: [f64; 4], b: [f64; 2]| {
        a.iter().zip(&v4).map(|(p, q)| p * q).sum::<f64>() + b[0] * v2[0] + b[1] * v2[1]
    };
    let r = dot(
        [0.13572138, 4.61539260, -42.66032258, 132.13108234],
        [-152.94239396, 59.28637943],
    );
    let g = dot(
        [0.09140261, 2.19418839, 4.84296658, -14.18503333],
        [4.27729857, 2.82956604],
    );
    let b = dot(
        [0.10667330, 12.64194608, -60.58204836, 110.36276771],
        [-89.90310912, 27.34824973],
    );
    [
        r.clamp(0.0, 1.0) as f32,
        g.clamp(0.0, 1.0) as f32,
        b.clamp(0.0, 1.0) as f32,
    ]
}

/// The model input `[1, C, H, W]` back in display space: interleaved RGB in [0, 1], undoing the
/// normalisation (gray models are replicated to RGB).
pub fn display_image(x: &HostTensor, pre: &Preprocess) -> Vec<f32> {
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
    let hw = h * w;
    let mut rgb = Vec::with_capacity(hw * 3);
    for i in 0..hw {
        for ch in 0..3 {
            let src = ch.min(c - 1);
            let mean = pre.mean.get(src).copied().unwrap_or(0.0) as f32;
            let std = pre.std.get(src).copied().unwrap_or(1.0) as f32;
            rgb.push((x.data[src * hw + i] * std + mean).clamp(0.0, 1.0));
        }
    }
    rgb
}

/// pytorch-grad-cam's `show_cam_on_image`: the min-max normalised map in Turbo, blended 50/50
/// with the image, then rescaled so the brightest pixel is 1. `image` is interleaved RGB [0, 1].
pub fn overlay(image: &[f32], map: &HostTensor) -> Vec<u8> {
    let norm = crate::methods::normalize_min_max(map);
    let mut out: Vec<f32> = norm
        .data
        .iter()
        .enumerate()
        .flat_map(|(i, &v)| {
            let heat = turbo(v);
            (0..3).map(move |ch| 0.5 * heat[ch] + 0.5 * image[i * 3 + ch])
        })
        .collect();
    let max = out.iter().copied().fold(1e-7, f32::max);
    out.iter_mut().for_each(|v| *v /= max);
    out.iter().map(|v| (v * 255.0).round() as u8).collect()
}

/// A map alone in Turbo, min-max normalised, as RGB bytes.
pub fn heatmap(map: &HostTensor) -> Vec<u8> {
    crate::methods::normalize_min_max(map)
        .data
        .iter()
        .flat_map(|&v| turbo(v).map(|c| (c * 255.0).round() as u8))
        .collect()
}

/// Writes interleaved 8-bit RGB (`width · height · 3` bytes) as a PNG file, atomically
/// ([`crate::atomic`]); a failed write is an output error naming the path.
pub fn save_rgb_png(path: &Path, width: usize, height: usize, rgb: Vec<u8>) -> Result<()> {
    if rgb.len() != width * height * 3 {
        return Err(Error::internal("image buffer does not match its size"));
    }
    use image::ImageEncoder;
    crate::atomic::write_with(path, |w| {
        image::codecs::png::PngEncoder::new(w)
            .write_image(
                &rgb,
                width as u32,
                height as u32,
                image::ExtendedColorType::Rgb8,
            )
            .map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbo_endpoints_and_middle() {
        // Turbo runs from near-black purple through blue and green to dark red; 0.25 is blue-cyan.
        let lo = turbo(0.0);
        let quarter = turbo(0.2);
        let mid = turbo(0.5);
        let hi = turbo(1.0);
        assert!(lo.iter().sum::<f32>() < 0.5, "{lo:?}");
        assert!(quarter[2] > quarter[0], "{quarter:?}");
        assert!(mid[1] > 0.8, "{mid:?}");
        assert!(hi[0] > hi[1] && hi[0] > hi[2], "{hi:?}");
    }
}
