//! Occlusion sensitivity (Zeiler & Fergus; MATLAB `occlusionSensitivity`, Captum `Occlusion`):
//! slide a window filled with a constant over the image and record how much the class score
//! drops at each position.
//!
//! The occluded copies are built by the backend from the one uploaded image
//! ([`Backend::perturb`] with window masks) and run through the perturbation loop every
//! perturbation method shares: per chunk of `mini_batch` samples one `perturb` and one `forward`
//! (on the GPU one submission, see [`Occlusion::attribute`]), all chunks' logits read back at
//! once; the unoccluded image rides along as an extra, empty window in the first chunk.

use super::attribution::{explain_each, Attribute, Attribution, Extras, HostResult, Named, Target};
use super::perturbation::Perturbations;
use super::{check_image_and_classes, mini_batch, scores, Score};
use crate::backend::{Backend, Fill, HostTensor, MaskSource, OcclusionWindow};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::progress::{Progress, Silent};

/// What the occluding window is filled with.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum MaskValue {
    /// The per-channel mean of the image (MATLAB's `MaskValue="auto"`).
    #[default]
    Auto,
    /// One value on every channel (Captum's `baselines`, 0 by default there).
    Scalar(f32),
    /// One value per channel.
    PerChannel(Vec<f32>),
}

/// How [`OcclusionMap::upsampled`] is made from the window grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Upsampling {
    /// No upsampled map.
    None,
    /// Nearest neighbour, half-pixel centres.
    Nearest,
    /// Keys cubic convolution (a = -0.5, MATLAB `imresize`'s bicubic kernel), half-pixel
    /// centres, edge samples repeated past the border (MATLAB's `OutputUpsampling` default).
    #[default]
    Bicubic,
}

/// Occlusion settings; `Default` is MATLAB's defaults with a logit score.
#[derive(Clone, Debug, PartialEq)]
pub struct Occlusion {
    /// `[height, width]` of the window; `None`: MATLAB's auto, `floor(0.2 * side)` (at least 1).
    pub mask_size: Option<[usize; 2]>,
    /// `[rows, columns]` between window positions; `None`: MATLAB's auto, `ceil(0.1 * side)`.
    pub stride: Option<[usize; 2]>,
    /// What fills the window (MATLAB `MaskValue`, default the image's per-channel mean).
    pub mask_value: MaskValue,
    /// MATLAB's `MaskClipping`; see [`Occlusion::windows`].
    pub clipping: bool,
    /// Samples per forward; `None`: as many as fit 64 MiB of input, at most 64.
    pub mini_batch: Option<usize>,
    /// Which score the drop is measured on (default the logit).
    pub score: Score,
    /// How the grid is resized to the image (MATLAB `OutputUpsampling`, default bicubic).
    pub upsampling: Upsampling,
}

impl Default for Occlusion {
    fn default() -> Self {
        Occlusion {
            mask_size: None,
            stride: None,
            mask_value: MaskValue::Auto,
            clipping: true,
            mini_batch: None,
            score: Score::Logit,
            upsampling: Upsampling::Bicubic,
        }
    }
}

/// The occlusion result for one class.
#[derive(Clone, Debug)]
pub struct OcclusionMap {
    /// The explained class index.
    pub class: usize,
    /// The explained score of `class` on the unoccluded image.
    pub score: f32,
    /// `[rows, cols]`: score drop `f(x) - f(x occluded)` per window position (MATLAB's map before
    /// upsampling).
    pub grid: HostTensor,
    /// `[H, W]`: per pixel, the mean score drop over the windows covering it (Captum's
    /// attribution); 0 where no window covers the pixel.
    pub per_pixel: HostTensor,
    /// `[H, W]`: `grid` resized to the image, unless [`Upsampling::None`].
    pub upsampled: Option<HostTensor>,
}

/// The most windows per forward when MiniBatchSize is automatic.
const AUTO_BATCH_MAX: usize = 64;

