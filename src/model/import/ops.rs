//! Translation of each ONNX node into IR nodes, or into a folded constant.

use super::attrs::NodeCtx;
use super::consts::{self, IDim, Sym};
use super::{Importer, SUPPORTED_OPS};
use crate::error::Result;
use crate::model::ir::*;

pub(super) fn translate(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let node = ctx.node;
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(unsupported(ctx));
    }
    let op = node.op_type.as_str();
    match op {
        "Constant" => return constant(imp, ctx),
        "Identity" | "Dropout" => {
            if op == "Dropout" && imp.readers.get(ctx.out_name(1)).copied().unwrap_or(0) > 0 {
                return Err(ctx.err("Dropout's mask output is used; netlens only runs inference"));
            }
            let x = get(imp, ctx, 0)?;
            imp.env.insert(ctx.out_name(0).to_string(), x);
            return Ok(());
        }
        "Shape" => return shape_of(imp, ctx),
        _ => {}
    }
    let inputs: Vec<Sym> = (0..node.input.len())
        .filter(|&i| ctx.input(i).is_some())
        .map(|i| get(imp, ctx, i))
        .collect::<Result<_>>()?;
    if !inputs.is_empty() && inputs.iter().all(|s| !matches!(s, Sym::Act(_))) {
        return fold(imp, ctx);
    }
    match op {
        "Conv" => conv(imp, ctx),
        "BatchNormalization" => batch_norm(imp, ctx),
        "Gemm" => gemm(imp, ctx),
        "MatMul" => matmul(imp, ctx),
        "Relu" => unary(imp, ctx, Unary::Relu),
        "LeakyRelu" => unary(
            imp,
            ctx,
            Unary::LeakyRelu {
                alpha: ctx.float("alpha", 0.01),
            },
        ),
        "Sigmoid" => unary(imp, ctx, Unary::Sigmoid),
        "Tanh" => unary(imp, ctx, Unary::Tanh),
        "HardSigmoid" => {
            let u = Unary::HardSigmoid {
                alpha: ctx.float("alpha", 0.2),
                beta: ctx.float("beta", 0.5),
            };
            unary(imp, ctx, u)
        }
        "HardSwish" => unary(imp, ctx, Unary::HardSwish),
        "Clip" => clip(imp, ctx),
        "Add" => binary(imp, ctx, BinaryKind::Add),
        "Sub" => binary(imp, ctx, BinaryKind::Sub),
        "Mul" => binary(imp, ctx, BinaryKind::Mul),
        "Div" => binary(imp, ctx, BinaryKind::Div),
        "MaxPool" => pool(imp, ctx, true),
        "AveragePool" => pool(imp, ctx, false),
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let x = act4(imp, ctx)?;
            let c = imp.shape(x)[0];
            let op = Op::GlobalPool {
                max: op == "GlobalMaxPool",
            };
            imp.emit(&node.name, op, vec![x], ctx.out_name(0), vec![c, 1, 1]);
            Ok(())
        }
        "Flatten" => flatten(imp, ctx),
        "Reshape" => reshape(imp, ctx),
        "Squeeze" | "Unsqueeze" => squeeze(imp, ctx, op == "Unsqueeze"),
        "Transpose" => transpose(imp, ctx),
        "Concat" => concat(imp, ctx),
        "Split" => split(imp, ctx),
        "Slice" => slice(imp, ctx),
        "Softmax" => softmax(imp, ctx),
        "LRN" => {
            let x = act4(imp, ctx)?;
            let size = ctx.int("size", 0);
            if size <= 0 {
                return Err(ctx.err("LRN needs a positive 'size'"));
            }
            let op = Op::Lrn {
                size: size as usize,
                alpha: ctx.float("alpha", 1e-4),
                beta: ctx.float("beta", 0.75),
                bias: ctx.float("bias", 1.0),
            };
            let s = imp.shape(x).to_vec();
            imp.emit(&node.name, op, vec![x], ctx.out_name(0), s);
            Ok(())
        }
        "Pad" => pad(imp, ctx),
        "ReduceMean" => reduce(imp, ctx, ReduceKind::Mean),
        "ReduceSum" => reduce(imp, ctx, ReduceKind::Sum),
        "ReduceMax" => reduce(imp, ctx, ReduceKind::Max),
        "Cast" => {
            // Only float-to-float casts make sense on image activations.
            let to = ctx.int("to", 1);
            if !matches!(to, 1 | 10 | 11) {
                return Err(ctx.err(format!(
                    "Cast of an activation to ONNX type {to} is not supported"
                )));
            }
            let x = get(imp, ctx, 0)?;
            imp.env.insert(ctx.out_name(0).to_string(), x);
            Ok(())
        }
        _ => Err(unsupported(ctx)),
    }
}

