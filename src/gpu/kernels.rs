//! Pipeline cache, the per-forward command recorder, and one small function per kernel that
//! records a dispatch with its parameters. Backward kernels can be added beside these.

pub(crate) use super::params::Params;
use super::params::PARAM_BYTES;
use super::pool::{Pool, PooledBuffer, Usage};
use super::GpuTensor;
use crate::error::{Error, Result};
use bytemuck::NoUninit;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A kernel's parameters as a `#[repr(C)]` struct (deriving `bytemuck::Pod`, or `NoUninit` when
/// a field is a `#[repr(u32)]` enum), mirrored field for field by a WGSL struct of the same name
/// that the entry point reads as its own `var<uniform>` at `@binding(0)`. The kernel's spec line
/// says `t(..)` instead of `s(..)`; [`Recorder::dispatch`] refuses parameters a kernel does not
/// read, and the reflection test (`gpu/contract_tests.rs`, which lists every such struct) checks
/// names, sizes and enum values against the WGSL. A mode the shader branches on is a
/// `#[repr(u32)]` enum whose WGSL twin is a set of `const`s `ENUM_NAME_VARIANT_NAME`.
///
/// Converting a kernel from positional [`Params`], e.g. `roll` (it was
/// `Params::new().us(&[total, h, w, dy, dx])`, read in WGSL as `pu(0u)`..`pu(4u)`):
///
/// ```text
/// // Rust, beside the call site:
/// #[repr(C)]
/// #[derive(Clone, Copy, Pod, Zeroable)]
/// pub(crate) struct RollParams { pub(crate) total: u32, h: u32, w: u32, dy: u32, dx: u32 }
/// impl TypedParams for RollParams { const KERNELS: &'static [Kernel] = &[Kernel::Roll]; }
/// //   call site: rec.dispatch_1d(Kernel::Roll, &binds, RollParams { total, h, w, dy, dx }, n)
/// //   spec line: s("image", IMAGE, "roll", &[1, 3]) becomes t("image", IMAGE, "roll", &[1, 3])
/// //   contract_tests.rs: add `of::<RollParams>()` to `rust_params()`
///
/// // WGSL: the same fields in the same order; 4-byte scalars pack, but an array or vec4 member
/// // starts on a 16-byte boundary (pad the Rust struct with `_pad: u32` fields to match) and a
/// // uniform array needs a 16-byte stride: `array<vec4<f32>, n>` against `[f32; 4 * n]`.
/// struct RollParams { total: u32, h: u32, w: u32, dy: u32, dx: u32 }
/// @group(0) @binding(0) var<uniform> roll_p: RollParams; // one per entry point (or shared
/// // by entry points that read the same struct); no entry point may use two
/// ... let h = roll_p.h; ...   // instead of pu(1u)
/// ```
pub(crate) trait TypedParams: NoUninit {
    /// The kernels whose WGSL reads this struct.
    const KERNELS: &'static [Kernel];
}

/// What [`Recorder::dispatch`] takes: a [`TypedParams`] struct or positional [`Params`].
pub(crate) trait KernelParams {
    /// The bytes of the dispatch's uniform slot.
    fn bytes(&self) -> &[u8];
    /// `Some((struct name, its kernels))` for a typed struct, `None` for positional words.
    fn typed(&self) -> Option<(&'static str, &'static [Kernel])>;
}

impl<P: TypedParams> KernelParams for P {
    fn bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
    fn typed(&self) -> Option<(&'static str, &'static [Kernel])> {
        Some((std::any::type_name::<P>(), P::KERNELS))
    }
}

impl KernelParams for Params {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self.words())
    }
    fn typed(&self) -> Option<(&'static str, &'static [Kernel])> {
        None
    }
}

