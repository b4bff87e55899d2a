//! Softmax over one feature axis (`Op::Softmax`): ONNX Softmax; CPU `cpu/softmax.rs`; GPU
//! `softmax.wgsl` (`softmax`, `softmax_bwd`).

use super::{cpu_vjp_one, CpuGrads, GpuGrads, OpKernel};
use crate::backend::GradRule;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::cpu::softmax as cpu_softmax;
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::params::word;
use crate::gpu::shape::prod;
use crate::model::import::attrs::NodeCtx;
use crate::model::import::lower::{act, emit_same_shape, feature_axis, Importer, Lower};
use crate::model::{Graph, Node, Op, ValueId};

/// The parameters of `softmax` and `softmax_bwd` (WGSL `SoftmaxParams`): the tensor viewed as
/// `[outer, len, inner]`, `rows = outer * inner`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SoftmaxParams {
    pub(crate) rows: u32,
    pub(crate) len: u32,
    pub(crate) inner: u32,
}
impl TypedParams for SoftmaxParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Softmax, Kernel::SoftmaxBwd];
}

pub(crate) const ONNX: &[(&str, Lower)] = &[("Softmax", lower)];

fn lower(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let default = if imp.opset < 13 { 1 } else { -1 };
    let axis = feature_axis(ctx, ctx.int("axis", default), rank)?;
    // Before opset 13 Softmax flattened everything from `axis` on; that equals a softmax over
    // `axis` only when the trailing dimensions are all 1.
    if imp.opset < 13 && xs[axis..].iter().product::<usize>() != 1 {
        return Err(ctx.err("opset < 13 Softmax over several trailing axes is not supported"));
    }
    emit_same_shape(imp, ctx, Op::Softmax { axis }, x);
    Ok(())
}

/// Softmax along one axis.
pub(crate) struct SoftmaxOp;

fn axis_of_op(op: &Op) -> Result<usize> {
    match op {
        Op::Softmax { axis } => Ok(*axis),
        other => Err(super::wrong_op("softmax", other)),
    }
}

impl OpKernel for SoftmaxOp {
    fn mixes_batch(&self, _g: &Graph, node: &Node) -> bool {
        matches!(node.op, Op::Softmax { axis: 0 })
    }

    fn shapes_ok(&self, op: &Op, inputs: &[&[usize]], out: &[usize]) -> bool {
        let x = inputs[0];
        matches!(op, Op::Softmax { axis } if x == out && *axis < x.len())
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let axis = axis_of_op(cx.op())?;
        let mut y = cx.out()?;
        cpu_softmax::softmax(cx.x(0)?, cx.xs(0), axis, &mut y)?;
        Ok(y)
    }

    fn cpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        vec![node.output]
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let axis = axis_of_op(cx.op())?;
        let y = cx.val(cx.node.output)?;
        cpu_vjp_one(cx, |cx, gy, dx| {
            cpu_softmax::softmax_vjp(y, cx.xs(0), axis, gy, dx)
        })
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let axis = axis_of_op(cx.op())?;
        let x = cx.x(0)?;
        let out = cx.alloc_out()?;
        let s = x.shape();
        let inner = prod(&s[axis + 1..]);
        let rows = prod(&s[..axis]) * inner;
        let p = SoftmaxParams {
            rows: word(rows),
            len: word(s[axis]),
            inner: word(inner),
        };
        cx.rec
            .dispatch_1d(Kernel::Softmax, &[x.into(), (&out).into()], p, rows)?;
        Ok(out)
    }

    fn gpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        vec![node.output]
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let axis = axis_of_op(cx.op())?;
        let gy = cx.gy;
        let y = cx.val(cx.node.output)?;
        let s = cx.xs(0)?;
        if axis >= s.len() {
            return Err(Error::internal(format!("softmax axis {axis} of {s:?}")));
        }
        let inner = prod(&s[axis + 1..]);
        let rows = prod(&s[..axis]) * inner;
        let p = SoftmaxParams {
            rows: word(rows),
            len: word(s[axis]),
            inner: word(inner),
        };
        let dx = cx.alloc(s)?;
        cx.rec.dispatch_1d(
            Kernel::SoftmaxBwd,
            &[y.into(), gy.into(), (&dx).into()],
            p,
            rows,
        )?;
        Ok(vec![(cx.node.inputs[0], dx)])
    }
}
