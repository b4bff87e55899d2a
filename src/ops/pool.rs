//! Pooling over H and W of `[N, C, H, W]`: windowed (`Op::Pool`: ONNX MaxPool, AveragePool) and
//! global (`Op::GlobalPool`: GlobalAveragePool, GlobalMaxPool); CPU `cpu/pool.rs`; GPU
//! `pool.wgsl` (`pool2d`, `global_pool` and their `_bwd`).

use super::{cpu_vjp_one, CpuGrads, GpuGrads, OpKernel};
use crate::backend::GradRule;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::cpu::pool as cpu_pool;
use crate::error::Result;
use crate::gpu::kernels::{Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::params::word;
use crate::gpu::shape::expect_rank4;
use crate::model::import::attrs::NodeCtx;
use crate::model::import::lower::{act4, window_2d, Importer, Lower};
use crate::model::{Node, Op, Pool, PoolKind, ValueId};

pub(crate) const ONNX: &[(&str, Lower)] = &[
    ("MaxPool", |imp, ctx| lower(imp, ctx, true)),
    ("AveragePool", |imp, ctx| lower(imp, ctx, false)),
    ("GlobalAveragePool", lower_global),
    ("GlobalMaxPool", lower_global),
];

fn lower(imp: &mut Importer, ctx: &NodeCtx, max: bool) -> Result<()> {
    let x = act4(imp, ctx)?;
    if max && imp.readers.get(ctx.out_name(1)).copied().unwrap_or(0) > 0 {
        return Err(ctx.err("MaxPool's indices output is not supported"));
    }
    let xs = imp.shape(x).to_vec();
    let kernel = match ctx.usizes("kernel_shape")? {
        Some(k) if k.len() == 2 && k.iter().all(|&v| v > 0) => [k[0], k[1]],
        _ => return Err(ctx.err("needs a 2-D 'kernel_shape'")),
    };
    let ceil = ctx.int("ceil_mode", 0) != 0;
    let win = window_2d(ctx, [xs[1], xs[2]], kernel, ceil)?;
    let out = vec![xs[0], win.out[0], win.out[1]];
    let kind = if max {
        PoolKind::Max
    } else {
        PoolKind::Avg {
            count_include_pad: ctx.int("count_include_pad", 0) != 0,
        }
    };
    let op = Op::Pool(Pool {
        kind,
        kernel,
        strides: win.strides,
        dilations: win.dilations,
        pads: win.pads,
    });
    imp.emit(&ctx.node.name, op, vec![x], ctx.out_name(0), out);
    Ok(())
}

fn lower_global(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act4(imp, ctx)?;
    let c = imp.shape(x)[0];
    let op = Op::GlobalPool {
        max: ctx.node.op_type == "GlobalMaxPool",
    };
    imp.emit(&ctx.node.name, op, vec![x], ctx.out_name(0), vec![c, 1, 1]);
    Ok(())
}

/// Windowed and global pooling.
pub(crate) struct PoolOp;

/// The window kernels' mode (`pool.wgsl` constants `POOL_CODE_*`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::NoUninit)]
pub(crate) enum PoolCode {
    Max = 0,
    /// Divides by the taps inside the input.
    Avg = 1,
    /// Divides by the taps inside the padded extent.
    AvgIncludePad = 2,
}

impl PoolCode {
    #[cfg(test)]
    pub(crate) const ALL: [PoolCode; 3] = [PoolCode::Max, PoolCode::Avg, PoolCode::AvgIncludePad];
}

impl From<PoolKind> for PoolCode {
    fn from(kind: PoolKind) -> PoolCode {
        match kind {
            PoolKind::Max => PoolCode::Max,
            PoolKind::Avg {
                count_include_pad: false,
            } => PoolCode::Avg,
            PoolKind::Avg {
                count_include_pad: true,
            } => PoolCode::AvgIncludePad,
        }
    }
}

/// The parameters of `pool2d` and `pool2d_bwd` (WGSL `Pool2dParams`): `total` elements written
/// (output for the forward, input for the backward), the input and output planes, the window.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::NoUninit)]
pub(crate) struct Pool2dParams {
    pub(crate) total: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) oh: u32,
    pub(crate) ow: u32,
    pub(crate) kernel: [u32; 2],
    pub(crate) strides: [u32; 2],
    pub(crate) dilations: [u32; 2],
    /// Top, left, bottom, right.
    pub(crate) pads: [u32; 4],
    pub(crate) kind: PoolCode,
}
impl TypedParams for Pool2dParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Pool2d, Kernel::Pool2dBwd];
}

impl Pool2dParams {
    /// `p` from `[N, C, H, W]` input `x` to output `o`, writing `total` elements.
    fn new(p: &Pool, total: usize, x: &[usize], o: &[usize]) -> Pool2dParams {
        let words = |v: [usize; 2]| v.map(word);
        Pool2dParams {
            total: word(total),
            h: word(x[2]),
            w: word(x[3]),
            oh: word(o[2]),
            ow: word(o[3]),
            kernel: words(p.kernel),
            strides: words(p.strides),
            dilations: words(p.dilations),
            pads: p.pads.map(word),
            kind: p.kind.into(),
        }
    }
}

