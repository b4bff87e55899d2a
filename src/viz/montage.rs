//! Montages: tiles laid out in a grid with gutters, for a layer's channels (MATLAB's
//! `imtile(activations)`) and for the images of a data set (maximal/minimal activating images).

use crate::backend::HostTensor;

/// A picture of tiles, as RGB bytes, with the grid it was laid out on.
#[derive(Clone, Debug, PartialEq)]
pub struct Montage {
    /// Picture width in pixels.
    pub width: usize,
    /// Picture height in pixels.
    pub height: usize,
    /// Interleaved RGB, row-major.
    pub rgb: Vec<u8>,
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub cols: usize,
    /// Number of tiles drawn (the last row may be partly empty).
    pub tiles: usize,
    /// Size of one tile's picture after upscaling, without frame or gutter.
    pub tile_height: usize,
    /// Width of one tile's picture after upscaling, without frame or gutter.
    pub tile_width: usize,
}

/// How single-channel tiles are coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Colormap {
    /// Black (low) to white (high); the default.
    #[default]
    Gray,
    /// Google's Turbo, the colormap of the heatmaps.
    Turbo,
}

impl Colormap {
    /// Parses a CLI colormap name: `gray` (or `grey`) or `turbo`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "gray" | "grey" => Ok(Colormap::Gray),
            "turbo" => Ok(Colormap::Turbo),
            other => Err(crate::Error::bad_input(format!(
                "unknown colormap '{other}': use gray or turbo"
            ))),
        }
    }

    fn rgb(self, t: f32) -> [u8; 3] {
        match self {
            Colormap::Gray => [(t.clamp(0.0, 1.0) * 255.0).round() as u8; 3],
            Colormap::Turbo => super::turbo(t).map(|c| (c * 255.0).round() as u8),
        }
    }
}

/// One tile: interleaved RGB in [0, 1], and an optional frame colour.
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    /// Tile width in pixels, before upscaling.
    pub width: usize,
    /// Tile height in pixels, before upscaling.
    pub height: usize,
    /// Interleaved RGB in [0, 1], row-major, `width · height · 3` values.
    pub rgb: Vec<f32>,
    /// Frame colour (red marks a misclassified image); `None` leaves the frame the background
    /// colour.
    pub frame: Option<[u8; 3]>,
}

/// Layout of a [`montage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Columns; `None`: square-ish (`⌈√n⌉`).
    pub cols: Option<usize>,
    /// Nearest-neighbour upscaling factor of every tile.
    pub scale: usize,
    /// Frame width around each tile (drawn in the tile's frame colour, or the background).
    pub frame: usize,
    /// Background pixels between framed tiles and around the edge.
    pub gutter: usize,
    /// Colour of the gutters and of unmarked frames (default white).
    pub background: [u8; 3],
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            cols: None,
            scale: 1,
            frame: 0,
            gutter: 1,
            background: [255, 255, 255],
        }
    }
}

/// `(rows, cols)` of a square-ish grid for `n` tiles: `cols = ⌈√n⌉`, as few rows as fit.
pub fn grid(n: usize) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    let mut cols = (n as f64).sqrt().ceil() as usize;
    while cols * cols < n {
        cols += 1;
    }
    (n.div_ceil(cols), cols)
}

/// The smallest nearest-neighbour factor that makes a `side`-pixel tile at least `min_side` wide.
pub fn upscale_for(side: usize, min_side: usize) -> usize {
    min_side.div_ceil(side.max(1)).max(1)
}

/// Lays `tiles` (all the size of the first) out on a grid. Tiles of another size are an internal
/// error on the caller's side and are drawn clipped or padded with the background.
pub fn montage(tiles: &[Tile], layout: &Layout) -> Montage {
    let n = tiles.len();
    let (rows, cols) = match layout.cols {
        Some(c) if c > 0 => (n.div_ceil(c), c),
        _ => grid(n),
    };
    let s = layout.scale.max(1);
    let (th, tw) = tiles
        .first()
        .map_or((0, 0), |t| (t.height * s, t.width * s));
    let (fh, fw) = (th + 2 * layout.frame, tw + 2 * layout.frame);
    let g = layout.gutter;
    let width = cols * (fw + g) + g;
    let height = rows * (fh + g) + g;
    let mut rgb: Vec<u8> = layout
        .background
        .iter()
        .copied()
        .cycle()
        .take(width * height * 3)
        .collect();
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        let i = (y * width + x) * 3;
        rgb[i..i + 3].copy_from_slice(&c);
    };
    for (i, tile) in tiles.iter().enumerate() {
        let (r, c) = (i / cols, i % cols);
        let (x0, y0) = (g + c * (fw + g), g + r * (fh + g));
        if let Some(frame) = tile.frame {
            for y in 0..fh {
                for x in 0..fw {
                    let inside = (layout.frame..layout.frame + th).contains(&y)
                        && (layout.frame..layout.frame + tw).contains(&x);
                    if !inside {
                        put(x0 + x, y0 + y, frame);
                    }
                }
            }
        }
        for y in 0..th.min(tile.height * s) {
            for x in 0..tw.min(tile.width * s) {
                let p = ((y / s) * tile.width + x / s) * 3;
                let px =
                    [0, 1, 2].map(|ch| (tile.rgb[p + ch].clamp(0.0, 1.0) * 255.0).round() as u8);
                put(x0 + layout.frame + x, y0 + layout.frame + y, px);
            }
        }
    }
    Montage {
        width,
        height,
        rgb,
        rows,
        cols,
        tiles: n,
        tile_height: th,
        tile_width: tw,
    }
}

