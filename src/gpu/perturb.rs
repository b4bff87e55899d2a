//! Perturbed copies of one image (occlusion, IG paths, LIME samples, Score-CAM masks), built on
//! the device by `shaders/perturb.wgsl`.

use super::kernels::{Bind, Kernel, Params, Recorder};
use super::{GpuBackend, GpuTensor};
use crate::backend::{
    aligned_scale, check_occlude, check_path_batch, check_scaled_by_maps, check_segment_mask,
    Backend, HostTensor, OcclusionWindow,
};
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;

/// One deferred dispatch (no submission of its own, see [`submit_one`]): the windows and fill values go up as a few dozen bytes of
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

    let binds: [Bind; 3] = [image.into(), (&meta_buf).into(), (&out).into()];
    submit_one(
        gpu,
        Kernel::Occlude,
        &binds,
        &[image, &meta_buf, &out],
        Params::new().us(&[total, c, h, w]),
        total,
        "GPU occlusion",
    )?;
    Ok(out)
}

/// Integrated Gradients' path points and SmoothGrad's noisy copies, generated on the device from
/// the image and baseline already there: one deferred dispatch.
pub(crate) fn path_batch(
    gpu: &GpuBackend,
    image: &GpuTensor,
    baseline: &GpuTensor,
    alphas: &[f32],
    sigmas: &[f32],
    seed: u64,
) -> Result<GpuTensor> {
    let n = check_path_batch(image.shape(), baseline.shape(), alphas, sigmas)?;
    let mut shape = image.shape().to_vec();
    shape[0] = alphas.len();
    let total: usize = shape.iter().product();
    if total == 0 {
        return gpu.alloc(shape);
    }
    // The kernel binds the batch whole. A batch over the binding limit (hundreds of IG steps on a
    // large input) is built on the host instead and uploaded; the forward chunks it as usual.
    if total as u64 * 4 > gpu.binding_limit || total > u32::MAX as usize {
        let src = gpu.read_many(&[image, baseline])?;
        let mut host = HostTensor::zeros(shape);
        crate::cpu::path_batch_into(
            &src[0].data,
            &src[1].data,
            alphas,
            sigmas,
            seed,
            &mut host.data,
        );
        return gpu.upload(&host);
    }
    let _exclusive = gpu.exclusive()?;
    let out = gpu.alloc(shape)?;
    let coeffs: Vec<f32> = alphas.iter().chain(sigmas).copied().collect();
    let coeff_buf = gpu.alloc(vec![coeffs.len()])?;
    gpu.queue
        .write_buffer(coeff_buf.buffer(), 0, bytemuck::cast_slice(&coeffs));
    gpu.stats.uploads.fetch_add(1, Ordering::Relaxed);

    let binds: [Bind; 4] = [
        image.into(),
        baseline.into(),
        (&coeff_buf).into(),
        (&out).into(),
    ];
    submit_one(
        gpu,
        Kernel::PathBatch,
        &binds,
        &[image, baseline, &coeff_buf, &out],
        Params::new().us(&[
            total,
            n,
            alphas.len(),
            seed as u32 as usize,
            (seed >> 32) as usize,
        ]),
        total,
        "GPU path batch",
    )?;
    Ok(out)
}

/// LIME's perturbed copies (see [`Backend::segment_mask_batch`]): one deferred dispatch; only the
/// fill values go up, the on/off pattern is hashed on the device.
pub(crate) fn segment_mask_batch(
    gpu: &GpuBackend,
    image: &GpuTensor,
    labels: &GpuTensor,
    first: usize,
    count: usize,
    seed: u64,
    value: &[f32],
) -> Result<GpuTensor> {
    let (c, h, w) = check_segment_mask(image.shape(), labels.shape(), first, count, value)?;
    let out = gpu.alloc(vec![count, c, h, w])?;
    let total = out.len();
    if total == 0 {
        return Ok(out);
    }
    fits_binding(gpu, &out, "a LIME batch")?;
    let fill = upload_words(gpu, value.iter().map(|v| v.to_bits()))?;
    let binds: [Bind; 4] = [image.into(), labels.into(), (&fill).into(), (&out).into()];
    submit_one(
        gpu,
        Kernel::SegmentMask,
        &binds,
        &[image, labels, &fill, &out],
        Params::new().us(&[
            total,
            c,
            h * w,
            first,
            seed as u32 as usize,
            (seed >> 32) as usize,
        ]),
        total,
        "GPU LIME batch",
    )?;
    Ok(out)
}

