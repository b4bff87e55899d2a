//! Constant folding: ONNX nodes whose inputs are all constants (weights, shapes, the
//! Shape → Gather → Unsqueeze → Concat chains of dynamic-batch exports) are evaluated at import,
//! with the batch size kept symbolic, instead of becoming IR nodes.

use super::attrs::NodeCtx;
use super::consts::{self, IDim, Sym};
use super::lower::{axis_of, get, Importer};
use super::{supported_ops, unsupported};
use crate::error::Result;
use crate::model::ir::BinaryKind;

pub(crate) fn constant(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let sym = if let Some(t) = ctx.tensor("value") {
        consts::load_initializer(t)?
    } else if ctx.has("value_float") {
        Sym::F(vec![], vec![ctx.float("value_float", 0.0)])
    } else if let Some(v) = ctx.floats("value_floats") {
        Sym::F(vec![v.len()], v)
    } else if ctx.has("value_int") {
        Sym::I(vec![], vec![IDim::Lit(ctx.int("value_int", 0))])
    } else if let Some(v) = ctx.ints("value_ints") {
        Sym::I(vec![v.len()], v.into_iter().map(IDim::Lit).collect())
    } else {
        return Err(ctx.err("Constant without a supported value attribute"));
    };
    imp.env.insert(ctx.out_name(0).to_string(), sym);
    Ok(())
}

pub(crate) fn shape_of(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let full: Vec<IDim> = match get(imp, ctx, 0)? {
        Sym::Act(v) => std::iter::once(IDim::Batch)
            .chain(imp.shape(v).iter().map(|&d| IDim::Lit(d as i64)))
            .collect(),
        other => other
            .shape()
            .unwrap_or(&[])
            .iter()
            .map(|&d| IDim::Lit(d as i64))
            .collect(),
    };
    let r = full.len() as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clampi(ctx.int("start", 0));
    let end = clampi(ctx.int("end", r));
    let dims: Vec<IDim> = full[start..end.max(start)].to_vec();
    imp.env
        .insert(ctx.out_name(0).to_string(), Sym::I(vec![dims.len()], dims));
    Ok(())
}

/// Evaluates a node whose inputs are all constants.
pub(crate) fn fold(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let op = ctx.node.op_type.as_str();
    let inputs: Vec<Sym> = (0..ctx.node.input.len())
        .map(|i| {
            if ctx.input(i).is_some() {
                get(imp, ctx, i)
            } else {
                Ok(Sym::I(vec![0], vec![]))
            }
        })
        .collect::<Result<_>>()?;
    let cannot = || ctx.err(format!("cannot evaluate '{op}' on constants at import"));
    // A mutated or hand-written node may lack an input its op needs: an error, not an index panic.
    let arg = |i: usize| {
        inputs
            .get(i)
            .ok_or_else(|| ctx.err(format!("'{op}' needs at least {} inputs", i + 1)))
    };
    let x = arg(0)?;
    let xs = x.shape().unwrap_or(&[]).to_vec();
    let result = match op {
        "Cast" => match ctx.int("to", 1) {
            1 | 10 | 11 => x.as_f32().map(|(s, d)| Sym::F(s, d)).ok_or_else(cannot)?,
            _ => Sym::I(xs, x.as_idims().ok_or_else(cannot)?),
        },
        "Gather" => {
            let axis = axis_of(ctx, ctx.int("axis", 0), xs.len())?;
            let idx = arg(1)?.as_ints().ok_or_else(cannot)?;
            let idx_shape = arg(1)?.shape().unwrap_or(&[]).to_vec();
            match x {
                Sym::F(s, d) => {
                    consts::gather(s, d, axis, &idx, &idx_shape).map(|(s, d)| Sym::F(s, d))
                }
                Sym::I(s, d) => {
                    consts::gather(s, d, axis, &idx, &idx_shape).map(|(s, d)| Sym::I(s, d))
                }
                Sym::Act(_) => None,
            }
            .ok_or_else(|| ctx.err("Gather index out of range"))?
        }
        "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
            let shape = const_reshape(imp, ctx, &xs, &inputs)?;
            match x.clone() {
                Sym::F(_, d) => Sym::F(shape, d),
                Sym::I(_, d) => Sym::I(shape, d),
                Sym::Act(_) => return Err(cannot()),
            }
        }
        "Concat" => {
            let axis = axis_of(ctx, ctx.int("axis", 0), xs.len().max(1))?;
            if inputs.iter().all(|s| matches!(s, Sym::F(..))) {
                let parts: Vec<_> = inputs.iter().filter_map(Sym::as_f32).collect();
                consts::concat(&parts, axis)
                    .map(|(s, d)| Sym::F(s, d))
                    .ok_or_else(cannot)?
            } else {
                let parts: Vec<_> = inputs
                    .iter()
                    .map(|s| s.as_idims().map(|d| (s.shape().unwrap_or(&[]).to_vec(), d)))
                    .collect::<Option<_>>()
                    .ok_or_else(cannot)?;
                consts::concat(&parts, axis)
                    .map(|(s, d)| Sym::I(s, d))
                    .ok_or_else(cannot)?
            }
        }
        "Transpose" => {
            let perm = ctx
                .usizes("perm")?
                .unwrap_or_else(|| (0..xs.len()).rev().collect());
            match x {
                Sym::F(s, d) => {
                    let (s, d) = consts::transpose(s, d, &perm)
                        .ok_or_else(|| ctx.err(format!("perm {perm:?} does not fit {s:?}")))?;
                    Sym::F(s, d)
                }
                _ => return Err(cannot()),
            }
        }
        "Add" | "Sub" | "Mul" | "Div" => fold_binary(ctx, op, x, arg(1)?)?,
        "Identity" | "Dropout" => x.clone(),
        _ => {
            return Err(if supported_ops().contains(&op) {
                cannot()
            } else {
                unsupported(ctx)
            })
        }
    };
    imp.env.insert(ctx.out_name(0).to_string(), result);
    Ok(())
}