/// One channel `[h, w]` plane min-max normalised to [0, 1] (a constant plane becomes 0).
pub fn normalize_plane(plane: &[f32]) -> Vec<f32> {
    let (lo, hi) = plane
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    plane
        .iter()
        .map(|&v| if range > 0.0 { (v - lo) / range } else { 0.0 })
        .collect()
}

/// Every channel of a `[C, h, w]` activation as a tile, each min-max normalised on its own, on a
/// square-ish grid with 1-pixel gutters; tiles are upscaled (nearest) to at least `min_side`.
pub fn channel_montage(act: &HostTensor, colormap: Colormap, min_side: usize) -> Montage {
    let c = act.shape.first().copied().unwrap_or(0);
    let (h, w) = match act.shape.len() {
        0 | 1 => (1, 1),
        2 => (1, act.shape[1]),
        _ => (
            act.shape[1..act.shape.len() - 1].iter().product(),
            act.shape[act.shape.len() - 1],
        ),
    };
    let tiles: Vec<Tile> = (0..c)
        .map(|ch| {
            let plane = &act.data[ch * h * w..(ch + 1) * h * w];
            let rgb = normalize_plane(plane)
                .into_iter()
                .flat_map(|t| colormap.rgb(t).map(|v| f32::from(v) / 255.0))
                .collect();
            Tile {
                width: w,
                height: h,
                rgb,
                frame: None,
            }
        })
        .collect();
    let layout = Layout {
        scale: upscale_for(h.max(w), min_side),
        ..Layout::default()
    };
    montage(&tiles, &layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_ish_grids() {
        assert_eq!(grid(32), (6, 6));
        assert_eq!(grid(16), (4, 4));
        assert_eq!(grid(10), (3, 4));
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(0), (0, 0));
    }

    #[test]
    fn channel_tiles_are_normalised_each_and_upscaled() {
        // Channel 0 spans 0..3, channel 1 spans 100..103: each tile is black to white.
        let act = HostTensor::new(
            vec![2, 2, 2],
            vec![0.0, 1.0, 2.0, 3.0, 100.0, 101.0, 102.0, 103.0],
        )
        .unwrap();
        let m = channel_montage(&act, Colormap::Gray, 4);
        assert_eq!((m.rows, m.cols, m.tiles), (1, 2, 2));
        assert_eq!((m.tile_height, m.tile_width), (4, 4));
        assert_eq!((m.width, m.height), (2 * 5 + 1, 6));
        let px = |x: usize, y: usize| m.rgb[(y * m.width + x) * 3];
        assert_eq!(px(0, 0), 255, "gutter is background");
        assert_eq!(px(1, 1), 0, "top-left of tile 0 is its minimum");
        assert_eq!(px(4, 4), 255, "bottom-right of tile 0 is its maximum");
        assert_eq!(px(6, 1), 0, "tile 1 normalised on its own");
        assert_eq!(px(9, 4), 255);
    }

    #[test]
    fn frames_surround_marked_tiles_only() {
        let t = |frame| Tile {
            width: 1,
            height: 1,
            rgb: vec![0.0; 3],
            frame,
        };
        let layout = Layout {
            frame: 1,
            gutter: 1,
            ..Layout::default()
        };
        let m = montage(&[t(Some([255, 0, 0])), t(None)], &layout);
        // Cells of 1 + 2 frame pixels, gutters of 1: 2 × 4 + 1 wide.
        assert_eq!((m.width, m.height), (9, 5));
        let px = |x: usize, y: usize| &m.rgb[(y * m.width + x) * 3..(y * m.width + x) * 3 + 3];
        assert_eq!(px(1, 1), [255, 0, 0]);
        assert_eq!(px(2, 2), [0, 0, 0]);
        assert_eq!(px(4, 1), [255, 255, 255], "gutter");
        assert_eq!(px(5, 1), [255, 255, 255], "unmarked frame is background");
        assert_eq!(px(6, 2), [0, 0, 0]);
    }
}
