//! Local response normalisation across channels (`Op::Lrn`): ONNX LRN; CPU `cpu/lrn.rs`; GPU
//! `norm.wgsl` (`lrn`, `lrn_bwd`).

use super::{cpu_vjp_one, CpuGrads, GpuGrads, OpKernel};
use crate::backend::GradRule;
use crate::cpu::lrn as cpu_lrn;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::params::word;
use crate::gpu::shape::prod;
use crate::model::import::attrs::NodeCtx;
use crate::model::import::lower::{act4, Importer, Lower};
use crate::model::{Node, Op, ValueId, MAX_SAMPLE_ELEMS};

/// The parameters of `lrn` and `lrn_bwd` (WGSL `LrnParams`): `total` elements of
/// `[N, c, inner]`, the window `size` and ONNX's alpha, beta, bias.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct LrnParams {
    pub(crate) total: u32,
    pub(crate) c: u32,
    pub(crate) inner: u32,
    pub(crate) size: u32,
    pub(crate) alpha: f32,
    pub(crate) beta: f32,
    pub(crate) bias: f32,
}
impl TypedParams for LrnParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Lrn, Kernel::LrnBwd];
}

pub(crate) const ONNX: &[(&str, Lower)] = &[("LRN", lower)];

fn lower(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act4(imp, ctx)?;
    let size = ctx.int("size", 0);
    // The window's half-widths are added to channel indices: bounded like every extent.
    if size <= 0 || size as u64 > MAX_SAMPLE_ELEMS as u64 {
        return Err(ctx.err(format!(
            "LRN needs a 'size' between 1 and {MAX_SAMPLE_ELEMS} (2^28), got {size}"
        )));
    }
    let op = Op::Lrn {
        size: size as usize,
        alpha: ctx.float("alpha", 1e-4),
        beta: ctx.float("beta", 0.75),
        bias: ctx.float("bias", 1.0),
    };
    let s = imp.shape(x).to_vec();
    imp.emit(&ctx.node.name, op, vec![x], ctx.out_name(0), s);
    Ok(())
}

/// LRN.
pub(crate) struct LrnOp;

/// `(size, alpha, beta, bias)`.
fn lrn_of(op: &Op) -> Result<(usize, f32, f32, f32)> {
    match op {
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => Ok((*size, *alpha, *beta, *bias)),
        other => Err(super::wrong_op("LRN", other)),
    }
}

impl OpKernel for LrnOp {
    fn shapes_ok(&self, op: &Op, inputs: &[&[usize]], out: &[usize]) -> bool {
        let x = inputs[0];
        matches!(op, Op::Lrn { size, .. } if x == out && x.len() >= 2 && *size >= 1)
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let (size, alpha, beta, bias) = lrn_of(cx.op())?;
        let mut y = cx.out()?;
        cpu_lrn::lrn(cx.x(0)?, cx.xs(0), size, alpha, beta, bias, &mut y)?;
        Ok(y)
    }

    fn cpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        vec![node.inputs[0]]
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let (size, alpha, beta, bias) = lrn_of(cx.op())?;
        let x = cx.val(cx.node.inputs[0])?;
        cpu_vjp_one(cx, |cx, gy, dx| {
            cpu_lrn::lrn_vjp(x, cx.xs(0), size, alpha, beta, bias, gy, dx)
        })
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let (size, alpha, beta, bias) = lrn_of(cx.op())?;
        let x = cx.x(0)?;
        let out = cx.alloc_out()?;
        let s = x.shape();
        let p = LrnParams {
            total: word(x.len()),
            c: word(s[1]),
            inner: word(prod(&s[2..])),
            size: word(size),
            alpha,
            beta,
            bias,
        };
        cx.rec
            .dispatch_1d(Kernel::Lrn, &[x.into(), (&out).into()], p, x.len())?;
        Ok(out)
    }

    fn gpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        vec![node.inputs[0]]
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let (size, alpha, beta, bias) = lrn_of(cx.op())?;
        let gy = cx.gy;
        let x = cx.val(cx.node.inputs[0])?;
        let xs = cx.xs(0)?;
        if xs.len() < 2 || size == 0 {
            return Err(Error::internal(format!("LRN over {xs:?}")));
        }
        let p = LrnParams {
            total: word(prod(&xs)),
            c: word(xs[1]),
            inner: word(prod(&xs[2..])),
            size: word(size),
            alpha,
            beta,
            bias,
        };
        let dx = cx.alloc(xs)?;
        cx.rec.dispatch_1d(
            Kernel::LrnBwd,
            &[x.into(), gy.into(), (&dx).into()],
            p,
            dx.len(),
        )?;
        Ok(vec![(cx.node.inputs[0], dx)])
    }
}
