//! Reductions over feature axes (`Op::Reduce`): ONNX ReduceSum, ReduceMean, ReduceMax; CPU
//! `cpu/reduce.rs`; GPU `reduce.wgsl` (`reduce`, `reduce_bwd`).

use super::{cpu_vjp_one, CpuGrads, GpuGrads, OpKernel};
use crate::backend::GradRule;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::cpu::reduce as cpu_reduce;
use crate::error::{Error, Result};
use crate::gpu::kernels::Kernel;
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::ops::{reduce, ReduceParams};
use crate::gpu::shape::{prod, MAX_RANK};
use crate::model::import::attrs::NodeCtx;
use crate::model::import::lower::{act, axes_input_or_attr, feature_axis, get, Importer, Lower};
use crate::model::{Graph, Node, Op, ReduceKind, ValueId};

pub(crate) const ONNX: &[(&str, Lower)] = &[
    ("ReduceMean", |imp, ctx| lower(imp, ctx, ReduceKind::Mean)),
    ("ReduceSum", |imp, ctx| lower(imp, ctx, ReduceKind::Sum)),
    ("ReduceMax", |imp, ctx| lower(imp, ctx, ReduceKind::Max)),
];

fn lower(imp: &mut Importer, ctx: &NodeCtx, kind: ReduceKind) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let keepdims = ctx.int("keepdims", 1) != 0;
    let axes = axes_input_or_attr(imp, ctx, 1)?.unwrap_or_default();
    if axes.is_empty() {
        if ctx.int("noop_with_empty_axes", 0) != 0 {
            let v = get(imp, ctx, 0)?;
            imp.env.insert(ctx.out_name(0).to_string(), v);
            return Ok(());
        }
        return Err(ctx.err("reducing over all axes would mix the batch; give explicit axes"));
    }
    let mut norm: Vec<usize> = axes
        .iter()
        .map(|&a| feature_axis(ctx, a, rank))
        .collect::<Result<_>>()?;
    norm.sort_unstable();
    norm.dedup();
    let out: Vec<usize> = (1..rank)
        .filter_map(|d| match (norm.contains(&d), keepdims) {
            (true, true) => Some(1),
            (true, false) => None,
            (false, _) => Some(xs[d - 1]),
        })
        .collect();
    imp.emit(
        &ctx.node.name,
        Op::Reduce {
            kind,
            axes: norm,
            keepdims,
        },
        vec![x],
        ctx.out_name(0),
        out,
    );
    Ok(())
}

/// Sum, mean or max over feature axes.
pub(crate) struct ReduceOp;

fn reduce_of(op: &Op) -> Result<(ReduceKind, &[usize])> {
    match op {
        Op::Reduce { kind, axes, .. } => Ok((*kind, axes)),
        other => Err(super::wrong_op("reduce", other)),
    }
}

impl OpKernel for ReduceOp {
    fn mixes_batch(&self, _g: &Graph, node: &Node) -> bool {
        matches!(&node.op, Op::Reduce { axes, .. } if axes.contains(&0))
    }

    fn shapes_ok(&self, op: &Op, inputs: &[&[usize]], out: &[usize]) -> bool {
        let x = inputs[0];
        let Op::Reduce { axes, .. } = op else {
            return false;
        };
        let kept: usize = (0..x.len())
            .filter(|d| !axes.contains(d))
            .map(|d| x[d])
            .product();
        axes.iter().all(|&a| a >= 1 && a < x.len()) && prod(out) == kept
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let (kind, axes) = reduce_of(cx.op())?;
        let mut y = cx.out()?;
        cpu_reduce::reduce(cx.x(0)?, cx.xs(0), kind, axes, &mut y)?;
        Ok(y)
    }

    fn cpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        match &node.op {
            Op::Reduce {
                kind: ReduceKind::Max,
                ..
            } => vec![node.inputs[0]],
            _ => vec![],
        }
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let (kind, axes) = reduce_of(cx.op())?;
        let x = cx.saved(cx.node.inputs[0])?.unwrap_or(&[]);
        cpu_vjp_one(cx, |cx, gy, dx| {
            cpu_reduce::reduce_vjp(x, cx.xs(0), kind, axes, gy, dx)
        })
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let (kind, axes) = reduce_of(cx.op())?;
        let x = cx.x(0)?;
        let out = cx.alloc_out()?;
        reduce(cx.rec, x, &out, kind, axes)?;
        Ok(out)
    }

    fn gpu_saved(&self, node: &Node, rule: GradRule) -> Vec<ValueId> {
        self.cpu_saved(node, rule)
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let (kind, axes) = reduce_of(cx.op())?;
        let gy = cx.gy;
        let x_id = cx.node.inputs[0];
        let xs = cx.xs(0)?;
        let offset = MAX_RANK - xs.len();
        let mut mask = 0usize;
        for &a in axes {
            if a == 0 || a >= xs.len() {
                return Err(Error::internal(format!("reduce axis {a} of {xs:?}")));
            }
            mask |= 1 << (a + offset);
        }
        let count: usize = axes.iter().map(|&a| xs[a]).product();
        let fwd = if kind == ReduceKind::Max {
            cx.val(x_id)?
        } else {
            gy
        };
        let p = ReduceParams::new(gy.len(), count, kind, mask, &xs);
        let dx = cx.alloc(xs)?;
        cx.rec.dispatch_1d(
            Kernel::ReduceBwd,
            &[fwd.into(), gy.into(), (&dx).into()],
            p,
            gy.len(),
        )?;
        Ok(vec![(x_id, dx)])
    }
}