fn unsupported(ctx: &NodeCtx) -> crate::Error {
    let domain = if ctx.node.domain.is_empty() {
        String::new()
    } else {
        format!(" in domain '{}'", ctx.node.domain)
    };
    ctx.err(format!(
        "unsupported ONNX op '{}'{domain}. netlens supports: {}",
        ctx.node.op_type,
        SUPPORTED_OPS.join(", ")
    ))
}

fn get(imp: &Importer, ctx: &NodeCtx, i: usize) -> Result<Sym> {
    let name = ctx
        .input(i)
        .ok_or_else(|| ctx.err(format!("input #{i} is missing")))?;
    imp.env
        .get(name)
        .cloned()
        .ok_or_else(|| ctx.err(format!("input '{name}' is produced by no earlier node")))
}

fn act(imp: &Importer, ctx: &NodeCtx, i: usize) -> Result<ValueId> {
    match get(imp, ctx, i)? {
        Sym::Act(v) => Ok(v),
        _ => Err(ctx.err(format!(
            "input #{i} is a constant where netlens expects an activation"
        ))),
    }
}

/// The data input, which must be an `[N, C, H, W]` activation.
fn act4(imp: &Importer, ctx: &NodeCtx) -> Result<ValueId> {
    let x = act(imp, ctx, 0)?;
    if imp.shape(x).len() != 3 {
        return Err(ctx.err(format!(
            "expects a 4-D [N, C, H, W] input, got [N, {}]",
            dims(imp.shape(x))
        )));
    }
    Ok(x)
}

fn const_f32(imp: &Importer, ctx: &NodeCtx, i: usize) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
    if ctx.input(i).is_none() {
        return Ok(None);
    }
    match get(imp, ctx, i)?.as_f32() {
        Some(c) => Ok(Some(c)),
        None => Err(ctx.err(format!(
            "input #{i} must be a constant (weights), but it is computed at run time"
        ))),
    }
}

fn const_ints(imp: &Importer, ctx: &NodeCtx, i: usize) -> Result<Option<Vec<i64>>> {
    if ctx.input(i).is_none() {
        return Ok(None);
    }
    get(imp, ctx, i)?
        .as_ints()
        .map(Some)
        .ok_or_else(|| ctx.err(format!("input #{i} must be a constant integer tensor")))
}

fn dims(s: &[usize]) -> String {
    s.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Normalises a possibly negative axis against `rank`.
fn axis_of(ctx: &NodeCtx, axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(ctx.err(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Like [`axis_of`] on a full (batched) rank, refusing the batch axis.
fn feature_axis(ctx: &NodeCtx, axis: i64, full_rank: usize) -> Result<usize> {
    let a = axis_of(ctx, axis, full_rank)?;
    if a == 0 {
        return Err(ctx.err(
            "operating along the batch axis is not supported (netlens keeps samples independent)",
        ));
    }
    Ok(a)
}

fn emit_same_shape(imp: &mut Importer, ctx: &NodeCtx, op: Op, x: ValueId) {
    let s = imp.shape(x).to_vec();
    imp.emit(&ctx.node.name, op, vec![x], ctx.out_name(0), s);
}

/// `[top, left, bottom, right]` from ONNX attributes, resolving `auto_pad`.
fn pads_2d(
    ctx: &NodeCtx,
    input: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dil: [usize; 2],
) -> Result<[usize; 4]> {
    let auto = ctx.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" | "" => {
            let p = ctx.usizes("pads")?.unwrap_or_else(|| vec![0; 4]);
            if p.len() != 4 {
                return Err(ctx.err(format!("expects 4 pads for a 2-D window, got {}", p.len())));
            }
            Ok([p[0], p[1], p[2], p[3]])
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = [0; 4];
            for d in 0..2 {
                let out = input[d].div_ceil(strides[d]);
                let eff = dil[d] * (kernel[d] - 1) + 1;
                let total = ((out - 1) * strides[d] + eff).saturating_sub(input[d]);
                let small = total / 2;
                let (before, after) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[d] = before;
                pads[d + 2] = after;
            }
            Ok(pads)
        }
        other => Err(ctx.err(format!("unknown auto_pad '{other}'"))),
    }
}

fn pair(ctx: &NodeCtx, name: &str, default: usize) -> Result<[usize; 2]> {
    match ctx.usizes(name)? {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0], v[1]]),
        Some(v) => Err(ctx.err(format!(
            "attribute '{name}' must hold 2 positive values for a 2-D op, got {v:?}"
        ))),
    }
}

