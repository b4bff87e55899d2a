//! Data movement without arithmetic: `Op::Transpose`, `Op::Concat`, `Op::Slice` (Slice and each
//! output of Split) and `Op::Pad`; CPU `cpu/layout.rs`; GPU the strided `gather` of
//! `layout.wgsl` (and `slice_bwd`). Reshape-likes are in `reshape.rs`.

use super::{cpu_vjp_one, CpuGrads, GpuGrads, OpKernel};
use crate::cpu::layout as cpu_layout;
use crate::cpu::node::{numel, CpuFwd, CpuVjp};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::ops::{gather, gather_to};
use crate::gpu::params::word;
use crate::gpu::shape::{axes, signed_axes, Axes, SignedAxes};
use crate::model::import::attrs::NodeCtx;
use crate::model::import::lower::{
    act, axis_of, const_f32, const_ints, dims, emit_slice, feature_axis, Importer, Lower,
};
use crate::model::{strides_of, Graph, Node, Op, ValueId};

/// `slice_bwd`'s parameters (WGSL `SliceBwdParams`): x's shape, the slice's starts and steps,
/// dy's shape and strides.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SliceBwdParams {
    pub(crate) total: u32,
    /// WGSL starts the axis arrays on a 16-byte boundary.
    pub(crate) _pad: [u32; 3],
    pub(crate) shape: Axes,
    pub(crate) start: SignedAxes,
    pub(crate) step: SignedAxes,
    pub(crate) dy_shape: Axes,
    pub(crate) dy_strides: Axes,
}
impl TypedParams for SliceBwdParams {
    const KERNELS: &'static [Kernel] = &[Kernel::SliceBwd];
}

pub(crate) const ONNX: &[(&str, Lower)] = &[
    ("Transpose", transpose),
    ("Concat", concat),
    ("Split", split),
    ("Slice", slice),
    ("Pad", pad),
];

fn transpose(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let perm = ctx
        .usizes("perm")?
        .unwrap_or_else(|| (0..rank).rev().collect());
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..rank).collect::<Vec<_>>() {
        return Err(ctx.err(format!("perm {perm:?} is not a permutation of {rank} axes")));
    }
    if perm[0] != 0 {
        return Err(ctx.err(format!("perm {perm:?} moves the batch axis")));
    }
    let out = perm[1..].iter().map(|&p| xs[p - 1]).collect();
    imp.emit(
        &ctx.node.name,
        Op::Transpose { perm },
        vec![x],
        ctx.out_name(0),
        out,
    );
    Ok(())
}

fn concat(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let inputs: Vec<ValueId> = (0..ctx.node.input.len())
        .map(|i| {
            act(imp, ctx, i)
                .map_err(|_| ctx.err("Concat of an activation with a constant is not supported"))
        })
        .collect::<Result<_>>()?;
    let first = match inputs.first() {
        Some(&v) => imp.shape(v).to_vec(),
        None => return Err(ctx.err("Concat needs at least one input")),
    };
    let axis = feature_axis(ctx, ctx.int("axis", 1), first.len() + 1)?;
    let mut out = first.clone();
    out[axis - 1] = 0;
    for &v in &inputs {
        let s = imp.shape(v);
        let same_rest =
            s.len() == first.len() && (0..s.len()).all(|d| d == axis - 1 || s[d] == first[d]);
        if !same_rest {
            return Err(ctx.err(format!(
                "inputs [N, {}] and [N, {}] differ off the concat axis",
                dims(&first),
                dims(s)
            )));
        }
        // Checked: many large inputs could overflow before the importer's size check.
        out[axis - 1] = out[axis - 1]
            .checked_add(s[axis - 1])
            .ok_or_else(|| ctx.err("the concatenated axis overflows"))?;
    }
    imp.emit(
        &ctx.node.name,
        Op::Concat { axis },
        inputs,
        ctx.out_name(0),
        out,
    );
    Ok(())
}

fn split(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let axis = feature_axis(ctx, ctx.int("axis", 0), xs.len() + 1)?;
    let dim = xs[axis - 1];
    let outputs = ctx.node.output.len();
    let sizes: Vec<usize> = match ctx.usizes("split")? {
        Some(s) => s,
        None => match const_ints(imp, ctx, 1)? {
            Some(s) => s.into_iter().map(|v| v.max(0) as usize).collect(),
            None => {
                // More parts than outputs cannot match; checking first keeps a hostile
                // `num_outputs` from sizing the list below.
                let n = ctx.int("num_outputs", outputs as i64);
                if n != outputs as i64 || outputs == 0 {
                    return Err(ctx.err(format!(
                        "num_outputs {n} does not match the node's {outputs} outputs"
                    )));
                }
                let n = outputs;
                let chunk = dim.div_ceil(n);
                (0..n)
                    .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                    .collect()
            }
        },
    };
    let total = sizes.iter().try_fold(0usize, |acc, &v| acc.checked_add(v));
    if sizes.len() != outputs || total != Some(dim) {
        return Err(ctx.err(format!(
            "split sizes {sizes:?} do not divide axis {axis} of size {dim} into {outputs} outputs"
        )));
    }
    let mut offset = 0;
    for (i, &len) in sizes.iter().enumerate() {
        let name = ctx.out_name(i).to_string();
        if !name.is_empty() {
            emit_slice(imp, ctx, x, &name, &[(axis, offset as i64, 1, len)])?;
        }
        offset += len;
    }
    Ok(())
}

