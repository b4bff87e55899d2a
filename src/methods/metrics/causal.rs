//! Deletion and insertion (Petsiuk et al. 2018, "RISE", section 4.1): pixels are removed from
//! the image (deletion) or inserted into a baseline (insertion) in the map's order, most
//! relevant first, and the class score is recorded after each step; a faithful map makes the
//! deletion curve fall fast (low AUC) and the insertion curve rise fast (high AUC).
//!
//! With `N = steps` and `P = H·W` pixels, point `i` of a curve (`i = 0..=N`) is at fraction
//! `i / N` and has `k_i = ⌊i·P / N⌋` pixels removed or inserted; the AUC is the trapezoid rule
//! over the fraction axis, `(Σ s_i - s_0/2 - s_N/2) / N`, the `auc` of RISE's `evaluation.py`.
//! With `N` dividing `P` this is that code's curve at `step = P / N` pixels per step (its
//! ImageNet setting, 224 px per step on 224 × 224, is `--steps 224`); the default here is 100
//! steps. A removed pixel shows the baseline: zero on every channel (RISE's deletion substrate),
//! the image's channel mean, a constant, or the image blurred ([`Backend::blur`], a Gaussian of
//! `σ` pixels, `σ = 1` by default, edges replicated; RISE's insertion substrate `gkern(11, 5)` is
//! the same `σ = 1` Gaussian, cut at 5 pixels instead of 3 and zero-padded at the edges).
//!
//! The score is the class probability (softmax, RISE's setting) or the logit. Every point of
//! every requested curve is one sample of one perturbation run: sample `i` shows the image on
//! the pixels of rank `[k_i, P)` (deletion) or `[0, k_i)` (insertion), built on the device by
//! [`MaskSource::Ranked`]; `S` samples cost `⌈S / mini_batch⌉` forward submissions and one
//! read-back, whatever the number of curves.

use super::super::perturbation::Perturbations;
use super::super::{check_class, check_single_image, concat_rows, mini_batch, scores, Score};
use super::{ranking, relevance};
use crate::backend::{top_k, Backend, Fill, HostTensor, MaskSource};
use crate::error::{Error, Result};
use crate::model::BinaryKind;
use crate::model::Model;
use crate::progress::Progress;

/// Which causal curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurveKind {
    /// The image losing its most relevant pixels first.
    Deletion,
    /// The baseline gaining the image's most relevant pixels first.
    Insertion,
}

impl CurveKind {
    /// The metric's name (`deletion`, `insertion`).
    pub fn name(self) -> &'static str {
        match self {
            CurveKind::Deletion => "deletion",
            CurveKind::Insertion => "insertion",
        }
    }
}

/// What a removed (or not yet inserted) pixel shows.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Baseline {
    /// 0 on every channel (RISE's deletion substrate).
    #[default]
    Zero,
    /// The image's mean on each channel.
    Mean,
    /// One value on every channel.
    Constant(f32),
    /// The image under a Gaussian blur of this standard deviation in pixels.
    Blur(f32),
}

impl Baseline {
    /// Parses `zero`, `mean`, `blur` (σ = 1), `blur:SIGMA` or a number.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::bad_input(format!(
                "unknown baseline '{s}': use zero, mean, blur, blur:SIGMA (pixels, > 0) or a \
                 finite number"
            ))
        };
        match s {
            "zero" => Ok(Baseline::Zero),
            "mean" => Ok(Baseline::Mean),
            "blur" => Ok(Baseline::Blur(1.0)),
            v => match v.strip_prefix("blur:") {
                Some(sigma) => match sigma.parse::<f32>() {
                    Ok(x) if x.is_finite() && x > 0.0 => Ok(Baseline::Blur(x)),
                    _ => Err(bad()),
                },
                None => match v.parse::<f32>() {
                    Ok(x) if x.is_finite() => Ok(Baseline::Constant(x)),
                    _ => Err(bad()),
                },
            },
        }
    }

    /// The per-channel fill for `x` (`[1, C, H, W]`).
    fn values(self, x: &HostTensor) -> Vec<f32> {
        let c = x.shape[1];
        let hw = x.sample_len() / c.max(1);
        match self {
            Baseline::Zero | Baseline::Blur(_) => vec![0.0; c],
            Baseline::Constant(v) => vec![v; c],
            Baseline::Mean => (0..c)
                .map(|ch| {
                    let plane = &x.data[ch * hw..(ch + 1) * hw];
                    (plane.iter().map(|&v| v as f64).sum::<f64>() / hw.max(1) as f64) as f32
                })
                .collect(),
        }
    }
}

