//! Same data, new per-sample shape (`Op::Reshape`): ONNX Flatten, Reshape, Squeeze, Unsqueeze.
//! No kernel: the CPU moves (or, when the input lives on, copies) the buffer; the GPU hands on
//! an alias of the input's buffer, and its VJP an alias of the output gradient's.

use super::{CpuGrads, GpuGrads, OpKernel};
use crate::cpu::node::{numel, CpuFwd, CpuVjp};
use crate::error::{Error, Result};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::shape::prod;
use crate::model::import::attrs::NodeCtx;
use crate::model::import::consts::IDim;
use crate::model::import::lower::{
    act, axes_input_or_attr, dims, emit_reshape, feature_axis, get, Importer, Lower,
};
use crate::model::{Graph, Node, Op};

pub(crate) const ONNX: &[(&str, Lower)] = &[
    ("Flatten", flatten),
    ("Reshape", reshape),
    ("Squeeze", |imp, ctx| squeeze(imp, ctx, false)),
    ("Unsqueeze", |imp, ctx| squeeze(imp, ctx, true)),
];

fn flatten(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let axis = ctx.int("axis", 1);
    let axis = if axis < 0 { axis + rank as i64 } else { axis };
    if axis < 1 || axis as usize > rank || xs[..axis as usize - 1].iter().product::<usize>() != 1 {
        return Err(ctx.err(format!(
            "Flatten with axis {axis} would merge the batch axis of [N, {}]",
            dims(&xs)
        )));
    }
    let n: usize = xs.iter().product();
    emit_reshape(imp, ctx, x, vec![n])
}

fn reshape(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let target = get(imp, ctx, 1)?
        .as_idims()
        .ok_or_else(|| ctx.err("the target shape must be computable at import"))?;
    let xs = imp.shape(x).to_vec();
    let allowzero = ctx.int("allowzero", 0) != 0;
    let per_sample: usize = xs.iter().product();
    if target.is_empty() {
        return Err(ctx.err("cannot reshape to a scalar"));
    }
    // Resolve 0 (copy) first; then the batch slot; then -1 in the rest.
    let mut rest: Vec<i64> = Vec::new();
    for (i, d) in target.iter().enumerate().skip(1) {
        rest.push(match d {
            IDim::Batch => return Err(ctx.err("the batch size appears in a non-leading dimension")),
            IDim::Lit(0) if !allowzero => *xs
                .get(i - 1)
                .ok_or_else(|| ctx.err("copies a dimension the input lacks"))?
                as i64,
            IDim::Lit(v) => *v,
        });
    }
    // Checked: a hostile target could wrap the product onto the input's element count.
    let known = rest
        .iter()
        .filter(|&&v| v != -1)
        .try_fold(1i64, |acc, &v| acc.checked_mul(v))
        .ok_or_else(|| ctx.err(format!("target shape {target:?} overflows")))?;
    let infer = rest.iter().filter(|&&v| v == -1).count();
    // The leading dimension must be the batch: symbolic, copied (0), or a literal/-1 from a
    // fixed-batch export, which the element count check below confirms.
    let leading_infers = target[0] == IDim::Lit(-1);
    if infer + usize::from(leading_infers) > 1
        || rest.iter().any(|&v| v < -1)
        || (allowzero && target[0] == IDim::Lit(0))
    {
        return Err(ctx.err(format!(
            "invalid target shape {target:?} for [N, {}]",
            dims(&xs)
        )));
    }
    if infer == 1 {
        if known == 0 || !per_sample.is_multiple_of(known as usize) {
            return Err(ctx.err(format!(
                "cannot infer -1 reshaping [N, {}] to {target:?}",
                dims(&xs)
            )));
        }
        let v = per_sample as i64 / known;
        rest.iter_mut().filter(|d| **d == -1).for_each(|d| *d = v);
    }
    if rest.iter().any(|&d| d < 0) {
        return Err(ctx.err(format!("invalid target shape {target:?}")));
    }
    emit_reshape(imp, ctx, x, rest.into_iter().map(|d| d as usize).collect())
}

fn squeeze(imp: &mut Importer, ctx: &NodeCtx, unsqueeze: bool) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let mut full = vec![1usize];
    full.extend_from_slice(imp.shape(x));
    let axes = axes_input_or_attr(imp, ctx, 1)?;
    let out_full = if unsqueeze {
        let axes = axes.ok_or_else(|| ctx.err("Unsqueeze needs axes"))?;
        let rank = full.len() + axes.len();
        let mut norm: Vec<usize> = axes
            .iter()
            .map(|&a| feature_axis(ctx, a, rank))
            .collect::<Result<_>>()?;
        norm.sort_unstable();
        if norm.windows(2).any(|w| w[0] == w[1]) {
            return Err(ctx.err(format!("axes {axes:?} repeat an axis")));
        }
        let mut out = full.clone();
        for a in norm {
            out.insert(a, 1);
        }
        out
    } else {
        let norm: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&a| feature_axis(ctx, a, full.len()))
                .collect::<Result<_>>()?,
            None => (1..full.len()).filter(|&d| full[d] == 1).collect(),
        };
        if let Some(&bad) = norm.iter().find(|&&a| full[a] != 1) {
            return Err(ctx.err(format!("cannot squeeze axis {bad} of size {}", full[bad])));
        }
        full.iter()
            .enumerate()
            .filter(|(d, _)| !norm.contains(d))
            .map(|(_, &s)| s)
            .collect()
    };
    emit_reshape(imp, ctx, x, out_full[1..].to_vec())
}

/// Reshape.
pub(crate) struct ReshapeOp;

impl OpKernel for ReshapeOp {
    fn mixes_batch(&self, g: &Graph, n: &Node) -> bool {
        g.values[n.output].sample_len() != g.values[n.inputs[0]].sample_len()
    }

    fn shapes_ok(&self, _op: &Op, inputs: &[&[usize]], out: &[usize]) -> bool {
        prod(inputs[0]) == prod(out)
    }

    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        if let Some(y) = cx.owned(0)? {
            return Ok(y);
        }
        let mut y = cx.out()?;
        let x = cx.x(0)?;
        if x.len() != y.len() {
            let (xs, ys) = (cx.xs(0), &cx.out_shape);
            return Err(Error::internal(format!("Reshape {xs:?} -> {ys:?}")));
        }
        y.copy_from_slice(x);
        Ok(y)
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let gy = cx.take_gy()?;
        if gy.len() != numel(cx.xs(0)) {
            let (xs, ys) = (cx.xs(0), &cx.out_shape);
            return Err(Error::internal(format!("Reshape {xs:?} -> {ys:?}")));
        }
        Ok(vec![(cx.node.inputs[0], gy)])
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let x = cx.x(0)?;
        if prod(&cx.out_shape) != x.len() {
            return Err(Error::internal(format!(
                "reshape {:?} -> {:?}",
                x.shape(),
                cx.out_shape
            )));
        }
        Ok(x.reshaped(cx.out_shape.clone()))
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let gy = cx.gy;
        let xs = cx.xs(0)?;
        if prod(&xs) != gy.len() {
            return Err(Error::internal(format!(
                "reshape {xs:?} <- {:?}",
                gy.shape()
            )));
        }
        let dx = if cx.alias_ok {
            gy.reshaped(xs)
        } else {
            let dx = cx.alloc(xs)?;
            cx.rec.copy(gy.buffer(), 0, dx.buffer(), 0, gy.byte_len());
            dx
        };
        Ok(vec![(cx.node.inputs[0], dx)])
    }
}
