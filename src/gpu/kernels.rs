//! Pipeline cache, the per-forward command recorder, and one small function per kernel that
//! records a dispatch with its parameters. Backward kernels can be added beside these.

use super::pool::{Pool, PooledBuffer, Usage};
use super::GpuTensor;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every kernel: its shader file, entry point, and the storage bindings it uses (binding 0 is
/// always the parameter uniform).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
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
    Occlude,
    PathBatch,
    SegmentMask,
    MapRange,
    ScaleByMaps,
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
    // t-SNE (src/gpu/tsne.rs).
    TsneDist,
    TsnePcond,
    TsneSym,
    TsneSymPair,
    TsneForces2,
    TsneForces3,
    TsneUpdate,
    TsneKl,
    // Class activation maps and map textures (src/gpu/embed.rs).
    CamWeights,
    CamCombine,
    Resample,
    MinMax,
    Colorize,

    // Image ops (shaders/image.wgsl).
    ResizeBilinear,
    Roll,
    Blur,
    AscentStep,
}

struct Spec {
    file: &'static str,
    source: &'static str,
    entry: &'static str,
    bindings: &'static [u32],
}

const CONV: &str = include_str!("../../shaders/conv.wgsl");
const GEMM: &str = include_str!("../../shaders/gemm.wgsl");
const ELTWISE: &str = include_str!("../../shaders/eltwise.wgsl");
const POOL: &str = include_str!("../../shaders/pool.wgsl");
const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
const SOFTMAX: &str = include_str!("../../shaders/softmax.wgsl");
const LAYOUT: &str = include_str!("../../shaders/layout.wgsl");
const NORM: &str = include_str!("../../shaders/norm.wgsl");
const PERTURB: &str = include_str!("../../shaders/perturb.wgsl");
const TSNE: &str = include_str!("../../shaders/tsne.wgsl");
const CAM: &str = include_str!("../../shaders/cam.wgsl");
const COLORMAP: &str = include_str!("../../shaders/colormap.wgsl");

const IMAGE: &str = include_str!("../../shaders/image.wgsl");

impl Kernel {
    fn spec(self) -> Spec {
        let s = |file, source, entry, bindings| Spec {
            file,
            source,
            entry,
            bindings,
        };
        match self {
            Kernel::ConvGemm => s("conv", CONV, "conv_gemm", &[1, 2, 3, 4]),
            Kernel::ConvDirect => s("conv", CONV, "conv_direct", &[1, 2, 3, 4]),
            Kernel::Linear => s("gemm", GEMM, "linear", &[1, 2, 3, 4]),
            Kernel::Unary => s("eltwise", ELTWISE, "unary", &[1, 4]),
            Kernel::ChannelAffine => s("eltwise", ELTWISE, "channel_affine", &[1, 2, 3, 4]),
            Kernel::Binary => s("eltwise", ELTWISE, "binary", &[1, 2, 4]),
            Kernel::Pool2d => s("pool", POOL, "pool2d", &[1, 2]),
            Kernel::GlobalPool => s("pool", POOL, "global_pool", &[1, 2]),
            Kernel::Reduce => s("reduce", REDUCE, "reduce", &[1, 2]),
            Kernel::Softmax => s("softmax", SOFTMAX, "softmax", &[1, 2]),
            Kernel::Gather => s("layout", LAYOUT, "gather", &[1, 2]),
            Kernel::Lrn => s("norm", NORM, "lrn", &[1, 2]),
            Kernel::Occlude => s("perturb", PERTURB, "occlude", &[1, 2, 3]),
            Kernel::PathBatch => s("perturb", PERTURB, "path_batch", &[1, 4, 2, 3]),
            Kernel::SegmentMask => s("perturb", PERTURB, "segment_mask", &[1, 4, 2, 3]),
            Kernel::MapRange => s("perturb", PERTURB, "map_range", &[4, 3]),
            Kernel::ScaleByMaps => s("perturb", PERTURB, "scale_by_maps", &[1, 4, 2, 3]),
            Kernel::ConvBwdGemm => s("conv", CONV, "conv_bwd_gemm", &[1, 2, 4]),
            Kernel::ConvBwdDirect => s("conv", CONV, "conv_bwd_direct", &[1, 2, 4]),
            Kernel::LinearBwd => s("gemm", GEMM, "linear_bwd", &[1, 2, 4]),
            Kernel::UnaryBwd => s("eltwise", ELTWISE, "unary_bwd", &[1, 2, 4]),
            Kernel::ChannelScaleBwd => s("eltwise", ELTWISE, "channel_scale_bwd", &[1, 2, 4]),
            Kernel::BinaryBwd => s("eltwise", ELTWISE, "binary_bwd", &[1, 2, 3, 4]),
            Kernel::Accumulate => s("eltwise", ELTWISE, "accumulate", &[1, 4]),
            // Backward kernels with an extra read-only input take it at binding 3, listed
            // second so call sites pass (forward value, dy, dx).
            Kernel::Pool2dBwd => s("pool", POOL, "pool2d_bwd", &[1, 3, 2]),
            Kernel::GlobalPoolBwd => s("pool", POOL, "global_pool_bwd", &[1, 3, 2]),
            Kernel::ReduceBwd => s("reduce", REDUCE, "reduce_bwd", &[1, 3, 2]),
            Kernel::SoftmaxBwd => s("softmax", SOFTMAX, "softmax_bwd", &[1, 3, 2]),
            Kernel::SoftmaxProbSeed => s("softmax", SOFTMAX, "softmax_prob_seed", &[1, 3, 2]),
            Kernel::SliceBwd => s("layout", LAYOUT, "slice_bwd", &[1, 2]),
            Kernel::LrnBwd => s("norm", NORM, "lrn_bwd", &[1, 3, 2]),
            Kernel::TsneDist => s("tsne", TSNE, "tsne_dist", &[1, 2]),
            Kernel::TsnePcond => s("tsne", TSNE, "tsne_pcond", &[2]),
            Kernel::TsneSym => s("tsne", TSNE, "tsne_sym", &[2]),
            Kernel::TsneSymPair => s("tsne", TSNE, "tsne_sym_pair", &[2, 7]),
            Kernel::TsneForces2 => s("tsne", TSNE, "tsne_forces2", &[2, 3, 4]),
            Kernel::TsneForces3 => s("tsne", TSNE, "tsne_forces3", &[2, 3, 4]),
            Kernel::TsneUpdate => s("tsne", TSNE, "tsne_update", &[3, 4, 5]),
            Kernel::TsneKl => s("tsne", TSNE, "tsne_kl", &[2, 3, 6]),
            Kernel::CamWeights => s("cam", CAM, "cam_weights", &[1, 2, 4]),
            Kernel::CamCombine => s("cam", CAM, "cam_combine", &[1, 2, 3, 4]),
            Kernel::Resample => s("colormap", COLORMAP, "resample", &[1, 3]),
            Kernel::MinMax => s("colormap", COLORMAP, "min_max", &[1, 3]),
            Kernel::Colorize => s("colormap", COLORMAP, "colorize", &[1, 2, 4]),

            Kernel::ResizeBilinear => s("image", IMAGE, "resize_bilinear", &[1, 3]),
            Kernel::Roll => s("image", IMAGE, "roll", &[1, 3]),
            Kernel::Blur => s("image", IMAGE, "blur", &[1, 3]),
            Kernel::AscentStep => s("image", IMAGE, "ascent_step", &[1, 2, 3]),
        }
    }
}

