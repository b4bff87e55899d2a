//! One small function per forward kernel: validates its operands and records the dispatch.
//! Backward (VJP) kernels go beside these.

use super::exec::{expect_rank4, pad6, prod, MAX_RANK};
use super::kernels::{Bind, Kernel, Params, Recorder};
use super::{GpuBackend, GpuTensor};
use crate::error::{Error, Result};
use crate::model::{
    broadcast_strides, strides_of, Binary, BinaryKind, Conv, Linear, ReduceKind, Unary,
};

pub(crate) fn conv(
    gpu: &GpuBackend,
    rec: &mut Recorder,
    x: &GpuTensor,
    out: &GpuTensor,
    c: &Conv,
    act: Option<(f32, f32)>,
    what: &str,
) -> Result<()> {
    expect_rank4(x, out)?;
    let ws = &c.weight.shape;
    let (n, ch, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (oc, oh, ow) = (out.shape[1], out.shape[2], out.shape[3]);
    if ws.len() != 4 || c.groups == 0 || ws[0] != oc || ch != ws[1] * c.groups || oc % c.groups != 0
    {
        return Err(Error::internal(format!(
            "conv weight {ws:?} with {} groups does not fit {:?} -> {:?}",
            c.groups, x.shape, out.shape
        )));
    }
    let icg = ws[1];
    let ocg = oc / c.groups;
    let wbuf = gpu.const_buffer(&c.weight.data, what)?;
    let bias = match &c.bias {
        Some(b) => gpu.const_buffer(&b.data, what)?,
        None => gpu.dummy.clone(),
    };
    let (lo, hi) = act.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let p = Params::new()
        .us(&[n, ch, h, w, oc, oh, ow, ws[2], ws[3]])
        .us(&c.strides)
        .us(&c.dilations)
        .i(c.pads[0] as i64)
        .i(c.pads[1] as i64)
        .us(&[icg, ocg, c.bias.is_some() as usize, act.is_some() as usize])
        .f(lo)
        .f(hi);
    let binds = [x.into(), (&wbuf).into(), (&bias).into(), out.into()];
    if icg == 1 {
        rec.dispatch_1d(Kernel::ConvDirect, &binds, p, out.len())
    } else {
        let m = n * oh * ow;
        rec.dispatch(
            Kernel::ConvGemm,
            &binds,
            p,
            [m.div_ceil(64), ocg.div_ceil(64), c.groups],
        )
    }
}

pub(crate) fn linear(
    gpu: &GpuBackend,
    rec: &mut Recorder,
    x: &GpuTensor,
    out: &GpuTensor,
    l: &Linear,
    what: &str,
) -> Result<()> {
    let k = *x.shape.last().unwrap_or(&1);
    let o = l.weight.shape[0];
    if l.weight.shape.len() != 2 || l.weight.shape[1] != k || out.shape.last() != Some(&o) {
        return Err(Error::internal(format!(
            "linear weight {:?} for {:?}",
            l.weight.shape, x.shape
        )));
    }
    let rows = x.len() / k.max(1);
    let wbuf = gpu.const_buffer(&l.weight.data, what)?;
    let bias = match &l.bias {
        Some(b) => gpu.const_buffer(&b.data, what)?,
        None => gpu.dummy.clone(),
    };
    let p = Params::new().us(&[rows, o, k, l.bias.is_some() as usize]);
    let binds = [x.into(), (&wbuf).into(), (&bias).into(), out.into()];
    rec.dispatch(
        Kernel::Linear,
        &binds,
        p,
        [rows.div_ceil(64), o.div_ceil(64), 1],
    )
}

pub(crate) fn unary_code(u: Unary) -> (usize, f32, f32) {
    match u {
        Unary::Relu => (0, 0.0, 0.0),
        Unary::LeakyRelu { alpha } => (1, alpha, 0.0),
        Unary::Clip { min, max } => (2, min, max),
        Unary::Sigmoid => (3, 0.0, 0.0),
        Unary::Tanh => (4, 0.0, 0.0),
        Unary::HardSigmoid { alpha, beta } => (5, alpha, beta),
        Unary::HardSwish => (6, 0.0, 0.0),
    }
}

pub(crate) fn unary(rec: &mut Recorder, x: &GpuTensor, out: &GpuTensor, u: Unary) -> Result<()> {
    let (code, a, b) = unary_code(u);
    let p = Params::new().u(x.len()).u(code).f(a).f(b);
    rec.dispatch_1d(Kernel::Unary, &[x.into(), out.into()], p, x.len())
}

/// `out` = `x` reduced over `axes` (never the batch axis 0), in order from the first element of
/// each group.
pub(crate) fn reduce(
    rec: &mut Recorder,
    x: &GpuTensor,
    out: &GpuTensor,
    kind: ReduceKind,
    axes: &[usize],
) -> Result<()> {
    let offset = MAX_RANK - x.shape.len();
    let mut mask = 0usize;
    for &a in axes {
        if a == 0 || a >= x.shape.len() {
            return Err(Error::internal(format!("reduce axis {a} of {:?}", x.shape)));
        }
        mask |= 1 << (a + offset);
    }
    let count: usize = axes.iter().map(|&a| x.shape[a]).product();
    let code = match kind {
        ReduceKind::Sum => 0,
        ReduceKind::Mean => 1,
        ReduceKind::Max => 2,
    };
    let p = Params::new()
        .u(out.len())
        .u(count)
        .u(code)
        .u(mask)
        .us(&pad6(&x.shape, 1))
        .us(&pad6(&strides_of(&x.shape), 0));
    rec.dispatch_1d(Kernel::Reduce, &[x.into(), out.into()], p, out.len())
}

pub(crate) fn binary(
    gpu: &GpuBackend,
    rec: &mut Recorder,
    x: &GpuTensor,
    y: Option<&GpuTensor>,
    out: &GpuTensor,
    b: &Binary,
    what: &str,
) -> Result<()> {
    let os = &out.shape;
    let (lhs, lshape, rhs, rshape): (Bind, Vec<usize>, Bind, Vec<usize>) = match (&b.konst, y) {
        (None, Some(y)) => (x.into(), x.shape.clone(), y.into(), y.shape.clone()),
        (Some(k), _) => {
            let kb: Bind = (&gpu.const_buffer(&k.data, what)?).into();
            if b.konst_is_lhs {
                (kb, k.shape.clone(), x.into(), x.shape.clone())
            } else {
                (x.into(), x.shape.clone(), kb, k.shape.clone())
            }
        }
        (None, None) => return Err(Error::internal("binary op without a second operand")),
    };
    for s in [&lshape, &rshape] {
        let fits = s.len() <= os.len()
            && s.iter()
                .rev()
                .zip(os.iter().rev())
                .all(|(&a, &o)| a == o || a == 1);
        if !fits {
            return Err(Error::internal(format!(
                "operand {s:?} does not broadcast to {os:?}"
            )));
        }
    }
    let code = match b.kind {
        BinaryKind::Add => 0,
        BinaryKind::Sub => 1,
        BinaryKind::Mul => 2,
        BinaryKind::Div => 3,
    };
    let p = Params::new()
        .u(out.len())
        .u(code)
        .at(4)
        .us(&pad6(os, 1))
        .us(&pad6(&broadcast_strides(os, &lshape), 0))
        .us(&pad6(&broadcast_strides(os, &rshape), 0));
    rec.dispatch_1d(Kernel::Binary, &[lhs, rhs, out.into()], p, out.len())
}

/// Strided gather into a dense output (`out_stride` = the output's own strides).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gather(
    rec: &mut Recorder,
    src: &GpuTensor,
    dst: &GpuTensor,
    shape: &[usize],
    start: &[i64],
    step: &[i64],
    in_dim: &[usize],
    in_stride: &[usize],
    pad: f32,
) -> Result<()> {
    gather_to(
        rec,
        src,
        dst,
        shape,
        start,
        step,
        in_dim,
        in_stride,
        &strides_of(shape),
        0,
        pad,
    )
}