fn conv(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
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
    if groups < 1 || ws[0] % groups as usize != 0 || ws[1] * groups as usize != xs[0] {
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
    let strides = pair(ctx, "strides", 1)?;
    let dilations = pair(ctx, "dilations", 1)?;
    let pads = pads_2d(ctx, [xs[1], xs[2]], kernel, strides, dilations)?;
    let mut out = vec![ws[0]];
    for d in 0..2 {
        let o = window_out_len(
            xs[d + 1],
            kernel[d],
            strides[d],
            dilations[d],
            pads[d],
            pads[d + 2],
            false,
        )
        .ok_or_else(|| {
            ctx.err(format!(
                "kernel [{}] is larger than the padded input [N, {}]",
                dims(&ws),
                dims(&xs)
            ))
        })?;
        out.push(o);
    }
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
        strides,
        dilations,
        pads,
    });
    imp.emit(&ctx.node.name, op, vec![x], ctx.out_name(0), out);
    Ok(())
}

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

fn linear(
    imp: &mut Importer,
    ctx: &NodeCtx,
    x: ValueId,
    weight: Const,
    bias: Option<Const>,
) -> Result<()> {
    let xs = imp.shape(x).to_vec();
    let (out_f, in_f) = (weight.shape[0], weight.shape[1]);
    if xs.last() != Some(&in_f) {
        return Err(ctx.err(format!(
            "input [N, {}] does not match a weight with {in_f} inputs",
            dims(&xs)
        )));
    }
    let mut out = xs;
    *out.last_mut().unwrap_or(&mut 0) = out_f;
    imp.emit(
        &ctx.node.name,
        Op::Linear(Linear { weight, bias }),
        vec![x],
        ctx.out_name(0),
        out,
    );
    Ok(())
}

fn gemm(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    if ctx.int("transA", 0) != 0 {
        return Err(
            ctx.err("Gemm with transA=1 on an activation would mix the batch; not supported")
        );
    }
    if imp.shape(x).len() != 1 {
        return Err(ctx.err(format!(
            "Gemm expects a 2-D [N, K] input, got [N, {}]",
            dims(imp.shape(x))
        )));
    }
    let (bs, b) = const_f32(imp, ctx, 1)?.ok_or_else(|| ctx.err("Gemm has no B input"))?;
    if bs.len() != 2 {
        return Err(ctx.err("Gemm's B must be 2-D"));
    }
    let alpha = ctx.float("alpha", 1.0);
    let beta = ctx.float("beta", 1.0);
    let (ws, w) = if ctx.int("transB", 0) != 0 {
        (bs, b)
    } else {
        consts::transpose(&bs, &b, &[1, 0])
    };
    let w: Vec<f32> = w.iter().map(|v| v * alpha).collect();
    let out_f = ws[0];
    let bias = match const_f32(imp, ctx, 2)? {
        None => None,
        Some((cs, c)) => {
            let ok = c.len() == 1 || (c.len() == out_f && cs.iter().rev().skip(1).all(|&d| d == 1));
            if !ok {
                return Err(ctx.err(format!(
                    "Gemm's C of shape [{}] is not a per-output bias",
                    dims(&cs)
                )));
            }
            Some(Const::new(
                vec![out_f],
                (0..out_f)
                    .map(|o| beta * c[if c.len() == 1 { 0 } else { o }])
                    .collect(),
            ))
        }
    };
    linear(imp, ctx, x, Const::new(ws, w), bias)
}

fn matmul(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)
        .map_err(|_| ctx.err("MatMul with a constant left operand is not supported"))?;
    let b = get(imp, ctx, 1)?;
    let (bs, bd) = b.as_f32().ok_or_else(|| {
        ctx.err("MatMul of two activations is not supported; the right operand must be a constant")
    })?;
    if bs.len() != 2 {
        return Err(ctx.err(format!(
            "MatMul's constant operand must be 2-D, got [{}]",
            dims(&bs)
        )));
    }
    let (ws, w) = consts::transpose(&bs, &bd, &[1, 0]);
    linear(imp, ctx, x, Const::new(ws, w), None)
}

