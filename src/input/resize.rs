//! Bilinear resampling that reproduces Pillow's `Image.resize(size, Image.BILINEAR)` on 8-bit
//! images bit for bit (Pillow `libImaging/Resample.c`, `ImagingResampleInner` with the default
//! box and no `reducing_gap`).
//!
//! The reference tensors the models were validated with came out of Pillow, and some class pairs
//! sit within a fraction of a percent of each other, so "close to bilinear" is not good enough:
//! the fixed-point coefficients, the rounding bias and the 8-bit intermediate image all matter.

/// Pillow keeps 8 bits for the pixel, 2 bits of headroom for overshooting filters and the sign.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One output axis' filter taps: for each output index, the first input index, the number of
/// taps, and `ksize` fixed-point coefficients of which the first `count` are used.
struct Taps {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    coeffs: Vec<i32>,
}

fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// `precompute_coeffs` followed by `normalize_coeffs_8bpc`. The arithmetic order (and f64 where
/// Pillow uses double) is kept so that the rounding of every coefficient is the same.
fn precompute(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    // The bilinear filter's support is 1.
    let support = filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut coeffs = vec![0i32; out_size * ksize];
    let mut weights = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; negative values are clamped to 0 right after, so
        // truncation and floor agree on every value that survives.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let count = xmax.max(0) as usize;
        let mut ww = 0.0;
        for (x, w) in weights.iter_mut().enumerate().take(count) {
            *w = bilinear_filter((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *w;
        }
        let row = &mut coeffs[xx * ksize..(xx + 1) * ksize];
        for (k, &w) in row.iter_mut().zip(weights.iter()).take(count) {
            let w = if ww != 0.0 { w / ww } else { w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            *k = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin as usize, count));
    }
    Taps {
        ksize,
        bounds,
        coeffs,
    }
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resamples an interleaved 8-bit image with `channels` channels from `w`×`h` to `nw`×`nh`.
/// Like Pillow, the horizontal pass runs first, each pass rounds to 8 bits, and a pass whose axis
/// keeps its size is skipped.
pub fn resize_bilinear_u8(
    data: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    nw: usize,
    nh: usize,
) -> Vec<u8> {
    debug_assert_eq!(data.len(), w * h * channels);
    let len = w * channels;
    resize_bilinear_rows(
        |y, out| out.copy_from_slice(&data[y * len..(y + 1) * len]),
        w,
        h,
        channels,
        nw,
        nh,
    )
}

/// [`resize_bilinear_u8`] reading the source one row at a time through `row(y, out)` (which
/// fills `w * channels` samples), so that the full-size source never has to exist as one 8-bit
/// buffer: only the horizontally resized `nw`×`h` intermediate and the output are allocated.
pub(super) fn resize_bilinear_rows(
    mut row: impl FnMut(usize, &mut [u8]),
    w: usize,
    h: usize,
    channels: usize,
    nw: usize,
    nh: usize,
) -> Vec<u8> {
    if nw == 0 || nh == 0 || channels == 0 {
        return Vec::new();
    }
    let half = 1i64 << (PRECISION_BITS - 1);
    let mut src = vec![0u8; w * channels];
    let horizontal = (nw != w).then(|| {
        let taps = precompute(w, nw);
        let mut out = vec![0u8; nw * h * channels];
        for y in 0..h {
            row(y, &mut src);
            let dst = &mut out[y * nw * channels..(y + 1) * nw * channels];
            for (xx, &(xmin, count)) in taps.bounds.iter().enumerate() {
                let k = &taps.coeffs[xx * taps.ksize..xx * taps.ksize + count];
                for c in 0..channels {
                    let mut acc = half;
                    for (x, &kx) in k.iter().enumerate() {
                        acc += i64::from(src[(xmin + x) * channels + c]) * i64::from(kx);
                    }
                    dst[xx * channels + c] = clip8(acc);
                }
            }
        }
        out
    });
    let row_len = nw * channels;
    if nh == h {
        return horizontal.unwrap_or_else(|| {
            let mut out = vec![0u8; h * row_len];
            for (y, dst) in out.chunks_exact_mut(row_len).enumerate() {
                row(y, dst);
            }
            out
        });
    }
    let taps = precompute(h, nh);
    let mut out = vec![0u8; nh * row_len];
    // Without a horizontal pass, the taps' source rows are fetched per output row.
    let mut window = vec![
        0u8;
        if horizontal.is_some() {
            0
        } else {
            taps.ksize * row_len
        }
    ];
    for (yy, &(ymin, count)) in taps.bounds.iter().enumerate() {
        let k = &taps.coeffs[yy * taps.ksize..yy * taps.ksize + count];
        let rows: &[u8] = match &horizontal {
            Some(hz) => &hz[ymin * row_len..(ymin + count) * row_len],
            None => {
                for (y, dst) in window.chunks_exact_mut(row_len).take(count).enumerate() {
                    row(ymin + y, dst);
                }
                &window[..count * row_len]
            }
        };
        let dst = &mut out[yy * row_len..(yy + 1) * row_len];
        for (i, d) in dst.iter_mut().enumerate() {
            let mut acc = half;
            for (y, &ky) in k.iter().enumerate() {
                acc += i64::from(rows[y * row_len + i]) * i64::from(ky);
            }
            *d = clip8(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let data: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize_bilinear_u8(&data, 5, 4, 3, 5, 4), data);
    }

    #[test]
    fn constant_image_stays_constant() {
        // The coefficients of each output pixel must sum to 1 in fixed point (up to rounding that
        // the half-bias absorbs), so a flat image stays flat when shrinking and when enlarging.
        for &(w, h, nw, nh) in &[(451, 300, 384, 256), (7, 5, 16, 16), (300, 451, 224, 337)] {
            for v in [0u8, 1, 128, 254, 255] {
                let data = vec![v; w * h * 3];
                let out = resize_bilinear_u8(&data, w, h, 3, nw, nh);
                assert!(out.iter().all(|&o| o == v), "{w}x{h}->{nw}x{nh} value {v}");
            }
        }
    }

    #[test]
    fn vertical_only_equals_horizontal_only_on_the_transpose() {
        // A resize that keeps the width skips the horizontal pass and fetches its source rows
        // per output row; transposed, the same taps run in the horizontal pass instead.
        let (w, h, nh) = (6, 23, 9);
        let data: Vec<u8> = (0..w * h).map(|i| (i * 97 % 256) as u8).collect();
        let transpose = |d: &[u8], w: usize, h: usize| -> Vec<u8> {
            (0..w * h).map(|i| d[(i % h) * w + i / h]).collect()
        };
        let vertical = resize_bilinear_u8(&data, w, h, 1, w, nh);
        let across = resize_bilinear_u8(&transpose(&data, w, h), h, w, 1, nh, w);
        assert_eq!(vertical, transpose(&across, nh, w));
        for up in [h, 40] {
            let v = resize_bilinear_u8(&data, w, h, 1, w, up);
            let a = resize_bilinear_u8(&transpose(&data, w, h), h, w, 1, up, w);
            assert_eq!(v, transpose(&a, up, w), "to {up}");
        }
    }

    #[test]
    fn coefficients_match_pillow_by_hand() {
        // 4 -> 2: scale 2, support 2; output 0 has center 1, taps x=0..3 (xmin 0, xmax 3) with
        // weights filter((x - 0.5) / 2) = 0.75, 0.75, 0.25 -> normalised 3/7, 3/7, 1/7.
        let taps = precompute(4, 2);
        assert_eq!(taps.ksize, 5);
        assert_eq!(taps.bounds, vec![(0, 3), (1, 3)]);
        let one = f64::from(1u32 << PRECISION_BITS);
        let expect = [
            (0.5 + 3.0 / 7.0 * one) as i32,
            (0.5 + 3.0 / 7.0 * one) as i32,
        ];
        assert_eq!(&taps.coeffs[..2], &expect);
        assert_eq!(taps.coeffs[2], (0.5 + one / 7.0) as i32);
        // Upsampling 2 -> 4: output 0 sits at 0.25, which clamps to the first pixel.
        let out = resize_bilinear_u8(&[0, 100], 2, 1, 1, 4, 1);
        assert_eq!(out, vec![0, 25, 75, 100]);
    }
}
