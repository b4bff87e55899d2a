//! Embedding netlens in a wgpu application: maps as GPU resources, results as futures.
//!
//! # Order of calls
//!
//! 1. The host opens its own instance, adapter, device and queue, as it always does (no features
//!    needed; the limits must reach [`check_limits`]' floor, which `wgpu::Limits::default()`
//!    does).
//! 2. Once, at load time: [`crate::engine::Engine::from_wgpu`] (or
//!    [`GpuBackend::from_wgpu`]) with clones of the device and queue, and
//!    [`crate::model::import::load_model`]. Kernels compile at their first use and weights upload at
//!    the first run, so run one explanation at load time if the first frame must be smooth.
//! 3. Per explanation: any method's
//!    [`Attribute::attribute_batch`](crate::methods::attribution::Attribute::attribute_batch)
//!    records its passes and submits them, returning an
//!    [`Attribution`](crate::methods::attribution::Attribution) of [`GpuTensor`]s
//!    without waiting for the GPU. The gradient and CAM methods compute their maps there;
//!    occlusion, LIME and Score-CAM finish on the host, so they wait for their scores inside the
//!    call (their docs say so) and upload the maps.
//! 4. [`GpuBackend::attribution_texture`] (defined in [`crate::embed`], above the methods; or
//!    [`GpuBackend::map_texture`] for a map tensor of your own) records the upsampling and colouring into a new `wgpu::Texture` and submits it;
//!    it does not wait either.
//! 5. The host creates a view of the texture, binds it, encodes its render pass and submits.
//!    netlens has already submitted its work on the same queue, so the queue runs it first:
//!    the pass samples a finished texture with no fence or wait.
//!
//! # Keeping the frame loop unblocked
//!
//! - Never call [`Backend::read`](crate::backend::Backend::read) or `read_many` (or any
//!   method that returns host maps, such as `GradCam::attribute`, or `Attribution::read`) inside
//!   a frame: they submit and then wait for the device (`PollType::Wait`).
//! - Numbers the host needs on the CPU (the class score from `Attribution::logits`, the raw map)
//!   come from [`GpuBackend::read_async`], a future that resolves once the copy has run. It is
//!   driven by the host's own polling: call `device.poll(wgpu::PollType::Poll)` once a frame (it
//!   never blocks), then check the future (`futures::FutureExt::now_or_never`, or an executor).
//!   Its `map_async` is never waited on; if the host never polls, the future never resolves.
//! - Recording costs CPU time on the calling thread: warm, about a millisecond for MobileNetV2's
//!   forward + backward (183 dispatches) on lavapipe; the first use of each kernel builds its
//!   pipeline, which takes far longer (hence the warm-up at load time). `GpuBackend` is
//!   `Send + Sync`: call it from a worker thread if that matters; calls from several threads
//!   are serialised inside netlens.
//! - `queue.submit` itself may wait: measured on lavapipe (Mesa's software Vulkan), a submission
//!   returns only once the previous one has finished, so each netlens call that submits lasts
//!   as long as the GPU work queued before it. Drivers for real GPUs normally queue a submission
//!   and return; on lavapipe, call netlens from a worker thread.
//!
//! # Lifetimes
//!
//! - A [`GpuTensor`]'s buffer ([`GpuTensor::buffer`]) is on loan from netlens' pool: keep the
//!   tensor alive until the host's commands that use the buffer are submitted. After that, queue
//!   order makes any later netlens reuse of the buffer wait for them.
//! - Textures from [`GpuBackend::map_texture`] and buffers behind [`GpuBackend::read_async`] are
//!   not pooled: the host owns them and drops them when it likes.
//! - netlens installs no uncaptured-error handler on a host's device; it checks its own
//!   recordings with validation error scopes.

use std::future::Future;
use std::sync::atomic::Ordering;

use super::kernels::{Bind, Kernel, TypedParams};
use super::ops::{reduce, unary};
use super::params::word;
use super::{GpuBackend, GpuTensor};
use crate::backend::{check_image_batch, HostTensor};
use crate::error::{Error, Result};
use crate::model::{ReduceKind, Unary};
use bytemuck::{NoUninit, Pod, Zeroable};

