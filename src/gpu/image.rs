//! Image ops on `[N, C, H, W]` batches (`shaders/image.wgsl`): bilinear resize, circular shift,
//! Gaussian blur and deep dream's gradient-ascent step. Each is one dispatch, deferred into the
//! next submission.

use super::kernels::{Bind, Kernel, KernelParams, TypedParams};
use super::params::word;
use super::{GpuBackend, GpuTensor};
use crate::backend::{
    blur_weights, check_ascent, check_image_batch, AscentStep, MAX_ASCENT_CHANNELS, MAX_BLUR_RADIUS,
};
use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};

/// `resize_bilinear`'s parameters (WGSL `ResizeParams`): output elements, input and output size.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct ResizeParams {
    pub(crate) total: u32,
    pub(crate) in_h: u32,
    pub(crate) in_w: u32,
    pub(crate) out_h: u32,
    pub(crate) out_w: u32,
}
impl TypedParams for ResizeParams {
    const KERNELS: &'static [Kernel] = &[Kernel::ResizeBilinear];
}

/// `roll`'s parameters (WGSL `RollParams`): the shift comes reduced to `[0, h)` and `[0, w)`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct RollParams {
    pub(crate) total: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) dy: u32,
    pub(crate) dx: u32,
}
impl TypedParams for RollParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Roll];
}

/// Room for the 1-D weights `w[0..=r]`: WGSL `array<vec4<f32>, 7>`.
const BLUR_WEIGHTS: usize = 28;
const _: () = assert!(MAX_BLUR_RADIUS < BLUR_WEIGHTS);

/// `blur`'s parameters (WGSL `BlurParams`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct BlurParams {
    pub(crate) total: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) radius: u32,
    pub(crate) weights: [f32; BLUR_WEIGHTS],
}
impl TypedParams for BlurParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Blur];
}

/// Room for the per-channel bounds: WGSL `array<vec4<f32>, 6>` each.
const ASCENT_CHANNELS: usize = 24;
const _: () = assert!(MAX_ASCENT_CHANNELS <= ASCENT_CHANNELS);

/// `ascent_step`'s parameters (WGSL `AscentParams`); the jitter comes reduced to `[0, h)` and
/// `[0, w)`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct AscentParams {
    pub(crate) n: u32,
    pub(crate) c: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) dy: u32,
    pub(crate) dx: u32,
    pub(crate) step: f32,
    /// WGSL starts the bound arrays on a 16-byte boundary.
    pub(crate) _pad: u32,
    pub(crate) lo: [f32; ASCENT_CHANNELS],
    pub(crate) hi: [f32; ASCENT_CHANNELS],
}
impl TypedParams for AscentParams {
    const KERNELS: &'static [Kernel] = &[Kernel::AscentStep];
}

/// One deferred dispatch of `kernel`, one thread per element of `total`, holding `keep`.
fn defer_one(
    gpu: &GpuBackend,
    what: &str,
    kernel: Kernel,
    binds: &[Bind],
    keep: &[&GpuTensor],
    params: impl KernelParams,
    total: usize,
) -> Result<()> {
    gpu.record_deferred(what, |rec| {
        rec.keep(keep.iter().copied());
        rec.dispatch_1d(kernel, binds, params, total)
    })
}

/// Kernels bind whole tensors from offset 0 and index them in u32.
fn check_binding(gpu: &GpuBackend, t: &GpuTensor, what: &str) -> Result<()> {
    if t.byte_len() > gpu.binding_limit || t.len() > u32::MAX as usize {
        return Err(Error::bad_input(format!(
            "{what}: a batch of shape {:?} needs {} bytes, over this GPU's storage binding limit \
             of {} bytes; use fewer samples",
            t.shape(),
            t.byte_len(),
            gpu.binding_limit
        )));
    }
    Ok(())
}