fn unary(imp: &mut Importer, ctx: &NodeCtx, u: Unary) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    emit_same_shape(imp, ctx, Op::Unary(u), x);
    Ok(())
}

fn clip(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let (mut min, mut max) = (f32::MIN, f32::MAX);
    if imp.opset < 11 {
        min = ctx.float("min", min);
        max = ctx.float("max", max);
    } else {
        let scalar = |i: usize| -> Result<Option<f32>> {
            Ok(match const_f32(imp, ctx, i)? {
                Some((_, v)) if v.len() == 1 => Some(v[0]),
                Some(_) => return Err(ctx.err("Clip bounds must be scalars")),
                None => None,
            })
        };
        min = scalar(1)?.unwrap_or(min);
        max = scalar(2)?.unwrap_or(max);
    }
    unary(imp, ctx, Unary::Clip { min, max })
}

fn binary(imp: &mut Importer, ctx: &NodeCtx, kind: BinaryKind) -> Result<()> {
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
                _ => unreachable!("constants were folded before"),
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

fn pool(imp: &mut Importer, ctx: &NodeCtx, max: bool) -> Result<()> {
    let x = act4(imp, ctx)?;
    if max && imp.readers.get(ctx.out_name(1)).copied().unwrap_or(0) > 0 {
        return Err(ctx.err("MaxPool's indices output is not supported"));
    }
    let xs = imp.shape(x).to_vec();
    let kernel = match ctx.usizes("kernel_shape")? {
        Some(k) if k.len() == 2 && k.iter().all(|&v| v > 0) => [k[0], k[1]],
        _ => return Err(ctx.err("needs a 2-D 'kernel_shape'")),
    };
    let strides = pair(ctx, "strides", 1)?;
    let dilations = pair(ctx, "dilations", 1)?;
    let pads = pads_2d(ctx, [xs[1], xs[2]], kernel, strides, dilations)?;
    let ceil = ctx.int("ceil_mode", 0) != 0;
    let mut out = vec![xs[0]];
    for d in 0..2 {
        let o = window_out_len(
            xs[d + 1],
            kernel[d],
            strides[d],
            dilations[d],
            pads[d],
            pads[d + 2],
            ceil,
        )
        .ok_or_else(|| {
            ctx.err(format!(
                "window {kernel:?} is larger than the padded input [N, {}]",
                dims(&xs)
            ))
        })?;
        out.push(o);
    }
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
        strides,
        dilations,
        pads,
    });
    imp.emit(&ctx.node.name, op, vec![x], ctx.out_name(0), out);
    Ok(())
}

fn emit_reshape(imp: &mut Importer, ctx: &NodeCtx, x: ValueId, shape: Vec<usize>) -> Result<()> {
    if shape.iter().product::<usize>() != imp.values[x].sample_len() {
        return Err(ctx.err(format!(
            "cannot reshape [N, {}] to [N, {}]",
            dims(imp.shape(x)),
            dims(&shape)
        )));
    }
    imp.emit(&ctx.node.name, Op::Reshape, vec![x], ctx.out_name(0), shape);
    Ok(())
}

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
    let known: i64 = rest.iter().filter(|&&v| v != -1).product();
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

fn axes_input_or_attr(imp: &Importer, ctx: &NodeCtx, input: usize) -> Result<Option<Vec<i64>>> {
    match ctx.ints("axes") {
        Some(a) => Ok(Some(a)),
        None => const_ints(imp, ctx, input),
    }
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
    let first = imp.shape(inputs[0]).to_vec();
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
        out[axis - 1] += s[axis - 1];
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

/// Emits a Slice node reading `len` elements from `start` with `step` along `axis`.
fn emit_slice(
    imp: &mut Importer,
    ctx: &NodeCtx,
    x: ValueId,
    out_name: &str,
    spans: &[(usize, i64, i64, usize)],
) -> Result<()> {
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let mut starts = vec![0i64; rank];
    let mut steps = vec![1i64; rank];
    let mut out = xs;
    for &(axis, start, step, len) in spans {
        if len == 0 {
            return Err(ctx.err(format!("slice along axis {axis} is empty")));
        }
        starts[axis] = start;
        steps[axis] = step;
        out[axis - 1] = len;
    }
    imp.emit(
        &ctx.node.name,
        Op::Slice { starts, steps },
        vec![x],
        out_name,
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
                let n = ctx.int("num_outputs", outputs as i64).max(1) as usize;
                let chunk = dim.div_ceil(n);
                (0..n)
                    .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                    .collect()
            }
        },
    };
    if sizes.len() != outputs || sizes.iter().sum::<usize>() != dim {
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
        let (span, stride) = if step > 0 {
            (e - s, step)
        } else {
            (s - e, -step)
        };
        let len = (span.max(0) as usize).div_ceil(stride as usize);
        spans.push((axis, s, step, len));
    }
    let name = ctx.out_name(0).to_string();
    emit_slice(imp, ctx, x, &name, &spans)
}