/// Deletion / insertion settings; `Default`: 100 steps, zero baseline, softmax probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Causal {
    /// Steps per curve (`N`); a curve has `N + 1` points.
    pub steps: usize,
    /// What removed pixels show.
    pub baseline: Baseline,
    /// The recorded score of the class.
    pub score: Score,
    /// Perturbed images per forward; `None`: as many as fit the backend's chunk budget, at most
    /// 64.
    pub mini_batch: Option<usize>,
}

impl Default for Causal {
    fn default() -> Self {
        Causal {
            steps: 100,
            baseline: Baseline::Zero,
            score: Score::Probability,
            mini_batch: None,
        }
    }
}

/// One causal curve of one map.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// Deletion or insertion.
    pub kind: CurveKind,
    /// The class whose score was recorded.
    pub class: usize,
    /// Point `i`'s fraction of pixels removed or inserted, `i / N`.
    pub fractions: Vec<f64>,
    /// Point `i`'s score of `class`.
    pub scores: Vec<f32>,
    /// The trapezoid area under the curve over the fraction axis.
    pub auc: f64,
}

/// The most steps per curve: each point is one forward (a pixel per step on 256 × 256).
pub const MAX_STEPS: usize = 1 << 16;

/// The most bytes of logits the curves of one map may read back (every point's `[K]` scores).
const MAX_LOGIT_BYTES: usize = 1 << 30;

/// The area under `scores` sampled at equal spacing on `[0, 1]`, by the trapezoid rule: RISE's
/// `auc`, `(Σ s - s_0/2 - s_N/2) / N`, summed in f64. One point has no area (0).
pub fn auc(scores: &[f32]) -> f64 {
    let n = scores.len();
    if n < 2 {
        return 0.0;
    }
    let sum: f64 = scores.iter().map(|&s| f64::from(s)).sum();
    (sum - f64::from(scores[0]) / 2.0 - f64::from(scores[n - 1]) / 2.0) / (n - 1) as f64
}

impl Causal {
    /// `k_i = ⌊i·P / N⌋` for `i = 0..=N`: the pixels removed or inserted at each point.
    pub fn counts(&self, pixels: usize) -> Vec<u32> {
        let (n, p) = (self.steps as u64, pixels as u64);
        (0..=n).map(|i| (i * p / n.max(1)) as u32).collect()
    }

    /// The rank range each point of a `kind` curve shows the image on.
    pub fn shown(&self, kind: CurveKind, pixels: usize) -> Vec<[u32; 2]> {
        let all = pixels as u32;
        self.counts(pixels)
            .into_iter()
            .map(|k| match kind {
                CurveKind::Deletion => [k, all],
                CurveKind::Insertion => [0, k],
            })
            .collect()
    }

    /// The `kinds` curves of `map` (see [`relevance`]) on `x` (`[1, C, H, W]`) for `class`, or
    /// when `None` the top predicted class of `x` (read from the curves' unperturbed point, so
    /// it costs no forward of its own). All curves share one perturbation run: `⌈S / B⌉` forward
    /// submissions and one read-back for `S = kinds · (N + 1)` samples at mini-batch `B`.
    // The operands of every perturbation method's `attribute` plus the map and the curve list;
    // bundling them in a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn curves<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        map: &HostTensor,
        class: Option<usize>,
        kinds: &[CurveKind],
        progress: &dyn Progress,
    ) -> Result<Vec<Curve>> {
        check_single_image(model, x)?;
        if x.shape.len() != 4 {
            return Err(Error::bad_input(format!(
                "deletion / insertion need an image input [1, C, H, W], got {:?}",
                x.shape
            )));
        }
        if !(1..=MAX_STEPS).contains(&self.steps) {
            return Err(Error::bad_input(format!(
                "deletion / insertion need 1 to {MAX_STEPS} steps, got {}",
                self.steps
            )));
        }
        if let Some(c) = class {
            check_class(model, c)?;
        }
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        // Budgeted before anything is allocated: the logits of every point come back at once.
        let bytes = kinds.len() * (self.steps + 1) * model.num_classes() * 4;
        if bytes > MAX_LOGIT_BYTES {
            return Err(Error::bad_input(format!(
                "{} curve(s) of {} steps on {} classes read back {bytes} bytes of scores, over \
                 the {MAX_LOGIT_BYTES}-byte budget; use fewer --steps",
                kinds.len(),
                self.steps,
                model.num_classes()
            )));
        }
        let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
        let pixels = h * w;
        let rank: Vec<f32> = ranking(&relevance(map, h, w)?)
            .into_iter()
            .map(|r| r as f32)
            .collect();
        let rank = b.upload(&HostTensor::new(vec![h, w], rank)?)?;
        let shown: Vec<[u32; 2]> = kinds.iter().flat_map(|&k| self.shown(k, pixels)).collect();
        let fill = self.baseline.values(x);
        let image = b.upload(x)?;
        let mini_batch = mini_batch(b, self.mini_batch, c * pixels, 64, "deletion")?;
        let logits = match self.baseline {
            Baseline::Blur(sigma) => {
                let blurred = b.blur(&image, sigma)?;
                blur_logits(
                    b, model, &image, &blurred, &rank, &shown, mini_batch, progress,
                )?
            }
            _ => {
                let run = Perturbations::<B> {
                    image: &image,
                    samples: shown.len(),
                    mini_batch,
                    fill: Fill::Constant(&fill),
                    method: "deletion/insertion",
                };
                let source = |first: usize, count: usize| MaskSource::Ranked {
                    rank: &rank,
                    shown: &shown[first..][..count],
                };
                run.logits(b, model, source, &[], progress)?.0
            }
        };
        let points = self.steps + 1;
        let class = match class {
            Some(c) => c,
            None => {
                // The first curve's unperturbed point: deletion's first, insertion's last.
                let full = match kinds[0] {
                    CurveKind::Deletion => 0,
                    CurveKind::Insertion => self.steps,
                };
                top_k(logits.sample(full), 1)[0]
            }
        };
        let all = scores(&logits, self.score, &vec![class; shown.len()]);
        let fractions: Vec<f64> = (0..points).map(|i| i as f64 / self.steps as f64).collect();
        Ok(kinds
            .iter()
            .zip(all.chunks(points))
            .map(|(&kind, s)| Curve {
                kind,
                class,
                fractions: fractions.clone(),
                scores: s.to_vec(),
                auc: auc(s),
            })
            .collect())
    }
}

