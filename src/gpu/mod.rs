//! The GPU backend: imported models re-executed with hand-written WGSL compute kernels on wgpu.
//!
//! A forward records every op of the graph (for every batch chunk) into one command encoder and
//! submits once; `read` is the only path back to the host. `gradients` does the same with each
//! chunk's forward followed by its backward (one VJP kernel family beside each forward one), so
//! gradients never leave the GPU until read.

mod backward;
mod combine;
#[cfg(test)]
mod contract_tests;
mod device;
pub mod embed;
mod exec;
mod image;
pub(crate) mod kernels;
pub(crate) mod node;
pub(crate) mod ops;
pub(crate) mod params;
mod perturb;
mod pool;
mod readback;
mod record;
pub(crate) mod shape;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_edges;
#[cfg(test)]
mod tests_grad;
#[cfg(test)]
mod tests_reference;
#[cfg(test)]
mod tests_transformer;
mod tsne;

use crate::backend::{
    AscentStep, Backend, Fill, Forward, GradRule, Gradients, HostTensor, MaskSource, Seed,
};
use crate::error::{Error, Result};
use crate::model::{BinaryKind, Model, ReduceKind, Unary, ValueId};
use device::backend_name;
pub(crate) use device::open_device;
pub use device::{list_adapters, quiet_headless_device_probe, AdapterSummary};
pub use embed::MapFormat;
use pool::{Pool, PooledBuffer, Usage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
/// The wgpu this crate is built against: a host shares its device only through this version.
pub use wgpu;

/// Knobs for the GPU backend.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Caps the bytes of any one storage binding below the device's own limit; smaller values
    /// force smaller batch chunks (tests use it to exercise chunking).
    pub max_binding_bytes: Option<u64>,
}

/// Counters since creation or the last [`GpuBackend::reset_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// `queue.submit` calls.
    pub submissions: u64,
    /// Read-backs to the host.
    pub readbacks: u64,
    /// Bytes copied back to the host over all read-backs.
    pub bytes_read: u64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Host-to-GPU uploads (inputs and weights).
    pub uploads: u64,
}

#[derive(Default)]
struct Counters {
    submissions: AtomicU64,
    readbacks: AtomicU64,
    bytes_read: AtomicU64,
    dispatches: AtomicU64,
    uploads: AtomicU64,
}

/// A tensor on the GPU: full shape plus a pooled buffer, shared by clones and by reshaped
/// aliases; the buffer returns to the pool when the last handle drops.
#[derive(Clone)]
pub struct GpuTensor {
    shape: Vec<usize>,
    buf: Arc<PooledBuffer>,
}

impl GpuTensor {
    /// Full shape, batch axis first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of f32 elements (not the pooled buffer's size, which may be larger).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True when some axis has size 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The buffer holding the tensor, for a host that binds or copies it without reading it
    /// back: f32 values, row-major over [`shape`](Self::shape), in
    /// [`byte_range`](Self::byte_range) (from offset 0; the pooled buffer may be larger, and
    /// the bytes past the range are someone else's garbage). Usage is `STORAGE | COPY_SRC |
    /// COPY_DST`. The buffer goes back to netlens' pool when the last handle to the tensor
    /// drops, and later netlens work may overwrite it: keep the `GpuTensor` until the commands
    /// that use the buffer are submitted (queue order protects them after that).
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }
    /// The bytes of [`buffer`](Self::buffer) that hold this tensor: `0..len * 4`.
    pub fn byte_range(&self) -> std::ops::Range<u64> {
        0..self.byte_len()
    }
    pub(crate) fn byte_len(&self) -> u64 {
        self.len() as u64 * 4
    }
    /// The same data under another shape of equal size.
    pub(crate) fn reshaped(&self, shape: Vec<usize>) -> GpuTensor {
        GpuTensor {
            shape,
            buf: self.buf.clone(),
        }
    }
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor{:?}", self.shape)
    }
}

type ConstCache = HashMap<usize, (Arc<Vec<f32>>, wgpu::Buffer)>;

