//! Element-wise arithmetic with numpy broadcasting (`Op::Binary`): ONNX Add, Sub, Mul, Div on
//! activations (constant-only ones are folded at import); CPU `cpu/eltwise.rs`; GPU
//! `eltwise.wgsl` (`binary`, `binary_bwd`).

use super::{CpuGrads, GpuGrads, OpKernel};
use crate::backend::GradRule;
use crate::cpu::eltwise;
use crate::cpu::node::{numel, CpuFwd, CpuVjp};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Bind, Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::ops::{binary, BinaryCode};
use crate::gpu::params::word;
use crate::gpu::shape::{axes, pad6, Axes, MAX_RANK};
use crate::model::import::attrs::NodeCtx;
use crate::model::import::consts::{self, Sym};
use crate::model::import::lower::{dims, emit_same_shape, get, Importer, Lower};
use crate::model::{broadcast_strides, Binary, BinaryKind, Const, Node, Op, ValueId};

/// Which operand of `binary` a `binary_bwd` dispatch differentiates (WGSL `OPERAND_*`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::NoUninit)]
pub(crate) enum Operand {
    Lhs = 0,
    Rhs = 1,
}

impl Operand {
    #[cfg(test)]
    pub(crate) const ALL: [Operand; 2] = [Operand::Lhs, Operand::Rhs];
}

/// `binary_bwd`'s parameters (WGSL `BinaryBwdParams`): `total` elements of the operand's
/// gradient, each summing `count` elements of dy over the axes the operand was broadcast along;
/// `dims` is the operand's shape padded to the output's rank (1 on broadcast axes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::NoUninit)]
pub(crate) struct BinaryBwdParams {
    pub(crate) total: u32,
    pub(crate) op: BinaryCode,
    pub(crate) which: Operand,
    pub(crate) count: u32,
    pub(crate) shape: Axes,
    pub(crate) lhs_strides: Axes,
    pub(crate) rhs_strides: Axes,
    pub(crate) dims: Axes,
}
impl TypedParams for BinaryBwdParams {
    const KERNELS: &'static [Kernel] = &[Kernel::BinaryBwd];
}

pub(crate) const ONNX: &[(&str, Lower)] = &[
    ("Add", |imp, ctx| lower(imp, ctx, BinaryKind::Add)),
    ("Sub", |imp, ctx| lower(imp, ctx, BinaryKind::Sub)),
    ("Mul", |imp, ctx| lower(imp, ctx, BinaryKind::Mul)),
    ("Div", |imp, ctx| lower(imp, ctx, BinaryKind::Div)),
];

fn lower(imp: &mut Importer, ctx: &NodeCtx, kind: BinaryKind) -> Result<()> {
    let (a, b) = (get(imp, ctx, 0)?, get(imp, ctx, 1)?);
    match (&a, &b) {
        (Sym::Act(va), Sym::Act(vb)) => {
            let (sa, sb) = (imp.shape(*va).to_vec(), imp.shape(*vb).to_vec());
            if sa.len() != sb.len() {
                return Err(ctx.err(format!(
                    "operands [N, {}] and [N, {}] differ in rank",
                    dims(&sa),
                    dims(&sb)
                )));
            }
            let out = consts::broadcast_shape(&sa, &sb).ok_or_else(|| {
                ctx.err(format!(
                    "cannot broadcast [N, {}] with [N, {}]",
                    dims(&sa),
                    dims(&sb)
                ))
            })?;
            let op = Op::Binary(Binary {
                kind,
                konst: None,
                konst_is_lhs: false,
            });
            imp.emit(&ctx.node.name, op, vec![*va, *vb], ctx.out_name(0), out);
        }
        (x, k) => {
            let (v, konst, konst_is_lhs) = match (x, k) {
                (Sym::Act(v), k) => (*v, k, false),
                (k, Sym::Act(v)) => (*v, k, true),
                // Two constants are folded before lowering, unless an input is missing (a
                // node with one input reads the absent second as a placeholder).
                _ => return Err(ctx.err("needs two inputs, at least one of them computed")),
            };
            let (cs, cd) = konst
                .as_f32()
                .ok_or_else(|| ctx.err("constant operand has the batch size in it"))?;
            let xs = imp.shape(v).to_vec();
            let mut full = vec![1];
            full.extend_from_slice(&xs);
            let fits = cs.len() <= full.len()
                && consts::broadcast_shape(&full, &cs).as_deref() == Some(&full[..]);
            if !fits {
                return Err(ctx.err(format!(
                    "constant of shape [{}] does not broadcast onto the activation [N, {}]",
                    dims(&cs),
                    dims(&xs)
                )));
            }
            let op = Op::Binary(Binary {
                kind,
                konst: Some(Const::new(cs, cd)),
                konst_is_lhs,
            });
            emit_same_shape(imp, ctx, op, v);
        }
    }
    Ok(())
}