/// Whether `global_pool` / `global_pool_bwd` average or take the maximum (WGSL
/// `GLOBAL_POOL_CODE_*`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::NoUninit)]
pub(crate) enum GlobalPoolCode {
    Avg = 0,
    Max = 1,
}

impl GlobalPoolCode {
    #[cfg(test)]
    pub(crate) const ALL: [GlobalPoolCode; 2] = [GlobalPoolCode::Avg, GlobalPoolCode::Max];
}

/// The parameters of `global_pool` and `global_pool_bwd` (WGSL `GlobalPoolParams`): `planes`
/// (N*C) of `hw` (H*W) elements.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::NoUninit)]
pub(crate) struct GlobalPoolParams {
    pub(crate) planes: u32,
    pub(crate) hw: u32,
    pub(crate) kind: GlobalPoolCode,
}
impl TypedParams for GlobalPoolParams {
    const KERNELS: &'static [Kernel] = &[Kernel::GlobalPool, Kernel::GlobalPoolBwd];
}

impl GlobalPoolParams {
    fn new(planes: usize, hw: usize, max: bool) -> GlobalPoolParams {
        GlobalPoolParams {
            planes: word(planes),
            hw: word(hw),
            kind: if max {
                GlobalPoolCode::Max
            } else {
                GlobalPoolCode::Avg
            },
        }
    }
}

impl OpKernel for PoolOp {
    fn shapes_ok(&self, op: &Op, inputs: &[&[usize]], out: &[usize]) -> bool {
        let x = inputs[0];
        match op {
            Op::GlobalPool { .. } => x.len() == 4 && out == [x[0], x[1], 1, 1],
            Op::Pool(_) => x.len() == 4 && out.len() == 4 && out[..2] == x[..2],
            _ => false,
        }
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let mut y = cx.out()?;
        let (x, xs) = (cx.x(0)?, cx.xs(0));
        match cx.op() {
            Op::Pool(p) => cpu_pool::pool2d(x, xs, p, &cx.out_shape, cx.par, &mut y)?,
            Op::GlobalPool { max } => cpu_pool::global_pool(x, xs, *max, &mut y)?,
            other => return Err(super::wrong_op("pool", other)),
        }
        Ok(y)
    }

    fn cpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        match &node.op {
            Op::Pool(p) if p.kind == PoolKind::Max => vec![node.inputs[0]],
            Op::GlobalPool { max: true } => vec![node.inputs[0]],
            _ => vec![],
        }
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let op = cx.op();
        let x = cx.saved(cx.node.inputs[0])?.unwrap_or(&[]);
        cpu_vjp_one(cx, |cx, gy, dx| match op {
            Op::Pool(p) => cpu_pool::pool2d_vjp(x, cx.xs(0), p, gy, &cx.out_shape, cx.par, dx),
            Op::GlobalPool { max } => cpu_pool::global_pool_vjp(x, cx.xs(0), *max, gy, dx),
            other => Err(super::wrong_op("pool", other)),
        })
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let x = cx.x(0)?;
        let out = cx.alloc_out()?;
        expect_rank4(x, &out)?;
        match cx.op() {
            Op::Pool(p) => {
                let (s, o) = (x.shape(), out.shape());
                let params = Pool2dParams::new(p, out.len(), s, o);
                cx.rec.dispatch_1d(
                    Kernel::Pool2d,
                    &[x.into(), (&out).into()],
                    params,
                    out.len(),
                )?;
            }
            Op::GlobalPool { max } => {
                let s = x.shape();
                let planes = s[0] * s[1];
                let p = GlobalPoolParams::new(planes, s[2] * s[3], *max);
                cx.rec
                    .dispatch_1d(Kernel::GlobalPool, &[x.into(), (&out).into()], p, planes)?;
            }
            other => return Err(super::wrong_op("pool", other)),
        }
        Ok(out)
    }

    fn gpu_saved(&self, node: &Node, rule: GradRule) -> Vec<ValueId> {
        self.cpu_saved(node, rule)
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let gy = cx.gy;
        let x_id = cx.node.inputs[0];
        let dx = cx.alloc(cx.xs(0)?)?;
        expect_rank4(&dx, gy)?;
        match cx.op() {
            Op::Pool(p) => {
                let fwd = if p.kind == PoolKind::Max {
                    cx.val(x_id)?
                } else {
                    gy
                };
                let (s, o) = (dx.shape(), gy.shape());
                let params = Pool2dParams::new(p, dx.len(), s, o);
                cx.rec.dispatch_1d(
                    Kernel::Pool2dBwd,
                    &[fwd.into(), gy.into(), (&dx).into()],
                    params,
                    dx.len(),
                )?;
            }
            Op::GlobalPool { max } => {
                let fwd = if *max { cx.val(x_id)? } else { gy };
                let s = dx.shape();
                let planes = s[0] * s[1];
                let p = GlobalPoolParams::new(planes, s[2] * s[3], *max);
                cx.rec.dispatch_1d(
                    Kernel::GlobalPoolBwd,
                    &[fwd.into(), gy.into(), (&dx).into()],
                    p,
                    planes,
                )?;
            }
            other => return Err(super::wrong_op("pool", other)),
        }
        Ok(vec![(x_id, dx)])
    }
}
