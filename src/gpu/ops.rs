//! Recording helpers shared by the op modules (`crate::ops`) and the GPU's own composite ops
//! (`combine.rs`, `embed.rs`): validate operands and record one dispatch of a general kernel
//! (element-wise, reduction, strided gather). This file imports no op module.

use super::kernels::{Bind, Kernel, Recorder, TypedParams};
use super::params::word;
use super::shape::{axes, prod, signed_axes, Axes, SignedAxes, MAX_RANK};
use super::{GpuBackend, GpuTensor};
use crate::error::{Error, Result};
use crate::model::{
    broadcast_strides, strides_of, Binary, BinaryKind, ReduceKind, Unary, UnaryCode,
};
use bytemuck::NoUninit;

/// `unary`'s parameters (WGSL `UnaryParams`): `a` and `b` as [`Unary::code`] gives them.
#[repr(C)]
#[derive(Clone, Copy, NoUninit)]
pub(crate) struct UnaryParams {
    pub(crate) total: u32,
    pub(crate) op: UnaryCode,
    pub(crate) a: f32,
    pub(crate) b: f32,
}
impl TypedParams for UnaryParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Unary];
}

pub(crate) fn unary(rec: &mut Recorder, x: &GpuTensor, out: &GpuTensor, u: Unary) -> Result<()> {
    let (op, a, b) = u.code();
    let p = UnaryParams {
        total: word(x.len()),
        op,
        a,
        b,
    };
    rec.dispatch_1d(Kernel::Unary, &[x.into(), out.into()], p, x.len())
}

/// The reduction of `reduce` / `reduce_bwd` in `reduce.wgsl` (WGSL constants `REDUCE_CODE_*`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, NoUninit)]
pub(crate) enum ReduceCode {
    Sum = 0,
    Mean = 1,
    Max = 2,
}

impl ReduceCode {
    #[cfg(test)]
    pub(crate) const ALL: [ReduceCode; 3] = [ReduceCode::Sum, ReduceCode::Mean, ReduceCode::Max];
}

impl From<ReduceKind> for ReduceCode {
    fn from(kind: ReduceKind) -> ReduceCode {
        match kind {
            ReduceKind::Sum => ReduceCode::Sum,
            ReduceKind::Mean => ReduceCode::Mean,
            ReduceKind::Max => ReduceCode::Max,
        }
    }
}

/// The parameters of `reduce` and `reduce_bwd` (WGSL `ReduceParams`): `total` output elements,
/// each over `count` inputs; bit `d` of `mask` marks reduced (rank-6 padded) axis `d`; the
/// input's shape and strides.
#[repr(C)]
#[derive(Clone, Copy, NoUninit)]
pub(crate) struct ReduceParams {
    pub(crate) total: u32,
    pub(crate) count: u32,
    pub(crate) kind: ReduceCode,
    pub(crate) mask: u32,
    pub(crate) shape: Axes,
    pub(crate) strides: Axes,
}
impl TypedParams for ReduceParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Reduce, Kernel::ReduceBwd];
}

impl ReduceParams {
    /// `x_shape` reduced over the axes of `mask` to `total` elements of `count` inputs each.
    pub(crate) fn new(
        total: usize,
        count: usize,
        kind: ReduceKind,
        mask: usize,
        x_shape: &[usize],
    ) -> ReduceParams {
        ReduceParams {
            total: word(total),
            count: word(count),
            kind: kind.into(),
            mask: word(mask),
            shape: axes(x_shape, 1),
            strides: axes(&strides_of(x_shape), 0),
        }
    }
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
    let p = ReduceParams::new(out.len(), count, kind, mask, &x.shape);
    rec.dispatch_1d(Kernel::Reduce, &[x.into(), out.into()], p, out.len())
}

/// The op code of `binary` / `binary_bwd` in `eltwise.wgsl` (WGSL constants `BINARY_OP_*`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, NoUninit)]
pub(crate) enum BinaryCode {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
}