/// The logits of the ranked samples over a blurred baseline: per chunk, the image on its shown
/// ranks (0 elsewhere) plus the blurred image on the other ranks (0 elsewhere), both built by
/// `perturb` and added. Each pixel is one of them plus an exact 0, so every sample is exactly the
/// image or the baseline there. As the shared perturbation loop: per chunk one submission (two
/// `perturb`s, the sum and the blur ride with the forward), one read-back at the end.
#[allow(clippy::too_many_arguments)]
fn blur_logits<B: Backend>(
    b: &B,
    model: &Model,
    image: &B::Tensor,
    blurred: &B::Tensor,
    rank: &B::Tensor,
    shown: &[[u32; 2]],
    mini_batch: usize,
    progress: &dyn Progress,
) -> Result<HostTensor> {
    let c = b.shape(image).get(1).copied().unwrap_or(0);
    let zero = vec![0.0; c];
    let all = shown.iter().map(|s| s[1]).max().unwrap_or(0);
    // Every range starts at 0 or ends at the last rank, so its complement is one range too.
    let rest: Vec<[u32; 2]> = shown
        .iter()
        .map(|&[lo, hi]| if lo == 0 { [hi, all] } else { [0, lo] })
        .collect();
    let chunks = shown.len().div_ceil(mini_batch);
    progress.start("deletion/insertion", chunks as u64);
    let mut outputs = Vec::with_capacity(chunks);
    for first in (0..shown.len()).step_by(mini_batch) {
        let count = mini_batch.min(shown.len() - first);
        let part = |src: &B::Tensor, ranges: &[[u32; 2]]| {
            let source = MaskSource::Ranked {
                rank,
                shown: &ranges[first..][..count],
            };
            b.perturb(src, &source, &Fill::Constant(&zero))
        };
        let batch = b.elementwise(
            &part(image, shown)?,
            &part(blurred, &rest)?,
            BinaryKind::Add,
        )?;
        outputs.push(b.forward(model, &batch, &[])?.output);
        progress.advance(1);
    }
    let read = b.read_many(&outputs.iter().collect::<Vec<_>>())?;
    progress.finish();
    let logits = concat_rows(read)?;
    if logits.batch() != shown.len() {
        return Err(Error::internal(format!(
            "deletion/insertion read {} rows of logits for {} samples",
            logits.batch(),
            shown.len()
        )));
    }
    Ok(logits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_end_at_every_pixel() {
        let c = Causal {
            steps: 3,
            ..Causal::default()
        };
        assert_eq!(c.counts(10), vec![0, 3, 6, 10]);
        assert_eq!(c.shown(CurveKind::Deletion, 10)[1], [3, 10]);
        assert_eq!(c.shown(CurveKind::Insertion, 10)[3], [0, 10]);
    }

    #[test]
    fn auc_is_the_trapezoid_rule() {
        assert_eq!(auc(&[1.0, 0.0]), 0.5);
        assert!((auc(&[1.0, 0.5, 0.0, 0.0]) - (0.75 + 0.25 + 0.0) / 3.0).abs() < 1e-12);
        assert_eq!(auc(&[0.3]), 0.0);
    }
}