fn softmax(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let default = if imp.opset < 13 { 1 } else { -1 };
    let axis = feature_axis(ctx, ctx.int("axis", default), rank)?;
    // Before opset 13 Softmax flattened everything from `axis` on; that equals a softmax over
    // `axis` only when the trailing dimensions are all 1.
    if imp.opset < 13 && xs[axis..].iter().product::<usize>() != 1 {
        return Err(ctx.err("opset < 13 Softmax over several trailing axes is not supported"));
    }
    emit_same_shape(imp, ctx, Op::Softmax { axis }, x);
    Ok(())
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
        .map(|d| xs[d - 1] + pads[d].0 + pads[d].1)
        .collect();
    imp.emit(
        &ctx.node.name,
        Op::Pad { pads, value },
        vec![x],
        ctx.out_name(0),
        out,
    );
    Ok(())
}

fn reduce(imp: &mut Importer, ctx: &NodeCtx, kind: ReduceKind) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let keepdims = ctx.int("keepdims", 1) != 0;
    let axes = axes_input_or_attr(imp, ctx, 1)?.unwrap_or_default();
    if axes.is_empty() {
        if ctx.int("noop_with_empty_axes", 0) != 0 {
            let v = get(imp, ctx, 0)?;
            imp.env.insert(ctx.out_name(0).to_string(), v);
            return Ok(());
        }
        return Err(ctx.err("reducing over all axes would mix the batch; give explicit axes"));
    }
    let mut norm: Vec<usize> = axes
        .iter()
        .map(|&a| feature_axis(ctx, a, rank))
        .collect::<Result<_>>()?;
    norm.sort_unstable();
    norm.dedup();
    let out: Vec<usize> = (1..rank)
        .filter_map(|d| match (norm.contains(&d), keepdims) {
            (true, true) => Some(1),
            (true, false) => None,
            (false, _) => Some(xs[d - 1]),
        })
        .collect();
    imp.emit(
        &ctx.node.name,
        Op::Reduce {
            kind,
            axes: norm,
            keepdims,
        },
        vec![x],
        ctx.out_name(0),
        out,
    );
    Ok(())
}

fn constant(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
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

fn shape_of(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
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
fn fold(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
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
    let x = &inputs[0];
    let xs = x.shape().unwrap_or(&[]).to_vec();
    let result = match op {
        "Cast" => match ctx.int("to", 1) {
            1 | 10 | 11 => x.as_f32().map(|(s, d)| Sym::F(s, d)).ok_or_else(cannot)?,
            _ => Sym::I(xs, x.as_idims().ok_or_else(cannot)?),
        },
        "Gather" => {
            let axis = axis_of(ctx, ctx.int("axis", 0), xs.len())?;
            let idx = inputs[1].as_ints().ok_or_else(cannot)?;
            let idx_shape = inputs[1].shape().unwrap_or(&[]).to_vec();
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
                    let (s, d) = consts::transpose(s, d, &perm);
                    Sym::F(s, d)
                }
                _ => return Err(cannot()),
            }
        }
        "Add" | "Sub" | "Mul" | "Div" => fold_binary(ctx, op, &inputs[0], &inputs[1])?,
        "Identity" | "Dropout" => x.clone(),
        _ => {
            return Err(if SUPPORTED_OPS.contains(&op) {
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
            let t = inputs[1]
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
    let data = idx
        .iter()
        .map(|&(i, j)| match (da[i], db[j]) {
            (IDim::Lit(x), IDim::Lit(y)) => match op {
                "Add" => Ok(IDim::Lit(x + y)),
                "Sub" => Ok(IDim::Lit(x - y)),
                "Mul" => Ok(IDim::Lit(x * y)),
                _ if y == 0 => Err(ctx.err("integer division by zero")),
                _ => Ok(IDim::Lit(x / y)),
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
