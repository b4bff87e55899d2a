//! Scatter plots of 2-D embeddings (t-SNE) as PNG: points coloured by label with a legend, or
//! small image thumbnails at the points. Drawn straight into an RGB buffer with an embedded 5×7
//! bitmap font, so no font or plotting library is needed.

use std::collections::BTreeMap;
use std::path::Path;

use crate::backend::HostTensor;
use crate::error::{Error, Result};

/// A small RGB image drawn at a point.
#[derive(Clone, Debug)]
pub struct Thumbnail {
    /// Thumbnail width in pixels.
    pub width: usize,
    /// Thumbnail height in pixels.
    pub height: usize,
    /// Interleaved RGB, `width · height · 3` bytes.
    pub rgb: Vec<u8>,
}

/// How to draw the scatter plot.
#[derive(Clone, Debug)]
pub struct Scatter {
    /// Side of the square plot area in pixels (800).
    pub size: usize,
    /// Point radius in pixels (3).
    pub radius: usize,
    /// A title drawn above the plot.
    pub title: Option<String>,
    /// One per point: drawn where they do not overlap an earlier one, framed in the label colour.
    pub thumbnails: Option<Vec<Thumbnail>>,
}

impl Default for Scatter {
    fn default() -> Self {
        Scatter {
            size: 800,
            radius: 3,
            title: None,
            thumbnails: None,
        }
    }
}

/// Matplotlib's tab20 order with the ten strong colours first, so ten classes get tab10.
const PALETTE: [[u8; 3]; 20] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
    [174, 199, 232],
    [255, 187, 120],
    [152, 223, 138],
    [255, 152, 150],
    [197, 176, 213],
    [196, 156, 148],
    [247, 182, 210],
    [199, 199, 199],
    [219, 219, 141],
    [158, 218, 229],
];

/// The colour of the `k`-th class.
pub fn class_colour(k: usize) -> [u8; 3] {
    PALETTE[k % PALETTE.len()]
}

const MARGIN: usize = 24;
const LEGEND_W: usize = 190;
const TITLE_H: usize = 30;
const MAX_LEGEND: usize = 40;

/// An RGB drawing surface (also the curve plots' in [`super::curve`]).
pub(super) struct Canvas {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) rgb: Vec<u8>,
}

impl Canvas {
    pub(super) fn blend(&mut self, x: i64, y: i64, c: [u8; 3], alpha: f32) {
        if x < 0 || y < 0 || x as usize >= self.w || y as usize >= self.h {
            return;
        }
        let at = (y as usize * self.w + x as usize) * 3;
        for (px, &ck) in self.rgb[at..at + 3].iter_mut().zip(&c) {
            let old = *px as f32;
            *px = (old + (ck as f32 - old) * alpha).round() as u8;
        }
    }

    pub(super) fn disc(&mut self, cx: f32, cy: f32, r: f32, c: [u8; 3], alpha: f32) {
        let ri = r.ceil() as i64 + 1;
        let (x0, y0) = (cx.round() as i64, cy.round() as i64);
        for dy in -ri..=ri {
            for dx in -ri..=ri {
                let (px, py) = ((x0 + dx) as f32 - cx, (y0 + dy) as f32 - cy);
                // One pixel of soft edge keeps small discs round.
                let cover = (r + 0.5 - (px * px + py * py).sqrt()).clamp(0.0, 1.0);
                if cover > 0.0 {
                    self.blend(x0 + dx, y0 + dy, c, alpha * cover);
                }
            }
        }
    }

    pub(super) fn rect(&mut self, x: i64, y: i64, w: usize, h: usize, c: [u8; 3]) {
        for dy in 0..h as i64 {
            for dx in 0..w as i64 {
                self.blend(x + dx, y + dy, c, 1.0);
            }
        }
    }

    pub(super) fn text(&mut self, x: i64, y: i64, s: &str, scale: usize, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            let gx = x + (k * 6 * scale) as i64;
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits >> (4 - col) & 1 == 1 {
                        self.rect(
                            gx + (col * scale) as i64,
                            y + (row * scale) as i64,
                            scale,
                            scale,
                            c,
                        );
                    }
                }
            }
        }
    }
}

/// Orders labels numerically when they are all numbers, else by text.
fn label_order(labels: &[String]) -> Vec<String> {
    let mut set: Vec<String> = labels
        .iter()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if set.iter().all(|l| l.parse::<f64>().is_ok()) {
        set.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
        });
    }
    set
}

