//! Per-channel affine `x * scale[c] + shift[c]` (`Op::ChannelAffine`): ONNX
//! BatchNormalization (folded into the producing Conv when nothing else reads its input); CPU
//! `cpu/eltwise.rs`; GPU `eltwise.wgsl` (`channel_affine`, `channel_scale_bwd`).

use super::{CpuGrads, GpuGrads, OpKernel};
use crate::cpu::eltwise;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::error::Result;
use crate::gpu::kernels::{Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::params::word;
use crate::gpu::shape::prod;
use crate::model::import::attrs::NodeCtx;
use crate::model::import::consts::Sym;
use crate::model::import::lower::{act, const_f32, emit_same_shape, Importer, Lower};
use crate::model::{Const, Op};

/// The parameters of `channel_affine` and `channel_scale_bwd` (WGSL `ChannelParams`): element
/// `i` belongs to channel `(i / inner) % channels`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ChannelParams {
    pub(crate) total: u32,
    pub(crate) channels: u32,
    pub(crate) inner: u32,
}
impl TypedParams for ChannelParams {
    const KERNELS: &'static [Kernel] = &[Kernel::ChannelAffine, Kernel::ChannelScaleBwd];
}

impl ChannelParams {
    /// Over an `[N, C, ...]` tensor of `shape`.
    fn of(shape: &[usize]) -> ChannelParams {
        ChannelParams {
            total: word(prod(shape)),
            channels: word(shape[1]),
            inner: word(prod(&shape[2..]).max(1)),
        }
    }
}

pub(crate) const ONNX: &[(&str, Lower)] = &[("BatchNormalization", batch_norm)];

fn batch_norm(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    if ctx.int("training_mode", 0) != 0
        || (1..ctx.node.output.len())
            .any(|i| imp.readers.get(ctx.out_name(i)).copied().unwrap_or(0) > 0)
    {
        return Err(ctx.err("BatchNormalization in training mode is not supported"));
    }
    let eps = ctx.float("epsilon", 1e-5);
    let mut params = Vec::new();
    for i in 1..5 {
        params.push(
            const_f32(imp, ctx, i)?
                .ok_or_else(|| ctx.err(format!("input #{i} is missing")))?
                .1,
        );
    }
    let c = imp.shape(x).first().copied().unwrap_or(0);
    if params.iter().any(|p| p.len() != c) {
        return Err(ctx.err(format!(
            "parameters do not match the {c} channels of its input"
        )));
    }
    let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
    let scale: Vec<f32> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let shift: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();

    // Fold into the producing Conv when nothing else reads the pre-normalisation tensor.
    let in_name = ctx.input(0).unwrap_or("");
    let sole_reader = imp.readers.get(in_name).copied() == Some(1);
    if let Some(node) = imp.nodes.iter_mut().rev().find(|n| n.output == x) {
        if let (true, Op::Conv(conv)) = (sole_reader, &mut node.op) {
            let per_oc = conv.weight.len() / c;
            let w: Vec<f32> = conv
                .weight
                .data
                .iter()
                .enumerate()
                .map(|(i, &v)| v * scale[i / per_oc])
                .collect();
            let b: Vec<f32> = (0..c)
                .map(|o| conv.bias.as_ref().map_or(0.0, |b| b.data[o]) * scale[o] + shift[o])
                .collect();
            conv.weight = Const::new(conv.weight.shape.clone(), w);
            conv.bias = Some(Const::new(vec![c], b));
            imp.values[x].name = ctx.out_name(0).to_string();
            imp.env.remove(in_name);
            imp.env.insert(ctx.out_name(0).to_string(), Sym::Act(x));
            return Ok(());
        }
    }
    let op = Op::ChannelAffine {
        scale: Const::new(vec![c], scale),
        shift: Const::new(vec![c], shift),
    };
    emit_same_shape(imp, ctx, op, x);
    Ok(())
}

/// Per-channel scale and shift.
pub(crate) struct AffineOp;

fn affine_of(op: &Op) -> Result<(&Const, &Const)> {
    match op {
        Op::ChannelAffine { scale, shift } => Ok((scale, shift)),
        other => Err(super::wrong_op("channel affine", other)),
    }
}

impl OpKernel for AffineOp {
    fn shapes_ok(&self, op: &Op, inputs: &[&[usize]], out: &[usize]) -> bool {
        let x = inputs[0];
        match op {
            Op::ChannelAffine { scale, shift } => {
                x == out && x.len() >= 2 && scale.len() == x[1] && shift.len() == x[1]
            }
            _ => false,
        }
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let (scale, shift) = affine_of(cx.op())?;
        let xs = cx.xs(0).to_vec();
        if let Some(mut y) = cx.owned(0)? {
            eltwise::channel_affine_inplace(&mut y, &xs, &scale.data, &shift.data)?;
            return Ok(y);
        }
        let mut y = cx.out()?;
        eltwise::channel_affine(cx.x(0)?, &xs, &scale.data, &shift.data, &mut y)?;
        Ok(y)
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let (scale, _) = affine_of(cx.op())?;
        let mut gy = cx.take_gy()?;
        eltwise::channel_affine_vjp_inplace(&mut gy, cx.xs(0), &scale.data)?;
        Ok(vec![(cx.node.inputs[0], gy)])
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let (scale, shift) = affine_of(cx.op())?;
        let x = cx.x(0)?;
        let out = cx.alloc_out()?;
        let s = cx.konst(&scale.data)?;
        let t = cx.konst(&shift.data)?;
        let total = x.len();
        let p = ChannelParams::of(x.shape());
        cx.rec.dispatch_1d(
            Kernel::ChannelAffine,
            &[x.into(), (&s).into(), (&t).into(), (&out).into()],
            p,
            total,
        )?;
        Ok(out)
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let (scale, _) = affine_of(cx.op())?;
        let gy = cx.gy;
        let s = cx.konst(&scale.data)?;
        let dx = cx.alloc(cx.xs(0)?)?;
        let p = ChannelParams::of(dx.shape());
        cx.rec.dispatch_1d(
            Kernel::ChannelScaleBwd,
            &[gy.into(), (&s).into(), (&dx).into()],
            p,
            dx.len(),
        )?;
        Ok(vec![(cx.node.inputs[0], dx)])
    }
}