/// What the texels of a map texture hold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MapFormat {
    /// `R32Float`: the map's values, bilinearly resampled. Not filterable without
    /// `wgpu::Features::FLOAT32_FILTERABLE`: sample it with `textureLoad` or a non-filtering
    /// sampler.
    R32Float,
    /// `Rgba8Unorm`: Turbo ([`crate::viz::turbo`]) of `(v - min) / (max - min)`, clamped to
    /// [0, 1]; alpha 1. Needs `min < max`, both finite.
    Turbo {
        /// The value drawn at the cold end.
        min: f32,
        /// The value drawn at the hot end.
        max: f32,
    },
    /// `Rgba8Unorm`: Turbo over the resampled map's own min-max range, found on the device, as
    /// [`crate::viz::heatmap`] draws the same resampled map on the host; alpha 1.
    TurboAuto,
}

impl MapFormat {
    /// The texture format this produces.
    pub fn texture_format(self) -> wgpu::TextureFormat {
        match self {
            MapFormat::R32Float => wgpu::TextureFormat::R32Float,
            _ => wgpu::TextureFormat::Rgba8Unorm,
        }
    }
}

/// How `colorize` turns a value into a texel; WGSL `COLOR_MODE_*` constants in colormap.wgsl.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, NoUninit)]
pub(crate) enum ColorMode {
    /// The f32 bits themselves (`R32Float`).
    Raw = 0,
    /// Turbo over the range given in the parameters.
    TurboRange = 1,
    /// Turbo over the resampled map's own range, from `min_max`.
    TurboAuto = 2,
}

impl ColorMode {
    #[cfg(test)]
    pub(crate) const ALL: [ColorMode; 3] =
        [ColorMode::Raw, ColorMode::TurboRange, ColorMode::TurboAuto];
}

/// `resample`'s parameters (WGSL `ResampleParams`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct ResampleParams {
    pub(crate) in_h: u32,
    pub(crate) in_w: u32,
    pub(crate) out_h: u32,
    pub(crate) out_w: u32,
}
impl TypedParams for ResampleParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Resample];
}

/// `min_max`'s parameters (WGSL `MinMaxParams`): the values to scan, at least 1.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct MinMaxParams {
    pub(crate) n: u32,
}
impl TypedParams for MinMaxParams {
    const KERNELS: &'static [Kernel] = &[Kernel::MinMax];
}

/// `colorize`'s parameters (WGSL `ColorizeParams`); `lo` and `hi` are read by
/// [`ColorMode::TurboRange`] only.
#[repr(C)]
#[derive(Clone, Copy, NoUninit)]
pub(crate) struct ColorizeParams {
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Texels per padded row.
    pub(crate) stride: u32,
    pub(crate) mode: ColorMode,
    pub(crate) lo: f32,
    pub(crate) hi: f32,
}
impl TypedParams for ColorizeParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Colorize];
}

/// The most storage buffers any netlens kernel binds at once.
pub(crate) const STORAGE_BUFFERS: u32 = 4;

/// Checks that a device's limits are enough for netlens' kernels: 256-invocation workgroups,
/// 8 KiB of workgroup memory, four storage buffers and one 256-byte uniform per
/// stage. The storage binding and buffer size limits are not checked here: they only set how
/// finely batches are chunked (a model whose single weight tensor exceeds them fails at load).
pub fn check_limits(limits: &wgpu::Limits) -> Result<()> {
    let need: [(&str, u64, u64); 6] = [
        (
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup as u64,
            256,
        ),
        (
            "max_compute_workgroup_size_x",
            limits.max_compute_workgroup_size_x as u64,
            256,
        ),
        (
            "max_compute_workgroup_storage_size",
            limits.max_compute_workgroup_storage_size as u64,
            8192,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            limits.max_storage_buffers_per_shader_stage as u64,
            STORAGE_BUFFERS as u64,
        ),
        (
            "max_uniform_buffer_binding_size",
            limits.max_uniform_buffer_binding_size,
            256,
        ),
        (
            "max_compute_workgroups_per_dimension",
            limits.max_compute_workgroups_per_dimension as u64,
            1,
        ),
    ];
    let short: Vec<String> = need
        .iter()
        .filter(|(_, have, want)| have < want)
        .map(|(name, have, want)| format!("{name} is {have}, needs {want}"))
        .collect();
    if short.is_empty() {
        return Ok(());
    }
    Err(Error::device(format!(
        "this GPU device's limits are too low for netlens: {}. Request at least \
         wgpu::Limits::default() (or the adapter's own limits) when creating the device",
        short.join("; ")
    )))
}

