//! Image ops on `[N, C, H, W]` batches (`shaders/image.wgsl`): bilinear resize, circular shift,
//! Gaussian blur and deep dream's gradient-ascent step. Each is one dispatch and goes through
//! the shared single-kernel helper, which defers each into the next submission.

use super::kernels::{Bind, Kernel, Params};
use super::perturb::submit_one;
use super::{GpuBackend, GpuTensor};
use crate::backend::{blur_weights, check_ascent, check_image_batch, AscentStep};
use crate::error::{Error, Result};

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
    let _exclusive = gpu.exclusive()?;
    let out = gpu.alloc(vec![n, c, out_h, out_w])?;
    check_binding(gpu, x, "bilinear resize")?;
    check_binding(gpu, &out, "bilinear resize")?;
    if out.is_empty() {
        return Ok(out);
    }
    let binds: [Bind; 2] = [x.into(), (&out).into()];
    submit_one(
        gpu,
        Kernel::ResizeBilinear,
        &binds,
        &[x, &out],
        Params::new().us(&[out.len(), h, w, out_h, out_w]),
        out.len(),
        "GPU bilinear resize",
    )?;
    Ok(out)
}

pub(crate) fn roll(gpu: &GpuBackend, x: &GpuTensor, dy: i64, dx: i64) -> Result<GpuTensor> {
    let [_, _, h, w] = check_image_batch(x.shape(), "roll")?;
    let _exclusive = gpu.exclusive()?;
    let out = gpu.alloc(x.shape().to_vec())?;
    check_binding(gpu, x, "roll")?;
    if out.is_empty() {
        return Ok(out);
    }
    let binds: [Bind; 2] = [x.into(), (&out).into()];
    let (sy, sx) = (dy.rem_euclid(h as i64), dx.rem_euclid(w as i64));
    submit_one(
        gpu,
        Kernel::Roll,
        &binds,
        &[x, &out],
        Params::new().us(&[out.len(), h, w, sy as usize, sx as usize]),
        out.len(),
        "GPU roll",
    )?;
    Ok(out)
}

pub(crate) fn blur(gpu: &GpuBackend, x: &GpuTensor, sigma: f32) -> Result<GpuTensor> {
    let [_, _, h, w] = check_image_batch(x.shape(), "blur")?;
    let weights = blur_weights(sigma)?;
    let _exclusive = gpu.exclusive()?;
    let out = gpu.alloc(x.shape().to_vec())?;
    check_binding(gpu, x, "blur")?;
    if out.is_empty() {
        return Ok(out);
    }
    let mut params = Params::new().us(&[out.len(), h, w, weights.len() - 1]);
    for &v in &weights {
        params = params.f(v);
    }
    let binds: [Bind; 2] = [x.into(), (&out).into()];
    submit_one(
        gpu,
        Kernel::Blur,
        &binds,
        &[x, &out],
        params,
        out.len(),
        "GPU blur",
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
    let _exclusive = gpu.exclusive()?;
    let out = gpu.alloc(x.shape().to_vec())?;
    check_binding(gpu, x, "gradient-ascent step")?;
    if out.is_empty() {
        return Ok(out);
    }
    let [dy, dx] = step.jitter;
    let mut params = Params::new()
        .us(&[
            n,
            c,
            h,
            w,
            dy.rem_euclid(h as i64) as usize,
            dx.rem_euclid(w as i64) as usize,
        ])
        .f(step.step)
        .at(8);
    for &v in step.lo.iter().chain(&step.hi) {
        params = params.f(v);
    }
    let binds: [Bind; 3] = [x.into(), grad.into(), (&out).into()];
    // One workgroup of 256 threads per sample: the per-sample mean needs a workgroup reduction.
    submit_one(
        gpu,
        Kernel::AscentStep,
        &binds,
        &[x, grad, &out],
        params,
        n * 256,
        "GPU gradient-ascent step",
    )?;
    Ok(out)
}