/// Declares [`Kernel`] and [`Kernel::ALL`] from one list, so no variant can be left out of the
/// inventory the reflection test walks.
macro_rules! kernels {
    ($($(#[$attr:meta])* $name:ident,)*) => {
        /// Every kernel: its shader file, entry point, and the storage bindings it uses (binding
        /// 0 is always the parameter uniform).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum Kernel {
            $($(#[$attr])* $name,)*
        }

        impl Kernel {
            /// Every variant, in declaration order.
            #[cfg(test)]
            pub(crate) const ALL: &'static [Kernel] = &[$(Kernel::$name,)*];
        }
    };
}

kernels! {
    ConvGemm,
    ConvDirect,
    Linear,
    Unary,
    ChannelAffine,
    Binary,
    Pool2d,
    GlobalPool,
    Reduce,
    Softmax,
    Gather,
    Lrn,
    LayerNorm,
    LogSoftmax,
    Perturb,
    MaskRange,
    PathBatch,
    // Backward (vector-Jacobian products).
    ConvBwdGemm,
    ConvBwdDirect,
    LinearBwd,
    UnaryBwd,
    ChannelScaleBwd,
    BinaryBwd,
    Accumulate,
    Pool2dBwd,
    GlobalPoolBwd,
    ReduceBwd,
    SoftmaxBwd,
    SoftmaxProbSeed,
    SliceBwd,
    LrnBwd,
    LayerNormBwd,
    LogSoftmaxBwd,
    // t-SNE (src/gpu/tsne.rs).
    TsneDist,
    TsnePcond,
    TsneSym,
    TsneSymPair,
    TsneForces2,
    TsneForces3,
    TsneUpdate,
    TsneKl,
    // Map textures (src/gpu/embed.rs).
    Resample,
    MinMax,
    Colorize,

    // Image ops (shaders/image.wgsl).
    ResizeBilinear,
    Roll,
    Blur,
    AscentStep,
}

pub(crate) struct Spec {
    pub(crate) file: &'static str,
    pub(crate) source: &'static str,
    pub(crate) entry: &'static str,
    pub(crate) bindings: &'static [u32],
    /// Whether the kernel reads a [`TypedParams`] struct rather than positional [`Params`].
    pub(crate) typed: bool,
}

const CONV: &str = include_str!("../../shaders/conv.wgsl");
const GEMM: &str = include_str!("../../shaders/gemm.wgsl");
const ELTWISE: &str = include_str!("../../shaders/eltwise.wgsl");
const POOL: &str = include_str!("../../shaders/pool.wgsl");
const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
const SOFTMAX: &str = include_str!("../../shaders/softmax.wgsl");
const LAYOUT: &str = include_str!("../../shaders/layout.wgsl");
const NORM: &str = include_str!("../../shaders/norm.wgsl");
const LAYERNORM: &str = include_str!("../../shaders/layernorm.wgsl");
const LOGSOFTMAX: &str = include_str!("../../shaders/logsoftmax.wgsl");
const PERTURB: &str = include_str!("../../shaders/perturb.wgsl");
const TSNE: &str = include_str!("../../shaders/tsne.wgsl");
const COLORMAP: &str = include_str!("../../shaders/colormap.wgsl");

const IMAGE: &str = include_str!("../../shaders/image.wgsl");

impl Kernel {
    pub(crate) fn spec(self) -> Spec {
        let s = |file, source, entry, bindings| Spec {
            file,
            source,
            entry,
            bindings,
            typed: false,
        };
        // A kernel that reads a `TypedParams` struct.
        let t = |file, source, entry, bindings| Spec {
            typed: true,
            ..s(file, source, entry, bindings)
        };
        match self {
            Kernel::ConvGemm => t("conv", CONV, "conv_gemm", &[1, 2, 3, 4]),
            Kernel::ConvDirect => t("conv", CONV, "conv_direct", &[1, 2, 3, 4]),
            Kernel::Linear => t("gemm", GEMM, "linear", &[1, 2, 3, 4]),
            Kernel::Unary => t("eltwise", ELTWISE, "unary", &[1, 4]),
            Kernel::ChannelAffine => t("eltwise", ELTWISE, "channel_affine", &[1, 2, 3, 4]),
            Kernel::Binary => t("eltwise", ELTWISE, "binary", &[1, 2, 4]),
            Kernel::Pool2d => t("pool", POOL, "pool2d", &[1, 2]),
            Kernel::GlobalPool => t("pool", POOL, "global_pool", &[1, 2]),
            Kernel::Reduce => t("reduce", REDUCE, "reduce", &[1, 2]),
            Kernel::Softmax => t("softmax", SOFTMAX, "softmax", &[1, 2]),
            Kernel::Gather => t("layout", LAYOUT, "gather", &[1, 2]),
            Kernel::Lrn => t("norm", NORM, "lrn", &[1, 2]),
            Kernel::LayerNorm => t("layernorm", LAYERNORM, "layer_norm", &[1, 3, 4, 2]),
            Kernel::LogSoftmax => t("logsoftmax", LOGSOFTMAX, "log_softmax", &[1, 2]),
            Kernel::Perturb => s("perturb", PERTURB, "perturb", &[1, 2, 4, 3]),
            Kernel::MaskRange => s("perturb", PERTURB, "mask_range", &[4, 3]),
            Kernel::PathBatch => s("perturb", PERTURB, "path_batch", &[1, 4, 2, 3]),
            Kernel::ConvBwdGemm => t("conv", CONV, "conv_bwd_gemm", &[1, 2, 4]),
            Kernel::ConvBwdDirect => t("conv", CONV, "conv_bwd_direct", &[1, 2, 4]),
            Kernel::LinearBwd => t("gemm", GEMM, "linear_bwd", &[1, 2, 4]),
            Kernel::UnaryBwd => t("eltwise", ELTWISE, "unary_bwd", &[1, 2, 4]),
            Kernel::ChannelScaleBwd => t("eltwise", ELTWISE, "channel_scale_bwd", &[1, 2, 4]),
            Kernel::BinaryBwd => t("eltwise", ELTWISE, "binary_bwd", &[1, 2, 3, 4]),
            Kernel::Accumulate => t("eltwise", ELTWISE, "accumulate", &[1, 4]),
            // Backward kernels with an extra read-only input take it at binding 3, listed
            // second so call sites pass (forward value, dy, dx).
            Kernel::Pool2dBwd => t("pool", POOL, "pool2d_bwd", &[1, 3, 2]),
            Kernel::GlobalPoolBwd => t("pool", POOL, "global_pool_bwd", &[1, 3, 2]),
            Kernel::ReduceBwd => t("reduce", REDUCE, "reduce_bwd", &[1, 3, 2]),
            Kernel::SoftmaxBwd => t("softmax", SOFTMAX, "softmax_bwd", &[1, 3, 2]),
            Kernel::SoftmaxProbSeed => t("softmax", SOFTMAX, "softmax_prob_seed", &[1, 3, 2]),
            Kernel::SliceBwd => t("layout", LAYOUT, "slice_bwd", &[1, 2]),
            Kernel::LrnBwd => t("norm", NORM, "lrn_bwd", &[1, 3, 2]),
            Kernel::LayerNormBwd => t("layernorm", LAYERNORM, "layer_norm_bwd", &[1, 5, 3, 2]),
            Kernel::LogSoftmaxBwd => t("logsoftmax", LOGSOFTMAX, "log_softmax_bwd", &[1, 3, 2]),
            Kernel::TsneDist => t("tsne", TSNE, "tsne_dist", &[1, 2]),
            Kernel::TsnePcond => t("tsne", TSNE, "tsne_pcond", &[2]),
            Kernel::TsneSym => t("tsne", TSNE, "tsne_sym", &[2]),
            Kernel::TsneSymPair => t("tsne", TSNE, "tsne_sym_pair", &[2, 7]),
            Kernel::TsneForces2 => t("tsne", TSNE, "tsne_forces2", &[2, 3, 4]),
            Kernel::TsneForces3 => t("tsne", TSNE, "tsne_forces3", &[2, 3, 4]),
            Kernel::TsneUpdate => t("tsne", TSNE, "tsne_update", &[3, 4, 5]),
            Kernel::TsneKl => t("tsne", TSNE, "tsne_kl", &[2, 3, 6]),
            Kernel::Resample => t("colormap", COLORMAP, "resample", &[1, 3]),
            Kernel::MinMax => t("colormap", COLORMAP, "min_max", &[1, 3]),
            Kernel::Colorize => t("colormap", COLORMAP, "colorize", &[1, 2, 4]),

            Kernel::ResizeBilinear => t("image", IMAGE, "resize_bilinear", &[1, 3]),
            Kernel::Roll => t("image", IMAGE, "roll", &[1, 3]),
            Kernel::Blur => t("image", IMAGE, "blur", &[1, 3]),
            Kernel::AscentStep => t("image", IMAGE, "ascent_step", &[1, 2, 3]),
        }
    }
}

impl Kernel {
    /// The bindings a kernel writes: its last listed one, except for the kernels that write
    /// several (checked against the shaders by the reflection test).
    #[cfg(test)]
    pub(crate) fn writes(self) -> &'static [u32] {
        match self {
            Kernel::TsneSymPair => &[2, 7],
            Kernel::TsneUpdate => &[3, 5],
            k => {
                let b = k.spec().bindings;
                &b[b.len().saturating_sub(1)..]
            }
        }
    }
}

pub(crate) struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    bindings: &'static [u32],
    typed: bool,
}

/// Pipelines are built on first use and kept for the backend's lifetime.
#[derive(Default)]
pub(crate) struct Pipelines {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<Kernel, Arc<Pipeline>>>,
}

impl Pipelines {
    pub(crate) fn get(&self, device: &wgpu::Device, kernel: Kernel) -> Result<Arc<Pipeline>> {
        if let Some(p) = self.pipelines.lock().map_err(poisoned)?.get(&kernel) {
            return Ok(p.clone());
        }
        let spec = kernel.spec();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = {
            let mut modules = self.modules.lock().map_err(poisoned)?;
            modules
                .entry(spec.file)
                .or_insert_with(|| {
                    let desc = wgpu::ShaderModuleDescriptor {
                        label: Some(spec.file),
                        source: wgpu::ShaderSource::Wgsl(spec.source.into()),
                    };
                    // SAFETY: every kernel bounds-checks its indices against the shapes it is
                    // given, and the host binds buffers at least that large; dropping wgpu's
                    // own checks was measured ~30% faster on lavapipe.
                    unsafe {
                        device.create_shader_module_trusted(
                            desc,
                            wgpu::ShaderRuntimeChecks::unchecked(),
                        )
                    }
                })
                .clone()
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.entry),
            layout: None,
            module: &module,
            entry_point: Some(spec.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::internal(format!(
                "building GPU kernel {}:{}: {e}",
                spec.file, spec.entry
            )));
        }
        let layout = pipeline.get_bind_group_layout(0);
        let p = Arc::new(Pipeline {
            pipeline,
            layout,
            bindings: spec.bindings,
            typed: spec.typed,
        });
        self.pipelines
            .lock()
            .map_err(poisoned)?
            .insert(kernel, p.clone());
        Ok(p)
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::internal("pipeline cache lock poisoned")
}

/// A buffer range to bind: always from offset 0, `size` bytes.
#[derive(Clone)]
pub(crate) struct Bind {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) size: u64,
}