/// `(h, w)` of a map: `[h, w]` or any shape whose leading axes are all 1 (`[1, 1, h, w]`).
fn map_hw(shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [lead @ .., h, w] if lead.iter().all(|&d| d == 1) && *h > 0 && *w > 0 => Ok((*h, *w)),
        _ => Err(Error::bad_input(format!(
            "a map texture needs one non-empty map [h, w] or [1, 1, h, w], got {shape:?}"
        ))),
    }
}

impl GpuBackend {
    /// A `width` × `height` texture of `map` (`[h, w]` or `[1, 1, h, w]`), resampled bilinearly
    /// with half-pixel centres (as [`crate::methods::upsample_bilinear`]) and coloured as
    /// `format` says, computed on the device: three dispatches at most and a buffer-to-texture
    /// copy, in one submission that this call does not wait for. Usage is `TEXTURE_BINDING |
    /// COPY_SRC | COPY_DST`; the format is [`MapFormat::texture_format`]. Nothing is read back.
    pub fn map_texture(
        &self,
        map: &GpuTensor,
        format: MapFormat,
        width: u32,
        height: u32,
    ) -> Result<wgpu::Texture> {
        let (h, w) = map_hw(map.shape())?;
        let max_dim = self.limits.max_texture_dimension_2d;
        if width == 0 || height == 0 || width > max_dim || height > max_dim {
            return Err(Error::bad_input(format!(
                "a map texture of {width}×{height}: each side must be 1..={max_dim} on this GPU"
            )));
        }
        let (mode, lo, hi) = match format {
            MapFormat::R32Float => (ColorMode::Raw, 0.0, 0.0),
            MapFormat::Turbo { min, max } => {
                if !(min.is_finite() && max.is_finite() && min < max) {
                    return Err(Error::bad_input(format!(
                        "a Turbo map range needs finite min < max, got {min}..{max}"
                    )));
                }
                (ColorMode::TurboRange, min, max)
            }
            MapFormat::TurboAuto => (ColorMode::TurboAuto, 0.0, 0.0),
        };
        let (tw, th) = (width as usize, height as usize);
        // Texture copies take rows of a multiple of 256 bytes; the kernel writes them padded.
        let row_texels = (tw * 4).next_multiple_of(256) / 4;
        let largest = (row_texels * th * 4) as u64;
        if largest > self.binding_limit || map.byte_len() > self.binding_limit {
            return Err(Error::bad_input(format!(
                "a map texture of {width}×{height} from a map of {h}×{w} needs {} bytes in one \
                 binding, over this GPU's storage binding limit of {} bytes",
                largest.max(map.byte_len()),
                self.binding_limit
            )));
        }
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("netlens map"),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: format.texture_format(),
            usage: wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::COPY_SRC
                | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let resampled = self.alloc(vec![th, tw])?;
        let range = self.alloc(vec![2])?;
        let texels = self.alloc(vec![th, row_texels])?;
        // Submitted now, after any deferred op: the texture must be complete before the host's
        // own submission samples it.
        self.record("GPU map texture", |rec| {
            let resample = ResampleParams {
                in_h: word(h),
                in_w: word(w),
                out_h: height,
                out_w: width,
            };
            rec.dispatch_1d(
                Kernel::Resample,
                &[map.into(), (&resampled).into()],
                resample,
                tw * th,
            )?;
            let range_bind: Bind = if mode == ColorMode::TurboAuto {
                rec.dispatch(
                    Kernel::MinMax,
                    &[(&resampled).into(), (&range).into()],
                    MinMaxParams { n: word(tw * th) },
                    [1, 1, 1],
                )?;
                (&range).into()
            } else {
                (&self.dummy).into()
            };
            let colorize = ColorizeParams {
                width,
                height,
                stride: word(row_texels),
                mode,
                lo,
                hi,
            };
            rec.dispatch_1d(
                Kernel::Colorize,
                &[(&resampled).into(), range_bind, (&texels).into()],
                colorize,
                tw * th,
            )?;
            rec.copy_to_texture(texels.buffer(), (row_texels * 4) as u32, &texture);
            Ok(())
        })?;
        Ok(texture)
    }

