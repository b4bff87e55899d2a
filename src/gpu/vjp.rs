//! One vector-Jacobian product per op: given dy for a node's output, records the kernels that
//! produce its inputs' gradients (activation gradients only, never weight gradients).

use super::exec::{expect_rank4, pad6, prod, MAX_RANK};
use super::kernels::{Bind, Kernel, Params, Recorder};
use super::ops::{gather, unary_code};
use super::{GpuBackend, GpuTensor};
use crate::backend::GradRule;
use crate::error::{Error, Result};
use crate::model::{
    broadcast_strides, strides_of, BinaryKind, Graph, Node, Op, PoolKind, ReduceKind, Unary,
    ValueId,
};

/// Which forward values the VJP of `node` reads, under `rule`. Everything else can be released
/// as soon as the forward is done with it.
pub(super) fn needs(node: &Node, rule: GradRule) -> Vec<ValueId> {
    let x = node.inputs.first().copied();
    let v: Vec<Option<ValueId>> = match &node.op {
        Op::Unary(u) if u.is_relu_like() && rule == GradRule::Deconvnet => vec![],
        // The mask of Relu and Clip reads the same on the output, which survives Conv fusion.
        Op::Unary(Unary::Relu | Unary::Clip { .. }) => vec![Some(node.output)],
        Op::Unary(_) | Op::Lrn { .. } => vec![x],
        Op::Binary(b) if matches!(b.kind, BinaryKind::Mul | BinaryKind::Div) => {
            node.inputs.iter().map(|&v| Some(v)).collect()
        }
        Op::Pool(p) if p.kind == PoolKind::Max => vec![x],
        Op::GlobalPool { max: true } => vec![x],
        Op::Reduce {
            kind: ReduceKind::Max,
            ..
        } => vec![x],
        Op::Softmax { .. } => vec![Some(node.output)],
        _ => vec![],
    };
    v.into_iter().flatten().collect()
}

fn val(vals: &[Option<GpuTensor>], v: ValueId) -> Result<&GpuTensor> {
    vals.get(v)
        .and_then(Option::as_ref)
        .ok_or_else(|| Error::internal(format!("forward value #{v} was released too early")))
}

