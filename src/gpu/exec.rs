//! Graph execution: batch chunking, op-by-op recording, taps, and buffer release at last use.

use super::kernels::{Kernel, Params, Recorder};
use super::ops::{binary, conv, gather, gather_to, linear, reduce, unary};
use super::{GpuBackend, GpuTensor};
use crate::backend::Forward;
use crate::error::{Error, Result};
use crate::model::{strides_of, Graph, Model, Node, Op, PoolKind, Unary, ValueId};
use std::collections::HashMap;

/// Kernels take at most this rank (shapes are left-padded to it).
pub(super) const MAX_RANK: usize = 6;

pub(crate) fn forward(
    gpu: &GpuBackend,
    model: &Model,
    input: &GpuTensor,
    taps: &[ValueId],
) -> Result<Forward<GpuTensor>> {
    let g = &model.graph;
    let batch = check_input(model, input, taps)?;
    let chunk = chunk_size(gpu, g)?.min(batch);
    let single = chunk == batch;
    let fusion = plan_fusion(g, taps);
    let last = g.last_uses();

    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let mut rec = Recorder::new(&gpu.device, &gpu.pipelines);

    // Full-batch destinations when chunking; with one chunk the tensors themselves are kept.
    let mut wanted: Vec<ValueId> = taps.to_vec();
    wanted.push(g.output);
    let mut full: HashMap<ValueId, GpuTensor> = HashMap::new();
    if !single {
        for &v in &wanted {
            if v != g.input && !full.contains_key(&v) {
                full.insert(v, gpu.alloc(g.values[v].full_shape(batch))?);
            }
        }
    }
    let mut kept: HashMap<ValueId, GpuTensor> = HashMap::new();
    kept.insert(g.input, input.clone());

    let mut b0 = 0;
    while b0 < batch {
        let nb = chunk.min(batch - b0);
        let mut vals: Vec<Option<GpuTensor>> = vec![None; g.values.len()];
        let x = chunk_input(gpu, &mut rec, g, input, single, b0, nb)?;
        vals[g.input] = Some(x);
        for (i, node) in g.nodes.iter().enumerate() {
            if fusion.skip[i] {
                release(g, &last, &mut vals, i, node);
                continue;
            }
            let (out_id, act) = match fusion.fused[i] {
                Some((j, lo, hi)) => (g.nodes[j].output, Some((lo, hi))),
                None => (node.output, None),
            };
            let out_shape = g.values[out_id].full_shape(nb);
            let out = run_node(gpu, &mut rec, node, &vals, out_shape, act).map_err(|e| {
                e.context(format!(
                    "layer '{}' ({})",
                    node_label(node),
                    node.op.kind_name()
                ))
            })?;
            if wanted.contains(&out_id) {
                if single {
                    kept.insert(out_id, out.clone());
                } else if let Some(dst) = full.get(&out_id) {
                    let per = g.values[out_id].sample_len() as u64 * 4;
                    rec.copy(
                        out.buffer(),
                        0,
                        dst.buffer(),
                        b0 as u64 * per,
                        nb as u64 * per,
                    );
                }
            }
            vals[out_id] = Some(out);
            release(g, &last, &mut vals, i, node);
            if last[out_id].is_none() {
                vals[out_id] = None;
            }
        }
        b0 += nb;
    }

    let dispatches = rec.dispatches() as u64;
    let (commands, uniform) = rec.finish(&gpu.queue, &gpu.pool);
    gpu.submit(commands);
    drop(uniform);
    gpu.stats
        .dispatches
        .fetch_add(dispatches, std::sync::atomic::Ordering::Relaxed);
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::internal(format!(
            "GPU forward of '{}' failed validation: {e}",
            model.name
        )));
    }

    kept.extend(full);
    let take = |v: ValueId| {
        kept.get(&v).cloned().ok_or_else(|| {
            Error::internal(format!("value '{}' was never computed", g.values[v].name))
        })
    };
    let output = take(g.output)?;
    let taps = taps
        .iter()
        .map(|&v| Ok((v, take(v)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Forward { output, taps })
}

/// Validates the input's shape and the tapped values; returns the batch size.
/// The input rows `b0..b0 + nb` of a chunk: the input itself when the batch is one chunk, else a
/// copy recorded into `rec`.
pub(super) fn chunk_input(
    gpu: &GpuBackend,
    rec: &mut Recorder,
    g: &Graph,
    input: &GpuTensor,
    single: bool,
    b0: usize,
    nb: usize,
) -> Result<GpuTensor> {
    if single {
        return Ok(input.clone());
    }
    let x = gpu.alloc(g.values[g.input].full_shape(nb))?;
    let per = g.values[g.input].sample_len() as u64 * 4;
    rec.copy(
        input.buffer(),
        b0 as u64 * per,
        x.buffer(),
        0,
        nb as u64 * per,
    );
    Ok(x)
}

pub(super) fn check_input(model: &Model, input: &GpuTensor, taps: &[ValueId]) -> Result<usize> {
    let g = &model.graph;
    let in_shape = &g.values[g.input].shape;
    if input.shape.len() != in_shape.len() + 1 || input.shape[1..] != in_shape[..] {
        return Err(Error::bad_input(format!(
            "model '{}' takes inputs of shape [N, {}], got {:?}",
            model.name,
            in_shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            input.shape
        )));
    }
    let batch = input.shape[0];
    if batch == 0 {
        return Err(Error::bad_input(
            "empty batch: at least one image is needed",
        ));
    }
    for &t in taps {
        if t >= g.values.len() {
            return Err(Error::bad_input(format!(
                "model '{}' has no value #{t} to tap",
                model.name
            )));
        }
    }
    Ok(batch)
}

pub(super) fn node_label(node: &Node) -> &str {
    if node.name.is_empty() {
        "<unnamed>"
    } else {
        &node.name
    }
}

/// Drops the inputs whose last reader is node `i`, returning their buffers to the pool so later
/// ops of the same forward can reuse them.
fn release(
    g: &Graph,
    last: &[Option<usize>],
    vals: &mut [Option<GpuTensor>],
    i: usize,
    node: &Node,
) {
    for &v in &node.inputs {
        if last[v] == Some(i) && v != g.output {
            vals[v] = None;
        }
    }
}

/// The largest batch chunk for which no activation exceeds the binding limit.
pub(super) fn chunk_size(gpu: &GpuBackend, g: &Graph) -> Result<usize> {
    let limit = gpu.binding_limit;
    let mut largest = 4u64;
    for (id, v) in g.values.iter().enumerate() {
        let bytes = v.sample_len() as u64 * 4;
        if bytes > limit {
            let layer = match g.producer(id) {
                Some(n) => format!(
                    "layer '{}' ({})",
                    node_label(&g.nodes[n]),
                    g.nodes[n].op.kind_name()
                ),
                None => "the input".to_string(),
            };
            return Err(Error::bad_input(format!(
                "{layer}: one sample's activation '{}' {:?} takes {bytes} bytes, more than this GPU \
                 binds at once ({limit} bytes); use --backend cpu",
                v.name, v.shape
            )));
        }
        largest = largest.max(bytes);
    }
    Ok(((limit / largest) as usize).max(1))
}

pub(super) struct Fusion {
    /// For a conv node: the activation node folded into it and its clamp range.
    pub(super) fused: Vec<Option<(usize, f32, f32)>>,
    /// Nodes computed inside another node's kernel.
    pub(super) skip: Vec<bool>,
}

/// Folds a Relu/Clip into the conv before it when nothing else can observe the conv's output.
pub(super) fn plan_fusion(g: &Graph, taps: &[ValueId]) -> Fusion {
    let mut readers = vec![0usize; g.values.len()];
    for n in &g.nodes {
        for &v in &n.inputs {
            readers[v] += 1;
        }
    }
    let mut fusion = Fusion {
        fused: vec![None; g.nodes.len()],
        skip: vec![false; g.nodes.len()],
    };
    for (i, n) in g.nodes.iter().enumerate() {
        if !matches!(n.op, Op::Conv(_)) || readers[n.output] != 1 {
            continue;
        }
        if taps.contains(&n.output) || n.output == g.output {
            continue;
        }
        let Some(j) = g.nodes.iter().position(|m| m.inputs.contains(&n.output)) else {
            continue;
        };
        let range = match g.nodes[j].op {
            Op::Unary(Unary::Relu) => (0.0, f32::INFINITY),
            Op::Unary(Unary::Clip { min, max }) => (min, max),
            _ => continue,
        };
        fusion.fused[i] = Some((j, range.0, range.1));
        fusion.skip[j] = true;
    }
    fusion
}

pub(super) fn prod(s: &[usize]) -> usize {
    s.iter().product()
}

fn rank_check(shape: &[usize]) -> Result<()> {
    if shape.len() > MAX_RANK {
        return Err(Error::bad_input(format!(
            "tensors of rank {} are not supported on the GPU (max {MAX_RANK})",
            shape.len()
        )));
    }
    Ok(())
}

/// Left-pads a per-axis list to [`MAX_RANK`] entries.
pub(super) fn pad6<T: Copy>(v: &[T], fill: T) -> Vec<T> {
    let mut out = vec![fill; MAX_RANK - v.len()];
    out.extend_from_slice(v);
    out
}

pub(super) fn run_node(
    gpu: &GpuBackend,
    rec: &mut Recorder,
    node: &Node,
    vals: &[Option<GpuTensor>],
    out_shape: Vec<usize>,
    act: Option<(f32, f32)>,
) -> Result<GpuTensor> {
    let arg = |k: usize| -> Result<&GpuTensor> {
        node.inputs
            .get(k)
            .and_then(|&v| vals[v].as_ref())
            .ok_or_else(|| Error::internal(format!("input {k} is not available")))
    };
    let x = arg(0)?;
    rank_check(&x.shape)?;
    rank_check(&out_shape)?;
    if let Op::Reshape = node.op {
        if prod(&out_shape) != x.len() {
            return Err(Error::internal(format!(
                "reshape {:?} -> {out_shape:?}",
                x.shape
            )));
        }
        return Ok(x.reshaped(out_shape));
    }
    let inputs = node
        .inputs
        .iter()
        .map(|&v| vals[v].as_ref().map(|t| t.shape.as_slice()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::internal("an input is not available"))?;
    check_shapes(&node.op, &inputs, &out_shape)?;
    let out = gpu.alloc(out_shape)?;
    let what = format!("layer '{}'", node_label(node));
    match &node.op {
        Op::Conv(c) => conv(gpu, rec, x, &out, c, act, &what)?,
        Op::Linear(l) => linear(gpu, rec, x, &out, l, &what)?,
        Op::Unary(u) => unary(rec, x, &out, *u)?,
        Op::Binary(b) => {
            let y = if b.konst.is_none() {
                Some(arg(1)?)
            } else {
                None
            };
            binary(gpu, rec, x, y, &out, b, &what)?
        }
        Op::ChannelAffine { scale, shift } => {
            let s = gpu.const_buffer(&scale.data, &what)?;
            let t = gpu.const_buffer(&shift.data, &what)?;
            let total = x.len();
            let p = Params::new()
                .u(total)
                .u(x.shape[1])
                .u(prod(&x.shape[2..]).max(1));
            rec.dispatch_1d(
                Kernel::ChannelAffine,
                &[x.into(), (&s).into(), (&t).into(), (&out).into()],
                p,
                total,
            )?;
        }
        Op::Pool(p) => {
            expect_rank4(x, &out)?;
            let kind = match p.kind {
                PoolKind::Max => 0,
                PoolKind::Avg {
                    count_include_pad: false,
                } => 1,
                PoolKind::Avg {
                    count_include_pad: true,
                } => 2,
            };
            let (s, o) = (&x.shape, &out.shape);
            let params = Params::new()
                .us(&[out.len(), s[2], s[3], o[2], o[3]])
                .us(&p.kernel)
                .us(&p.strides)
                .us(&p.dilations)
                .us(&p.pads)
                .u(kind);
            rec.dispatch_1d(
                Kernel::Pool2d,
                &[x.into(), (&out).into()],
                params,
                out.len(),
            )?;
        }
        Op::GlobalPool { max } => {
            expect_rank4(x, &out)?;
            let planes = x.shape[0] * x.shape[1];
            let p = Params::new()
                .u(planes)
                .u(x.shape[2] * x.shape[3])
                .u(*max as usize);
            rec.dispatch_1d(Kernel::GlobalPool, &[x.into(), (&out).into()], p, planes)?;
        }
        Op::Reduce { kind, axes, .. } => reduce(rec, x, &out, *kind, axes)?,
        Op::Reshape => unreachable_reshape()?,
        Op::Transpose { perm } => {
            if perm.len() != x.shape.len() {
                return Err(Error::internal(format!("perm {perm:?} for {:?}", x.shape)));
            }
            let st = strides_of(&x.shape);
            let in_stride: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
            let o = out.shape.clone();
            gather(
                rec,
                x,
                &out,
                &o,
                &vec![0; o.len()],
                &vec![1; o.len()],
                &o,
                &in_stride,
                0.0,
            )?;
        }
        Op::Concat { axis } => {
            let ost = strides_of(&out.shape);
            let mut offset = 0;
            for k in 0..node.inputs.len() {
                let src = arg(k)?;
                let s = src.shape.clone();
                let n = s.len();
                let base = offset * ost[*axis];
                gather_to(
                    rec,
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
            let o = out.shape.clone();
            gather(
                rec,
                x,
                &out,
                &o,
                starts,
                steps,
                &x.shape,
                &strides_of(&x.shape),
                0.0,
            )?;
        }
        Op::Pad { pads, value } => {
            let o = out.shape.clone();
            let starts: Vec<i64> = pads.iter().map(|&(b, _)| -(b as i64)).collect();
            gather(
                rec,
                x,
                &out,
                &o,
                &starts,
                &vec![1; o.len()],
                &x.shape,
                &strides_of(&x.shape),
                *value,
            )?;
        }
        Op::Softmax { axis } => {
            let s = &x.shape;
            let inner = prod(&s[axis + 1..]);
            let p = Params::new()
                .u(prod(&s[..*axis]) * inner)
                .u(s[*axis])
                .u(inner);
            rec.dispatch_1d(
                Kernel::Softmax,
                &[x.into(), (&out).into()],
                p,
                prod(&s[..*axis]) * inner,
            )?;
        }
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => {
            let p = Params::new()
                .u(x.len())
                .u(x.shape[1])
                .u(prod(&x.shape[2..]))
                .u(*size)
                .f(*alpha)
                .f(*beta)
                .f(*bias);
            rec.dispatch_1d(Kernel::Lrn, &[x.into(), (&out).into()], p, x.len())?;
        }
    }
    Ok(out)
}

/// Kernels run without wgpu's bounds checks, so shapes that would make them index out of range
/// are refused here (they would be an importer bug).
fn check_shapes(op: &Op, inputs: &[&[usize]], out: &[usize]) -> Result<()> {
    let x = inputs[0];
    let bad = || {
        Err(Error::internal(format!(
            "inconsistent shapes {inputs:?} -> {out:?}"
        )))
    };
    let ok = match op {
        Op::Unary(_) => x == out,
        Op::Softmax { axis } => x == out && *axis < x.len(),
        Op::ChannelAffine { scale, shift } => {
            x == out && x.len() >= 2 && scale.len() == x[1] && shift.len() == x[1]
        }
        Op::Lrn { size, .. } => x == out && x.len() >= 2 && *size >= 1,
        Op::GlobalPool { .. } => x.len() == 4 && out == [x[0], x[1], 1, 1],
        Op::Pool(_) => x.len() == 4 && out.len() == 4 && out[..2] == x[..2],
        Op::Reduce { axes, .. } => {
            let kept: usize = (0..x.len())
                .filter(|d| !axes.contains(d))
                .map(|d| x[d])
                .product();
            axes.iter().all(|&a| a >= 1 && a < x.len()) && prod(out) == kept
        }
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
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        bad()
    }
}

fn unreachable_reshape() -> Result<()> {
    Err(Error::internal("reshape handled before allocation"))
}

pub(super) fn expect_rank4(x: &GpuTensor, out: &GpuTensor) -> Result<()> {
    if x.shape.len() != 4 || out.shape.len() != 4 {
        return Err(Error::internal(format!(
            "pooling needs NCHW, got {:?} -> {:?}",
            x.shape, out.shape
        )));
    }
    Ok(())
}
