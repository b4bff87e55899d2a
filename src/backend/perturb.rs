//! The operands of [`Backend::perturb`](super::Backend::perturb), the one op that builds every
//! perturbation method's batch (occlusion, LIME, Score-CAM, RISE): a mask per sample from a
//! [`MaskSource`], applied to one image as a [`Fill`] says. Also their checks and the host
//! formulas of the masks that both backends follow (the CPU backend runs them; the GPU kernel,
//! `shaders/perturb.wgsl`, mirrors them), so a method can recompute a sample's mask on the host.

use super::ops::noise::pcg;
use super::OcclusionWindow;
use crate::error::{Error, Result};

/// Where sample `i`'s mask (one value in `[0, 1]` per pixel, 1 = the image shows) comes from.
#[derive(Debug)]
pub enum MaskSource<'a, T> {
    /// Occlusion: sample `i` is 0 inside window `i` (clipped to the image) and 1 elsewhere; an
    /// empty window masks nothing, which lets the unoccluded image ride along.
    Windows(&'a [OcclusionWindow]),
    /// LIME: samples `first..first + count`; sample `s` is 1 on segment `k` iff
    /// [`segment_kept`]`(seed, s, k)`. `labels` is `[H, W]`, segment ids as whole f32 values.
    Segments {
        /// The segment id of each pixel, `[H, W]`.
        labels: &'a T,
        /// The seed of the on/off pattern.
        seed: u64,
        /// The first sample's index.
        first: usize,
        /// How many samples.
        count: usize,
    },
    /// Score-CAM: maps `first..first + count` of `maps` (`[1, K, h, w]`), each upsampled to
    /// `H × W` with aligned corners (PyTorch's `UpsamplingBilinear2d`) and min-max normalised
    /// over the upsampled map, `(u - min) / (max - min + 1e-8)`.
    Maps {
        /// The activation maps, `[1, K, h, w]`.
        maps: &'a T,
        /// The first map's index.
        first: usize,
        /// How many maps.
        count: usize,
    },
    /// RISE: masks `first..first + count` of [`RiseMasks`].
    Rise {
        /// The mask generator.
        masks: RiseMasks,
        /// The first mask's index.
        first: usize,
        /// How many masks.
        count: usize,
    },
    /// Deletion and insertion curves (Petsiuk et al. 2018): sample `i` shows the image on the
    /// pixels whose rank is in `shown[i][0]..shown[i][1]` (mask 1) and the fill elsewhere (mask
    /// 0). Deletion after `k` pixels shows `[k, H·W)`, insertion after `k` shows `[0, k)`.
    Ranked {
        /// Each pixel's place in the map's order, 0 = most relevant, `[H, W]`, whole f32 values.
        rank: &'a T,
        /// Per sample, the rank range `[lo, hi)` that shows the image.
        shown: &'a [[u32; 2]],
    },
}

impl<T> MaskSource<'_, T> {
    /// The number of samples (masks) in the batch.
    pub fn count(&self) -> usize {
        match self {
            MaskSource::Windows(w) => w.len(),
            MaskSource::Segments { count, .. }
            | MaskSource::Maps { count, .. }
            | MaskSource::Rise { count, .. } => *count,
            MaskSource::Ranked { shown, .. } => shown.len(),
        }
    }
}

/// What a sample shows where its mask `m` is below 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fill<'a> {
    /// `value[c]` on channel `c`: the image where `m = 1`, the value where `m = 0` (both exact),
    /// `m · image + (1 - m) · value` in between.
    Constant(&'a [f32]),
    /// The image times the mask.
    Multiply,
}

