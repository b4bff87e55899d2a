//! LIME's interpretable features: a segment id per pixel, from a regular grid, SLIC superpixels
//! (Achanta et al. 2012) or a label map the user supplies.

use std::path::Path;

use crate::backend::HostTensor;
use crate::error::{Error, Result};

/// A segment id per pixel, ids `0..count`, every id used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMap {
    /// Rows of the map (the model input's height).
    pub height: usize,
    /// Columns of the map (the model input's width).
    pub width: usize,
    /// Row-major, `height * width` ids.
    pub labels: Vec<u32>,
    /// Number of segments.
    pub count: usize,
}

impl LabelMap {
    /// Renumbers arbitrary ids to `0..count` in raster order of first appearance.
    pub fn from_raw(height: usize, width: usize, raw: &[u64]) -> Result<LabelMap> {
        if raw.len() != height * width || raw.is_empty() {
            return Err(Error::bad_input(format!(
                "a label map of {height}x{width} needs {} labels, got {}",
                height * width,
                raw.len()
            )));
        }
        let mut ids = std::collections::HashMap::new();
        let labels = raw
            .iter()
            .map(|&v| {
                let next = ids.len() as u32;
                *ids.entry(v).or_insert(next)
            })
            .collect();
        Ok(LabelMap {
            height,
            width,
            labels,
            count: ids.len(),
        })
    }

    /// The map as an `[H, W]` tensor of whole f32 ids, as [`crate::backend::MaskSource::Segments`]
    /// takes it.
    pub fn tensor(&self) -> HostTensor {
        HostTensor {
            shape: vec![self.height, self.width],
            data: self.labels.iter().map(|&l| l as f32).collect(),
        }
    }

    /// Checks that the map fits an `h × w` image.
    pub fn check_size(&self, h: usize, w: usize) -> Result<()> {
        if (self.height, self.width) != (h, w) {
            return Err(Error::bad_input(format!(
                "the label map is {}x{}, the model input is {h}x{w}; give one label per input pixel",
                self.height, self.width
            )));
        }
        Ok(())
    }
}

/// Grid rows and columns for about `n` cells on an `h × w` image, cells as square as possible.
fn grid_shape(n: usize, h: usize, w: usize) -> (usize, usize) {
    let rows = ((n as f64 * h as f64 / w as f64).sqrt().round() as usize).clamp(1, h);
    let cols = ((n as f64 / rows as f64).round() as usize).clamp(1, w);
    (rows, cols)
}

/// A regular grid of about `n` cells (7×7 for 49 on a square image); cell edges at
/// `floor(i·H/rows)`.
pub fn grid(n: usize, h: usize, w: usize) -> Result<LabelMap> {
    check_count(n, h, w)?;
    let (rows, cols) = grid_shape(n, h, w);
    let labels = (0..h * w)
        .map(|p| ((p / w * rows / h) * cols + (p % w) * cols / w) as u32)
        .collect();
    Ok(LabelMap {
        height: h,
        width: w,
        labels,
        count: rows * cols,
    })
}

fn check_count(n: usize, h: usize, w: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::bad_input("the number of features must be positive"));
    }
    if n > h * w {
        return Err(Error::bad_input(format!(
            "{n} features requested but the image has only {} pixels ({h}x{w})",
            h * w
        )));
    }
    Ok(())
}