pub(crate) fn resize_bilinear(
    gpu: &GpuBackend,
    x: &GpuTensor,
    out_h: usize,
    out_w: usize,
) -> Result<GpuTensor> {
    let [n, c, h, w] = check_image_batch(x.shape(), "bilinear resize")?;
    if out_h == 0 || out_w == 0 {
        return Err(Error::bad_input(format!(
            "bilinear resize to {out_h}x{out_w}: the size must be positive"
        )));
    }
    let out = gpu.alloc(vec![n, c, out_h, out_w])?;
    check_binding(gpu, x, "bilinear resize")?;
    check_binding(gpu, &out, "bilinear resize")?;
    if out.is_empty() {
        return Ok(out);
    }
    let params = ResizeParams {
        total: word(out.len()),
        in_h: word(h),
        in_w: word(w),
        out_h: word(out_h),
        out_w: word(out_w),
    };
    defer_one(
        gpu,
        "GPU bilinear resize",
        Kernel::ResizeBilinear,
        &[x.into(), (&out).into()],
        &[x, &out],
        params,
        out.len(),
    )?;
    Ok(out)
}

pub(crate) fn roll(gpu: &GpuBackend, x: &GpuTensor, dy: i64, dx: i64) -> Result<GpuTensor> {
    let [_, _, h, w] = check_image_batch(x.shape(), "roll")?;
    let out = gpu.alloc(x.shape().to_vec())?;
    check_binding(gpu, x, "roll")?;
    if out.is_empty() {
        return Ok(out);
    }
    let params = RollParams {
        total: word(out.len()),
        h: word(h),
        w: word(w),
        dy: dy.rem_euclid(h as i64) as u32,
        dx: dx.rem_euclid(w as i64) as u32,
    };
    defer_one(
        gpu,
        "GPU roll",
        Kernel::Roll,
        &[x.into(), (&out).into()],
        &[x, &out],
        params,
        out.len(),
    )?;
    Ok(out)
}

pub(crate) fn blur(gpu: &GpuBackend, x: &GpuTensor, sigma: f32) -> Result<GpuTensor> {
    let [_, _, h, w] = check_image_batch(x.shape(), "blur")?;
    let weights = blur_weights(sigma)?;
    let out = gpu.alloc(x.shape().to_vec())?;
    check_binding(gpu, x, "blur")?;
    if out.is_empty() {
        return Ok(out);
    }
    let mut params = BlurParams {
        total: word(out.len()),
        h: word(h),
        w: word(w),
        radius: word(weights.len() - 1),
        weights: [0.0; BLUR_WEIGHTS],
    };
    params.weights[..weights.len()].copy_from_slice(&weights);
    defer_one(
        gpu,
        "GPU blur",
        Kernel::Blur,
        &[x.into(), (&out).into()],
        &[x, &out],
        params,
        out.len(),
    )?;
    Ok(out)
}

pub(crate) fn ascent_step(
    gpu: &GpuBackend,
    x: &GpuTensor,
    grad: &GpuTensor,
    step: &AscentStep,
) -> Result<GpuTensor> {
    let [n, c, h, w] = check_ascent(x.shape(), grad.shape(), step)?;
    let out = gpu.alloc(x.shape().to_vec())?;
    check_binding(gpu, x, "gradient-ascent step")?;
    if out.is_empty() {
        return Ok(out);
    }
    let [dy, dx] = step.jitter;
    let mut params = AscentParams {
        n: word(n),
        c: word(c),
        h: word(h),
        w: word(w),
        dy: dy.rem_euclid(h as i64) as u32,
        dx: dx.rem_euclid(w as i64) as u32,
        step: step.step,
        _pad: 0,
        lo: [0.0; ASCENT_CHANNELS],
        hi: [0.0; ASCENT_CHANNELS],
    };
    params.lo[..c].copy_from_slice(&step.lo);
    params.hi[..c].copy_from_slice(&step.hi);
    // One workgroup of 256 threads per sample: the per-sample mean needs a workgroup reduction.
    defer_one(
        gpu,
        "GPU gradient-ascent step",
        Kernel::AscentStep,
        &[x.into(), grad.into(), (&out).into()],
        &[x, grad, &out],
        params,
        n * 256,
    )?;
    Ok(out)
}
