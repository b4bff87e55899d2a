//! 2-D convolution (`Op::Conv`): ONNX Conv; CPU `cpu/conv.rs` (+ depthwise); GPU `conv.wgsl`
//! (`conv_gemm`, `conv_direct`, `conv_bwd_gemm`, `conv_bwd_direct`). Takes a following
//! activation on the CPU and a following Relu/Clip on the GPU (fused into its epilogue).

use super::{cpu_vjp_one, CpuGrads, GpuGrads, OpKernel};
use crate::cpu::conv as cpu_conv;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::params::word;
use crate::gpu::shape::expect_rank4;
use crate::model::import::attrs::NodeCtx;
use crate::model::import::lower::{act, const_f32, dims, window_2d, Importer, Lower};
use crate::model::{Const, Conv, Op};

/// The parameters of all four conv kernels (WGSL `ConvParams`): input `[n, c, h, w]`, output
/// `[n, oc, oh, ow]`, kernel `kh × kw`, strides, dilations, the top/left pads, input and output
/// channels per group, and (forward only) whether to add the bias and clamp to `[lo, hi]` (the
/// fused Relu/Clip).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ConvParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    oc: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pt: i32,
    pl: i32,
    icg: u32,
    ocg: u32,
    has_bias: u32,
    has_act: u32,
    lo: f32,
    hi: f32,
}
impl TypedParams for ConvParams {
    const KERNELS: &'static [Kernel] = &[
        Kernel::ConvGemm,
        Kernel::ConvDirect,
        Kernel::ConvBwdGemm,
        Kernel::ConvBwdDirect,
    ];
}

impl ConvParams {
    /// `dims` = `[n, c, h, w, oc, oh, ow]`, `groups` = `[icg, ocg]`, `epilogue` =
    /// `(has_bias, has_act, lo, hi)`; kernel, strides, dilations and pads come from `conv`.
    fn new(
        dims: [usize; 7],
        conv: &Conv,
        groups: [usize; 2],
        epilogue: (bool, bool, f32, f32),
    ) -> Self {
        let [n, c, h, w, oc, oh, ow] = dims.map(word);
        let [kh, kw] = conv.kernel().map(word);
        let (has_bias, has_act, lo, hi) = epilogue;
        ConvParams {
            n,
            c,
            h,
            w,
            oc,
            oh,
            ow,
            kh,
            kw,
            sh: word(conv.strides[0]),
            sw: word(conv.strides[1]),
            dh: word(conv.dilations[0]),
            dw: word(conv.dilations[1]),
            pt: conv.pads[0] as i32,
            pl: conv.pads[1] as i32,
            icg: word(groups[0]),
            ocg: word(groups[1]),
            has_bias: has_bias as u32,
            has_act: has_act as u32,
            lo,
            hi,
        }
    }
}

pub(crate) const ONNX: &[(&str, Lower)] = &[("Conv", lower_conv)];

fn lower_conv(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let (ws, w) = const_f32(imp, ctx, 1)?.ok_or_else(|| ctx.err("Conv has no weight input"))?;
    if ws.len() != 4 || imp.shape(x).len() != 3 {
        return Err(ctx.err(format!(
            "only 2-D convolutions are supported (input [N, {}], weight [{}])",
            dims(imp.shape(x)),
            dims(&ws)
        )));
    }
    let bias = const_f32(imp, ctx, 2)?;
    let xs = imp.shape(x).to_vec();
    let groups = ctx.int("group", 1);
    let fits = usize::try_from(groups)
        .ok()
        .filter(|&g| g >= 1)
        .is_some_and(|g| ws[0].is_multiple_of(g) && ws[1].checked_mul(g) == Some(xs[0]));
    if !fits || ws.contains(&0) {
        return Err(ctx.err(format!(
            "weight [{}] with group {groups} does not fit {} input channels",
            dims(&ws),
            xs[0]
        )));
    }
    let kernel = [ws[2], ws[3]];
    if let Some(k) = ctx.usizes("kernel_shape")? {
        if k != kernel {
            return Err(ctx.err(format!(
                "kernel_shape {k:?} disagrees with the weight's [{}]",
                dims(&ws)
            )));
        }
    }
    let win = window_2d(ctx, [xs[1], xs[2]], kernel, false)?;
    let out = vec![ws[0], win.out[0], win.out[1]];
    if let Some((bs, b)) = &bias {
        if b.len() != ws[0] {
            return Err(ctx.err(format!(
                "bias of shape [{}] for {} output channels",
                dims(bs),
                ws[0]
            )));
        }
    }
    let op = Op::Conv(Conv {
        weight: Const::new(ws, w),
        bias: bias.map(|(_, b)| Const::new(vec![b.len()], b)),
        groups: groups as usize,
        strides: win.strides,
        dilations: win.dilations,
        pads: win.pads,
    });
    imp.emit(&ctx.node.name, op, vec![x], ctx.out_name(0), out);
    Ok(())
}