fn slice(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let (starts, ends, axes, steps) = if imp.opset < 10 {
        (ctx.ints("starts"), ctx.ints("ends"), ctx.ints("axes"), None)
    } else {
        (
            const_ints(imp, ctx, 1)?,
            const_ints(imp, ctx, 2)?,
            const_ints(imp, ctx, 3)?,
            const_ints(imp, ctx, 4)?,
        )
    };
    let (starts, ends) = starts
        .zip(ends)
        .ok_or_else(|| ctx.err("Slice needs constant starts and ends"))?;
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if axes.len() != starts.len() || ends.len() != starts.len() || steps.len() != starts.len() {
        return Err(ctx.err("starts, ends, axes and steps differ in length"));
    }
    let mut spans = Vec::new();
    for i in 0..starts.len() {
        let axis = axis_of(ctx, axes[i], rank)?;
        let step = steps[i];
        if step == 0 {
            return Err(ctx.err("Slice step 0"));
        }
        if axis == 0 {
            if starts[i] == 0 && step == 1 && ends[i] >= i32::MAX as i64 {
                continue;
            }
            return Err(ctx.err("slicing the batch axis is not supported"));
        }
        let d = xs[axis - 1] as i64;
        let norm = |v: i64| if v < 0 { v + d } else { v };
        let (s, e) = if step > 0 {
            (norm(starts[i]).clamp(0, d), norm(ends[i]).clamp(0, d))
        } else {
            (
                norm(starts[i]).clamp(0, d - 1),
                norm(ends[i]).clamp(-1, d - 1),
            )
        };
        // `s` and `e` are clamped into [-1, d], so only the step can be extreme (i64::MIN has
        // no negation: unsigned_abs).
        let span = if step > 0 { e - s } else { s - e };
        let len = (span.max(0) as u64).div_ceil(step.unsigned_abs()) as usize;
        spans.push((axis, s, step, len));
    }
    let name = ctx.out_name(0).to_string();
    emit_slice(imp, ctx, x, &name, &spans)
}

fn pad(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let mode = ctx.string("mode").unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(ctx.err(format!(
            "Pad mode '{mode}' is not supported (only 'constant')"
        )));
    }
    let (raw, value, axes) = if imp.opset < 11 {
        (ctx.ints("pads"), ctx.float("value", 0.0), None)
    } else {
        let value = match const_f32(imp, ctx, 2)? {
            Some((_, v)) if v.len() == 1 => v[0],
            Some(_) => return Err(ctx.err("constant_value must be a scalar")),
            None => 0.0,
        };
        (const_ints(imp, ctx, 1)?, value, const_ints(imp, ctx, 3)?)
    };
    let raw = raw.ok_or_else(|| ctx.err("Pad needs constant pads"))?;
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| axis_of(ctx, a, rank))
            .collect::<Result<_>>()?,
        None => (0..rank).collect(),
    };
    if raw.len() != 2 * axes.len() {
        return Err(ctx.err(format!(
            "expects {} pads, got {}",
            2 * axes.len(),
            raw.len()
        )));
    }
    let mut pads = vec![(0usize, 0usize); rank];
    for (i, &a) in axes.iter().enumerate() {
        let (b, e) = (raw[i], raw[i + axes.len()]);
        if b < 0 || e < 0 {
            return Err(ctx.err("negative pads (cropping) are not supported"));
        }
        pads[a] = (b as usize, e as usize);
    }
    if pads[0] != (0, 0) {
        return Err(ctx.err("padding the batch axis is not supported"));
    }
    let out = (1..rank)
        .map(|d| {
            xs[d - 1]
                .checked_add(pads[d].0)
                .and_then(|v| v.checked_add(pads[d].1))
                .ok_or_else(|| ctx.err(format!("pads {raw:?} overflow the padded shape")))
        })
        .collect::<Result<Vec<usize>>>()?;
    imp.emit(
        &ctx.node.name,
        Op::Pad { pads, value },
        vec![x],
        ctx.out_name(0),
        out,
    );
    Ok(())
}