/// Element-wise arithmetic with broadcasting.
pub(crate) struct BinaryOp;

fn binary_of(op: &Op) -> Result<&Binary> {
    match op {
        Op::Binary(b) => Ok(b),
        other => Err(super::wrong_op("binary", other)),
    }
}

impl OpKernel for BinaryOp {
    fn arity_ok(&self, op: &Op, inputs: usize) -> bool {
        match op {
            Op::Binary(b) => inputs == if b.konst.is_some() { 1 } else { 2 },
            _ => false,
        }
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let b = binary_of(cx.op())?;
        let ys = cx.out_shape.clone();
        let xs = cx.xs(0).to_vec();
        if let Some(k) = &b.konst {
            if xs == ys {
                if let Some(mut y) = cx.owned(0)? {
                    eltwise::binary_assign(
                        b.kind,
                        &mut y,
                        &ys,
                        &k.data,
                        &k.shape,
                        !b.konst_is_lhs,
                    )?;
                    return Ok(y);
                }
            }
            let mut y = cx.out()?;
            let x = cx.x(0)?;
            if b.konst_is_lhs {
                eltwise::binary(b.kind, &k.data, &k.shape, x, &xs, &mut y, &ys)?;
            } else {
                eltwise::binary(b.kind, x, &xs, &k.data, &k.shape, &mut y, &ys)?;
            }
            return Ok(y);
        }
        let cs = cx.xs(1).to_vec();
        // Reuse whichever operand already has the output shape and dies here.
        for (acc, other, acc_is_lhs) in [(0, 1, true), (1, 0, false)] {
            if cx.xs(acc) == ys {
                if let Some(mut y) = cx.owned(acc)? {
                    let os = cx.xs(other).to_vec();
                    let o = cx.x(other)?;
                    eltwise::binary_assign(b.kind, &mut y, &ys, o, &os, acc_is_lhs)?;
                    return Ok(y);
                }
            }
        }
        let mut y = cx.out()?;
        let (x, z) = (cx.x(0)?, cx.x(1)?);
        eltwise::binary(b.kind, x, &xs, z, &cs, &mut y, &ys)?;
        Ok(y)
    }