/// Output shape of a reshape-like op applied to a constant.
fn const_reshape(
    imp: &Importer,
    ctx: &NodeCtx,
    xs: &[usize],
    inputs: &[Sym],
) -> Result<Vec<usize>> {
    let op = ctx.node.op_type.as_str();
    let n: usize = xs.iter().product();
    let axes = || -> Result<Vec<i64>> {
        Ok(match ctx.ints("axes") {
            Some(a) => a,
            None => inputs.get(1).and_then(Sym::as_ints).unwrap_or_default(),
        })
    };
    Ok(match op {
        "Unsqueeze" => {
            let axes = axes()?;
            let rank = xs.len() + axes.len();
            let mut norm: Vec<usize> = axes
                .iter()
                .map(|&a| axis_of(ctx, a, rank))
                .collect::<Result<_>>()?;
            norm.sort_unstable();
            let mut out = xs.to_vec();
            for a in norm {
                out.insert(a, 1);
            }
            out
        }
        "Squeeze" => {
            let axes = axes()?;
            let norm: Vec<usize> = axes
                .iter()
                .map(|&a| axis_of(ctx, a, xs.len()))
                .collect::<Result<_>>()?;
            xs.iter()
                .enumerate()
                .filter(|&(d, &s)| {
                    !(if norm.is_empty() {
                        s == 1
                    } else {
                        norm.contains(&d)
                    })
                })
                .map(|(_, &s)| s)
                .collect()
        }
        "Flatten" => {
            let a = axis_of(ctx, ctx.int("axis", 1), xs.len() + 1)?;
            let lead: usize = xs[..a].iter().product();
            vec![lead, n / lead.max(1)]
        }
        _ => {
            let t = inputs
                .get(1)
                .ok_or_else(|| ctx.err("Reshape needs its target shape input"))?
                .as_ints()
                .ok_or_else(|| ctx.err("target shape holds the batch size"))?;
            let mut out: Vec<i64> = t
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d == 0 {
                        xs.get(i).map_or(0, |&v| v as i64)
                    } else {
                        d
                    }
                })
                .collect();
            let known: i64 = out.iter().filter(|&&d| d != -1).product();
            if let Some(d) = out.iter_mut().find(|d| **d == -1) {
                *d = if known > 0 { n as i64 / known } else { 0 };
            }
            let _ = imp;
            let out: Vec<usize> = out.into_iter().map(|d| d.max(0) as usize).collect();
            if out.iter().product::<usize>() != n {
                return Err(ctx.err("constant reshape changes the element count"));
            }
            out
        }
    })
}

fn fold_binary(ctx: &NodeCtx, op: &str, a: &Sym, b: &Sym) -> Result<Sym> {
    let (sa, sb) = (a.shape().unwrap_or(&[]), b.shape().unwrap_or(&[]));
    let out = consts::broadcast_shape(sa, sb)
        .ok_or_else(|| ctx.err("constant operands do not broadcast"))?;
    let n = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n.is_none_or(|n| n > consts::MAX_CONST_ELEMS) {
        return Err(ctx.err(format!(
            "the folded constant of shape {out:?} is past netlens' limit of {} elements",
            consts::MAX_CONST_ELEMS
        )));
    }
    let idx = consts::broadcast_indices(&out, sa, sb);
    if let (Sym::F(..), _) | (_, Sym::F(..)) = (a, b) {
        let (da, db) = (
            a.as_f32()
                .ok_or_else(|| ctx.err("batch size in float arithmetic"))?
                .1,
            b.as_f32()
                .ok_or_else(|| ctx.err("batch size in float arithmetic"))?
                .1,
        );
        let kind = match op {
            "Add" => BinaryKind::Add,
            "Sub" => BinaryKind::Sub,
            "Mul" => BinaryKind::Mul,
            _ => BinaryKind::Div,
        };
        return Ok(Sym::F(
            out,
            idx.iter().map(|&(i, j)| kind.apply(da[i], db[j])).collect(),
        ));
    }
    let (da, db) = (
        a.as_idims().unwrap_or_default(),
        b.as_idims().unwrap_or_default(),
    );
    let overflow = || ctx.err("integer overflow in constant shape arithmetic");
    let data = idx
        .iter()
        .map(|&(i, j)| match (da[i], db[j]) {
            (IDim::Lit(x), IDim::Lit(y)) => match op {
                "Add" => x.checked_add(y).map(IDim::Lit).ok_or_else(overflow),
                "Sub" => x.checked_sub(y).map(IDim::Lit).ok_or_else(overflow),
                "Mul" => x.checked_mul(y).map(IDim::Lit).ok_or_else(overflow),
                _ if y == 0 => Err(ctx.err("integer division by zero")),
                _ => x.checked_div(y).map(IDim::Lit).ok_or_else(overflow),
            },
            (IDim::Batch, IDim::Lit(1)) if op == "Mul" || op == "Div" => Ok(IDim::Batch),
            (IDim::Lit(1), IDim::Batch) if op == "Mul" => Ok(IDim::Batch),
            (IDim::Batch, IDim::Lit(0)) | (IDim::Lit(0), IDim::Batch) if op == "Add" => {
                Ok(IDim::Batch)
            }
            _ => Err(ctx.err("shape arithmetic on the batch size is not supported")),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Sym::I(out, data))
}