impl From<&GpuTensor> for Bind {
    fn from(t: &GpuTensor) -> Bind {
        Bind {
            buffer: t.buffer().clone(),
            size: t.byte_len().max(4),
        }
    }
}

impl From<&wgpu::Buffer> for Bind {
    fn from(b: &wgpu::Buffer) -> Bind {
        Bind {
            buffer: b.clone(),
            size: b.size(),
        }
    }
}

enum Cmd {
    Dispatch {
        pipeline: Arc<Pipeline>,
        binds: Vec<Bind>,
        slot: usize,
        groups: [u32; 3],
    },
    Copy {
        src: wgpu::Buffer,
        src_off: u64,
        dst: wgpu::Buffer,
        dst_off: u64,
        size: u64,
    },
    Clear {
        dst: wgpu::Buffer,
        offset: u64,
        size: u64,
    },
    /// Rows of `bytes_per_row` bytes (a multiple of 256) into a whole 2-D texture.
    CopyToTexture {
        src: wgpu::Buffer,
        bytes_per_row: u32,
        dst: wgpu::Texture,
    },
}

/// Collects a forward's dispatches and copies, then records them into one encoder with all
/// parameters in one uniform buffer written once, and submits once.
pub(crate) struct Recorder<'a> {
    device: &'a wgpu::Device,
    pipelines: &'a Pipelines,
    cmds: Vec<Cmd>,
    /// One [`PARAM_BYTES`] slot per dispatch.
    params: Vec<u8>,
    max_groups: u32,
    /// Tensors a deferred recording must hold until its commands are on the queue.
    keep: Vec<GpuTensor>,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(device: &'a wgpu::Device, pipelines: &'a Pipelines) -> Self {
        let max_groups = device.limits().max_compute_workgroups_per_dimension.max(1);
        Recorder {
            device,
            pipelines,
            cmds: Vec::new(),
            params: Vec::new(),
            max_groups,
            keep: Vec::new(),
        }
    }

    pub(crate) fn dispatches(&self) -> usize {
        self.cmds
            .iter()
            .filter(|c| matches!(c, Cmd::Dispatch { .. }))
            .count()
    }

    /// Holds `tensors` until the recording is on the queue; a deferred recording
    /// ([`GpuBackend::record_deferred`](super::GpuBackend::record_deferred)) must keep every
    /// pooled tensor its commands read or write, or the pool could lend one out before they run.
    pub(crate) fn keep<'t>(&mut self, tensors: impl IntoIterator<Item = &'t GpuTensor>) {
        self.keep.extend(tensors.into_iter().cloned());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// Records `kernel` over `groups` workgroups; x is clamped to the device limit (kernels
    /// grid-stride over x, so fewer workgroups only means more iterations per thread).
    /// `params` must be the struct the kernel's spec line names (positional [`Params`] for an
    /// untyped kernel).
    pub(crate) fn dispatch(
        &mut self,
        kernel: Kernel,
        binds: &[Bind],
        params: impl KernelParams,
        groups: [usize; 3],
    ) -> Result<()> {
        let pipeline = self.pipelines.get(self.device, kernel)?;
        if binds.len() != pipeline.bindings.len() {
            return Err(Error::internal(format!(
                "{kernel:?}: {} bindings given",
                binds.len()
            )));
        }
        let fits = match params.typed() {
            Some((_, kernels)) => pipeline.typed && kernels.contains(&kernel),
            None => !pipeline.typed,
        };
        if !fits {
            let given = params.typed().map_or("positional Params", |(name, _)| name);
            return Err(Error::internal(format!(
                "{kernel:?} does not read {given} at binding 0"
            )));
        }
        let bytes = params.bytes();
        if bytes.len() > PARAM_BYTES {
            return Err(Error::internal(format!("{kernel:?}: too many parameters")));
        }
        let [x, y, z] = groups;
        let m = self.max_groups as usize;
        if y > m || z > m {
            return Err(Error::internal(format!(
                "{kernel:?}: dispatch {groups:?} over limit"
            )));
        }
        if x == 0 || y == 0 || z == 0 {
            return Ok(());
        }
        let slot = self.params.len() / PARAM_BYTES;
        self.params.extend_from_slice(bytes);
        self.params.resize((slot + 1) * PARAM_BYTES, 0);
        let groups = [x.min(m) as u32, y as u32, z as u32];
        self.cmds.push(Cmd::Dispatch {
            pipeline,
            binds: binds.to_vec(),
            slot,
            groups,
        });
        Ok(())
    }

    /// Element-wise dispatch helper: 256 threads per workgroup, one element per thread.
    pub(crate) fn dispatch_1d(
        &mut self,
        kernel: Kernel,
        binds: &[Bind],
        params: impl KernelParams,
        elements: usize,
    ) -> Result<()> {
        self.dispatch(kernel, binds, params, [elements.div_ceil(256), 1, 1])
    }

    pub(crate) fn copy(
        &mut self,
        src: &wgpu::Buffer,
        src_off: u64,
        dst: &wgpu::Buffer,
        dst_off: u64,
        size: u64,
    ) {
        if size > 0 {
            self.cmds.push(Cmd::Copy {
                src: src.clone(),
                src_off,
                dst: dst.clone(),
                dst_off,
                size,
            });
        }
    }

    /// Zeroes `size` bytes of `dst` from `offset` (both multiples of 4).
    pub(crate) fn clear(&mut self, dst: &wgpu::Buffer, offset: u64, size: u64) {
        if size > 0 {
            self.cmds.push(Cmd::Clear {
                dst: dst.clone(),
                offset,
                size,
            });
        }
    }

    /// Copies `src`, rows of `bytes_per_row` bytes (a multiple of 256), into all of `dst`.
    pub(crate) fn copy_to_texture(
        &mut self,
        src: &wgpu::Buffer,
        bytes_per_row: u32,
        dst: &wgpu::Texture,
    ) {
        self.cmds.push(Cmd::CopyToTexture {
            src: src.clone(),
            bytes_per_row,
            dst: dst.clone(),
        });
    }

    /// Encodes everything into one command buffer. The uniform buffer comes from the pool and
    /// is written here, before the submit that uses it. The uniform buffer and the tensors given
    /// to [`Recorder::keep`] are returned too: keep them until the command buffer has run.
    pub(crate) fn finish(
        self,
        queue: &wgpu::Queue,
        pool: &Arc<Pool>,
    ) -> (wgpu::CommandBuffer, PooledBuffer, Vec<GpuTensor>) {
        let align = self
            .device
            .limits()
            .min_uniform_buffer_offset_alignment
            .max(256) as u64;
        let slots = (self.params.len() / PARAM_BYTES).max(1) as u64;
        let uniform = pool.get(Usage::Uniform, slots * align);
        if !self.params.is_empty() {
            let mut bytes = vec![0u8; (slots * align) as usize];
            for (i, chunk) in self.params.chunks(PARAM_BYTES).enumerate() {
                let at = i * align as usize;
                bytes[at..at + PARAM_BYTES].copy_from_slice(chunk);
            }
            queue.write_buffer(uniform.buffer(), 0, &bytes);
        }
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("netlens forward"),
            });
        let mut i = 0;
        while i < self.cmds.len() {
            if let Cmd::Copy {
                src,
                src_off,
                dst,
                dst_off,
                size,
            } = &self.cmds[i]
            {
                encoder.copy_buffer_to_buffer(src, *src_off, dst, *dst_off, *size);
                i += 1;
                continue;
            }
            if let Cmd::Clear { dst, offset, size } = &self.cmds[i] {
                encoder.clear_buffer(dst, *offset, Some(*size));
                i += 1;
                continue;
            }
            if let Cmd::CopyToTexture {
                src,
                bytes_per_row,
                dst,
            } = &self.cmds[i]
            {
                encoder.copy_buffer_to_texture(
                    wgpu::TexelCopyBufferInfo {
                        buffer: src,
                        layout: wgpu::TexelCopyBufferLayout {
                            offset: 0,
                            bytes_per_row: Some(*bytes_per_row),
                            rows_per_image: None,
                        },
                    },
                    dst.as_image_copy(),
                    dst.size(),
                );
                i += 1;
                continue;
            }
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("netlens kernels"),
                timestamp_writes: None,
            });
            while let Some(Cmd::Dispatch {
                pipeline,
                binds,
                slot,
                groups,
            }) = self.cmds.get(i)
            {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: uniform.buffer(),
                        offset: *slot as u64 * align,
                        size: wgpu::BufferSize::new(PARAM_BYTES as u64),
                    }),
                }];
                for (b, &binding) in binds.iter().zip(pipeline.bindings) {
                    entries.push(wgpu::BindGroupEntry {
                        binding,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &b.buffer,
                            offset: 0,
                            size: wgpu::BufferSize::new(b.size),
                        }),
                    });
                }
                let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &pipeline.layout,
                    entries: &entries,
                });
                pass.set_pipeline(&pipeline.pipeline);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                i += 1;
            }
        }
        (encoder.finish(), uniform, self.keep)
    }
}
