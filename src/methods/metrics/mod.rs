//! Faithfulness metrics of an attribution map (issue 16), each written once against the
//! [`Backend`](crate::backend::Backend): the perturbed images are built on the device from the
//! map ([`crate::backend::Backend::perturb`]), run through the perturbation loop every
//! perturbation method shares (one forward submission per mini-batch) and read back once.
//!
//! - [`causal`]: deletion and insertion curves and their AUC (Petsiuk et al. 2018, the RISE
//!   paper's causal metrics);
//! - [`confidence`]: Average Drop and Increase in Confidence (Chattopadhay et al. 2018), as
//!   pytorch-grad-cam's `DropInConfidence` / `IncreaseInConfidence`;
//! - [`infidelity`]: infidelity (Yeh et al. 2019) as Captum's, with seeded Gaussian noise
//!   generated on the device;
//! - [`pointing`]: the pointing game (Zhang et al. 2016) when the object's box is known.
//!
//! Every metric reads a map as one relevance value per pixel ([`relevance`]).

pub mod causal;
pub mod confidence;
pub mod infidelity;
pub mod pointing;

use crate::backend::HostTensor;
use crate::error::{Error, Result};

/// One relevance value per pixel of an `h × w` image, from a map shaped `[H, W]`, `[1, H, W]`,
/// `[C, H, W]` or `[1, C, H, W]`. A map with several channels (a gradient method's per-element
/// map) is summed over them: the pixel's total signed attribution, so positive evidence ranks
/// first and a method whose attributions add up to the score difference (IG, gradient × input)
/// keeps that meaning per pixel. (pytorch-grad-cam's metrics only take per-pixel CAMs; the max of
/// |·| over channels, netlens' display form, would rank strong negative evidence first.)
pub fn relevance(map: &HostTensor, h: usize, w: usize) -> Result<Vec<f32>> {
    let dims: Vec<usize> = match map.shape.as_slice() {
        [1, rest @ ..] if rest.len() == 3 => rest.to_vec(),
        s => s.to_vec(),
    };
    let c = match dims.as_slice() {
        [mh, mw] if (*mh, *mw) == (h, w) => 1,
        [c, mh, mw] if (*mh, *mw) == (h, w) && *c > 0 => *c,
        _ => {
            return Err(Error::bad_input(format!(
            "a map for a {h}×{w} image must be [H, W] or [C, H, W] with H×W = {h}×{w}, got {:?}",
            map.shape
        )))
        }
    };
    let hw = h * w;
    if let Some(bad) = map.data.iter().find(|v| !v.is_finite()) {
        return Err(Error::bad_input(format!(
            "the map holds a non-finite value ({bad}); it cannot rank pixels"
        )));
    }
    Ok((0..hw)
        .map(|p| (0..c).map(|ch| map.data[ch * hw + p]).sum())
        .collect())
}

/// Each pixel's place when the pixels are sorted by `relevance`, most relevant first (0), ties
/// broken by the lower pixel index first (numpy's `argsort(-r, kind="stable")`; RISE's reference
/// code flips an ascending argsort, which orders ties the other way round).
pub fn ranking(relevance: &[f32]) -> Vec<u32> {
    let mut order: Vec<usize> = (0..relevance.len()).collect();
    // A stable sort on finite values: equal values keep their index order.
    order.sort_by(|&a, &b| relevance[b].total_cmp(&relevance[a]).then(a.cmp(&b)));
    let mut rank = vec![0u32; relevance.len()];
    for (place, &p) in order.iter().enumerate() {
        rank[p] = place as u32;
    }
    rank
}

/// The metric names `evaluate` takes, in its table's order.
pub const NAMES: [&str; 6] = [
    "deletion",
    "insertion",
    "average-drop",
    "increase",
    "infidelity",
    "pointing-game",
];

/// Checks a list of metric names: unknown names are bad input naming the known ones.
pub fn parse_names(list: &str) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match NAMES.iter().find(|&&n| n == name) {
            Some(n) if !out.contains(n) => out.push(*n),
            Some(_) => {}
            None => {
                return Err(Error::bad_input(format!(
                    "unknown metric '{name}': use {}",
                    NAMES.join(", ")
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(Error::bad_input("no metric given"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_is_descending_with_stable_ties() {
        assert_eq!(ranking(&[0.5, 2.0, 0.5, -1.0, 2.0]), vec![2, 0, 3, 4, 1]);
    }

    #[test]
    fn relevance_sums_channels_and_checks_shapes() {
        let m = HostTensor::new(vec![1, 2, 1, 2], vec![1.0, -2.0, 0.5, 0.5]).unwrap();
        assert_eq!(relevance(&m, 1, 2).unwrap(), vec![1.5, -1.5]);
        assert!(relevance(&m, 2, 1).is_err());
        let nan = HostTensor::new(vec![1, 2], vec![f32::NAN, 0.0]).unwrap();
        assert!(relevance(&nan, 1, 2).is_err());
    }

    #[test]
    fn metric_names_parse() {
        assert_eq!(
            parse_names("insertion, deletion,insertion").unwrap(),
            vec!["insertion", "deletion"]
        );
        assert!(parse_names("deletion,road").is_err());
        assert!(parse_names("").is_err());
    }
}