/// Ops that only move data: Transpose, Concat, Slice, Pad.
pub(crate) struct LayoutOp;

impl OpKernel for LayoutOp {
    fn arity_ok(&self, op: &Op, inputs: usize) -> bool {
        match op {
            Op::Concat { .. } => inputs > 0,
            _ => inputs == 1,
        }
    }

    fn mixes_batch(&self, _g: &Graph, n: &Node) -> bool {
        match &n.op {
            Op::Transpose { perm } => perm.first() != Some(&0),
            Op::Concat { axis } => *axis == 0,
            Op::Slice { starts, steps } => starts.first() != Some(&0) || steps.first() != Some(&1),
            Op::Pad { pads, .. } => pads.first() != Some(&(0, 0)),
            _ => false,
        }
    }

    fn shapes_ok(&self, op: &Op, inputs: &[&[usize]], out: &[usize]) -> bool {
        let x = inputs[0];
        match op {
            Op::Transpose { perm } => {
                let mut seen = perm.clone();
                seen.sort_unstable();
                seen == (0..x.len()).collect::<Vec<_>>()
                    && perm
                        .iter()
                        .enumerate()
                        .all(|(d, &p)| out.get(d) == Some(&x[p]))
                    && out.len() == x.len()
            }
            Op::Concat { axis } => {
                *axis < out.len()
                    && inputs.iter().all(|s| {
                        s.len() == out.len() && (0..s.len()).all(|d| d == *axis || s[d] == out[d])
                    })
                    && inputs.iter().map(|s| s[*axis]).sum::<usize>() == out[*axis]
            }
            Op::Slice { starts, steps } => {
                starts.len() == x.len() && steps.len() == x.len() && out.len() == x.len()
            }
            Op::Pad { pads, .. } => {
                pads.len() == x.len()
                    && out.len() == x.len()
                    && (0..x.len()).all(|d| out[d] == x[d] + pads[d].0 + pads[d].1)
            }
            _ => false,
        }
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let op = cx.op();
        let mut y = cx.out()?;
        let ys = &cx.out_shape;
        if let Op::Concat { axis } = op {
            let inputs = (0..cx.node.inputs.len())
                .map(|k| Ok((cx.x(k)?, cx.xs(k))))
                .collect::<Result<Vec<_>>>()?;
            cpu_layout::concat(&inputs, *axis, ys, &mut y)?;
            return Ok(y);
        }
        let (x, xs) = (cx.x(0)?, cx.xs(0));
        match op {
            Op::Transpose { perm } => {
                if perm
                    .iter()
                    .map(|&p| xs.get(p).copied())
                    .collect::<Option<Vec<_>>>()
                    .as_deref()
                    != Some(&ys[..])
                {
                    return Err(Error::internal(format!("Transpose {xs:?} -> {ys:?}")));
                }
                cpu_layout::transpose(x, xs, perm, &mut y)?
            }
            Op::Slice { starts, steps } => cpu_layout::slice(x, xs, starts, steps, ys, &mut y)?,
            Op::Pad { pads, value } => cpu_layout::pad(x, xs, pads, *value, &mut y)?,
            other => return Err(super::wrong_op("layout", other)),
        }
        Ok(y)
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let op = cx.op();
        let node = cx.node;
        match op {
            Op::Concat { axis } => {
                let mut out = vec![];
                let mut offset = 0;
                for (k, &v) in node.inputs.iter().enumerate() {
                    let s = cx.xs(k).to_vec();
                    if cx.wanted[k] {
                        let mut dx = cx.buf(numel(&s))?;
                        cpu_layout::concat_vjp(
                            cx.gy()?,
                            &cx.out_shape,
                            *axis,
                            offset,
                            &s,
                            &mut dx,
                        )?;
                        out.push((v, dx));
                    }
                    offset += s.get(*axis).copied().unwrap_or(0);
                }
                Ok(out)
            }
            _ => cpu_vjp_one(cx, |cx, gy, dx| {
                let (xs, ys) = (cx.xs(0), &cx.out_shape);
                match op {
                    Op::Transpose { perm } => cpu_layout::transpose_vjp(gy, xs, perm, dx),
                    Op::Slice { starts, steps } => {
                        cpu_layout::slice_vjp(gy, ys, starts, steps, xs, dx)
                    }
                    Op::Pad { pads, .. } => cpu_layout::pad_vjp(gy, xs, pads, dx),
                    other => Err(super::wrong_op("layout", other)),
                }
            }),
        }
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let x = cx.x(0)?;
        let out = cx.alloc_out()?;
        let o = out.shape().to_vec();
        let xs = x.shape();
        match cx.op() {
            Op::Transpose { perm } => {
                if perm.len() != xs.len() {
                    return Err(Error::internal(format!("perm {perm:?} for {xs:?}")));
                }
                let st = strides_of(xs);
                let in_stride: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
                let r = o.len();
                gather(
                    cx.rec,
                    x,
                    &out,
                    &o,
                    &vec![0; r],
                    &vec![1; r],
                    &o,
                    &in_stride,
                    0.0,
                )?;
            }
            Op::Concat { axis } => {
                let ost = strides_of(&o);
                let mut offset = 0;
                for k in 0..cx.node.inputs.len() {
                    let src = cx.x(k)?;
                    let s = src.shape().to_vec();
                    let n = s.len();
                    let base = offset * ost[*axis];
                    gather_to(
                        cx.rec,
                        src,
                        &out,
                        &s,
                        &vec![0; n],
                        &vec![1; n],
                        &s,
                        &strides_of(&s),
                        &ost,
                        base,
                        0.0,
                    )?;
                    offset += s[*axis];
                }
            }
            Op::Slice { starts, steps } => {
                gather(cx.rec, x, &out, &o, starts, steps, xs, &strides_of(xs), 0.0)?;
            }
            Op::Pad { pads, value } => {
                let starts: Vec<i64> = pads.iter().map(|&(b, _)| -(b as i64)).collect();
                let r = o.len();
                gather(
                    cx.rec,
                    x,
                    &out,
                    &o,
                    &starts,
                    &vec![1; r],
                    xs,
                    &strides_of(xs),
                    *value,
                )?;
            }
            other => return Err(super::wrong_op("layout", other)),
        }
        Ok(out)
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let gy = cx.gy;
        let node = cx.node;
        let xs = cx.xs(0)?;
        let r = xs.len();
        let gs = gy.shape().to_vec();
        let one = |dx| Ok(vec![(node.inputs[0], dx)]);
        match cx.op() {
            Op::Transpose { perm } => {
                if perm.len() != r || perm.iter().any(|&p| p >= r) {
                    return Err(Error::internal(format!("perm {perm:?} for {xs:?}")));
                }
                // dx[c] = dy[c permuted]: x axis perm[d] walks dy axis d.
                let gst = strides_of(&gs);
                let mut in_stride = vec![0; r];
                for (d, &p) in perm.iter().enumerate() {
                    in_stride[p] = gst[d];
                }
                let dx = cx.alloc(xs.clone())?;
                gather(
                    cx.rec,
                    gy,
                    &dx,
                    &xs,
                    &vec![0; r],
                    &vec![1; r],
                    &xs,
                    &in_stride,
                    0.0,
                )?;
                one(dx)
            }
            Op::Concat { axis } => {
                let mut out = Vec::new();
                let mut offset = 0i64;
                let r = gs.len();
                for (k, &v) in node.inputs.iter().enumerate() {
                    let s = cx.xs(k)?;
                    if s.len() != r || *axis >= r {
                        return Err(Error::internal(format!("concat of {s:?} on axis {axis}")));
                    }
                    let mut start = vec![0i64; r];
                    start[*axis] = offset;
                    let dx = cx.alloc(s.clone())?;
                    gather(
                        cx.rec,
                        gy,
                        &dx,
                        &s,
                        &start,
                        &vec![1; r],
                        &gs,
                        &strides_of(&gs),
                        0.0,
                    )?;
                    offset += s[*axis] as i64;
                    out.push((v, dx));
                }
                Ok(out)
            }
            Op::Slice { starts, steps } => {
                if starts.len() != r || steps.len() != r || steps.contains(&0) {
                    return Err(Error::internal(format!(
                        "slice {starts:?} / {steps:?} of {xs:?}"
                    )));
                }
                let dx = cx.alloc(xs.clone())?;
                let p = SliceBwdParams {
                    total: word(dx.len()),
                    _pad: [0; 3],
                    shape: axes(&xs, 1),
                    start: signed_axes(starts, 0),
                    step: signed_axes(steps, 1),
                    dy_shape: axes(&gs, 1),
                    dy_strides: axes(&strides_of(&gs), 0),
                };
                cx.rec
                    .dispatch_1d(Kernel::SliceBwd, &[gy.into(), (&dx).into()], p, dx.len())?;
                one(dx)
            }
            Op::Pad { pads, .. } => {
                if pads.len() != r {
                    return Err(Error::internal(format!("pads {pads:?} for {xs:?}")));
                }
                let start: Vec<i64> = pads.iter().map(|&(b, _)| b as i64).collect();
                let dx = cx.alloc(xs.clone())?;
                gather(
                    cx.rec,
                    gy,
                    &dx,
                    &xs,
                    &start,
                    &vec![1; r],
                    &gs,
                    &strides_of(&gs),
                    0.0,
                )?;
                one(dx)
            }
            other => Err(super::wrong_op("layout", other)),
        }
    }
}
