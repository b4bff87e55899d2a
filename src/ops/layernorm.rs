//! Layer normalisation over the trailing axes (`Op::LayerNorm`): ONNX LayerNormalization
//! (opset 17); CPU `cpu/layernorm.rs`; GPU `layernorm.wgsl` (`layer_norm`, `layer_norm_bwd`),
//! one workgroup per normalised row.
//!
//! The normalised axes run from `axis` to the end, so in row-major order every row is
//! contiguous: the tensor is `[rows, len]` with `len` the product of those axes. Scale and bias
//! are broadcast at import to `len` elements, so the kernels index them by position in the row.

use super::{cpu_vjp_one, CpuGrads, GpuGrads, OpKernel};
use crate::backend::GradRule;
use crate::cpu::layernorm as cpu_ln;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::params::word;
use crate::gpu::shape::prod;
use crate::model::import::attrs::NodeCtx;
use crate::model::import::lower::{
    act, axis_of, const_f32, dims, emit_same_shape, Importer, Lower,
};
use crate::model::{broadcast_strides, Const, Graph, Node, Op, ValueId};

/// The parameters of `layer_norm` and `layer_norm_bwd` (WGSL `LayerNormParams`): `rows` rows
/// of `len` contiguous elements; `has_bias` is 0 when the forward binds a dummy bias.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct LayerNormParams {
    pub(crate) rows: u32,
    pub(crate) len: u32,
    pub(crate) eps: f32,
    pub(crate) has_bias: u32,
}
impl TypedParams for LayerNormParams {
    const KERNELS: &'static [Kernel] = &[Kernel::LayerNorm, Kernel::LayerNormBwd];
}

pub(crate) const ONNX: &[(&str, Lower)] = &[("LayerNormalization", lower)];

fn lower(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let axis = axis_of(ctx, ctx.int("axis", -1), rank)?;
    if axis == 0 {
        return Err(ctx.err(
            "normalising over the batch axis (axis 0) is not supported: netlens keeps samples \
             independent, so LayerNormalization's axis must be 1 or later",
        ));
    }
    // Outputs 1 and 2 (Mean, InvStdDev) exist for training graphs; nothing here computes them.
    for (i, what) in [(1, "Mean"), (2, "InvStdDev")] {
        if !ctx.out_name(i).is_empty() && imp.output_read(ctx, i) {
            return Err(ctx.err(format!(
                "its {what} output is read by the graph; only the normalised output is supported"
            )));
        }
    }
    let epsilon = ctx.float("epsilon", 1e-5);
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(ctx.err(format!("epsilon {epsilon} must be finite and >= 0")));
    }
    let row = xs[axis - 1..].to_vec();
    let (ss, sv) = const_f32(imp, ctx, 1)?.ok_or_else(|| ctx.err("input #1 (Scale) is missing"))?;
    let scale = to_row(ctx, "Scale", &ss, sv, &row)?;
    let bias = match const_f32(imp, ctx, 2)? {
        Some((bs, bv)) => Some(to_row(ctx, "B", &bs, bv, &row)?),
        None => None,
    };
    let op = Op::LayerNorm {
        axis,
        epsilon,
        scale,
        bias,
    };
    emit_same_shape(imp, ctx, op, x);
    Ok(())
}

/// Broadcasts a constant of `shape` (numpy rules, no wider than the row) to the row's
/// `len` elements, flattened.
fn to_row(ctx: &NodeCtx, what: &str, shape: &[usize], v: Vec<f32>, row: &[usize]) -> Result<Const> {
    let len = prod(row);
    let fits = shape.len() <= row.len()
        && shape
            .iter()
            .rev()
            .zip(row.iter().rev())
            .all(|(&s, &r)| s == r || s == 1);
    if !fits || v.len() != prod(shape) {
        return Err(ctx.err(format!(
            "{what} of shape [{}] does not broadcast to the normalised axes [{}]",
            dims(shape),
            dims(row)
        )));
    }
    if shape == row {
        return Ok(Const::new(vec![len], v));
    }
    let st = broadcast_strides(row, shape);
    let data = (0..len)
        .map(|i| {
            let (mut rem, mut at) = (i, 0);
            for d in (0..row.len()).rev() {
                at += (rem % row[d]) * st[d];
                rem /= row[d];
            }
            v[at]
        })
        .collect();
    Ok(Const::new(vec![len], data))
}

