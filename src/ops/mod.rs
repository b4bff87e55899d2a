//! Ops as modules: each IR op (or small family) in one file holding its ONNX lowering, its
//! shape checks, its CPU forward and VJP, and its GPU recording of forward and VJP (naming the
//! kernels of `gpu/kernels.rs` it dispatches). The graph executors (`cpu/exec.rs`,
//! `cpu/grad.rs`, `gpu/exec.rs`, `gpu/backward.rs`) and the importer reach an op only through
//! [`kernel`] (IR op → [`OpKernel`]) and [`lowering`] (ONNX op type → lowering function).
//!
//! Where this sits: above `model` (IR, importer context in `model/import/lower.rs`), the CPU
//! kernels (`cpu/<family>.rs`, the numerical oracle, tested on their own) and the GPU recorder;
//! below the executors, which use the op-facing context types of `cpu/node.rs` and
//! `gpu/node.rs` that import nothing from here. The one edge from below is the import driver
//! (`model/import/mod.rs`) looking up [`lowering`]: the public `model::import` paths stay, and no
//! file here imports that driver, so there is no circle.
//!
//! Adding an op: one file here (its `ONNX` table and an [`OpKernel`] impl), its IR variant (and
//! name) in `model/ir.rs`, and here its `mod` line, its arm in [`kernel`] and its table in
//! [`LOWERINGS`]; a new kernel adds its WGSL and its variant and spec line in `gpu/kernels.rs`.
//! A new activation is its IR variant (name, formula, op code), one line in `unary.rs`'s table,
//! its derivative there, and its cases in `eltwise.wgsl`.

pub(crate) mod affine;
pub(crate) mod binary;
pub(crate) mod conv;
pub(crate) mod layernorm;
pub(crate) mod layout;
pub(crate) mod linear;
pub(crate) mod logsoftmax;
pub(crate) mod lrn;
pub(crate) mod pool;
mod reduce;
mod reshape;
pub(crate) mod softmax;
pub(crate) mod unary;

use crate::backend::GradRule;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::error::{Error, Result};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::model::import::lower::Lower;
use crate::model::{Graph, Node, Op, ValueId};

/// Gradient contributions of a CPU VJP: `(input value, d output / d input · gy)`.
pub(crate) type CpuGrads = Vec<(ValueId, Vec<f32>)>;
/// Gradient contributions of a GPU VJP, in input order (a value read twice appears twice).
pub(crate) type GpuGrads = Vec<(ValueId, GpuTensor)>;

/// Everything the executors ask of an op. Implemented by one unit struct per op module; the
/// methods match on the module's own IR variants.
pub(crate) trait OpKernel: Sync {
    /// Whether the number of inputs is right for this op.
    fn arity_ok(&self, _op: &Op, inputs: usize) -> bool {
        inputs == 1
    }
    /// Whether the node would move or reduce the batch axis (the executors split batches into
    /// independent samples, so such a node is a malformed graph).
    fn mixes_batch(&self, _g: &Graph, _node: &Node) -> bool {
        false
    }
    /// Whether the output shape is consistent with the input shapes (full shapes). The GPU
    /// kernels run without bounds checks, so an inconsistency is refused before recording.
    fn shapes_ok(&self, _op: &Op, _inputs: &[&[usize]], _out: &[usize]) -> bool {
        true
    }

    /// Whether the CPU forward applies a following activation itself (`CpuFwd::act`).
    fn cpu_fuses_activation(&self) -> bool {
        false
    }
    /// The CPU forward: returns the output buffer (possibly an input's, reused in place).
    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>>;
    /// The forward values (inputs or output) the CPU VJP reads under `rule`.
    fn cpu_saved(&self, _node: &Node, _rule: GradRule) -> Vec<ValueId> {
        vec![]
    }
    /// The CPU VJP: contributions to the inputs whose gradient is wanted (`CpuVjp::wanted`).
    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads>;

    /// Whether the GPU forward clamps its output itself (`GpuFwd::act`: a fused Relu/Clip).
    fn gpu_fuses_clamp(&self) -> bool {
        false
    }
    /// Records the GPU forward; returns the output tensor.
    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor>;
    /// The forward values the GPU VJP reads under `rule`.
    fn gpu_saved(&self, _node: &Node, _rule: GradRule) -> Vec<ValueId> {
        vec![]
    }
    /// Records the GPU VJP: a contribution for every input, in input order.
    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads>;
}

/// The module implementing an IR op: the one place an IR variant meets its code.
pub(crate) fn kernel(op: &Op) -> &'static dyn OpKernel {
    match op {
        Op::Conv(_) => &conv::ConvOp,
        Op::Linear(_) => &linear::LinearOp,
        Op::Unary(_) => &unary::UnaryOp,
        Op::Binary(_) => &binary::BinaryOp,
        Op::ChannelAffine { .. } => &affine::AffineOp,
        Op::Pool(_) | Op::GlobalPool { .. } => &pool::PoolOp,
        Op::Reduce { .. } => &reduce::ReduceOp,
        Op::Reshape => &reshape::ReshapeOp,
        Op::Transpose { .. } | Op::Concat { .. } | Op::Slice { .. } | Op::Pad { .. } => {
            &layout::LayoutOp
        }
        Op::Softmax { .. } => &softmax::SoftmaxOp,
        Op::Lrn { .. } => &lrn::LrnOp,
        Op::LayerNorm { .. } => &layernorm::LayerNormOp,
        Op::LogSoftmax { .. } => &logsoftmax::LogSoftmaxOp,
    }
}

/// Every op module's ONNX lowerings: `(ONNX op type, lowering)`.
const LOWERINGS: &[&[(&str, Lower)]] = &[
    conv::ONNX,
    linear::ONNX,
    unary::ONNX,
    binary::ONNX,
    affine::ONNX,
    pool::ONNX,
    reduce::ONNX,
    reshape::ONNX,
    layout::ONNX,
    softmax::ONNX,
    lrn::ONNX,
    layernorm::ONNX,
    logsoftmax::ONNX,
];

/// The lowering of an ONNX op type onto the IR, if some op module has one.
pub(crate) fn lowering(op_type: &str) -> Option<Lower> {
    LOWERINGS
        .iter()
        .flat_map(|t| t.iter())
        .find(|(name, _)| *name == op_type)
        .map(|&(_, f)| f)
}

/// The ONNX op types the op modules lower, in registry order.
pub(crate) fn onnx_ops() -> impl Iterator<Item = &'static str> {
    LOWERINGS
        .iter()
        .flat_map(|t| t.iter())
        .map(|&(name, _)| name)
}

/// The error for an op module asked about an IR variant it does not implement (a bug in
/// [`kernel`]).
fn wrong_op(module: &str, op: &Op) -> Error {
    Error::internal(format!(
        "{module} op module dispatched a {}",
        op.kind_name()
    ))
}

/// The common shape of a single-input CPU VJP: `f(cx, gy, dx)` fills the input gradient.
fn cpu_vjp_one(
    cx: &mut CpuVjp,
    f: impl FnOnce(&CpuVjp, &[f32], &mut [f32]) -> Result<()>,
) -> Result<CpuGrads> {
    let mut dx = cx.dx(0)?;
    f(cx, cx.gy()?, &mut dx)?;
    Ok(vec![(cx.node.inputs[0], dx)])
}