/// sRGB in [0, 1] to CIELAB (D65).
fn lab([r, g, b]: [f32; 3]) -> [f32; 3] {
    let lin = |c: f32| {
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (lin(r), lin(g), lin(b));
    let x = (0.412453 * r + 0.357580 * g + 0.180423 * b) / 0.950456;
    let y = 0.212671 * r + 0.715160 * g + 0.072169 * b;
    let z = (0.019334 * r + 0.119193 * g + 0.950227 * b) / 1.088754;
    let f = |t: f32| {
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// SLIC superpixels of an image `[C, H, W]` (model input values): about `n` segments, with
/// `compactness` weighing spatial against colour distance (10 is MATLAB's `superpixels` and
/// scikit-image's default). The image is rescaled to [0, 1] by its global range (this keeps the
/// relative colours of a normalised input) and, with three channels, taken as sRGB and converted
/// to CIELAB; other channel counts are clustered on their rescaled values times 100.
/// Ten k-means iterations over 2S × 2S windows (S the grid step), then connectivity is enforced:
/// fragments under S²/4 pixels join a neighbouring segment.
pub fn slic(
    image: &[f32],
    (c, h, w): (usize, usize, usize),
    n: usize,
    compactness: f32,
) -> Result<LabelMap> {
    check_count(n, h, w)?;
    if !(compactness > 0.0 && compactness.is_finite()) {
        return Err(Error::bad_input(format!(
            "SLIC compactness must be positive, got {compactness}"
        )));
    }
    let hw = h * w;
    let lo = image.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = image.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let unit = |v: f32| (v - lo) / span;
    let dims = if c == 3 { 3 } else { c.max(1) };
    let mut feat = vec![0f32; hw * dims];
    for p in 0..hw {
        if c == 3 {
            let px = lab([unit(image[p]), unit(image[hw + p]), unit(image[2 * hw + p])]);
            feat[p * 3..p * 3 + 3].copy_from_slice(&px);
        } else {
            for ch in 0..c {
                feat[p * dims + ch] = 100.0 * unit(image[ch * hw + p]);
            }
        }
    }
    let f = |p: usize| &feat[p * dims..(p + 1) * dims];

    // Seeds at grid cell centres, each moved to the lowest colour gradient in its 3×3 patch.
    let (rows, cols) = grid_shape(n, h, w);
    let step = ((hw as f64 / (rows * cols) as f64).sqrt()).max(1.0);
    let grad = |y: usize, x: usize| -> f32 {
        let d = |a: usize, b: usize| -> f32 {
            f(a).iter().zip(f(b)).map(|(u, v)| (u - v) * (u - v)).sum()
        };
        let (l, r) = (y * w + x.saturating_sub(1), y * w + (x + 1).min(w - 1));
        let (u, dn) = (y.saturating_sub(1) * w + x, (y + 1).min(h - 1) * w + x);
        d(l, r) + d(u, dn)
    };
    let mut centres: Vec<(Vec<f32>, f32, f32)> = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            let cy = ((2 * i + 1) * h / (2 * rows)).min(h - 1);
            let cx = ((2 * j + 1) * w / (2 * cols)).min(w - 1);
            let mut best = (grad(cy, cx), cy, cx);
            for y in cy.saturating_sub(1)..=(cy + 1).min(h - 1) {
                for x in cx.saturating_sub(1)..=(cx + 1).min(w - 1) {
                    let g = grad(y, x);
                    if g < best.0 {
                        best = (g, y, x);
                    }
                }
            }
            let (_, y, x) = best;
            centres.push((f(y * w + x).to_vec(), y as f32, x as f32));
        }
    }

    let spatial = (compactness / step as f32).powi(2);
    let reach = (2.0 * step).ceil() as i64;
    let mut label = vec![u32::MAX; hw];
    let mut dist = vec![f32::INFINITY; hw];
    for _ in 0..10 {
        dist.fill(f32::INFINITY);
        for (k, (col, cy, cx)) in centres.iter().enumerate() {
            let (cy, cx) = (cy.round() as i64, cx.round() as i64);
            let (y0, y1) = (
                (cy - reach).max(0) as usize,
                ((cy + reach) as usize).min(h - 1),
            );
            let (x0, x1) = (
                (cx - reach).max(0) as usize,
                ((cx + reach) as usize).min(w - 1),
            );
            for y in y0..=y1 {
                for x in x0..=x1 {
                    let p = y * w + x;
                    let dc: f32 = f(p).iter().zip(col).map(|(u, v)| (u - v) * (u - v)).sum();
                    let (dy, dx) = (y as f32 - cy as f32, x as f32 - cx as f32);
                    let d = dc + spatial * (dy * dy + dx * dx);
                    if d < dist[p] {
                        dist[p] = d;
                        label[p] = k as u32;
                    }
                }
            }
        }
        let mut sums = vec![(vec![0f64; dims], 0f64, 0f64, 0usize); centres.len()];
        for p in 0..hw {
            if label[p] == u32::MAX {
                continue;
            }
            let s = &mut sums[label[p] as usize];
            for (a, &v) in s.0.iter_mut().zip(f(p)) {
                *a += v as f64;
            }
            s.1 += (p / w) as f64;
            s.2 += (p % w) as f64;
            s.3 += 1;
        }
        for (ctr, s) in centres.iter_mut().zip(&sums) {
            if s.3 > 0 {
                let n = s.3 as f64;
                ctr.0 = s.0.iter().map(|&v| (v / n) as f32).collect();
                ctr.1 = (s.1 / n) as f32;
                ctr.2 = (s.2 / n) as f32;
            }
        }
    }
    Ok(enforce_connectivity(
        &label,
        h,
        w,
        (step * step / 4.0) as usize,
    ))
}

/// Splits segments into 4-connected components, joins components under `min_size` pixels to the
/// segment of the component met just before them in raster order (SLIC's post-processing), and
/// numbers the result `0..count`.
fn enforce_connectivity(label: &[u32], h: usize, w: usize, min_size: usize) -> LabelMap {
    let hw = h * w;
    let mut out = vec![u32::MAX; hw];
    let mut count = 0u32;
    let mut stack = Vec::new();
    let mut members = Vec::new();
    for start in 0..hw {
        if out[start] != u32::MAX {
            continue;
        }
        // The segment of an already-numbered 4-neighbour of the start pixel, for tiny fragments.
        let (sy, sx) = (start / w, start % w);
        let adjacent = [(sx > 0).then(|| start - 1), (sy > 0).then(|| start - w)]
            .into_iter()
            .flatten()
            .map(|q| out[q])
            .find(|&l| l != u32::MAX);
        members.clear();
        stack.push(start);
        out[start] = count;
        while let Some(p) = stack.pop() {
            members.push(p);
            let (y, x) = (p / w, p % w);
            let near = [
                (x > 0).then(|| p - 1),
                (x + 1 < w).then(|| p + 1),
                (y > 0).then(|| p - w),
                (y + 1 < h).then(|| p + w),
            ];
            for q in near.into_iter().flatten() {
                if out[q] == u32::MAX && label[q] == label[start] {
                    out[q] = count;
                    stack.push(q);
                }
            }
        }
        match adjacent {
            Some(l) if members.len() < min_size => members.iter().for_each(|&p| out[p] = l),
            _ => count += 1,
        }
    }
    LabelMap {
        height: h,
        width: w,
        labels: out,
        count: count as usize,
    }
}

/// Loads a label map: a `.npy` of `[H, W]` (or `[1, H, W]`, `[1, 1, H, W]`) whole numbers, any
/// integer or float dtype, or an image (PNG, JPEG) whose distinct colours are the segments.
/// Labels are renumbered `0..count` in raster order.
pub fn load_label_map(path: &Path) -> Result<LabelMap> {
    let shown = path.display();
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if !is_npy {
        let img =
            crate::input::load_rgb(path).map_err(|e| e.context(format!("label map {shown}")))?;
        let raw: Vec<u64> = img
            .data
            .chunks(3)
            .map(|px| {
                px.iter()
                    .fold(0u64, |a, &v| (a << 16) | (v.round() as u64 & 0xffff))
            })
            .collect();
        return LabelMap::from_raw(img.height, img.width, &raw);
    }
    let (shape, values) = read_npy_numbers(path)?;
    let spatial: Vec<usize> = match shape.as_slice() {
        [h, w] | [1, h, w] | [1, 1, h, w] => vec![*h, *w],
        other => {
            return Err(Error::bad_input(format!(
                "label map {shown} has shape {other:?}; give [H, W]"
            )))
        }
    };
    let mut raw = Vec::with_capacity(values.len());
    for v in values {
        if !(v.is_finite() && v.fract() == 0.0) {
            return Err(Error::bad_input(format!(
                "label map {shown} holds {v}; labels must be whole numbers"
            )));
        }
        raw.push(v as i64 as u64);
    }
    LabelMap::from_raw(spatial[0], spatial[1], &raw)
}

/// A `.npy` of any integer or float dtype, as f64 values.
fn read_npy_numbers(path: &Path) -> Result<(Vec<usize>, Vec<f64>)> {
    let shown = path.display();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::bad_input(format!("cannot read label map {shown}: {e}")))?;
    let bad =
        |e: String| Error::bad_input(format!("label map {shown} is not a readable .npy: {e}"));
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(e.to_string()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let n: usize = shape.iter().product();
    if n > bytes.len() {
        return Err(bad(
            "the header promises more values than the file holds".into()
        ));
    }
    if npy.order() == npyz::Order::Fortran {
        return Err(bad("Fortran order; save it in C order".into()));
    }
    let npyz::DType::Plain(t) = npy.dtype() else {
        return Err(bad("structured dtype".into()));
    };
    let size = t.size_field();
    macro_rules! read {
        ($t:ty) => {
            npy.into_vec::<$t>()
                .map_err(|e| bad(e.to_string()))?
                .into_iter()
                .map(|v| v as f64)
                .collect::<Vec<f64>>()
        };
    }
    let values = match (t.type_char(), size) {
        (npyz::TypeChar::Float, 4) => read!(f32),
        (npyz::TypeChar::Float, 8) => read!(f64),
        (npyz::TypeChar::Int, 1) => read!(i8),
        (npyz::TypeChar::Int, 2) => read!(i16),
        (npyz::TypeChar::Int, 4) => read!(i32),
        (npyz::TypeChar::Int, 8) => read!(i64),
        (npyz::TypeChar::Uint, 1) => read!(u8),
        (npyz::TypeChar::Uint, 2) => read!(u16),
        (npyz::TypeChar::Uint, 4) => read!(u32),
        (npyz::TypeChar::Uint, 8) => read!(u64),
        (npyz::TypeChar::Bool, 1) => npy
            .into_vec::<bool>()
            .map_err(|e| bad(e.to_string()))?
            .into_iter()
            .map(|v| v as u8 as f64)
            .collect(),
        other => return Err(bad(format!("unsupported dtype {other:?}"))),
    };
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_seven_by_seven_for_49() {
        let m = grid(49, 224, 224).unwrap();
        assert_eq!(m.count, 49);
        assert_eq!(m.labels[0], 0);
        assert_eq!(m.labels[31], 0);
        assert_eq!(m.labels[32], 1);
        assert_eq!(m.labels[224 * 224 - 1], 48);
        assert!(grid(0, 4, 4).is_err());
        assert!(grid(17, 4, 4).is_err());
        assert_eq!(grid(16, 4, 4).unwrap().count, 16);
    }

    #[test]
    fn slic_finds_two_flat_regions() {
        // Left half dark, right half bright, 3 channels: every segment lies in one half.
        let (h, w) = (24, 32);
        let mut img = vec![0f32; 3 * h * w];
        for ch in 0..3 {
            for y in 0..h {
                for x in w / 2..w {
                    img[ch * h * w + y * w + x] = 1.0;
                }
            }
        }
        let m = slic(&img, (3, h, w), 12, 10.0).unwrap();
        assert!(m.count >= 2 && m.count <= 24, "{}", m.count);
        let mut side = vec![None; m.count];
        for p in 0..h * w {
            let right = p % w >= w / 2;
            let s = &mut side[m.labels[p] as usize];
            assert!(
                s.is_none_or(|r| r == right),
                "segment {} straddles the edge",
                m.labels[p]
            );
            *s = Some(right);
        }
        assert!(m.labels.iter().all(|&l| (l as usize) < m.count));
    }

    #[test]
    fn raw_labels_are_renumbered() {
        let m = LabelMap::from_raw(2, 2, &[7, 7, 3, 9]).unwrap();
        assert_eq!(m.labels, vec![0, 0, 1, 2]);
        assert_eq!(m.count, 3);
        assert!(LabelMap::from_raw(2, 2, &[1, 2, 3]).is_err());
    }
}