    /// Sample `sample`'s map of `maps` (`[N, C, h, w]`) as a `[1, 1, h, w]` tensor on the
    /// device, in the form it is drawn: with `abs_max_over_channels` (maps of one signed value
    /// per input element), the max over channels of |value|; else the map itself, which must have
    /// one channel. At most three deferred dispatches and a copy, submitted with the next
    /// submission (such as [`GpuBackend::map_texture`]'s); nothing is read back. Its
    /// [`buffer`](GpuTensor::buffer) is the map as a `wgpu::Buffer`. An attribution's map is
    /// `GpuBackend::attribution_map` (in `crate::embed`, above the methods).
    pub fn sample_map(
        &self,
        maps: &GpuTensor,
        sample: usize,
        abs_max_over_channels: bool,
    ) -> Result<GpuTensor> {
        let src = maps;
        let [n, c, h, w] = check_image_batch(src.shape(), "an attribution map")?;
        if sample >= n {
            return Err(Error::bad_input(format!(
                "sample {sample} of an attribution of {n}"
            )));
        }
        let per_element = abs_max_over_channels;
        if !per_element && c != 1 {
            return Err(Error::bad_input(format!(
                "a per-pixel attribution map has one channel, got {:?}",
                src.shape()
            )));
        }
        if !per_element && n == 1 {
            return Ok(src.reshaped(vec![1, 1, h, w]));
        }
        if src.byte_len() > self.binding_limit {
            return Err(Error::bad_input(format!(
                "an attribution of {} bytes is over this GPU's storage binding limit of {} bytes",
                src.byte_len(),
                self.binding_limit
            )));
        }
        let picked = match n {
            1 => src.clone(),
            _ => self.alloc(vec![1, c, h, w])?,
        };
        let shown = match per_element {
            true => Some((self.alloc(vec![1, c, h, w])?, self.alloc(vec![1, 1, h, w])?)),
            false => None,
        };
        self.record_deferred("GPU attribution map", |rec| {
            rec.keep([src, &picked]);
            rec.keep(shown.iter().flat_map(|(abs, out)| [abs, out]));
            if n > 1 {
                let bytes = picked.byte_len();
                rec.copy(
                    src.buffer(),
                    sample as u64 * bytes,
                    picked.buffer(),
                    0,
                    bytes,
                );
            }
            if let Some((abs, out)) = &shown {
                // |v| is LeakyRelu with slope -1: the model's kernels have no abs of their own.
                unary(rec, &picked, abs, Unary::LeakyRelu { alpha: -1.0 })?;
                reduce(rec, abs, out, ReduceKind::Max, &[1])?;
            }
            Ok(())
        })?;
        Ok(shown.map_or(picked, |(_, out)| out))
    }

    /// Reads `tensor` back without blocking: the copy is recorded and submitted now (so the
    /// tensor may be dropped as soon as this returns), and the returned future resolves once
    /// the host's `device.poll(..)` (any [`wgpu::PollType`]) has seen the copy finish. The
    /// future owns its staging buffer; dropping it early is safe.
    pub fn read_async(
        &self,
        tensor: &GpuTensor,
    ) -> impl Future<Output = Result<HostTensor>> + Send + 'static {
        let shape = tensor.shape().to_vec();
        let issued = self.issue_read(tensor);
        async move {
            let Some((staging, done)) = issued? else {
                return HostTensor::new(shape, Vec::new());
            };
            done.await
                .map_err(|_| Error::device("GPU read-back was dropped"))?
                .map_err(|e| Error::device(format!("mapping a GPU buffer for reading: {e}")))?;
            let data = {
                let view = staging
                    .get_mapped_range(..)
                    .map_err(|e| Error::internal(format!("reading a mapped GPU buffer: {e}")))?;
                bytemuck::pod_collect_to_vec::<u8, f32>(&view)
            };
            staging.unmap();
            HostTensor::new(shape, data)
        }
    }

    /// Submits the copy of `tensor` into a fresh staging buffer and asks to map it; `None` for
    /// an empty tensor. The staging buffer is not pooled: a dropped future may leave it mapped
    /// or pending, which must not reach another user.
    #[allow(clippy::type_complexity)]
    fn issue_read(
        &self,
        tensor: &GpuTensor,
    ) -> Result<
        Option<(
            wgpu::Buffer,
            futures::channel::oneshot::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
        )>,
    > {
        let bytes = tensor.byte_len();
        if bytes == 0 {
            return Ok(None);
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("netlens async read"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.record("GPU async read", |rec| {
            rec.copy(tensor.buffer(), 0, &staging, 0, bytes);
            Ok(())
        })?;
        let (tx, rx) = futures::channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.stats.readbacks.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        Ok(Some((staging, rx)))
    }
}
