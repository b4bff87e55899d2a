//! Fully connected layer (`Op::Linear`): ONNX Gemm and MatMul by a constant; CPU
//! `cpu/linear.rs`; GPU `gemm.wgsl` (`linear`, `linear_bwd`). Takes a following activation on
//! the CPU.

use super::{cpu_vjp_one, CpuGrads, GpuGrads, OpKernel};
use crate::cpu::linear as cpu_linear;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::params::word;
use crate::model::import::attrs::NodeCtx;
use crate::model::import::consts;
use crate::model::import::lower::{act, const_f32, dims, get, Importer, Lower};
use crate::model::{Const, Linear, Op, ValueId};

/// `linear`'s parameters (WGSL `LinearParams`): x is `[rows, k]`, the weight `[outs, k]`;
/// `has_bias` is 0 or 1 (without one, binding 3 is a dummy).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct LinearParams {
    pub(crate) rows: u32,
    pub(crate) outs: u32,
    pub(crate) k: u32,
    pub(crate) has_bias: u32,
}
impl TypedParams for LinearParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Linear];
}

/// `linear_bwd`'s parameters (WGSL `LinearBwdParams`), as [`LinearParams`].
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct LinearBwdParams {
    pub(crate) rows: u32,
    pub(crate) outs: u32,
    pub(crate) k: u32,
}
impl TypedParams for LinearBwdParams {
    const KERNELS: &'static [Kernel] = &[Kernel::LinearBwd];
}

pub(crate) const ONNX: &[(&str, Lower)] = &[("Gemm", gemm), ("MatMul", matmul)];

fn linear(
    imp: &mut Importer,
    ctx: &NodeCtx,
    x: ValueId,
    weight: Const,
    bias: Option<Const>,
) -> Result<()> {
    let xs = imp.shape(x).to_vec();
    let (out_f, in_f) = (weight.shape[0], weight.shape[1]);
    if xs.last() != Some(&in_f) {
        return Err(ctx.err(format!(
            "input [N, {}] does not match a weight with {in_f} inputs",
            dims(&xs)
        )));
    }
    let mut out = xs;
    *out.last_mut().unwrap_or(&mut 0) = out_f;
    imp.emit(
        &ctx.node.name,
        Op::Linear(Linear { weight, bias }),
        vec![x],
        ctx.out_name(0),
        out,
    );
    Ok(())
}

fn gemm(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    if ctx.int("transA", 0) != 0 {
        return Err(
            ctx.err("Gemm with transA=1 on an activation would mix the batch; not supported")
        );
    }
    if imp.shape(x).len() != 1 {
        return Err(ctx.err(format!(
            "Gemm expects a 2-D [N, K] input, got [N, {}]",
            dims(imp.shape(x))
        )));
    }
    let (bs, b) = const_f32(imp, ctx, 1)?.ok_or_else(|| ctx.err("Gemm has no B input"))?;
    if bs.len() != 2 {
        return Err(ctx.err("Gemm's B must be 2-D"));
    }
    let alpha = ctx.float("alpha", 1.0);
    let beta = ctx.float("beta", 1.0);
    let (ws, w) = if ctx.int("transB", 0) != 0 {
        (bs, b)
    } else {
        consts::transpose(&bs, &b, &[1, 0]).ok_or_else(|| ctx.err("Gemm's B must be 2-D"))?
    };
    let w: Vec<f32> = w.iter().map(|v| v * alpha).collect();
    let out_f = ws[0];
    let bias = match const_f32(imp, ctx, 2)? {
        None => None,
        Some((cs, c)) => {
            let ok = c.len() == 1 || (c.len() == out_f && cs.iter().rev().skip(1).all(|&d| d == 1));
            if !ok {
                return Err(ctx.err(format!(
                    "Gemm's C of shape [{}] is not a per-output bias",
                    dims(&cs)
                )));
            }
            Some(Const::new(
                vec![out_f],
                (0..out_f)
                    .map(|o| beta * c[if c.len() == 1 { 0 } else { o }])
                    .collect(),
            ))
        }
    };
    linear(imp, ctx, x, Const::new(ws, w), bias)
}