/// RISE's random masks (Petsiuk et al. 2018): mask `i` is an `s × s` grid of cells, each on
/// with probability `p`, bilinearly upsampled (half-pixel centres, clamped edges: PyTorch's
/// `interpolate(align_corners=False)`) to `(s + 1)·cell` per axis, `cell = ⌈side / s⌉`, and
/// cropped to the image at a random shift `(dy, dx)` in `[0, cell_h) × [0, cell_w)`. Cells and
/// shifts come from the counter-based PCG hash of `(seed, i, k)`: cell `k = gy·s + gx` is on iff
/// `(hash >> 8) / 2²⁴ < p`; `dy = hash(k = s²) mod cell_h`, `dx = hash(k = s² + 1) mod cell_w`.
/// The same seed gives the same masks on every backend, at any batching, and on the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RiseMasks {
    /// The seed of the cells and shifts.
    pub seed: u64,
    /// Cells per side of the low-resolution grid (`s`).
    pub grid: usize,
    /// The probability that a cell is on (`p`).
    pub p: f32,
}

/// The largest RISE grid side: the kernel indexes cells in u32 and a shift is cell `s²`.
pub const MAX_RISE_GRID: usize = 4096;

/// The counter-based hash of `(seed, sample, k)` that LIME's segments and RISE's cells share.
pub(crate) fn hash(seed: u64, sample: u32, k: u32) -> u32 {
    pcg(k ^ pcg(sample ^ pcg(seed as u32 ^ pcg((seed >> 32) as u32))))
}

impl RiseMasks {
    /// `(cell_h, cell_w)` on an `h × w` image.
    pub fn cells(&self, h: usize, w: usize) -> (usize, usize) {
        (h.div_ceil(self.grid), w.div_ceil(self.grid))
    }

    /// Whether cell `k` of mask `sample` is on.
    pub fn cell_on(&self, sample: u32, k: u32) -> bool {
        ((hash(self.seed, sample, k) >> 8) as f32 / 16777216.0) < self.p
    }

    /// The crop offset `(dy, dx)` of mask `sample` on an `h × w` image.
    pub fn shift(&self, sample: u32, h: usize, w: usize) -> (usize, usize) {
        let (ch, cw) = self.cells(h, w);
        let k = (self.grid * self.grid) as u32;
        (
            hash(self.seed, sample, k) as usize % ch,
            hash(self.seed, sample, k + 1) as usize % cw,
        )
    }

    /// Mask `sample` on an `h × w` image, `[h · w]` row-major: the arithmetic of the GPU kernel.
    pub fn mask(&self, sample: u32, h: usize, w: usize) -> Vec<f32> {
        let s = self.grid;
        let (ch, cw) = self.cells(h, w);
        let (dy, dx) = self.shift(sample, h, w);
        let cells: Vec<f32> = (0..s * s)
            .map(|k| self.cell_on(sample, k as u32) as u32 as f32)
            .collect();
        let on = |gy: usize, gx: usize| cells[gy * s + gx];
        let ys: Vec<_> = (0..h).map(|y| rise_tap(y + dy, (s + 1) * ch, s)).collect();
        let xs: Vec<_> = (0..w).map(|x| rise_tap(x + dx, (s + 1) * cw, s)).collect();
        let mut out = Vec::with_capacity(h * w);
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                let top = on(y0, x0) * (1.0 - fx) + on(y0, x1) * fx;
                let bottom = on(y1, x0) * (1.0 - fx) + on(y1, x1) * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
        out
    }
}

/// Source cells and weight of upsampled coordinate `o` (of `out`) from `inp` cells, half-pixel
/// centres, clamped: `src = max(0, (o + 0.5) · inp / out - 0.5)`.
fn rise_tap(o: usize, out: usize, inp: usize) -> (usize, usize, f32) {
    let x = ((o as f32 + 0.5) * inp as f32 / out as f32 - 0.5).max(0.0);
    let i0 = (x.floor() as usize).min(inp - 1);
    (i0, (i0 + 1).min(inp - 1), x - i0 as f32)
}

/// The dimensions [`check_perturb`] found: samples and the image's `(C, H, W)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PerturbDims {
    pub count: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// Checks the operands of [`Backend::perturb`](super::Backend::perturb), `shape_of` giving a