impl BinaryCode {
    #[cfg(test)]
    pub(crate) const ALL: [BinaryCode; 4] = [
        BinaryCode::Add,
        BinaryCode::Sub,
        BinaryCode::Mul,
        BinaryCode::Div,
    ];
}

impl From<BinaryKind> for BinaryCode {
    fn from(kind: BinaryKind) -> BinaryCode {
        match kind {
            BinaryKind::Add => BinaryCode::Add,
            BinaryKind::Sub => BinaryCode::Sub,
            BinaryKind::Mul => BinaryCode::Mul,
            BinaryKind::Div => BinaryCode::Div,
        }
    }
}

/// `binary`'s parameters (WGSL `BinaryParams`): the output shape and each operand's broadcast
/// strides (0 on broadcast axes).
#[repr(C)]
#[derive(Clone, Copy, NoUninit)]
pub(crate) struct BinaryParams {
    pub(crate) total: u32,
    pub(crate) op: BinaryCode,
    /// WGSL starts the axis arrays on a 16-byte boundary.
    pub(crate) _pad: [u32; 2],
    pub(crate) shape: Axes,
    pub(crate) lhs_strides: Axes,
    pub(crate) rhs_strides: Axes,
}
impl TypedParams for BinaryParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Binary];
}

/// `out = x ∘ y` (or against `b`'s constant), uploading the constant if there is one.
pub(crate) fn binary_op(
    gpu: &GpuBackend,
    rec: &mut Recorder,
    x: &GpuTensor,
    y: Option<&GpuTensor>,
    out: &GpuTensor,
    b: &Binary,
    what: &str,
) -> Result<()> {
    let konst = match &b.konst {
        Some(k) => Some(gpu.const_buffer(&k.data, what)?),
        None => None,
    };
    binary(rec, x, y, konst.as_ref(), out, b)
}

/// `out = x ∘ y`, or `x ∘ konst` / `konst ∘ x` when `b` has a constant (already uploaded as
/// `konst`).
pub(crate) fn binary(
    rec: &mut Recorder,
    x: &GpuTensor,
    y: Option<&GpuTensor>,
    konst: Option<&wgpu::Buffer>,
    out: &GpuTensor,
    b: &Binary,
) -> Result<()> {
    let os = &out.shape;
    let (lhs, lshape, rhs, rshape): (Bind, Vec<usize>, Bind, Vec<usize>) = match (&b.konst, y) {
        (None, Some(y)) => (x.into(), x.shape.clone(), y.into(), y.shape.clone()),
        (Some(k), _) => {
            let kb: Bind = konst
                .ok_or_else(|| Error::internal("binary op constant not uploaded"))?
                .into();
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
    let p = BinaryParams {
        total: word(out.len()),
        op: b.kind.into(),
        _pad: [0; 2],
        shape: axes(os, 1),
        lhs_strides: axes(&broadcast_strides(os, &lshape), 0),
        rhs_strides: axes(&broadcast_strides(os, &rshape), 0),
    };
    rec.dispatch_1d(Kernel::Binary, &[lhs, rhs, out.into()], p, out.len())
}

/// `gather`'s parameters (WGSL `GatherParams`): see [`gather_to`].
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct GatherParams {
    pub(crate) total: u32,
    pub(crate) in_base: u32,
    pub(crate) out_base: u32,
    pub(crate) pad: f32,
    pub(crate) shape: Axes,
    pub(crate) start: SignedAxes,
    pub(crate) step: SignedAxes,
    pub(crate) in_dim: Axes,
    pub(crate) in_stride: Axes,
    pub(crate) out_stride: Axes,
}
impl TypedParams for GatherParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Gather];
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
    let p = GatherParams {
        total: word(total),
        in_base: 0,
        out_base: word(out_base),
        pad,
        shape: axes(shape, 1),
        start: signed_axes(start, 0),
        step: signed_axes(step, 1),
        in_dim: axes(in_dim, 1),
        in_stride: axes(in_stride, 0),
        out_stride: axes(out_stride, 0),
    };
    rec.dispatch_1d(Kernel::Gather, &[src.into(), dst.into()], p, total)
}