/// The general strided copy of `layout.wgsl`: walks `shape`, reads `src` at
/// `sum((start + i*step) * in_stride)` (or `pad` outside `in_dim`), writes `dst` at
/// `out_base + sum(i * out_stride)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gather_to(
    rec: &mut Recorder,
    src: &GpuTensor,
    dst: &GpuTensor,
    shape: &[usize],
    start: &[i64],
    step: &[i64],
    in_dim: &[usize],
    in_stride: &[usize],
    out_stride: &[usize],
    out_base: usize,
    pad: f32,
) -> Result<()> {
    let r = shape.len();
    if r > MAX_RANK
        || [
            start.len(),
            step.len(),
            in_dim.len(),
            in_stride.len(),
            out_stride.len(),
        ]
        .iter()
        .any(|&l| l != r)
    {
        return Err(Error::internal(format!(
            "gather over {shape:?} with mismatched axes"
        )));
    }
    let total = prod(shape);
    let p = Params::new()
        .u(total)
        .u(0)
        .u(out_base)
        .f(pad)
        .us(&pad6(shape, 1))
        .is(&pad6(start, 0))
        .is(&pad6(step, 1))
        .us(&pad6(in_dim, 1))
        .us(&pad6(in_stride, 0))
        .us(&pad6(out_stride, 0));
    rec.dispatch_1d(Kernel::Gather, &[src.into(), dst.into()], p, total)
}