/// Executes models on one wgpu device.
pub struct GpuBackend {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// The largest storage binding any kernel may get: device limit, capped by the options.
    binding_limit: u64,
    pool: Arc<Pool>,
    pipelines: kernels::Pipelines,
    stats: Counters,
    /// Weights uploaded once per model, keyed by the address of their `Arc`'d data; the `Arc` is
    /// kept so the address cannot be reused by other data while cached.
    consts: Mutex<ConstCache>,
    /// Held while work is recorded and submitted. Recording hands intermediate buffers back to
    /// the pool before the encoder is submitted; that is safe only if no other thread can take
    /// them and get its own work onto the queue first.
    exclusive: Mutex<()>,
    /// Bound where a kernel takes an optional operand (e.g. no bias).
    dummy: wgpu::Buffer,
    /// Single-kernel ops recorded but not yet submitted; see [`GpuBackend::defer`].
    pending: Mutex<Vec<Deferred>>,
    /// The memory budget methods size their chunks by (wgpu does not say how much device memory
    /// there is, so the host's budget stands for both; the storage binding limit chunks further).
    budget: crate::backend::Budget,
}

/// A recorded command buffer waiting for the next submission, with every pooled buffer it
/// touches. Holding them keeps them out of the pool until the commands are on the queue: a
/// `queue.write_buffer` into a re-lent buffer would otherwise land before these commands run.
pub(crate) struct Deferred {
    pub(crate) commands: wgpu::CommandBuffer,
    pub(crate) uniform: PooledBuffer,
    pub(crate) keep: Vec<GpuTensor>,
}