/// Score-CAM's masked inputs (see [`Backend::scaled_by_maps`]): two deferred dispatches in one
/// command buffer, the range of each upsampled map (one workgroup per map) then the products.
pub(crate) fn scaled_by_maps(
    gpu: &GpuBackend,
    image: &GpuTensor,
    maps: &GpuTensor,
    first: usize,
    count: usize,
) -> Result<GpuTensor> {
    let (c, hh, ww, h, w) = check_scaled_by_maps(image.shape(), maps.shape(), first, count)?;
    let out = gpu.alloc(vec![count, c, hh, ww])?;
    let total = out.len();
    if total == 0 {
        return Ok(out);
    }
    fits_binding(gpu, &out, "a Score-CAM batch")?;
    let range = gpu.alloc(vec![2 * count])?;
    let params = |lead: usize| {
        Params::new()
            .us(&[lead, c, hh, ww, h, w, first])
            .f(aligned_scale(h, hh))
            .f(aligned_scale(w, ww))
    };
    let ranges: [Bind; 2] = [maps.into(), (&range).into()];
    let scale: [Bind; 4] = [image.into(), maps.into(), (&range).into(), (&out).into()];
    defer_dispatches(
        gpu,
        &[image, maps, &range, &out],
        "GPU Score-CAM batch",
        |rec| {
            rec.dispatch(Kernel::MapRange, &ranges, params(count), [count, 1, 1])?;
            rec.dispatch_1d(Kernel::ScaleByMaps, &scale, params(total), total)
        },
    )?;
    Ok(out)
}

/// Refuses an output the kernels could not bind whole or index in u32; callers chunk.
fn fits_binding(gpu: &GpuBackend, out: &GpuTensor, what: &str) -> Result<()> {
    if out.byte_len() > gpu.binding_limit || out.len() > u32::MAX as usize {
        return Err(Error::bad_input(format!(
            "{what} of shape {:?} needs {} bytes, over this GPU's storage binding limit of {} \
             bytes; use a smaller mini-batch",
            out.shape(),
            out.byte_len(),
            gpu.binding_limit
        )));
    }
    Ok(())
}

/// A small tensor holding `words`, written with `queue.write_buffer` (it lands before the next
/// submission, hence before any deferred command that reads it).
fn upload_words(gpu: &GpuBackend, words: impl Iterator<Item = u32>) -> Result<GpuTensor> {
    let words: Vec<u32> = words.collect();
    let buf = gpu.alloc(vec![words.len().max(1)])?;
    if !words.is_empty() {
        gpu.queue
            .write_buffer(buf.buffer(), 0, bytemuck::cast_slice(&words));
        gpu.stats.uploads.fetch_add(1, Ordering::Relaxed);
    }
    Ok(buf)
}

/// Records one 1-D dispatch over `total` elements as a deferred op: it reaches the queue with
/// the next real submission (the forward that consumes its output, or a read-back), so it
/// costs no submission of its own. `keep` must hold every pooled tensor behind `binds` (inputs,
/// scratch such as parameter tensors written with `queue.write_buffer`, and the output) so
/// none is re-lent before the command runs. Call it holding [`GpuBackend::exclusive`].
/// A validation error while recording becomes an internal error that names `what`.
pub(crate) fn submit_one(
    gpu: &GpuBackend,
    kernel: Kernel,
    binds: &[Bind],
    keep: &[&GpuTensor],
    params: Params,
    total: usize,
    what: &str,
) -> Result<()> {
    defer_dispatches(gpu, keep, what, |rec| {
        rec.dispatch_1d(kernel, binds, params, total)
    })
}

/// [`submit_one`] for several dispatches: whatever `record` records goes into one command
/// buffer, deferred to the next submission.
pub(crate) fn defer_dispatches(
    gpu: &GpuBackend,
    keep: &[&GpuTensor],
    what: &str,
    record: impl FnOnce(&mut Recorder) -> Result<()>,
) -> Result<()> {
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let mut rec = Recorder::new(&gpu.device, &gpu.pipelines);
    record(&mut rec)?;
    let dispatches = rec.dispatches() as u64;
    let (commands, uniform) = rec.finish(&gpu.queue, &gpu.pool);
    gpu.defer(super::Deferred {
        commands,
        uniform,
        keep: keep.iter().map(|&t| t.clone()).collect(),
    });
    gpu.stats
        .dispatches
        .fetch_add(dispatches, Ordering::Relaxed);
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::internal(format!("{what} failed validation: {e}")));
    }
    Ok(())
}
