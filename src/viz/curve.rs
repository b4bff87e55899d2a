//! A line plot of one curve over `[0, 1]` (the deletion and insertion curves of
//! `netlens evaluate`): frame, the area under the curve shaded, the line, a title and the
//! y range. Drawn on the scatter plot's canvas, written as PNG.

use std::path::Path;

use super::scatter::Canvas;
use crate::error::{Error, Result};

const W: usize = 320;
const H: usize = 220;
const LEFT: usize = 44;
const TOP: usize = 30;
const PLOT_W: usize = W - LEFT - 12;
const PLOT_H: usize = H - TOP - 26;

/// Renders `ys` at `xs` (both the same length, `xs` in `[0, 1]`) on a y axis from 0 to
/// `max(1, max ys)` (probabilities fill it; logits above 1 widen it; negative values are drawn
/// at 0); returns `(width, height, rgb)`.
pub fn render(xs: &[f64], ys: &[f32], title: &str) -> Result<(usize, usize, Vec<u8>)> {
    if xs.len() != ys.len() || xs.len() < 2 {
        return Err(Error::internal(format!(
            "a curve needs two or more points, got {} x and {} y",
            xs.len(),
            ys.len()
        )));
    }
    let mut cv = Canvas {
        w: W,
        h: H,
        rgb: vec![255; W * H * 3],
    };
    let top = ys
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.0f32, f32::max);
    let py = |y: f32| {
        let t = if y.is_finite() {
            (y / top).clamp(0.0, 1.0)
        } else {
            0.0
        };
        TOP as f64 + (1.0 - t as f64) * PLOT_H as f64
    };
    // The area under the curve, column by column, then the line as dense discs.
    let line = [31, 119, 180];
    let mut prev: Option<f64> = None;
    for col in 0..=PLOT_W {
        let x = col as f64 / PLOT_W as f64;
        let i = xs.partition_point(|&v| v < x).clamp(1, xs.len() - 1);
        let (x0, x1) = (xs[i - 1], xs[i]);
        let f = if x1 > x0 { (x - x0) / (x1 - x0) } else { 1.0 };
        let y = ys[i - 1] as f64 * (1.0 - f.clamp(0.0, 1.0)) + ys[i] as f64 * f.clamp(0.0, 1.0);
        let y_px = py(y as f32);
        let bottom = (TOP + PLOT_H) as f64;
        let cx = (LEFT + col) as i64;
        for row in y_px.round() as i64..bottom as i64 {
            cv.blend(cx, row, line, 0.18);
        }
        // Joined to the previous column, so steep steps stay one line.
        let from = prev.unwrap_or(y_px);
        let (lo, hi) = (from.min(y_px).round() as i64, from.max(y_px).round() as i64);
        for row in lo..=hi {
            cv.rect(cx - 1, row - 1, 2, 2, line);
        }
        prev = Some(y_px);
    }
    let frame = [120, 120, 120];
    let (l, t) = (LEFT as i64 - 1, TOP as i64 - 1);
    cv.rect(l, t, PLOT_W + 2, 1, frame);
    cv.rect(l, (TOP + PLOT_H) as i64, PLOT_W + 2, 1, frame);
    cv.rect(l, t, 1, PLOT_H + 2, frame);
    cv.rect((LEFT + PLOT_W) as i64, t, 1, PLOT_H + 2, frame);
    let ink = [30, 30, 30];
    cv.text(8, 8, title, 2, ink);
    cv.text(4, TOP as i64, &format!("{top:.2}"), 1, ink);
    cv.text(4, (TOP + PLOT_H) as i64 - 7, "0", 1, ink);
    cv.text(LEFT as i64, (TOP + PLOT_H + 6) as i64, "0", 1, ink);
    cv.text(
        (LEFT + PLOT_W) as i64 - 5,
        (TOP + PLOT_H + 6) as i64,
        "1",
        1,
        ink,
    );
    Ok((W, H, cv.rgb))
}

/// [`render`], written as PNG at `path`.
pub fn curve_png(path: &Path, xs: &[f64], ys: &[f32], title: &str) -> Result<()> {
    let (w, h, rgb) = render(xs, ys, title)?;
    super::save_rgb_png(path, w, h, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_falling_curve_is_drawn_high_left_and_low_right() {
        let (w, _, rgb) = render(&[0.0, 1.0], &[1.0, 0.0], "DELETION").unwrap();
        let blue = |x: usize, y: usize| {
            let at = (y * w + x) * 3;
            rgb[at + 2] > 150 && rgb[at] < 120
        };
        assert!(blue(LEFT + 2, TOP + 1), "the line starts at the top left");
        assert!(
            blue(LEFT + PLOT_W - 2, TOP + PLOT_H - 1),
            "and ends at the bottom right"
        );
        assert!(render(&[0.0], &[1.0], "x").is_err());
    }
}
