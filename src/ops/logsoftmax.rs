//! Log-softmax over one feature axis (`Op::LogSoftmax`): ONNX LogSoftmax; CPU
//! `cpu/logsoftmax.rs`; GPU `logsoftmax.wgsl` (`log_softmax`, `log_softmax_bwd`).

use super::{cpu_vjp_one, CpuGrads, GpuGrads, OpKernel};
use crate::backend::GradRule;
use crate::cpu::logsoftmax as cpu_lsm;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::params::word;
use crate::gpu::shape::prod;
use crate::model::import::attrs::NodeCtx;
use crate::model::import::lower::{act, emit_same_shape, feature_axis, Importer, Lower};
use crate::model::{Graph, Node, Op, ValueId};

/// The parameters of `log_softmax` and `log_softmax_bwd` (WGSL `LogSoftmaxParams`): the
/// tensor viewed as `[outer, len, inner]`, `rows = outer * inner`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct LogSoftmaxParams {
    pub(crate) rows: u32,
    pub(crate) len: u32,
    pub(crate) inner: u32,
}
impl TypedParams for LogSoftmaxParams {
    const KERNELS: &'static [Kernel] = &[Kernel::LogSoftmax, Kernel::LogSoftmaxBwd];
}

impl LogSoftmaxParams {
    fn of(s: &[usize], axis: usize) -> Result<LogSoftmaxParams> {
        if axis == 0 || axis >= s.len() {
            return Err(Error::internal(format!("LogSoftmax axis {axis} of {s:?}")));
        }
        let inner = prod(&s[axis + 1..]);
        Ok(LogSoftmaxParams {
            rows: word(prod(&s[..axis]) * inner),
            len: word(s[axis]),
            inner: word(inner),
        })
    }
}

pub(crate) const ONNX: &[(&str, Lower)] = &[("LogSoftmax", lower)];

fn lower(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let old = imp.opset < 13;
    let axis = feature_axis(ctx, ctx.int("axis", if old { 1 } else { -1 }), rank)?;
    // Before opset 13 LogSoftmax normalised everything from `axis` on as one flattened axis:
    // that is a reshape to [N, .., prod(trailing)], the op over the last axis, and back.
    // (`xs` is per sample: full axis `a` is `xs[a - 1]`, the flattened op's axis is the last.)
    if old && prod(&xs[axis..]) != 1 {
        let out = ctx.out_name(0).to_string();
        let mut flat = xs[..axis - 1].to_vec();
        flat.push(prod(&xs[axis - 1..]));
        let name = &ctx.node.name;
        let f = imp.emit(
            name,
            Op::Reshape,
            vec![x],
            &format!("{out}::flat"),
            flat.clone(),
        );
        let l = imp.emit(
            name,
            Op::LogSoftmax { axis },
            vec![f],
            &format!("{out}::log_softmax"),
            flat,
        );
        imp.emit(name, Op::Reshape, vec![l], &out, xs);
        return Ok(());
    }
    emit_same_shape(imp, ctx, Op::LogSoftmax { axis }, x);
    Ok(())
}

/// Log-softmax along one axis.
pub(crate) struct LogSoftmaxOp;

fn axis_of_op(op: &Op) -> Result<usize> {
    match op {
        Op::LogSoftmax { axis } => Ok(*axis),
        other => Err(super::wrong_op("log-softmax", other)),
    }
}

impl OpKernel for LogSoftmaxOp {
    fn mixes_batch(&self, _g: &Graph, node: &Node) -> bool {
        matches!(node.op, Op::LogSoftmax { axis: 0 })
    }

    fn shapes_ok(&self, op: &Op, inputs: &[&[usize]], out: &[usize]) -> bool {
        let x = inputs[0];
        matches!(op, Op::LogSoftmax { axis } if x == out && *axis >= 1 && *axis < x.len())
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let axis = axis_of_op(cx.op())?;
        let mut y = cx.out()?;
        cpu_lsm::log_softmax(cx.x(0)?, cx.xs(0), axis, &mut y)?;
        Ok(y)
    }

    fn cpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        vec![node.output]
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let axis = axis_of_op(cx.op())?;
        let y = cx.val(cx.node.output)?;
        cpu_vjp_one(cx, |cx, gy, dx| {
            cpu_lsm::log_softmax_vjp(y, cx.xs(0), axis, gy, dx)
        })
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let axis = axis_of_op(cx.op())?;
        let x = cx.x(0)?;
        let p = LogSoftmaxParams::of(x.shape(), axis)?;
        let out = cx.alloc_out()?;
        let rows = p.rows as usize;
        cx.rec
            .dispatch_1d(Kernel::LogSoftmax, &[x.into(), (&out).into()], p, rows)?;
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
        let p = LogSoftmaxParams::of(&s, axis)?;
        let rows = p.rows as usize;
        let dx = cx.alloc(s)?;
        cx.rec.dispatch_1d(
            Kernel::LogSoftmaxBwd,
            &[y.into(), gy.into(), (&dx).into()],
            p,
            rows,
        )?;
        Ok(vec![(cx.node.inputs[0], dx)])
    }
}