/// LayerNormalization.
pub(crate) struct LayerNormOp;

/// `(axis, epsilon, scale, bias)`.
fn ln_of(op: &Op) -> Result<(usize, f32, &Const, Option<&Const>)> {
    match op {
        Op::LayerNorm {
            axis,
            epsilon,
            scale,
            bias,
        } => Ok((*axis, *epsilon, scale, bias.as_ref())),
        other => Err(super::wrong_op("LayerNorm", other)),
    }
}

/// `(rows, len)` of a full shape normalised from `axis` on.
fn rows_len(s: &[usize], axis: usize) -> Result<(usize, usize)> {
    if axis == 0 || axis >= s.len() {
        return Err(Error::internal(format!("LayerNorm axis {axis} of {s:?}")));
    }
    Ok((prod(&s[..axis]), prod(&s[axis..])))
}

impl OpKernel for LayerNormOp {
    fn mixes_batch(&self, _g: &Graph, node: &Node) -> bool {
        matches!(node.op, Op::LayerNorm { axis: 0, .. })
    }

    fn shapes_ok(&self, op: &Op, inputs: &[&[usize]], out: &[usize]) -> bool {
        let x = inputs[0];
        match op {
            Op::LayerNorm {
                axis, scale, bias, ..
            } => {
                let ok_axis = *axis >= 1 && *axis < x.len();
                let len = if ok_axis { prod(&x[*axis..]) } else { 0 };
                x == out
                    && ok_axis
                    && len > 0
                    && scale.len() == len
                    && bias.as_ref().is_none_or(|b| b.len() == len)
            }
            _ => false,
        }
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let (axis, eps, scale, bias) = ln_of(cx.op())?;
        let (_, len) = rows_len(cx.xs(0), axis)?;
        let mut y = cx.out()?;
        let bias = bias.map(|b| b.data.as_slice());
        cpu_ln::layer_norm(cx.x(0)?, len, eps, &scale.data, bias, &mut y)?;
        Ok(y)
    }

    fn cpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        vec![node.inputs[0]]
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let (axis, eps, scale, _) = ln_of(cx.op())?;
        let (_, len) = rows_len(cx.xs(0), axis)?;
        let x = cx.val(cx.node.inputs[0])?;
        cpu_vjp_one(cx, |_, gy, dx| {
            cpu_ln::layer_norm_vjp(x, len, eps, &scale.data, gy, dx)
        })
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let (axis, eps, scale, bias) = ln_of(cx.op())?;
        let x = cx.x(0)?;
        let (rows, len) = rows_len(x.shape(), axis)?;
        let out = cx.alloc_out()?;
        let s = cx.konst(&scale.data)?;
        let b = match bias {
            Some(b) => cx.konst(&b.data)?,
            None => cx.dummy(),
        };
        let p = LayerNormParams {
            rows: word(rows),
            len: word(len),
            eps,
            has_bias: u32::from(bias.is_some()),
        };
        // One workgroup per row; `dispatch` clamps to the device limit and the kernel
        // grid-strides over rows.
        cx.rec.dispatch(
            Kernel::LayerNorm,
            &[x.into(), (&s).into(), (&b).into(), (&out).into()],
            p,
            [rows, 1, 1],
        )?;
        Ok(out)
    }

    fn gpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        vec![node.inputs[0]]
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let (axis, eps, scale, _) = ln_of(cx.op())?;
        let gy = cx.gy;
        let x = cx.val(cx.node.inputs[0])?;
        let xs = cx.xs(0)?;
        let (rows, len) = rows_len(&xs, axis)?;
        let s = cx.konst(&scale.data)?;
        let p = LayerNormParams {
            rows: word(rows),
            len: word(len),
            eps,
            has_bias: 0,
        };
        let dx = cx.alloc(xs)?;
        cx.rec.dispatch(
            Kernel::LayerNormBwd,
            &[x.into(), gy.into(), (&s).into(), (&dx).into()],
            p,
            [rows, 1, 1],
        )?;
        Ok(vec![(cx.node.inputs[0], dx)])
    }
}
