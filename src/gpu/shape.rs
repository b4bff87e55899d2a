//! Shape helpers of the GPU op recorders (exec.rs, ops.rs and the op modules of `crate::ops`), in
//! a leaf file so that none of them need import another.

use super::GpuTensor;
use crate::error::{Error, Result};

/// Kernels take at most this rank (shapes are left-padded to it).
pub(crate) const MAX_RANK: usize = 6;

/// Number of elements of a shape.
pub(crate) fn prod(s: &[usize]) -> usize {
    s.iter().product()
}

/// Left-pads a per-axis list to [`MAX_RANK`] entries.
pub(crate) fn pad6<T: Copy>(v: &[T], fill: T) -> Vec<T> {
    let mut out = vec![fill; MAX_RANK - v.len()];
    out.extend_from_slice(v);
    out
}

/// A per-axis list as a typed parameter field: [`pad6`] into WGSL `array<vec4<u32>, 2>` (a
/// uniform array needs a 16-byte stride), read there as `a[d >> 2u][d & 3u]`; the last two
/// words are unused.
pub(crate) type Axes = [u32; 8];

/// `v` left-padded with `fill` to [`MAX_RANK`] axes, as an [`Axes`] field.
pub(crate) fn axes(v: &[usize], fill: usize) -> Axes {
    let mut out = [0; 8];
    for (o, &x) in out.iter_mut().zip(&pad6(v, fill)) {
        *o = super::params::word(x);
    }
    out
}

/// A signed per-axis list: WGSL `array<vec4<i32>, 2>`, as [`Axes`].
pub(crate) type SignedAxes = [i32; 8];

/// `v` left-padded with `fill` to [`MAX_RANK`] axes, as a [`SignedAxes`] field.
pub(crate) fn signed_axes(v: &[i64], fill: i64) -> SignedAxes {
    let mut out = [0; 8];
    for (o, &x) in out.iter_mut().zip(&pad6(v, fill)) {
        *o = x as i32;
    }
    out
}

/// Refuses anything but `[N, C, H, W]` in and out (window and plane kernels).
pub(crate) fn expect_rank4(x: &GpuTensor, out: &GpuTensor) -> Result<()> {
    if x.shape.len() != 4 || out.shape.len() != 4 {
        return Err(Error::internal(format!(
            "pooling needs NCHW, got {:?} -> {:?}",
            x.shape, out.shape
        )));
    }
    Ok(())
}
