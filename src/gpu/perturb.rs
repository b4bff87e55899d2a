//! Perturbed copies of one image (occlusion), built on the device by `shaders/perturb.wgsl`.

use super::kernels::{Bind, Kernel, Params, Recorder};
use super::{GpuBackend, GpuTensor};
use crate::backend::{check_occlude, OcclusionWindow};
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;

/// One dispatch and one submission: the windows and fill values go up as a few dozen bytes of
/// i32s, the batch is written from the image already on the device.
pub(crate) fn occlude(
    gpu: &GpuBackend,
    image: &GpuTensor,
    windows: &[OcclusionWindow],
    value: &[f32],
) -> Result<GpuTensor> {
    let (c, h, w) = check_occlude(image.shape(), windows, value)?;
    let out = gpu.alloc(vec![windows.len(), c, h, w])?;
    let total = out.len();
    if total == 0 {
        return Ok(out);
    }
    // The kernel binds the whole batch from offset 0 and indexes it in u32, so one batch must
    // fit one binding; callers chunk their windows (the occlusion method does).
    if out.byte_len() > gpu.binding_limit || total > u32::MAX as usize {
        return Err(Error::bad_input(format!(
            "an occlusion batch of {} samples of [{c}, {h}, {w}] needs {} bytes, over this GPU's \
             storage binding limit of {} bytes; use a smaller mini-batch",
            windows.len(),
            out.byte_len(),
            gpu.binding_limit
        )));
    }
    let mut meta: Vec<i32> = value.iter().map(|v| v.to_bits() as i32).collect();
    for win in windows {
        meta.extend([
            win.top as i32,
            win.left as i32,
            win.height as i32,
            win.width as i32,
        ]);
    }
    let meta_buf = gpu.alloc(vec![meta.len()])?;
    gpu.queue
        .write_buffer(meta_buf.buffer(), 0, bytemuck::cast_slice(&meta));
    gpu.stats.uploads.fetch_add(1, Ordering::Relaxed);

    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let mut rec = Recorder::new(&gpu.device, &gpu.pipelines);
    let binds: [Bind; 3] = [image.into(), (&meta_buf).into(), (&out).into()];
    rec.dispatch_1d(
        Kernel::Occlude,
        &binds,
        Params::new().us(&[total, c, h, w]),
        total,
    )?;
    let dispatches = rec.dispatches() as u64;
    let (commands, uniform) = rec.finish(&gpu.queue, &gpu.pool);
    gpu.submit(commands);
    drop(uniform);
    gpu.stats
        .dispatches
        .fetch_add(dispatches, Ordering::Relaxed);
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::internal(format!(
            "GPU occlusion failed validation: {e}"
        )));
    }
    Ok(out)
}