fn matmul(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)
        .map_err(|_| ctx.err("MatMul with a constant left operand is not supported"))?;
    let b = get(imp, ctx, 1)?;
    let (bs, bd) = b.as_f32().ok_or_else(|| {
        ctx.err("MatMul of two activations is not supported; the right operand must be a constant")
    })?;
    if bs.len() != 2 {
        return Err(ctx.err(format!(
            "MatMul's constant operand must be 2-D, got [{}]",
            dims(&bs)
        )));
    }
    let (ws, w) = consts::transpose(&bs, &bd, &[1, 0])
        .ok_or_else(|| ctx.err("MatMul's constant operand must be 2-D"))?;
    linear(imp, ctx, x, Const::new(ws, w), None)
}

/// Fully connected layer over the last axis.
pub(crate) struct LinearOp;

fn linear_of(op: &Op) -> Result<&Linear> {
    match op {
        Op::Linear(l) => Ok(l),
        other => Err(super::wrong_op("linear", other)),
    }
}

impl OpKernel for LinearOp {
    fn cpu_fuses_activation(&self) -> bool {
        true
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let l = linear_of(cx.op())?;
        let (xs, ys) = (cx.xs(0), &cx.out_shape);
        let o = l.weight.shape.first().copied().unwrap_or(0);
        if ys.split_last() != Some((&o, &xs[..xs.len().saturating_sub(1)])) {
            return Err(Error::internal(format!("Linear {xs:?} -> {ys:?}")));
        }
        let mut y = cx.out()?;
        cpu_linear::linear(cx.x(0)?, cx.xs(0), l, cx.act, cx.par, &mut y)?;
        Ok(y)
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let l = linear_of(cx.op())?;
        cpu_vjp_one(cx, |cx, gy, dx| {
            cpu_linear::linear_vjp(gy, l, cx.xs(0), cx.par, dx)
        })
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let l = linear_of(cx.op())?;
        let x = cx.x(0)?;
        let out = cx.alloc_out()?;
        let k = *x.shape().last().unwrap_or(&1);
        let o = l.weight.shape[0];
        if l.weight.shape.len() != 2 || l.weight.shape[1] != k || out.shape().last() != Some(&o) {
            return Err(Error::internal(format!(
                "linear weight {:?} for {:?}",
                l.weight.shape,
                x.shape()
            )));
        }
        let rows = x.len() / k.max(1);
        let wbuf = cx.konst(&l.weight.data)?;
        let bias = match &l.bias {
            Some(b) => cx.konst(&b.data)?,
            None => cx.dummy(),
        };
        let p = LinearParams {
            rows: word(rows),
            outs: word(o),
            k: word(k),
            has_bias: l.bias.is_some() as u32,
        };
        let binds = [x.into(), (&wbuf).into(), (&bias).into(), (&out).into()];
        cx.rec.dispatch(
            Kernel::Linear,
            &binds,
            p,
            [rows.div_ceil(64), o.div_ceil(64), 1],
        )?;
        Ok(out)
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let l = linear_of(cx.op())?;
        let gy = cx.gy;
        let xs = cx.xs(0)?;
        let k = *xs.last().unwrap_or(&1);
        let o = l.weight.shape[0];
        if l.weight.shape.len() != 2 || l.weight.shape[1] != k || gy.shape().last() != Some(&o) {
            return Err(Error::internal(format!(
                "linear weight {:?} for {xs:?}",
                l.weight.shape
            )));
        }
        let dx = cx.alloc(xs)?;
        let rows = dx.len() / k.max(1);
        let wbuf = cx.konst(&l.weight.data)?;
        cx.rec.dispatch(
            Kernel::LinearBwd,
            &[gy.into(), (&wbuf).into(), (&dx).into()],
            LinearBwdParams {
                rows: word(rows),
                outs: word(o),
                k: word(k),
            },
            [rows.div_ceil(64), k.div_ceil(64), 1],
        )?;
        Ok(vec![(cx.node.inputs[0], dx)])
    }
}
