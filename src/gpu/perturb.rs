//! Perturbed copies of one image (occlusion windows, LIME samples, Score-CAM maps, RISE masks,
//! IG paths), built on the device by `shaders/perturb.wgsl`.

use super::kernels::{Bind, Kernel, Params};
use super::{GpuBackend, GpuTensor};
use crate::backend::{
    aligned_scale, check_path_batch, check_perturb, Backend, Fill, HostTensor, MaskSource,
};
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;

/// The batch of [`Backend::perturb`]: one deferred `perturb` dispatch (no submission of its own:
/// it reaches the queue with the next forward or read-back), preceded for Score-CAM's maps by `mask_range` (one workgroup per map) in
/// the same command buffer. Only the fill values and the windows go up, as a few dozen bytes;
/// LIME's segments and RISE's cells are hashed on the device.
pub(crate) fn perturb(
    gpu: &GpuBackend,
    image: &GpuTensor,
    source: &MaskSource<'_, GpuTensor>,
    fill: &Fill,
) -> Result<GpuTensor> {
    let d = check_perturb(image.shape(), source, fill, |t| t.shape().to_vec())?;
    let mut rec = gpu.begin("GPU perturbed batch")?;
    let out = gpu.alloc(vec![d.count, d.c, d.h, d.w])?;
    let total = out.len();
    if total == 0 {
        return Ok(out);
    }
    // The kernel binds the whole batch from offset 0 and indexes it in u32, so one batch must
    // fit one binding; callers chunk their samples.
    fits_binding(gpu, &out, "a perturbed batch")?;
    let mut words: Vec<u32> = match fill {
        Fill::Constant(value) => value.iter().map(|v| v.to_bits()).collect(),
        Fill::Multiply => vec![0; d.c],
    };
    let (mut src, mut extra, mut seed, mut first) = (None, [0usize; 6], 0u64, 0usize);
    let code = match source {
        MaskSource::Windows(windows) => {
            for win in windows.iter() {
                let ints = [win.top, win.left, win.height as i64, win.width as i64];
                words.extend(ints.map(|v| v as i32 as u32));
            }
            0
        }
        MaskSource::Segments {
            labels,
            seed: s,
            first: f,
            ..
        } => {
            (src, seed, first) = (Some(*labels), *s, *f);
            1
        }
        MaskSource::Maps { maps, first: f, .. } => {
            let (h, w) = (maps.shape()[2], maps.shape()[3]);
            extra[..4].copy_from_slice(&[
                h,
                w,
                aligned_scale(h, d.h).to_bits() as usize,
                aligned_scale(w, d.w).to_bits() as usize,
            ]);
            (src, first) = (Some(*maps), *f);
            2
        }
        MaskSource::Rise {
            masks, first: f, ..
        } => {
            let (ch, cw) = masks.cells(d.h, d.w);
            let s = masks.grid;
            extra = [
                s,
                ch,
                cw,
                masks.p.to_bits() as usize,
                (s + 1) * ch,
                (s + 1) * cw,
            ];
            (seed, first) = (masks.seed, *f);
            3
        }
        MaskSource::Ranked { rank, shown } => {
            // Each sample's shown rank range goes after the fill words.
            words.extend(shown.iter().flatten());
            src = Some(*rank);
            4
        }
    };
    let fill_code = match fill {
        Fill::Constant(_) => 0,
        Fill::Multiply => 1,
    };
    let params = |lead: usize| {
        Params::new()
            .us(&[lead, d.c, d.h, d.w, code, fill_code, first])
            .us(&[seed as u32 as usize, (seed >> 32) as usize])
            .us(&extra)
    };
    // Score-CAM's map ranges go after the fill words, written there by `mask_range`: the kernel
    // stays within the four storage bindings the embedding floor allows.
    let is_maps = matches!(source, MaskSource::Maps { .. });
    if is_maps {
        words.resize(d.c + 2 * d.count, 0);
    }
    let words = upload_words(gpu, words.into_iter())?;
    let src_bind: Bind = match src {
        Some(t) => t.into(),
        None => (&gpu.dummy).into(),
    };
    let binds: [Bind; 4] = [image.into(), (&words).into(), src_bind, (&out).into()];
    rec.keep([image, &words, &out]);
    rec.keep(src);
    if let (true, Some(maps)) = (is_maps, src) {
        let range_binds: [Bind; 2] = [maps.into(), (&words).into()];
        rec.dispatch(
            Kernel::MaskRange,
            &range_binds,
            params(d.count),
            [d.count, 1, 1],
        )?;
    }
    rec.dispatch_1d(Kernel::Perturb, &binds, params(total), total)?;
    rec.defer()?;
    Ok(out)
}

/// Integrated Gradients' path points and SmoothGrad's noisy copies (samples `first..` of the
/// path), generated on the device from the image and baseline already there: one deferred
/// dispatch.
pub(crate) fn path_batch(
    gpu: &GpuBackend,
    image: &GpuTensor,
    baseline: &GpuTensor,
    (alphas, sigmas): (&[f32], &[f32]),
    seed: u64,
    first: u32,
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
        crate::backend::path_batch_host(
            &src[0].data,
            &src[1].data,
            (alphas, sigmas),
            seed,
            first,
            &mut host.data,
        );
        return gpu.upload(&host);
    }
    let mut rec = gpu.begin("GPU path batch")?;
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
    let params = Params::new().us(&[
        total,
        n,
        alphas.len(),
        seed as u32 as usize,
        (seed >> 32) as usize,
        first as usize,
    ]);
    rec.dispatch_1d(Kernel::PathBatch, &binds, params, total)?;
    rec.keep([image, baseline, &coeff_buf, &out]);
    rec.defer()?;
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