/// Renders the first two columns of `embedding` `[N, ≥2]`; returns `(width, height, rgb)`.
pub fn render(
    embedding: &HostTensor,
    labels: Option<&[String]>,
    opts: &Scatter,
) -> Result<(usize, usize, Vec<u8>)> {
    if embedding.shape.len() != 2 || embedding.shape[1] < 2 {
        return Err(Error::bad_input(format!(
            "a scatter plot needs an [N, 2+] embedding, got {:?}",
            embedding.shape
        )));
    }
    let (n, dims) = (embedding.shape[0], embedding.shape[1]);
    if let Some(l) = labels {
        if l.len() != n {
            return Err(Error::bad_input(format!(
                "{} labels for {n} points",
                l.len()
            )));
        }
    }
    if let Some(t) = &opts.thumbnails {
        if t.len() != n {
            return Err(Error::bad_input(format!(
                "{} thumbnails for {n} points",
                t.len()
            )));
        }
    }
    let size = opts.size.max(64);
    let top = MARGIN + if opts.title.is_some() { TITLE_H } else { 0 };
    let legend = labels.is_some();
    let w = MARGIN * 2 + size + if legend { LEGEND_W } else { 0 };
    let h = top + size + MARGIN;
    let mut cv = Canvas {
        w,
        h,
        rgb: vec![255; w * h * 3],
    };
    if let Some(t) = &opts.title {
        cv.text(MARGIN as i64, (MARGIN / 2) as i64, t, 2, [30, 30, 30]);
    }
    // Frame.
    let frame = [200, 200, 200];
    cv.rect(MARGIN as i64 - 1, top as i64 - 1, size + 2, 1, frame);
    cv.rect(MARGIN as i64 - 1, (top + size) as i64, size + 2, 1, frame);
    cv.rect(MARGIN as i64 - 1, top as i64 - 1, 1, size + 2, frame);
    cv.rect((MARGIN + size) as i64, top as i64 - 1, 1, size + 2, frame);

    let xs: Vec<f32> = (0..n).map(|i| embedding.data[i * dims]).collect();
    let ys: Vec<f32> = (0..n).map(|i| embedding.data[i * dims + 1]).collect();
    let finite = |v: &Vec<f32>| {
        v.iter()
            .filter(|a| a.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &a| {
                (lo.min(a), hi.max(a))
            })
    };
    let ((x0, x1), (y0, y1)) = (finite(&xs), finite(&ys));
    let span = (x1 - x0).max(y1 - y0).max(1e-12);
    let pad = opts.radius as f32 + 4.0;
    let k = (size as f32 - 2.0 * pad) / span;
    // Equal aspect, centred.
    let (ox, oy) = (
        MARGIN as f32 + pad + 0.5 * (span - (x1 - x0)) * k,
        top as f32 + pad + 0.5 * (span - (y1 - y0)) * k,
    );
    let px = |i: usize| (ox + (xs[i] - x0) * k, oy + (y1 - ys[i]) * k);

    let order = labels.map(label_order).unwrap_or_default();
    let index: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(k, l)| (l.as_str(), k))
        .collect();
    let colour = |i: usize| match labels {
        Some(l) => class_colour(index[l[i].as_str()]),
        None => PALETTE[0],
    };
    let r = opts.radius as f32;
    for i in 0..n {
        if xs[i].is_finite() && ys[i].is_finite() {
            let (x, y) = px(i);
            cv.disc(x, y, r, colour(i), 0.75);
        }
    }
    if let Some(thumbs) = &opts.thumbnails {
        let mut placed: Vec<(f32, f32)> = Vec::new();
        for (i, t) in thumbs.iter().enumerate() {
            if !(xs[i].is_finite() && ys[i].is_finite()) || t.rgb.len() != t.width * t.height * 3 {
                continue;
            }
            let (x, y) = px(i);
            let reach = t.width.max(t.height) as f32 + 4.0;
            if placed
                .iter()
                .any(|&(a, b)| (a - x).abs() < reach && (b - y).abs() < reach)
            {
                continue;
            }
            placed.push((x, y));
            let (tx, ty) = (
                x as i64 - t.width as i64 / 2,
                y as i64 - t.height as i64 / 2,
            );
            cv.rect(tx - 2, ty - 2, t.width + 4, t.height + 4, colour(i));
            for row in 0..t.height {
                for col in 0..t.width {
                    let at = (row * t.width + col) * 3;
                    let c = [t.rgb[at], t.rgb[at + 1], t.rgb[at + 2]];
                    cv.blend(tx + col as i64, ty + row as i64, c, 1.0);
                }
            }
        }
    }
    if legend {
        let lx = (MARGIN * 2 + size) as i64;
        for (k, l) in order.iter().take(MAX_LEGEND).enumerate() {
            let ly = (top + 8 + k * 20) as i64;
            cv.disc(lx as f32 + 6.0, ly as f32 + 7.0, 5.0, class_colour(k), 1.0);
            let text: String = l.chars().take(13).collect();
            cv.text(lx + 18, ly, &text, 2, [30, 30, 30]);
        }
        if order.len() > MAX_LEGEND {
            let ly = (top + 8 + MAX_LEGEND * 20) as i64;
            cv.text(
                lx + 18,
                ly,
                &format!("+{}", order.len() - MAX_LEGEND),
                2,
                [90, 90, 90],
            );
        }
    }
    Ok((w, h, cv.rgb))
}

/// [`render`], written as PNG.
pub fn scatter_png(
    path: &Path,
    embedding: &HostTensor,
    labels: Option<&[String]>,
    opts: &Scatter,
) -> Result<()> {
    let (w, h, rgb) = render(embedding, labels, opts)?;
    super::save_rgb_png(path, w, h, rgb)
}

/// 5×7 glyphs, one byte per row (low five bits, leftmost pixel highest). Lower case is drawn as
/// upper case; characters without a glyph are drawn as a small box.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0; 7],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        _ => [0, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_land_in_their_colour_and_legend_is_drawn() {
        let e = HostTensor::new(vec![2, 2], vec![0.0, 0.0, 1.0, 1.0]).unwrap();
        let labels = vec!["0".to_string(), "1".to_string()];
        let (w, h, rgb) = render(&e, Some(&labels), &Scatter::default()).unwrap();
        assert_eq!(w, 2 * MARGIN + 800 + LEGEND_W);
        let at = |x: usize, y: usize| {
            let i = (y * w + x) * 3;
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        // Point 0 is bottom-left, point 1 top-right of the plot area.
        let pad = 3 + 4;
        let (bl, tr) = (
            at(MARGIN + pad, MARGIN + 800 - pad),
            at(MARGIN + 800 - pad, MARGIN + pad),
        );
        assert!(bl[2] > bl[0], "{bl:?}");
        assert!(tr[0] > tr[2], "{tr:?}");
        assert!(h > 800);
    }
}
