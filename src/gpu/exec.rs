//! Graph execution: batch chunking, op-by-op recording, taps, and buffer release at last use.

use super::kernels::Recorder;
use super::node::GpuFwd;
use super::shape::MAX_RANK;
use super::{GpuBackend, GpuTensor};
use crate::backend::Forward;
use crate::error::{Error, Result};
use crate::model::{Graph, Model, Node, Op, Unary, ValueId};
use crate::ops::kernel;
use std::collections::HashMap;

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

    let mut rec = gpu.begin(format!("GPU forward of '{}'", model.name))?;

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

    rec.submit()?;

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
        if !kernel(&n.op).gpu_fuses_clamp() || readers[n.output] != 1 {
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

fn rank_check(shape: &[usize]) -> Result<()> {
    if shape.len() > MAX_RANK {
        return Err(Error::bad_input(format!(
            "tensors of rank {} are not supported on the GPU (max {MAX_RANK})",
            shape.len()
        )));
    }
    Ok(())
}

/// Records node `node` through its op module (with a Relu/Clip clamp fused on when `act`).
pub(super) fn run_node(
    gpu: &GpuBackend,
    rec: &mut Recorder,
    node: &Node,
    vals: &[Option<GpuTensor>],
    out_shape: Vec<usize>,
    act: Option<(f32, f32)>,
) -> Result<GpuTensor> {
    let inputs = node
        .inputs
        .iter()
        .map(|&v| {
            vals.get(v)
                .and_then(Option::as_ref)
                .map(|t| t.shape.as_slice())
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::internal("an input is not available"))?;
    if inputs.is_empty() {
        return Err(Error::internal("node without inputs"));
    }
    rank_check(inputs[0])?;
    rank_check(&out_shape)?;
    // Kernels run without wgpu's bounds checks, so shapes that would make them index out of
    // range are refused here (they would be an importer bug).
    let k = kernel(&node.op);
    if !k.shapes_ok(&node.op, &inputs, &out_shape) {
        return Err(Error::internal(format!(
            "inconsistent shapes {inputs:?} -> {out_shape:?}"
        )));
    }
    let what = format!("layer '{}'", node_label(node));
    let mut cx = GpuFwd::new(gpu, rec, node, vals, out_shape, act, what);
    k.gpu_forward(&mut cx)
}