pub(crate) struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    bindings: &'static [u32],
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

/// 64 words of kernel parameters: one 256-byte uniform slot per dispatch.
#[derive(Clone, Default)]
pub(crate) struct Params(Vec<u32>);

pub(crate) const PARAM_WORDS: usize = 64;

impl Params {
    pub(crate) fn new() -> Self {
        Params(Vec::with_capacity(PARAM_WORDS))
    }
    pub(crate) fn u(mut self, v: usize) -> Self {
        self.0.push(v as u32);
        self
    }
    pub(crate) fn i(mut self, v: i64) -> Self {
        self.0.push(v as i32 as u32);
        self
    }
    pub(crate) fn f(mut self, v: f32) -> Self {
        self.0.push(v.to_bits());
        self
    }
    /// Pads to word `at`, so the shader's fixed offsets hold.
    pub(crate) fn at(mut self, at: usize) -> Self {
        self.0.resize(at.max(self.0.len()), 0);
        self
    }
    pub(crate) fn us(mut self, vs: &[usize]) -> Self {
        self.0.extend(vs.iter().map(|&v| v as u32));
        self
    }
    pub(crate) fn is(mut self, vs: &[i64]) -> Self {
        self.0.extend(vs.iter().map(|&v| v as i32 as u32));
        self
    }
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
    params: Vec<u32>,
    max_groups: u32,
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
        }
    }

    pub(crate) fn dispatches(&self) -> usize {
        self.cmds
            .iter()
            .filter(|c| matches!(c, Cmd::Dispatch { .. }))
            .count()
    }

    /// Records `kernel` over `groups` workgroups; x is clamped to the device limit (kernels
    /// grid-stride over x, so fewer workgroups only means more iterations per thread).
    pub(crate) fn dispatch(
        &mut self,
        kernel: Kernel,
        binds: &[Bind],
        params: Params,
        groups: [usize; 3],
    ) -> Result<()> {
        let pipeline = self.pipelines.get(self.device, kernel)?;
        if binds.len() != pipeline.bindings.len() {
            return Err(Error::internal(format!(
                "{kernel:?}: {} bindings given",
                binds.len()
            )));
        }
        if params.0.len() > PARAM_WORDS {
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
        let slot = self.params.len() / PARAM_WORDS;
        let mut words = params.0;
        words.resize(PARAM_WORDS, 0);
        self.params.extend_from_slice(&words);
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
        params: Params,
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
    /// is written here, before the submit that uses it.
    /// The uniform buffer is returned too: keep it until the command buffer is submitted.
    pub(crate) fn finish(
        self,
        queue: &wgpu::Queue,
        pool: &Arc<Pool>,
    ) -> (wgpu::CommandBuffer, PooledBuffer) {
        let align = self
            .device
            .limits()
            .min_uniform_buffer_offset_alignment
            .max(256) as u64;
        let slots = (self.params.len() / PARAM_WORDS).max(1) as u64;
        let uniform = pool.get(Usage::Uniform, slots * align);
        if !self.params.is_empty() {
            let mut bytes = vec![0u8; (slots * align) as usize];
            for (i, chunk) in self.params.chunks(PARAM_WORDS).enumerate() {
                let at = i * align as usize;
                bytes[at..at + PARAM_WORDS * 4].copy_from_slice(bytemuck::cast_slice(chunk));
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
                        size: wgpu::BufferSize::new((PARAM_WORDS * 4) as u64),
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
        (encoder.finish(), uniform)
    }
}