impl GpuBackend {
    /// Opens the adapter wgpu prefers (`WGPU_BACKEND` and `WGPU_POWER_PREF` honoured) with the
    /// adapter's own limits, so large bindings and buffers are available.
    pub fn new(options: &GpuOptions) -> Result<GpuBackend> {
        let (device, queue) = open_device()?;
        // Only on a device of our own: a host's device keeps the host's handler.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            eprintln!("netlens: uncaptured GPU error: {e}");
        }));
        Self::from_wgpu(device, queue, options)
    }

    /// Runs on a device the host application already owns (`Device` and `Queue` are shared
    /// handles: pass clones and keep using your own). The device needs no features; its limits
    /// must reach [`embed::check_limits`]'s floor, and its storage binding and buffer limits
    /// set how finely batches are chunked. See [`embed`] for the order of calls in a frame loop.
    pub fn from_wgpu(
        device: wgpu::Device,
        queue: wgpu::Queue,
        options: &GpuOptions,
    ) -> Result<GpuBackend> {
        let limits = device.limits();
        embed::check_limits(&limits)?;
        let info = device.adapter_info();
        let mut binding_limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        if let Some(cap) = options.max_binding_bytes {
            binding_limit = binding_limit.min(cap);
        }
        // Bindings are whole f32 elements.
        let binding_limit = (binding_limit / 4 * 4).max(4);
        let pool = Pool::new(device.clone(), limits.max_buffer_size);
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("netlens dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(GpuBackend {
            device,
            queue,
            info,
            limits,
            binding_limit,
            pool,
            pipelines: Default::default(),
            stats: Counters::default(),
            consts: Mutex::new(HashMap::new()),
            exclusive: Mutex::new(()),
            dummy,
            pending: Mutex::new(Vec::new()),
            budget: crate::backend::Budget::available(),
        })
    }

    /// Replaces the memory budget (the CLI's `--max-memory`).
    pub fn set_budget(&mut self, budget: crate::backend::Budget) {
        self.budget = budget;
    }

    /// The adapter the device was opened on (name, API, device type, driver).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }
    /// The wgpu device netlens records on, for hosts that share buffers with it.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }
    /// The queue netlens submits to; host work submitted here is ordered with netlens' work.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }
    /// The device's limits, which bound buffer sizes and storage bindings.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }
    /// The largest storage binding used, after [`GpuOptions::max_binding_bytes`].
    pub fn binding_limit(&self) -> u64 {
        self.binding_limit
    }

    /// A snapshot of the counters, for benches and tests that count submissions and read-backs.
    pub fn stats(&self) -> GpuStats {
        let s = &self.stats;
        GpuStats {
            submissions: s.submissions.load(Ordering::Relaxed),
            readbacks: s.readbacks.load(Ordering::Relaxed),
            bytes_read: s.bytes_read.load(Ordering::Relaxed),
            dispatches: s.dispatches.load(Ordering::Relaxed),
            uploads: s.uploads.load(Ordering::Relaxed),
        }
    }

    /// Sets every counter back to 0.
    pub fn reset_stats(&self) {
        let s = &self.stats;
        for c in [
            &s.submissions,
            &s.readbacks,
            &s.bytes_read,
            &s.dispatches,
            &s.uploads,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// A fresh pooled tensor; contents undefined.
    pub(crate) fn alloc(&self, shape: Vec<usize>) -> Result<GpuTensor> {
        let bytes = shape.iter().product::<usize>() as u64 * 4;
        if bytes > self.limits.max_buffer_size {
            return Err(Error::bad_input(format!(
                "a tensor of shape {shape:?} needs {bytes} bytes, over this GPU's buffer limit of {} bytes; \
                 use a smaller batch",
                self.limits.max_buffer_size
            )));
        }
        Ok(GpuTensor {
            shape,
            buf: Arc::new(self.pool.get(Usage::Storage, bytes)),
        })
    }

    /// The GPU copy of a model constant, uploaded on first use.
    pub(crate) fn const_buffer(&self, data: &Arc<Vec<f32>>, what: &str) -> Result<wgpu::Buffer> {
        let key = Arc::as_ptr(data) as usize;
        let mut consts = self
            .consts
            .lock()
            .map_err(|_| Error::internal("constant cache lock poisoned"))?;
        if let Some((_, b)) = consts.get(&key) {
            return Ok(b.clone());
        }
        let bytes = (data.len() as u64 * 4).max(4);
        if bytes > self.binding_limit {
            return Err(Error::bad_input(format!(
                "{what} has {bytes} bytes of weights, over the GPU's storage binding limit of {} bytes",
                self.binding_limit
            )));
        }
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("netlens weights"),
            size: bytes.next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !data.is_empty() {
            self.queue
                .write_buffer(&buffer, 0, bytemuck::cast_slice(data.as_slice()));
            self.stats.uploads.fetch_add(1, Ordering::Relaxed);
        }
        consts.insert(key, (data.clone(), buffer.clone()));
        Ok(buffer)
    }

    /// Submits and counts one command buffer.
    /// Serialises recording + submission across threads (see `exclusive`).
    pub(crate) fn exclusive(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.exclusive
            .lock()
            .map_err(|_| Error::internal("GPU submission lock poisoned"))
    }

    /// Submits and counts one command buffer, preceded in the same `queue.submit` by every
    /// deferred op (so a perturbation kernel and the forward that consumes it cost one
    /// submission).
    pub(crate) fn submit(&self, commands: wgpu::CommandBuffer) -> wgpu::SubmissionIndex {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        self.stats.submissions.fetch_add(1, Ordering::Relaxed);
        let mut buffers = Vec::with_capacity(pending.len() + 1);
        let mut held = Vec::with_capacity(pending.len());
        for d in pending {
            buffers.push(d.commands);
            held.push((d.uniform, d.keep));
        }
        buffers.push(commands);
        let index = self.queue.submit(buffers);
        drop(held);
        index
    }

    /// Queues a recorded command buffer for the next [`GpuBackend::submit`] instead of
    /// submitting it now. `keep` must hold every pooled tensor the commands read or write.
    pub(crate) fn defer(&self, deferred: Deferred) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(deferred);
    }

    #[cfg(test)]
    pub(crate) fn buffers_created(&self) -> u64 {
        self.pool.created()
    }
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;

    fn name(&self) -> String {
        let name = match self.info.name.as_str() {
            "" => "host device",
            n => n,
        };
        format!("{name} [{}]", backend_name(self.info.backend))
    }

    fn budget(&self) -> crate::backend::Budget {
        self.budget.clone()
    }

    fn upload(&self, tensor: &HostTensor) -> Result<GpuTensor> {
        let _exclusive = self.exclusive()?;
        let n: usize = tensor.shape.iter().product();
        if n != tensor.data.len() {
            return Err(Error::internal(format!(
                "host tensor of shape {:?} has {} values",
                tensor.shape,
                tensor.data.len()
            )));
        }
        let t = self.alloc(tensor.shape.clone())?;
        if n > 0 {
            self.queue
                .write_buffer(t.buffer(), 0, bytemuck::cast_slice(&tensor.data));
        }
        self.stats.uploads.fetch_add(1, Ordering::Relaxed);
        Ok(t)
    }

    fn read(&self, tensor: &GpuTensor) -> Result<HostTensor> {
        let mut one = self.read_many(&[tensor])?;
        one.pop()
            .ok_or_else(|| Error::internal("read-back returned nothing"))
    }

    fn read_many(&self, tensors: &[&GpuTensor]) -> Result<Vec<HostTensor>> {
        let _exclusive = self.exclusive()?;
        readback::read_many(self, tensors)
    }

    fn shape(&self, tensor: &GpuTensor) -> Vec<usize> {
        tensor.shape.clone()
    }

    fn forward(
        &self,
        model: &Model,
        input: &GpuTensor,
        taps: &[ValueId],
    ) -> Result<Forward<GpuTensor>> {
        // One sample must fit the budget; a batch is chunked by the device's binding limits.
        self.budget.check_pass(model, 1, false)?;
        exec::forward(self, model, input, taps)
    }

    fn gradients(
        &self,
        model: &Model,
        input: &GpuTensor,
        seed: &Seed<GpuTensor>,
        rule: GradRule,
        wrt: &[ValueId],
        taps: &[ValueId],
    ) -> Result<Gradients<GpuTensor>> {
        // One sample must fit the budget; a batch is chunked by the device's binding limits.
        self.budget.check_pass(model, 1, true)?;
        backward::gradients(self, model, input, seed, rule, wrt, taps)
    }

    fn perturb(
        &self,
        image: &GpuTensor,
        source: &MaskSource<'_, GpuTensor>,
        fill: &Fill,
    ) -> Result<GpuTensor> {
        perturb::perturb(self, image, source, fill)
    }

    fn path_chunk(
        &self,
        image: &GpuTensor,
        baseline: &GpuTensor,
        alphas: &[f32],
        sigmas: &[f32],
        seed: u64,
        first: u32,
    ) -> Result<GpuTensor> {
        perturb::path_batch(self, image, baseline, (alphas, sigmas), seed, first)
    }

    fn resize_bilinear(&self, x: &GpuTensor, out_h: usize, out_w: usize) -> Result<GpuTensor> {
        image::resize_bilinear(self, x, out_h, out_w)
    }

    fn roll(&self, x: &GpuTensor, dy: i64, dx: i64) -> Result<GpuTensor> {
        image::roll(self, x, dy, dx)
    }

    fn ascent_step(&self, x: &GpuTensor, grad: &GpuTensor, step: &AscentStep) -> Result<GpuTensor> {
        image::ascent_step(self, x, grad, step)
    }

    fn blur(&self, x: &GpuTensor, sigma: f32) -> Result<GpuTensor> {
        image::blur(self, x, sigma)
    }

    fn weighted_sum(&self, x: &GpuTensor, weights: &[f32], shape: &[usize]) -> Result<GpuTensor> {
        combine::weighted_sum(self, x, weights, shape)
    }

    fn elementwise(&self, a: &GpuTensor, b: &GpuTensor, op: BinaryKind) -> Result<GpuTensor> {
        combine::elementwise(self, a, b, op)
    }

    fn reduce(&self, x: &GpuTensor, kind: ReduceKind, axes: &[usize]) -> Result<GpuTensor> {
        combine::reduce(self, x, kind, axes)
    }

    fn unary(&self, x: &GpuTensor, op: Unary) -> Result<GpuTensor> {
        combine::unary(self, x, op)
    }

    fn concat(&self, parts: &[&GpuTensor]) -> Result<GpuTensor> {
        combine::concat(self, parts)
    }
}
