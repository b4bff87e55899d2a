//! What one op sees of the GPU graph executors: its operands, its output shape, the recorder and,
//! in reverse mode, the forward values its VJP reads. The op modules (`crate::ops`) are written
//! against these types; this file imports none of them, so the executors (`exec.rs`,
//! `backward.rs`) can dispatch to the op modules without an import circle. It is the op-facing
//! surface of the GPU backend: the tensor type is re-exported here so op modules need nothing
//! from `gpu/mod.rs` itself.

use std::sync::Arc;

use super::kernels::Recorder;
use super::GpuBackend;
use crate::backend::GradRule;
use crate::error::{Error, Result};
use crate::model::{Node, Op, ValueId};

pub(crate) use super::GpuTensor;

fn value(vals: &[Option<GpuTensor>], v: ValueId) -> Result<&GpuTensor> {
    vals.get(v)
        .and_then(Option::as_ref)
        .ok_or_else(|| Error::internal(format!("value #{v} is not available (released?)")))
}

/// One node's forward on the GPU.
pub(crate) struct GpuFwd<'a, 'r> {
    gpu: &'a GpuBackend,
    /// Where the op records its dispatches and copies.
    pub(crate) rec: &'a mut Recorder<'r>,
    /// The node being recorded.
    pub(crate) node: &'a Node,
    vals: &'a [Option<GpuTensor>],
    /// Full shape of the output (of the fused activation's output when one is fused on).
    pub(crate) out_shape: Vec<usize>,
    /// The clamp `[lo, hi]` of a Relu/Clip fused onto this node, if the plan fused one.
    pub(crate) act: Option<(f32, f32)>,
    /// `layer 'name'`, for errors about weights.
    pub(crate) what: String,
}

impl<'a, 'r> GpuFwd<'a, 'r> {
    pub(crate) fn new(
        gpu: &'a GpuBackend,
        rec: &'a mut Recorder<'r>,
        node: &'a Node,
        vals: &'a [Option<GpuTensor>],
        out_shape: Vec<usize>,
        act: Option<(f32, f32)>,
        what: String,
    ) -> Self {
        GpuFwd {
            gpu,
            rec,
            node,
            vals,
            out_shape,
            act,
            what,
        }
    }

    /// The node's op.
    pub(crate) fn op(&self) -> &'a Op {
        &self.node.op
    }

    /// Input `k`.
    pub(crate) fn x(&self, k: usize) -> Result<&'a GpuTensor> {
        let v = *self
            .node
            .inputs
            .get(k)
            .ok_or_else(|| Error::internal(format!("input {k} missing")))?;
        value(self.vals, v)
    }

    /// A fresh tensor of the output shape.
    pub(crate) fn alloc_out(&self) -> Result<GpuTensor> {
        self.gpu.alloc(self.out_shape.clone())
    }

    /// The GPU copy of a model constant.
    pub(crate) fn konst(&self, data: &Arc<Vec<f32>>) -> Result<wgpu::Buffer> {
        self.gpu.const_buffer(data, &self.what)
    }

    /// A buffer to bind where a kernel's optional operand is absent.
    pub(crate) fn dummy(&self) -> wgpu::Buffer {
        self.gpu.dummy.clone()
    }
}

/// One node's vector-Jacobian product on the GPU.
pub(crate) struct GpuVjp<'a, 'r> {
    gpu: &'a GpuBackend,
    /// Where the op records its dispatches and copies.
    pub(crate) rec: &'a mut Recorder<'r>,
    /// The node whose VJP this is.
    pub(crate) node: &'a Node,
    /// Full shapes of `node.inputs` for this chunk, in order.
    pub(crate) in_shapes: Vec<Vec<usize>>,
    vals: &'a [Option<GpuTensor>],
    /// The output gradient.
    pub(crate) gy: &'a GpuTensor,
    /// The backward rule (ReLU-like ops change under Guided and Deconvnet).
    pub(crate) rule: GradRule,
    /// Whether a shape-only op may hand `gy`'s buffer on instead of copying it (not when `gy`
    /// is kept as a result, which later accumulation could change).
    pub(crate) alias_ok: bool,
    /// `layer 'name'`, for errors about weights.
    pub(crate) what: String,
}

impl<'a, 'r> GpuVjp<'a, 'r> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        gpu: &'a GpuBackend,
        rec: &'a mut Recorder<'r>,
        node: &'a Node,
        in_shapes: Vec<Vec<usize>>,
        vals: &'a [Option<GpuTensor>],
        gy: &'a GpuTensor,
        rule: GradRule,
        alias_ok: bool,
        what: String,
    ) -> Self {
        GpuVjp {
            gpu,
            rec,
            node,
            in_shapes,
            vals,
            gy,
            rule,
            alias_ok,
            what,
        }
    }

    /// The node's op.
    pub(crate) fn op(&self) -> &'a Op {
        &self.node.op
    }

    /// A forward value kept for this VJP.
    pub(crate) fn val(&self, v: ValueId) -> Result<&'a GpuTensor> {
        value(self.vals, v)
            .map_err(|_| Error::internal(format!("forward value #{v} was released too early")))
    }

    /// Full shape of input `k`.
    pub(crate) fn xs(&self, k: usize) -> Result<Vec<usize>> {
        self.in_shapes
            .get(k)
            .cloned()
            .ok_or_else(|| Error::internal(format!("input {k} missing")))
    }

    /// A fresh tensor.
    pub(crate) fn alloc(&self, shape: Vec<usize>) -> Result<GpuTensor> {
        self.gpu.alloc(shape)
    }

    /// The GPU copy of a model constant.
    pub(crate) fn konst(&self, data: &Arc<Vec<f32>>) -> Result<wgpu::Buffer> {
        self.gpu.const_buffer(data, &self.what)
    }
}
