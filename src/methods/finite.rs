//! Non-finite values that the model itself produced. Inputs are refused when they hold NaN or
//! ±Inf ([`crate::input::check_finite`]), but finite inputs can still overflow inside the model
//! (weights that make a logit exceed f32's range, an input scaled so that activations do), and
//! then the logits, the maps or IG's convergence delta hold Inf or NaN. That is the model's
//! answer, not an error: the maps are still written, and these reports say where it happened so
//! that a caller can warn instead of presenting NaN as a result.

use serde::Serialize;

use super::attribution::HostAttribution;
use super::PixelAttribution;
use crate::backend::HostTensor;

/// Where one tensor (or one scalar) of a result holds NaN or ±Inf.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NonFinite {
    /// What holds them: `logits`, `map`, `lowres_map`, `score`, `convergence_delta`,
    /// `score_difference`, `channel_weights`, `per_pixel_map`, `importance`, or a caller's name
    /// (a tapped layer).
    pub what: String,
    /// The batch sample, for per-sample results.
    pub sample: Option<usize>,
    /// The explained class of that sample, for attributions.
    pub class: Option<usize>,
    /// How many values are NaN or infinite.
    pub count: usize,
    /// How many values there are in all.
    pub total: usize,
    /// The index tuple of the first one (within the sample, when `sample` is set).
    pub first_index: Vec<usize>,
    /// The first one as text (`NaN`, `inf`, `-inf`): JSON has no spelling for these numbers.
    pub first_value: String,
}

/// `logits (class 0): 3 of 4 values are NaN or infinite, the first (inf) at [0]`, or for one
/// value `convergence_delta (class 0) is NaN`.
impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.what)?;
        match (self.sample, self.class) {
            (_, Some(class)) => write!(f, " (class {class})")?,
            (Some(sample), None) => write!(f, " (sample {sample})")?,
            (None, None) => {}
        }
        if self.total == 1 {
            return write!(f, " is {}", self.first_value);
        }
        write!(
            f,
            ": {} of {} values are NaN or infinite, the first ({}) at {:?}",
            self.count, self.total, self.first_value, self.first_index
        )
    }
}

/// Scans `data` (laid out as `shape`, C order) for NaN and ±Inf; `None` when all are finite.
pub fn scan(what: &str, shape: &[usize], data: &[f32]) -> Option<NonFinite> {
    let first = data.iter().position(|v| !v.is_finite())?;
    let mut first_index = vec![0usize; shape.len()];
    let mut rest = first;
    for (slot, &dim) in first_index.iter_mut().zip(shape).rev() {
        *slot = rest % dim.max(1);
        rest /= dim.max(1);
    }
    Some(NonFinite {
        what: what.to_string(),
        sample: None,
        class: None,
        count: data.iter().filter(|v| !v.is_finite()).count(),
        total: data.len(),
        first_index,
        first_value: data[first].to_string(),
    })
}

/// [`scan`] of a whole tensor (the index tuple includes the batch axis).
pub fn scan_tensor(what: &str, t: &HostTensor) -> Option<NonFinite> {
    scan(what, &t.shape, &t.data)
}

/// [`scan`] of each sample of a batch tensor `[N, ...]`, reporting per sample.
pub fn scan_samples(what: &str, t: &HostTensor) -> Vec<NonFinite> {
    let inner = t.shape.get(1..).unwrap_or(&[]);
    (0..t.batch())
        .filter_map(|i| {
            scan(what, inner, t.sample(i)).map(|mut n| {
                n.sample = Some(i);
                n
            })
        })
        .collect()
}

impl HostAttribution {
    /// Every non-finite value of the result, per sample: its logits, its map (and low-res map),
    /// its score, IG's convergence delta and score difference, Score-CAM's channel weights,
    /// occlusion's per-pixel map and LIME's importances. Empty when all are finite.
    pub fn non_finite(&self) -> Vec<NonFinite> {
        let mut found = Vec::new();
        for i in 0..self.len() {
            let mut one = |n: Option<NonFinite>| {
                if let Some(mut n) = n {
                    n.sample = Some(i);
                    n.class = Some(self.targets[i]);
                    found.push(n);
                }
            };
            let logits = &self.logits;
            one(scan(
                "logits",
                logits.shape.get(1..).unwrap_or(&[]),
                logits.sample(i),
            ));
            let map = self.map(i);
            one(scan_tensor("map", &map));
            one(self
                .lowres_map(i)
                .and_then(|l| scan_tensor("lowres_map", &l)));
            one(scan("score", &[], &self.scores[i..=i]));
            let e = &self.extras[i];
            for (what, v) in [
                ("convergence_delta", e.convergence_delta),
                ("score_difference", e.score_difference),
            ] {
                one(v.and_then(|v| scan(what, &[], &[v])));
            }
            if let Some(w) = &e.channel_weights {
                one(scan("channel_weights", &[w.len()], w));
            }
            if let Some(p) = &e.per_pixel {
                one(scan_tensor("per_pixel_map", p));
            }
            if let Some(fit) = &e.surrogate {
                one(scan("importance", &[fit.importance.len()], &fit.importance));
            }
        }
        found
    }
}

impl PixelAttribution {
    /// The non-finite values of the map and the score (see [`HostAttribution::non_finite`]).
    pub fn non_finite(&self) -> Vec<NonFinite> {
        [
            scan_tensor("map", &self.map),
            scan("score", &[], &[self.score]),
        ]
        .into_iter()
        .flatten()
        .map(|mut n| {
            n.class = Some(self.class);
            n
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_index_and_counts() {
        let mut data = vec![1.0f32; 24];
        data[13] = f32::INFINITY;
        data[20] = f32::NAN;
        let n = scan("map", &[2, 3, 4], &data).unwrap();
        assert_eq!(n.first_index, vec![1, 0, 1]);
        assert_eq!((n.count, n.total), (2, 24));
        assert_eq!(n.first_value, "inf");
        assert!(scan("map", &[2], &[0.0, -1.0]).is_none());
        assert_eq!(
            scan("s", &[], &[f32::NAN]).unwrap().first_index,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn per_sample_scans_name_the_sample() {
        let t =
            HostTensor::new(vec![3, 2], vec![0.0, 0.0, 0.0, f32::NEG_INFINITY, 1.0, 1.0]).unwrap();
        let found = scan_samples("logits", &t);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].sample, found[0].first_index.clone()),
            (Some(1), vec![1])
        );
        assert_eq!(found[0].first_value, "-inf");
        assert_eq!(
            found[0].to_string(),
            "logits (sample 1): 1 of 2 values are NaN or infinite, the first (-inf) at [1]"
        );
        let one = scan("convergence_delta", &[], &[f32::NAN]).unwrap();
        assert_eq!(one.to_string(), "convergence_delta is NaN");
    }
}