/// source tensor's shape.
pub(crate) fn check_perturb<T>(
    image: &[usize],
    source: &MaskSource<'_, T>,
    fill: &Fill,
    shape_of: impl Fn(&T) -> Vec<usize>,
) -> Result<PerturbDims> {
    if image.len() != 4 || image[0] != 1 {
        return Err(Error::bad_input(format!(
            "a perturbed batch is built from one image [1, C, H, W], got {image:?}"
        )));
    }
    let (c, h, w) = (image[1], image[2], image[3]);
    if let Fill::Constant(value) = fill {
        if value.len() != c {
            return Err(Error::bad_input(format!(
                "the fill value has {} channel(s), the image has {c}",
                value.len()
            )));
        }
    }
    let count = source.count();
    match source {
        MaskSource::Windows(windows) => {
            // The GPU kernel does its window arithmetic in i32.
            let lim = i32::MAX as i64 / 4;
            let fits = |v: i64| (-lim..=lim).contains(&v);
            if let Some(win) = windows.iter().find(|win| {
                !(fits(win.top)
                    && fits(win.left)
                    && fits(win.height as i64)
                    && fits(win.width as i64))
            }) {
                return Err(Error::bad_input(format!(
                    "occlusion window {win:?} is out of range"
                )));
            }
        }
        MaskSource::Segments { labels, first, .. } => {
            let labels = shape_of(labels);
            if labels != [h, w] {
                return Err(Error::bad_input(format!(
                    "the segment label map is {labels:?}, the image is [{h}, {w}]"
                )));
            }
            if (first + count) as u64 > u32::MAX as u64 {
                return Err(Error::bad_input("too many LIME samples (at most 2^32)"));
            }
        }
        MaskSource::Maps { maps, first, .. } => {
            let maps = shape_of(maps);
            if maps.len() != 4 || maps[0] != 1 {
                return Err(Error::bad_input(format!(
                    "Score-CAM masking needs maps [1, K, h, w], got {maps:?}"
                )));
            }
            if first + count > maps[1] {
                return Err(Error::internal(format!(
                    "maps {first}..{} of {}",
                    first + count,
                    maps[1]
                )));
            }
            if maps[2] == 0 || maps[3] == 0 {
                return Err(Error::bad_input("Score-CAM maps are empty"));
            }
        }
        MaskSource::Rise { masks, first, .. } => {
            if !(1..=MAX_RISE_GRID).contains(&masks.grid) {
                return Err(Error::bad_input(format!(
                    "RISE grid must have 1 to {MAX_RISE_GRID} cells per side, got {}",
                    masks.grid
                )));
            }
            if !(masks.p > 0.0 && masks.p <= 1.0) {
                return Err(Error::bad_input(format!(
                    "RISE cell probability must be in (0, 1], got {}",
                    masks.p
                )));
            }
            if (first + count) as u64 > u32::MAX as u64 {
                return Err(Error::bad_input("too many RISE masks (at most 2^32)"));
            }
        }
        MaskSource::Ranked { rank, .. } => {
            let rank = shape_of(rank);
            if rank != [h, w] {
                return Err(Error::bad_input(format!(
                    "the pixel ranking is {rank:?}, the image is [{h}, {w}]"
                )));
            }
            // Ranks travel as f32, exact only below 2^24.
            if h * w > 1 << 24 {
                return Err(Error::bad_input(format!(
                    "a pixel ranking of {h}×{w} pixels is over 2^24, the most an f32 rank holds"
                )));
            }
        }
    }
    Ok(PerturbDims { count, c, h, w })
}

/// Whether a pixel of rank `rank` shows the image under the [`MaskSource::Ranked`] range
/// `[lo, hi)`: the arithmetic of the GPU kernel.
pub fn rank_shown(rank: f32, [lo, hi]: [u32; 2]) -> bool {
    let r = rank as u32;
    r >= lo && r < hi
}

/// Whether LIME sample `sample` keeps segment `segment` under `seed`: the top bit of the shared
/// hash, so both backends and the host's regression see the same on/off matrix. Sample 0 keeps
/// every segment: it is the unperturbed image.
pub fn segment_kept(seed: u64, sample: u32, segment: u32) -> bool {
    sample == 0 || hash(seed, sample, segment) >> 31 == 1
}