    fn cpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        let Op::Binary(b) = &node.op else {
            return vec![];
        };
        match (&b.konst, b.kind) {
            (None, BinaryKind::Mul | BinaryKind::Div) => node.inputs.clone(),
            (Some(_), BinaryKind::Div) if b.konst_is_lhs => vec![node.inputs[0]],
            _ => vec![],
        }
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let b = binary_of(cx.op())?;
        let node = cx.node;
        let a = node.inputs[0];
        let xs = cx.xs(0).to_vec();
        let ys = cx.out_shape.clone();
        // (value, is lhs) per value operand; a constant is the other side.
        let mut slots = vec![];
        let (lhs_data, lhs_shape, rhs_data, rhs_shape);
        let reads = matches!(b.kind, BinaryKind::Mul | BinaryKind::Div);
        match &b.konst {
            Some(k) => {
                let xd = cx.saved(a)?;
                if b.konst_is_lhs {
                    (lhs_data, lhs_shape) = (Some(&k.data[..]), k.shape.clone());
                    (rhs_data, rhs_shape) = (xd, xs.clone());
                    slots.push((0, false));
                } else {
                    (lhs_data, lhs_shape) = (xd, xs.clone());
                    (rhs_data, rhs_shape) = (Some(&k.data[..]), k.shape.clone());
                    slots.push((0, true));
                }
            }
            None => {
                let c = node.inputs[1];
                let (da, dc) = if reads {
                    (Some(cx.val(a)?), Some(cx.val(c)?))
                } else {
                    (None, None)
                };
                (lhs_data, lhs_shape) = (da, xs.clone());
                (rhs_data, rhs_shape) = (dc, cx.xs(1).to_vec());
                slots.extend([(0, true), (1, false)]);
            }
        }
        slots.retain(|&(k, _)| cx.wanted[k]);
        let mut gy = cx.gy.take();
        let mut out = Vec::with_capacity(slots.len());
        let last = slots.len();
        for (i, (k, lhs)) in slots.into_iter().enumerate() {
            let v = node.inputs[k];
            let own = if lhs { &lhs_shape } else { &rhs_shape };
            // The last operand of an Add/Sub without broadcast takes `gy` itself.
            let movable =
                i + 1 == last && own == &ys && matches!(b.kind, BinaryKind::Add | BinaryKind::Sub);
            if movable {
                if let Some(mut g) = gy.take() {
                    if b.kind == BinaryKind::Sub && !lhs {
                        g.iter_mut().for_each(|g| *g = -*g);
                    }
                    out.push((v, g));
                    continue;
                }
            }
            let g = gy
                .as_deref()
                .ok_or_else(|| Error::internal("binary VJP: gradient moved"))?;
            let mut dx = cx.pool.take(numel(own))?;
            eltwise::binary_vjp(
                b.kind, lhs, lhs_data, &lhs_shape, rhs_data, &rhs_shape, g, &ys, &mut dx,
            )?;
            out.push((v, dx));
        }
        if let Some(g) = gy {
            cx.pool.put(g);
        }
        Ok(out)
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let b = binary_of(cx.op())?;
        let x = cx.x(0)?;
        let y = if b.konst.is_none() {
            Some(cx.x(1)?)
        } else {
            None
        };
        let out = cx.alloc_out()?;
        let konst = match &b.konst {
            Some(k) => Some(cx.konst(&k.data)?),
            None => None,
        };
        binary(cx.rec, x, y, konst.as_ref(), &out, b)?;
        Ok(out)
    }

    fn gpu_saved(&self, node: &Node, _rule: GradRule) -> Vec<ValueId> {
        match &node.op {
            Op::Binary(b) if matches!(b.kind, BinaryKind::Mul | BinaryKind::Div) => {
                node.inputs.clone()
            }
            _ => vec![],
        }
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let b = binary_of(cx.op())?;
        let node = cx.node;
        let gy = cx.gy;
        let xs = cx.xs(0)?;
        let op = BinaryCode::from(b.kind);
        let reads = matches!(b.kind, BinaryKind::Mul | BinaryKind::Div);
        let operand = |k: usize| -> Result<Bind> {
            if reads {
                Ok(cx.val(node.inputs[k])?.into())
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
                        cx.xs(1)?,
                        vec![(0, 0), (1, 1)],
                    )
                }
                Some(k) => {
                    let kb: Bind = (&cx.konst(&k.data)?).into();
                    if b.konst_is_lhs {
                        (kb, k.shape.clone(), operand(0)?, xs.clone(), vec![(1, 0)])
                    } else {
                        (operand(0)?, xs.clone(), kb, k.shape.clone(), vec![(0, 0)])
                    }
                }
            };
        let os = gy.shape();
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
            let d = cx.alloc(cx.xs(input)?)?;
            let p = BinaryBwdParams {
                total: word(d.len()),
                op,
                which: if which == 0 {
                    Operand::Lhs
                } else {
                    Operand::Rhs
                },
                count: word(count),
                shape: axes(os, 1),
                lhs_strides: axes(&broadcast_strides(os, &lshape), 0),
                rhs_strides: axes(&broadcast_strides(os, &rshape), 0),
                dims: axes(shape, 1),
            };
            cx.rec.dispatch_1d(
                Kernel::BinaryBwd,
                &[gy.into(), lhs.clone(), rhs.clone(), (&d).into()],
                p,
                d.len(),
            )?;
            out.push((node.inputs[input], d));
        }
        Ok(out)
    }
}