impl Occlusion {
    /// The window positions on an `h × w` image, row-major: `(rows, cols, windows)`.
    ///
    /// Per axis, with window `m` and stride `s` on a side of `n` pixels:
    /// - clipping off (Captum): starts `0, s, 2s, …, ⌊(n - m)/s⌋·s`; only whole windows, so the
    ///   last `(n - m) mod s` pixels may be left uncovered. A window larger than the image is an
    ///   error.
    /// - clipping on (MATLAB): the window's centre pixel `start + ⌊m/2⌋` visits `0, s, 2s, …`
    ///   while it is inside the image (`k·s ≤ n - 1`), i.e. starts `-⌊m/2⌋ + k·s`; windows are
    ///   clipped to the image, so border windows are smaller.
    pub fn windows(&self, h: usize, w: usize) -> Result<(usize, usize, Vec<OcclusionWindow>)> {
        let [mh, mw] = self.mask_size.unwrap_or([auto_mask(h), auto_mask(w)]);
        let [sh, sw] = self.stride.unwrap_or([auto_stride(h), auto_stride(w)]);
        if mh == 0 || mw == 0 {
            return Err(Error::bad_input(format!(
                "occlusion mask size must be positive, got [{mh}, {mw}]"
            )));
        }
        if sh == 0 || sw == 0 {
            return Err(Error::bad_input(format!(
                "occlusion stride must be positive, got [{sh}, {sw}]"
            )));
        }
        if h == 0 || w == 0 {
            return Err(Error::bad_input("occlusion needs a non-empty image"));
        }
        if !self.clipping && (mh > h || mw > w) {
            return Err(Error::bad_input(format!(
                "occlusion mask [{mh}, {mw}] is larger than the image [{h}, {w}]; \
                 use a smaller mask or turn mask clipping on"
            )));
        }
        let starts = |n: usize, m: usize, s: usize| -> Vec<i64> {
            if self.clipping {
                (0..=(n - 1) / s)
                    .map(|k| (k * s) as i64 - (m / 2) as i64)
                    .collect()
            } else {
                (0..=(n - m) / s).map(|k| (k * s) as i64).collect()
            }
        };
        let (tops, lefts) = (starts(h, mh, sh), starts(w, mw, sw));
        let windows = tops
            .iter()
            .flat_map(|&top| {
                lefts.iter().map(move |&left| OcclusionWindow {
                    top,
                    left,
                    height: mh,
                    width: mw,
                })
            })
            .collect();
        Ok((tops.len(), lefts.len(), windows))
    }