/// Records the VJP of `node` for dy = `gy` and returns each input's contribution (in input
/// order; a value read twice appears twice). `alias_ok`: a Reshape may hand dy's buffer on
/// instead of copying it (callers forbid it when dy is kept as a result, because the alias
/// could later be accumulated into in place).
#[allow(clippy::too_many_arguments)]
pub(super) fn vjp(
    gpu: &GpuBackend,
    rec: &mut Recorder,
    g: &Graph,
    node: &Node,
    vals: &[Option<GpuTensor>],
    gy: &GpuTensor,
    rule: GradRule,
    alias_ok: bool,
    what: &str,
) -> Result<Vec<(ValueId, GpuTensor)>> {
    let nb = gy.shape[0];
    let in_shape = |k: usize| -> Result<Vec<usize>> {
        node.inputs
            .get(k)
            .map(|&v| g.values[v].full_shape(nb))
            .ok_or_else(|| Error::internal(format!("input {k} missing")))
    };
    let x_id = *node
        .inputs
        .first()
        .ok_or_else(|| Error::internal("node without inputs"))?;
    let xs = in_shape(0)?;
    if xs.len() > MAX_RANK || gy.shape.len() > MAX_RANK {
        return Err(Error::bad_input(format!(
            "tensors of rank above {MAX_RANK} are not supported on the GPU"
        )));
    }
    let one = |dx: GpuTensor| Ok(vec![(x_id, dx)]);
    match &node.op {
        Op::Conv(c) => {
            let dx = gpu.alloc(xs)?;
            conv_bwd(gpu, rec, gy, &dx, c, what)?;
            one(dx)
        }
        Op::Linear(l) => {
            let k = *xs.last().unwrap_or(&1);
            let o = l.weight.shape[0];
            if l.weight.shape.len() != 2 || l.weight.shape[1] != k || gy.shape.last() != Some(&o) {
                return Err(Error::internal(format!(
                    "linear weight {:?} for {xs:?}",
                    l.weight.shape
                )));
            }
            let dx = gpu.alloc(xs)?;
            let rows = dx.len() / k.max(1);
            let wbuf = gpu.const_buffer(&l.weight.data, what)?;
            rec.dispatch(
                Kernel::LinearBwd,
                &[gy.into(), (&wbuf).into(), (&dx).into()],
                Params::new().us(&[rows, o, k]),
                [rows.div_ceil(64), k.div_ceil(64), 1],
            )?;
            one(dx)
        }
        Op::Unary(u) => {
            let fwd = match needs(node, rule).first() {
                Some(&v) => val(vals, v)?,
                // Deconvnet ignores the forward value; any buffer of dy's size will do.
                None => gy,
            };
            let (code, a, b) = unary_code(*u);
            let r = match rule {
                GradRule::Standard => 0,
                GradRule::Guided => 1,
                GradRule::Deconvnet => 2,
            };
            let dx = gpu.alloc(xs)?;
            let p = Params::new().u(dx.len()).u(code).f(a).f(b).u(r);
            rec.dispatch_1d(
                Kernel::UnaryBwd,
                &[fwd.into(), gy.into(), (&dx).into()],
                p,
                dx.len(),
            )?;
            one(dx)
        }
        Op::Binary(b) => {
            let code = match b.kind {
                BinaryKind::Add => 0,
                BinaryKind::Sub => 1,
                BinaryKind::Mul => 2,
                BinaryKind::Div => 3,
            };
            let reads = matches!(b.kind, BinaryKind::Mul | BinaryKind::Div);
            let operand = |k: usize| -> Result<Bind> {
                if reads {
                    Ok(val(vals, node.inputs[k])?.into())
                } else {
                    // Add/Sub never read their operands; bind dy in their place.
                    Ok(gy.into())
                }
            };
            // (lhs bind, lhs shape, rhs bind, rhs shape, which sides are values -> input index)
            let (lhs, lshape, rhs, rshape, sides): (Bind, Vec<usize>, Bind, Vec<usize>, Vec<_>) =
                match &b.konst {
                    None => {
                        if node.inputs.len() != 2 {
                            return Err(Error::internal("binary op without a second operand"));
                        }
                        (
                            operand(0)?,
                            xs.clone(),
                            operand(1)?,
                            in_shape(1)?,
                            vec![(0, 0), (1, 1)],
                        )
                    }
                    Some(k) => {
                        let kb: Bind = (&gpu.const_buffer(&k.data, what)?).into();
                        if b.konst_is_lhs {
                            (kb, k.shape.clone(), operand(0)?, xs.clone(), vec![(1, 0)])
                        } else {
                            (operand(0)?, xs.clone(), kb, k.shape.clone(), vec![(0, 0)])
                        }
                    }
                };
            let os = &gy.shape;
            let mut out = Vec::new();
            for (which, input) in sides {
                let shape = if which == 0 { &lshape } else { &rshape };
                if shape.len() > os.len() {
                    return Err(Error::internal(format!(
                        "operand {shape:?} does not broadcast to {os:?}"
                    )));
                }
                let dims = pad6(shape, 1);
                let os6 = pad6(os, 1);
                if (0..MAX_RANK).any(|d| dims[d] != os6[d] && dims[d] != 1) {
                    return Err(Error::internal(format!(
                        "operand {shape:?} does not broadcast to {os:?}"
                    )));
                }
                let count: usize = (0..MAX_RANK)
                    .filter(|&d| dims[d] == 1)
                    .map(|d| os6[d])
                    .product();
                let d = gpu.alloc(in_shape(input)?)?;
                let p = Params::new()
                    .u(d.len())
                    .u(code)
                    .u(which)
                    .u(count)
                    .us(&os6)
                    .us(&pad6(&broadcast_strides(os, &lshape), 0))
                    .us(&pad6(&broadcast_strides(os, &rshape), 0))
                    .us(&dims);
                rec.dispatch_1d(
                    Kernel::BinaryBwd,
                    &[gy.into(), lhs.clone(), rhs.clone(), (&d).into()],
                    p,
                    d.len(),
                )?;
                out.push((node.inputs[input], d));
            }
            Ok(out)
        }
        Op::ChannelAffine { scale, .. } => {
            let s = gpu.const_buffer(&scale.data, what)?;
            let dx = gpu.alloc(xs)?;
            let p = Params::new()
                .u(dx.len())
                .u(dx.shape[1])
                .u(prod(&dx.shape[2..]).max(1));
            rec.dispatch_1d(
                Kernel::ChannelScaleBwd,
                &[gy.into(), (&s).into(), (&dx).into()],
                p,
                dx.len(),
            )?;
            one(dx)
        }
        Op::Pool(p) => {
            let dx = gpu.alloc(xs)?;
            expect_rank4(&dx, gy)?;
            let kind = match p.kind {
                PoolKind::Max => 0,
                PoolKind::Avg {
                    count_include_pad: false,
                } => 1,
                PoolKind::Avg {
                    count_include_pad: true,
                } => 2,
            };
            let fwd = if kind == 0 { val(vals, x_id)? } else { gy };
            let (s, o) = (&dx.shape, &gy.shape);
            let params = Params::new()
                .us(&[dx.len(), s[2], s[3], o[2], o[3]])
                .us(&p.kernel)
                .us(&p.strides)
                .us(&p.dilations)
                .us(&p.pads)
                .u(kind);
            rec.dispatch_1d(
                Kernel::Pool2dBwd,
                &[fwd.into(), gy.into(), (&dx).into()],
                params,
                dx.len(),
            )?;
            one(dx)
        }
        Op::GlobalPool { max } => {
            let dx = gpu.alloc(xs)?;
            expect_rank4(&dx, gy)?;
            let fwd = if *max { val(vals, x_id)? } else { gy };
            let planes = dx.shape[0] * dx.shape[1];
            let p = Params::new()
                .u(planes)
                .u(dx.shape[2] * dx.shape[3])
                .u(*max as usize);
            rec.dispatch_1d(
                Kernel::GlobalPoolBwd,
                &[fwd.into(), gy.into(), (&dx).into()],
                p,
                planes,
            )?;
            one(dx)
        }
        Op::Reduce { kind, axes, .. } => {
            let offset = MAX_RANK - xs.len();
            let mut mask = 0usize;
            for &a in axes {
                if a == 0 || a >= xs.len() {
                    return Err(Error::internal(format!("reduce axis {a} of {xs:?}")));
                }
                mask |= 1 << (a + offset);
            }
            let count: usize = axes.iter().map(|&a| xs[a]).product();
            let code = match kind {
                ReduceKind::Sum => 0,
                ReduceKind::Mean => 1,
                ReduceKind::Max => 2,
            };
            let fwd = if *kind == ReduceKind::Max {
                val(vals, x_id)?
            } else {
                gy
            };
            let p = Params::new()
                .u(gy.len())
                .u(count)
                .u(code)
                .u(mask)
                .us(&pad6(&xs, 1))
                .us(&pad6(&strides_of(&xs), 0));
            let dx = gpu.alloc(xs)?;
            rec.dispatch_1d(
                Kernel::ReduceBwd,
                &[fwd.into(), gy.into(), (&dx).into()],
                p,
                gy.len(),
            )?;
            one(dx)
        }
        Op::Reshape => {
            if prod(&xs) != gy.len() {
                return Err(Error::internal(format!("reshape {xs:?} <- {:?}", gy.shape)));
            }
            if alias_ok {
                one(gy.reshaped(xs))
            } else {
                let dx = gpu.alloc(xs)?;
                rec.copy(gy.buffer(), 0, dx.buffer(), 0, gy.byte_len());
                one(dx)
            }
        }
        Op::Transpose { perm } => {
            if perm.len() != xs.len() || perm.iter().any(|&p| p >= xs.len()) {
                return Err(Error::internal(format!("perm {perm:?} for {xs:?}")));
            }
            // dx[c] = dy[c permuted]: x axis perm[d] walks dy axis d.
            let gst = strides_of(&gy.shape);
            let mut in_stride = vec![0; xs.len()];
            for (d, &p) in perm.iter().enumerate() {
                in_stride[p] = gst[d];
            }
            let dx = gpu.alloc(xs.clone())?;
            let r = xs.len();
            gather(
                rec,
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
            let r = gy.shape.len();
            for (k, &v) in node.inputs.iter().enumerate() {
                let s = in_shape(k)?;
                if s.len() != r || *axis >= r {
                    return Err(Error::internal(format!("concat of {s:?} on axis {axis}")));
                }
                let mut start = vec![0i64; r];
                start[*axis] = offset;
                let dx = gpu.alloc(s.clone())?;
                gather(
                    rec,
                    gy,
                    &dx,
                    &s,
                    &start,
                    &vec![1; r],
                    &gy.shape,
                    &strides_of(&gy.shape),
                    0.0,
                )?;
                offset += s[*axis] as i64;
                out.push((v, dx));
            }
            Ok(out)
        }
        Op::Slice { starts, steps } => {
            let r = xs.len();
            if starts.len() != r || steps.len() != r || steps.contains(&0) {
                return Err(Error::internal(format!(
                    "slice {starts:?} / {steps:?} of {xs:?}"
                )));
            }
            let dx = gpu.alloc(xs.clone())?;
            let p = Params::new()
                .u(dx.len())
                .at(4)
                .us(&pad6(&xs, 1))
                .is(&pad6(starts, 0))
                .is(&pad6(steps, 1))
                .us(&pad6(&gy.shape, 1))
                .us(&pad6(&strides_of(&gy.shape), 0));
            rec.dispatch_1d(Kernel::SliceBwd, &[gy.into(), (&dx).into()], p, dx.len())?;
            one(dx)
        }
        Op::Pad { pads, .. } => {
            let r = xs.len();
            if pads.len() != r {
                return Err(Error::internal(format!("pads {pads:?} for {xs:?}")));
            }
            let start: Vec<i64> = pads.iter().map(|&(b, _)| b as i64).collect();
            let dx = gpu.alloc(xs.clone())?;
            gather(
                rec,
                gy,
                &dx,
                &xs,
                &start,
                &vec![1; r],
                &gy.shape,
                &strides_of(&gy.shape),
                0.0,
            )?;
            one(dx)
        }
        Op::Softmax { axis } => {
            let y = val(vals, node.output)?;
            let s = &xs;
            if *axis >= s.len() {
                return Err(Error::internal(format!("softmax axis {axis} of {s:?}")));
            }
            let inner = prod(&s[axis + 1..]);
            let rows = prod(&s[..*axis]) * inner;
            let dx = gpu.alloc(xs.clone())?;
            let p = Params::new().u(rows).u(s[*axis]).u(inner);
            rec.dispatch_1d(
                Kernel::SoftmaxBwd,
                &[y.into(), gy.into(), (&dx).into()],
                p,
                rows,
            )?;
            one(dx)
        }
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => {
            let x = val(vals, x_id)?;
            if xs.len() < 2 || *size == 0 {
                return Err(Error::internal(format!("LRN over {xs:?}")));
            }
            let dx = gpu.alloc(xs.clone())?;
            let p = Params::new()
                .u(dx.len())
                .u(xs[1])
                .u(prod(&xs[2..]))
                .u(*size)
                .f(*alpha)
                .f(*beta)
                .f(*bias);
            rec.dispatch_1d(
                Kernel::LrnBwd,
                &[x.into(), gy.into(), (&dx).into()],
                p,
                dx.len(),
            )?;
            one(dx)
        }
    }
}

/// Largest input channels per group for which the conv VJP uses the direct kernel.
const DIRECT_MAX_ICG: usize = 8;

fn conv_bwd(
    gpu: &GpuBackend,
    rec: &mut Recorder,
    gy: &GpuTensor,
    dx: &GpuTensor,
    c: &crate::model::Conv,
    what: &str,
) -> Result<()> {
    expect_rank4(dx, gy)?;
    let ws = &c.weight.shape;
    let (n, ch, h, w) = (dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3]);
    let (oc, oh, ow) = (gy.shape[1], gy.shape[2], gy.shape[3]);
    if ws.len() != 4 || c.groups == 0 || ws[0] != oc || ch != ws[1] * c.groups || oc % c.groups != 0
    {
        return Err(Error::internal(format!(
            "conv weight {ws:?} with {} groups does not fit {:?} -> {:?}",
            c.groups, dx.shape, gy.shape
        )));
    }
    let icg = ws[1];
    let ocg = oc / c.groups;
    let wbuf = gpu.const_buffer(&c.weight.data, what)?;
    // The forward's uniform layout, so the shader shares its loader; bias/activation unused.
    let p = Params::new()
        .us(&[n, ch, h, w, oc, oh, ow, ws[2], ws[3]])
        .us(&c.strides)
        .us(&c.dilations)
        .i(c.pads[0] as i64)
        .i(c.pads[1] as i64)
        .us(&[icg, ocg, 0, 0]);
    let binds = [gy.into(), (&wbuf).into(), dx.into()];
    // The GEMM's 64-wide column tile spans input channels here, so a stem conv (3 channels)
    // would waste ~95% of it; the direct kernel is cheaper below a handful of channels.
    if icg <= DIRECT_MAX_ICG {
        rec.dispatch_1d(Kernel::ConvBwdDirect, &binds, p, dx.len())
    } else {
        rec.dispatch(
            Kernel::ConvBwdGemm,
            &binds,
            p,
            [(n * h * w).div_ceil(64), icg.div_ceil(64), c.groups],
        )
    }
}