/// Conv (2-D, grouped and depthwise included).
pub(crate) struct ConvOp;

fn conv_of(op: &Op) -> Result<&Conv> {
    match op {
        Op::Conv(c) => Ok(c),
        other => Err(super::wrong_op("conv", other)),
    }
}

impl OpKernel for ConvOp {
    fn cpu_fuses_activation(&self) -> bool {
        true
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let c = conv_of(cx.op())?;
        let mut y = cx.out()?;
        cpu_conv::conv2d(cx.x(0)?, cx.xs(0), c, &cx.out_shape, cx.act, cx.par, &mut y)?;
        Ok(y)
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let c = conv_of(cx.op())?;
        cpu_vjp_one(cx, |cx, gy, dx| {
            cpu_conv::conv2d_vjp(gy, &cx.out_shape, c, cx.xs(0), cx.par, dx)
        })
    }

    fn gpu_fuses_clamp(&self) -> bool {
        true
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let c = conv_of(cx.op())?;
        let x = cx.x(0)?;
        let out = cx.alloc_out()?;
        expect_rank4(x, &out)?;
        let ws = &c.weight.shape;
        let (xs, os) = (x.shape(), out.shape());
        let (n, ch, h, w) = (xs[0], xs[1], xs[2], xs[3]);
        let (oc, oh, ow) = (os[1], os[2], os[3]);
        if ws.len() != 4
            || c.groups == 0
            || ws[0] != oc
            || ch != ws[1] * c.groups
            || oc % c.groups != 0
        {
            return Err(Error::internal(format!(
                "conv weight {ws:?} with {} groups does not fit {xs:?} -> {os:?}",
                c.groups
            )));
        }
        let icg = ws[1];
        let ocg = oc / c.groups;
        let wbuf = cx.konst(&c.weight.data)?;
        let bias = match &c.bias {
            Some(b) => cx.konst(&b.data)?,
            None => cx.dummy(),
        };
        let act = cx.act;
        let (lo, hi) = act.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let p = ConvParams::new(
            [n, ch, h, w, oc, oh, ow],
            c,
            [icg, ocg],
            (c.bias.is_some(), act.is_some(), lo, hi),
        );
        let binds = [x.into(), (&wbuf).into(), (&bias).into(), (&out).into()];
        if icg == 1 {
            cx.rec
                .dispatch_1d(Kernel::ConvDirect, &binds, p, out.len())?;
        } else {
            let m = n * oh * ow;
            cx.rec.dispatch(
                Kernel::ConvGemm,
                &binds,
                p,
                [m.div_ceil(64), ocg.div_ceil(64), c.groups],
            )?;
        }
        Ok(out)
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let c = conv_of(cx.op())?;
        let gy = cx.gy;
        let dx = cx.alloc(cx.xs(0)?)?;
        expect_rank4(&dx, gy)?;
        let ws = &c.weight.shape;
        let (xs, os) = (dx.shape(), gy.shape());
        let (n, ch, h, w) = (xs[0], xs[1], xs[2], xs[3]);
        let (oc, oh, ow) = (os[1], os[2], os[3]);
        if ws.len() != 4
            || c.groups == 0
            || ws[0] != oc
            || ch != ws[1] * c.groups
            || oc % c.groups != 0
        {
            return Err(Error::internal(format!(
                "conv weight {ws:?} with {} groups does not fit {xs:?} -> {os:?}",
                c.groups
            )));
        }
        let icg = ws[1];
        let ocg = oc / c.groups;
        let wbuf = cx.konst(&c.weight.data)?;
        // The forward's struct, so the shaders share one; bias and activation unused.
        let p = ConvParams::new(
            [n, ch, h, w, oc, oh, ow],
            c,
            [icg, ocg],
            (false, false, 0.0, 0.0),
        );
        let binds = [gy.into(), (&wbuf).into(), (&dx).into()];
        // The GEMM's 64-wide column tile spans input channels here, so a stem conv (3 channels)
        // would waste ~95% of it; the direct kernel is cheaper below a handful of channels.
        if icg <= DIRECT_MAX_ICG {
            cx.rec
                .dispatch_1d(Kernel::ConvBwdDirect, &binds, p, dx.len())?;
        } else {
            cx.rec.dispatch(
                Kernel::ConvBwdGemm,
                &binds,
                p,
                [(n * h * w).div_ceil(64), icg.div_ceil(64), c.groups],
            )?;
        }
        Ok(vec![(cx.node.inputs[0], dx)])
    }
}

/// Largest input channels per group for which the conv VJP uses the direct kernel.
const DIRECT_MAX_ICG: usize = 8;