    /// Occlusion maps of `x` (`[1, C, H, W]`) for each class in `classes`; all classes share
    /// the same forwards.
    ///
    /// Cost on the GPU, with `P` window positions and `B = mini_batch`: `⌈(P + 1)/B⌉` chunks
    /// (the `+ 1` is the unoccluded image), each one submission (the `perturb` kernel is deferred
    /// into its `forward`'s submission), then one read-back (one more submission) for all
    /// chunks' logits.
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
    ) -> Result<Vec<OcclusionMap>> {
        self.attribute_with_progress(b, model, x, classes, &Silent)
    }

    /// [`Occlusion::attribute`], reporting each mini-batch to `progress`.
    pub fn attribute_with_progress<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
        progress: &dyn Progress,
    ) -> Result<Vec<OcclusionMap>> {
        Ok(self.explain(b, model, x, classes, progress)?.0)
    }

    /// [`Occlusion::attribute_with_progress`], also returning the logits of `x`, `[1, classes]`.
    fn explain<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        classes: &[usize],
        progress: &dyn Progress,
    ) -> Result<(Vec<OcclusionMap>, HostTensor)> {
        let (c, h, w) = check_image_and_classes(model, x, classes, "occlusion")?;
        let value = self.fill(x, c)?;
        let (rows, cols, windows) = self.windows(h, w)?;
        if classes.is_empty() {
            return Ok((Vec::new(), HostTensor::zeros(vec![0, model.num_classes()])));
        }
        let mini_batch = mini_batch(b, self.mini_batch, c * h * w, AUTO_BATCH_MAX, "occlusion")?;

        let reference = OcclusionWindow {
            top: 0,
            left: 0,
            height: 0,
            width: 0,
        };
        let samples: Vec<OcclusionWindow> = std::iter::once(reference)
            .chain(windows.iter().copied())
            .collect();
        let image = b.upload(x)?;
        let run = Perturbations::<B> {
            image: &image,
            samples: samples.len(),
            mini_batch,
            fill: Fill::Constant(&value),
            method: "occlusion",
        };
        let source = |first: usize, count: usize| MaskSource::Windows(&samples[first..][..count]);
        let (logits, _) = run.logits(b, model, source, &[], progress)?;

        let coverage = coverage(&windows, h, w);
        let original = HostTensor::new(vec![1, logits.sample_len()], logits.sample(0).to_vec())?;
        let maps = classes
            .iter()
            .map(|&class| {
                let s = scores(&logits, self.score, &vec![class; samples.len()]);
                let base = s[0];
                let drops: Vec<f32> = s[1..].iter().map(|v| base - v).collect();
                let per_pixel = per_pixel(&windows, &drops, &coverage, h, w);
                let grid = HostTensor::new(vec![rows, cols], drops)?;
                let upsampled = match self.upsampling {
                    Upsampling::None => None,
                    Upsampling::Nearest => Some(resize_nearest(&grid, h, w)),
                    Upsampling::Bicubic => Some(resize_bicubic(&grid, h, w)),
                };
                Ok(OcclusionMap {
                    class,
                    score: base,
                    grid,
                    per_pixel,
                    upsampled,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((maps, original))
    }

    fn fill(&self, x: &HostTensor, c: usize) -> Result<Vec<f32>> {
        self.mask_value.resolve(x, c)
    }
}

/// The score drops are read back to the host, which averages and resizes them: each image costs
/// one read-back inside `attribute_batch`, and the returned maps are uploads of the host's
/// results. The map is the grid resized as [`Occlusion::upsampling`] says, or with
/// [`Upsampling::None`] Captum's per-pixel mean ([`OcclusionMap::per_pixel`]); `lowres` is the
/// grid, `[N, 1, rows, cols]`.
impl Named for Occlusion {
    fn name(&self) -> &'static str {
        "occlusion"
    }
}

impl<B: Backend> Attribute<B> for Occlusion {
    fn attribute_batch(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
    ) -> Result<Attribution<B::Tensor>> {
        self.attribute_batch_with_progress(b, model, inputs, target, &Silent)
    }

    fn attribute_batch_with_progress(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
        progress: &dyn Progress,
    ) -> Result<Attribution<B::Tensor>> {
        let head = (self.name(), self.score, None);
        explain_each(
            b,
            model,
            inputs,
            target,
            head,
            progress,
            |x, classes, progress| {
                let (maps, logits) = self.explain(b, model, x, classes, progress)?;
                Ok(maps
                    .into_iter()
                    .map(|m| HostResult {
                        map: m.upsampled.unwrap_or_else(|| m.per_pixel.clone()),
                        lowres: Some(m.grid),
                        logits: logits.clone(),
                        extras: Extras {
                            per_pixel: Some(m.per_pixel),
                            ..Extras::default()
                        },
                    })
                    .collect())
            },
        )
    }
}

impl MaskValue {
    /// The per-channel fill for image `x` (`[1, C, H, W]`) with `c` channels.
    pub fn resolve(&self, x: &HostTensor, c: usize) -> Result<Vec<f32>> {
        match self {
            MaskValue::Auto => {
                let hw = x.sample_len() / c.max(1);
                Ok((0..c)
                    .map(|ch| {
                        let plane = &x.data[ch * hw..(ch + 1) * hw];
                        (plane.iter().map(|&v| v as f64).sum::<f64>() / hw.max(1) as f64) as f32
                    })
                    .collect())
            }
            MaskValue::Scalar(v) => Ok(vec![*v; c]),
            MaskValue::PerChannel(v) if v.len() == c => Ok(v.clone()),
            MaskValue::PerChannel(v) => Err(Error::bad_input(format!(
                "the mask value has {} channel(s), the image has {c}",
                v.len()
            ))),
        }
    }
}

fn auto_mask(side: usize) -> usize {
    (side / 5).max(1)
}

fn auto_stride(side: usize) -> usize {
    side.div_ceil(10).max(1)
}

/// The part of `win` inside an `h × w` image, as row and column ranges.
fn clipped(
    win: &OcclusionWindow,
    h: usize,
    w: usize,
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let clip = |start: i64, len: usize, dim: usize| {
        let lo = start.clamp(0, dim as i64) as usize;
        let hi = (start + len as i64).clamp(0, dim as i64) as usize;
        lo..hi.max(lo)
    };
    (clip(win.top, win.height, h), clip(win.left, win.width, w))
}

/// How many windows cover each pixel.
fn coverage(windows: &[OcclusionWindow], h: usize, w: usize) -> Vec<u32> {
    let mut count = vec![0u32; h * w];
    for win in windows {
        let (rows, cols) = clipped(win, h, w);
        for y in rows {
            count[y * w + cols.start..y * w + cols.end]
                .iter_mut()
                .for_each(|c| *c += 1);
        }
    }
    count
}

fn per_pixel(
    windows: &[OcclusionWindow],
    drops: &[f32],
    coverage: &[u32],
    h: usize,
    w: usize,
) -> HostTensor {
    let mut sum = vec![0f64; h * w];
    for (win, &d) in windows.iter().zip(drops) {
        let (rows, cols) = clipped(win, h, w);
        for y in rows {
            sum[y * w + cols.start..y * w + cols.end]
                .iter_mut()
                .for_each(|s| *s += d as f64);
        }
    }
    let data = sum
        .iter()
        .zip(coverage)
        .map(|(&s, &n)| if n == 0 { 0.0 } else { (s / n as f64) as f32 })
        .collect();
    HostTensor {
        shape: vec![h, w],
        data,
    }
}

/// Source coordinate of output pixel `o` under half-pixel centres.
fn source(o: usize, out: usize, inp: usize) -> f64 {
    (o as f64 + 0.5) * inp as f64 / out as f64 - 0.5
}

/// Nearest-neighbour resize of a `[h, w]` map (half-pixel centres).
pub fn resize_nearest(map: &HostTensor, out_h: usize, out_w: usize) -> HostTensor {
    let (h, w) = (map.shape[0], map.shape[1]);
    if h == 0 || w == 0 {
        return HostTensor::zeros(vec![out_h, out_w]);
    }
    let idx = |o: usize, out: usize, inp: usize| {
        (((o as f64 + 0.5) * inp as f64 / out as f64).floor() as usize).min(inp - 1)
    };
    let data = (0..out_h)
        .flat_map(|oy| {
            let y = idx(oy, out_h, h);
            (0..out_w).map(move |ox| map.data[y * w + idx(ox, out_w, w)])
        })
        .collect();
    HostTensor {
        shape: vec![out_h, out_w],
        data,
    }
}

/// Keys' cubic convolution kernel with a = -0.5.
fn cubic(t: f64) -> f64 {
    let t = t.abs();
    if t <= 1.0 {
        1.5 * t * t * t - 2.5 * t * t + 1.0
    } else if t < 2.0 {
        -0.5 * t * t * t + 2.5 * t * t - 4.0 * t + 2.0
    } else {
        0.0
    }
}

/// Bicubic resize of a `[h, w]` map (Keys a = -0.5, half-pixel centres, edges repeated).
pub fn resize_bicubic(map: &HostTensor, out_h: usize, out_w: usize) -> HostTensor {
    let (h, w) = (map.shape[0], map.shape[1]);
    if h == 0 || w == 0 {
        return HostTensor::zeros(vec![out_h, out_w]);
    }
    let taps = |o: usize, out: usize, inp: usize| -> [(usize, f64); 4] {
        let x = source(o, out, inp);
        let x0 = x.floor();
        let mut t = [(0usize, 0.0); 4];
        for (k, slot) in t.iter_mut().enumerate() {
            let i = x0 + k as f64 - 1.0;
            *slot = (i.clamp(0.0, (inp - 1) as f64) as usize, cubic(x - i));
        }
        t
    };
    let mut data = Vec::with_capacity(out_h * out_w);
    for oy in 0..out_h {
        let ty = taps(oy, out_h, h);
        for ox in 0..out_w {
            let tx = taps(ox, out_w, w);
            let v: f64 = ty
                .iter()
                .map(|&(y, wy)| {
                    wy * tx
                        .iter()
                        .map(|&(x, wx)| wx * map.data[y * w + x] as f64)
                        .sum::<f64>()
                })
                .sum();
            data.push(v as f32);
        }
    }
    HostTensor {
        shape: vec![out_h, out_w],
        data,
    }
}
