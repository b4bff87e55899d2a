//! The pointing game (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop"), as
//! Quantus' `PointingGame`: a hit (1) when a pixel of maximal relevance lies in the object's box,
//! grown by `tolerance` pixels on every side (the paper's 15 px at 224 × 224; 0 by default);
//! else a miss (0). Where several pixels share the maximum, any of them in the box is a hit, as
//! Quantus' `np.any(s[max_indices])`. A host computation on the map: no forward.

use super::relevance;
use crate::backend::HostTensor;
use crate::error::{Error, Result};

/// An object's box in input pixels: rows `top..top + height`, columns `left..left + width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelBox {
    /// The first row.
    pub top: usize,
    /// The first column.
    pub left: usize,
    /// Rows (positive).
    pub height: usize,
    /// Columns (positive).
    pub width: usize,
}

impl PixelBox {
    /// Parses `T,L,H,W` (whole pixels, `H` and `W` positive).
    pub fn parse(s: &str) -> Result<Self> {
        let v: Vec<usize> = s
            .split(',')
            .map(|p| p.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                Error::bad_input(format!("a box is T,L,H,W in whole pixels, got '{s}'"))
            })?;
        match v.as_slice() {
            &[top, left, height, width] if height > 0 && width > 0 => Ok(PixelBox {
                top,
                left,
                height,
                width,
            }),
            _ => Err(Error::bad_input(format!(
                "a box is T,L,H,W with H and W positive, got '{s}'"
            ))),
        }
    }
}

/// 1 when a maximal pixel of `map`'s relevance on an `h × w` image lies in `bx` grown by
/// `tolerance`, else 0. A box outside the image is bad input.
pub fn pointing_game(
    map: &HostTensor,
    (h, w): (usize, usize),
    bx: PixelBox,
    tolerance: usize,
) -> Result<f64> {
    if bx.top >= h || bx.left >= w {
        return Err(Error::bad_input(format!(
            "the box {bx:?} starts outside the {h}×{w} image"
        )));
    }
    let r = relevance(map, h, w)?;
    let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (top, left) = (
        bx.top.saturating_sub(tolerance),
        bx.left.saturating_sub(tolerance),
    );
    let (bottom, right) = (
        bx.top + bx.height + tolerance,
        bx.left + bx.width + tolerance,
    );
    let hit = r.iter().enumerate().any(|(p, &v)| {
        let (y, x) = (p / w, p % w);
        v == max && (top..bottom).contains(&y) && (left..right).contains(&x)
    });
    Ok(if hit { 1.0 } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_inside_the_grown_box_and_a_miss_outside() {
        let mut map = HostTensor::zeros(vec![8, 8]);
        map.data[2 * 8 + 6] = 1.0; // (2, 6)
        let bx = PixelBox::parse("1,1,3,3").unwrap(); // rows 1..4, cols 1..4
        assert_eq!(pointing_game(&map, (8, 8), bx, 0).unwrap(), 0.0);
        assert_eq!(pointing_game(&map, (8, 8), bx, 2).unwrap(), 0.0);
        assert_eq!(pointing_game(&map, (8, 8), bx, 3).unwrap(), 1.0);
        map.data[8 + 1] = 1.0; // a tie inside the box
        assert_eq!(pointing_game(&map, (8, 8), bx, 0).unwrap(), 1.0);
        assert!(PixelBox::parse("1,1,0,3").is_err());
        assert!(PixelBox::parse("1,1,3").is_err());
        assert!(pointing_game(&map, (8, 8), PixelBox::parse("9,0,1,1").unwrap(), 0).is_err());
    }
}
