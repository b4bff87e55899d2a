//! Reverse mode: for every batch chunk, the forward (keeping what the backward reads), the seed,
//! then each node's VJP in reverse order, all recorded into one encoder and submitted once.

use super::exec::{check_input, chunk_input, chunk_size, node_label, plan_fusion, run_node};
use super::kernels::{Kernel, Recorder, TypedParams};
use super::node::GpuVjp;
use super::params::word;
use super::{GpuBackend, GpuTensor};
use crate::backend::{GradRule, Gradients, Seed};
use crate::error::{Error, Result};
use crate::model::{Model, ValueId};
use crate::ops::kernel;
use std::collections::HashMap;

/// The VJP kernels take at most rank `MAX_RANK` (shapes are padded to it).
/// `accumulate`'s parameters (WGSL `AccumulateParams`): `dst += src` over `total` elements, for
/// the gradient of a value several nodes read.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct AccumulateParams {
    pub(crate) total: u32,
}
impl TypedParams for AccumulateParams {
    const KERNELS: &'static [Kernel] = &[Kernel::Accumulate];
}

/// `softmax_prob_seed`'s parameters (WGSL `ProbSeedParams`): `rows` logit rows of `k` classes.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ProbSeedParams {
    pub(crate) rows: u32,
    pub(crate) k: u32,
}
impl TypedParams for ProbSeedParams {
    const KERNELS: &'static [Kernel] = &[Kernel::SoftmaxProbSeed];
}

fn check_rank(cx: &GpuVjp) -> Result<()> {
    use super::shape::MAX_RANK;
    if cx.in_shapes.iter().any(|s| s.len() > MAX_RANK) || cx.gy.shape().len() > MAX_RANK {
        return Err(Error::bad_input(format!(
            "tensors of rank above {MAX_RANK} are not supported on the GPU"
        )));
    }
    if cx.node.inputs.is_empty() {
        return Err(Error::internal("node without inputs"));
    }
    Ok(())
}

/// Where finished results go: kept as-is with one chunk, copied into full-batch tensors
/// otherwise.
struct Sink {
    single: bool,
    full: HashMap<ValueId, GpuTensor>,
    kept: HashMap<ValueId, GpuTensor>,
}

impl Sink {
    fn new(
        gpu: &GpuBackend,
        single: bool,
        values: &[ValueId],
        shape: impl Fn(ValueId) -> Vec<usize>,
    ) -> Result<Sink> {
        let mut full = HashMap::new();
        if !single {
            for &v in values {
                if let std::collections::hash_map::Entry::Vacant(e) = full.entry(v) {
                    e.insert(gpu.alloc(shape(v))?);
                }
            }
        }
        Ok(Sink {
            single,
            full,
            kept: HashMap::new(),
        })
    }

    /// Stores chunk rows `[b0, b0 + nb)` of `v`; `None` means zeros.
    fn put(
        &mut self,
        gpu: &GpuBackend,
        rec: &mut Recorder,
        v: ValueId,
        t: Option<&GpuTensor>,
        shape: Vec<usize>,
        b0: usize,
    ) -> Result<()> {
        let nb = shape[0];
        let per = shape[1..].iter().product::<usize>() as u64 * 4;
        if self.single {
            let t = match t {
                Some(t) => t.clone(),
                None => {
                    let z = gpu.alloc(shape)?;
                    rec.clear(z.buffer(), 0, z.byte_len());
                    z
                }
            };
            self.kept.insert(v, t);
        } else if let Some(dst) = self.full.get(&v) {
            let (off, size) = (b0 as u64 * per, nb as u64 * per);
            match t {
                Some(t) => rec.copy(t.buffer(), 0, dst.buffer(), off, size),
                None => rec.clear(dst.buffer(), off, size),
            }
        }
        Ok(())
    }

    fn take(&self, v: ValueId, what: &str) -> Result<GpuTensor> {
        self.kept
            .get(&v)
            .or_else(|| self.full.get(&v))
            .cloned()
            .ok_or_else(|| Error::internal(format!("{what} was never computed")))
    }
}

pub(crate) fn gradients(
    gpu: &GpuBackend,
    model: &Model,
    input: &GpuTensor,
    seed: &Seed<GpuTensor>,
    rule: GradRule,
    wrt: &[ValueId],
    taps: &[ValueId],
) -> Result<Gradients<GpuTensor>> {
    let g = &model.graph;
    let batch = check_input(model, input, taps)?;
    let nv = g.values.len();
    let at = seed.at();
    for &v in wrt.iter().chain([&at]) {
        if v >= nv {
            return Err(Error::bad_input(format!(
                "model '{}' has no value #{v} to take gradients at",
                model.name
            )));
        }
    }
    match seed {
        Seed::Grad { grad, .. } => {
            let want = g.values[at].full_shape(batch);
            if grad.shape != want {
                return Err(Error::bad_input(format!(
                    "the seed gradient for '{}' must have shape {want:?}, got {:?}",
                    g.values[at].name, grad.shape
                )));
            }
        }
        Seed::SoftmaxProb { targets, .. } => {
            let k = g.values[at].sample_len();
            if targets.len() != batch {
                return Err(Error::bad_input(format!(
                    "{} targets for a batch of {batch}",
                    targets.len()
                )));
            }
            if let Some(t) = targets.iter().find(|&&t| t >= k) {
                return Err(Error::bad_input(format!(
                    "target class {t} is out of range: '{}' has {k} classes",
                    g.values[at].name
                )));
            }
        }
    }

    let chunk = chunk_size(gpu, g)?.min(batch);
    let single = chunk == batch;
    // Values whose gradient or forward value is asked for must exist, so must not be fused away.
    let mut observed: Vec<ValueId> = taps.to_vec();
    observed.push(at);
    observed.extend_from_slice(wrt);
    let fusion = plan_fusion(g, &observed);
    let last = g.last_uses();

    // Nodes up to the seed's producer whose output leads to the seed take part in backward.
    let stop = g.producer(at);
    let mut reaches = vec![false; nv];
    reaches[at] = true;
    if let Some(stop) = stop {
        for node in g.nodes[..=stop].iter().rev() {
            if reaches[node.output] {
                for &v in &node.inputs {
                    reaches[v] = true;
                }
            }
        }
    }
    let active = |i: usize| stop.is_some_and(|s| i <= s) && reaches[g.nodes[i].output];
    // For each forward value the backward reads: the node whose VJP reads it last (lowest index).
    let mut bwd_last: Vec<Option<usize>> = vec![None; nv];
    for (i, node) in g.nodes.iter().enumerate().rev() {
        if active(i) {
            for v in kernel(&node.op).gpu_saved(node, rule) {
                bwd_last[v] = Some(i);
            }
        }
    }
    let softmax_seed = matches!(seed, Seed::SoftmaxProb { .. });
    let keep = |v: ValueId| bwd_last[v].is_some() || (softmax_seed && v == at);

    let mut rec = gpu.begin(format!("GPU gradients of '{}'", model.name))?;
    // Targets are written with `queue.write_buffer`, which lands before the whole submission:
    // each chunk gets its own buffer, taken from the pool before anything is recorded (a buffer
    // freed mid-recording could still be written by earlier commands) and held until submit.
    let mut targets_by_chunk = Vec::new();
    if let Seed::SoftmaxProb { targets, .. } = seed {
        for rows in targets.chunks(chunk) {
            let t = gpu.alloc(vec![rows.len()])?;
            let rows: Vec<f32> = rows.iter().map(|&t| t as f32).collect();
            gpu.queue
                .write_buffer(t.buffer(), 0, bytemuck::cast_slice(&rows));
            targets_by_chunk.push(t);
        }
    }

    let shape = |v: ValueId| g.values[v].full_shape(batch);
    let mut fwd_out: Vec<ValueId> = taps.to_vec();
    fwd_out.push(g.output);
    let fwd_out_full: Vec<ValueId> = fwd_out.iter().copied().filter(|&v| v != g.input).collect();
    let mut fwd_sink = Sink::new(gpu, single, &fwd_out_full, shape)?;
    fwd_sink.kept.insert(g.input, input.clone());
    let mut grad_out: Vec<ValueId> = wrt.to_vec();
    grad_out.push(g.input);
    let mut grad_sink = Sink::new(gpu, single, &grad_out, shape)?;

    let mut b0 = 0;
    while b0 < batch {
        let nb = chunk.min(batch - b0);
        let mut vals: Vec<Option<GpuTensor>> = vec![None; nv];
        let x = chunk_input(gpu, &mut rec, g, input, single, b0, nb)?;
        vals[g.input] = Some(x);

        // Forward, as `exec::forward`, except that values the backward reads stay alive.
        for (i, node) in g.nodes.iter().enumerate() {
            let release = |vals: &mut Vec<Option<GpuTensor>>| {
                for &v in &node.inputs {
                    if last[v] == Some(i) && v != g.output && !keep(v) {
                        vals[v] = None;
                    }
                }
            };
            if fusion.skip[i] {
                release(&mut vals);
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
            if fwd_out.contains(&out_id) {
                let s = g.values[out_id].full_shape(nb);
                fwd_sink.put(gpu, &mut rec, out_id, Some(&out), s, b0)?;
            }
            vals[out_id] = Some(out);
            release(&mut vals);
            if last[out_id].is_none() && !keep(out_id) {
                vals[out_id] = None;
            }
        }

        // The seed, always in a buffer of its own: gradients may later be accumulated into it.
        let mut grads: Vec<Option<GpuTensor>> = vec![None; nv];
        let seed_t = gpu.alloc(g.values[at].full_shape(nb))?;
        match seed {
            Seed::Grad { grad, .. } => {
                let per = g.values[at].sample_len() as u64 * 4;
                rec.copy(
                    grad.buffer(),
                    b0 as u64 * per,
                    seed_t.buffer(),
                    0,
                    nb as u64 * per,
                );
            }
            Seed::SoftmaxProb { .. } => {
                let logits = vals[at]
                    .as_ref()
                    .ok_or_else(|| Error::internal("seed logits were released"))?;
                let t = targets_by_chunk
                    .get(b0 / chunk)
                    .ok_or_else(|| Error::internal("no targets for a chunk"))?;
                let k = g.values[at].sample_len();
                rec.dispatch_1d(
                    Kernel::SoftmaxProbSeed,
                    &[logits.into(), t.into(), (&seed_t).into()],
                    ProbSeedParams {
                        rows: word(nb),
                        k: word(k),
                    },
                    nb,
                )?;
                if bwd_last[at].is_none() {
                    vals[at] = None;
                }
            }
        }
        grads[at] = Some(seed_t);

        let mut captured = vec![false; nv];
        if let Some(stop) = stop {
            for i in (0..=stop).rev() {
                let node = &g.nodes[i];
                let Some(gy) = grads[node.output].take() else {
                    continue;
                };
                let out = node.output;
                // A value's gradient is complete once every reader (all later nodes) is done.
                if wrt.contains(&out) && !captured[out] {
                    captured[out] = true;
                    grad_sink.put(gpu, &mut rec, out, Some(&gy), gy.shape.clone(), b0)?;
                }
                let what = format!("layer '{}'", node_label(node));
                let alias_ok = !wrt.contains(&out);
                let in_shapes = node
                    .inputs
                    .iter()
                    .map(|&v| g.values[v].full_shape(nb))
                    .collect();
                let mut cx = GpuVjp::new(
                    gpu, &mut rec, node, in_shapes, &vals, &gy, rule, alias_ok, what,
                );
                let parts = check_rank(&cx)
                    .and_then(|()| kernel(&node.op).gpu_vjp(&mut cx))
                    .map_err(|e| {
                        e.context(format!(
                            "backward of layer '{}' ({})",
                            node_label(node),
                            node.op.kind_name()
                        ))
                    })?;
                drop(gy);
                for (v, d) in parts {
                    match &grads[v] {
                        None => grads[v] = Some(d),
                        Some(acc) => {
                            rec.dispatch_1d(
                                Kernel::Accumulate,
                                &[(&d).into(), acc.into()],
                                AccumulateParams {
                                    total: word(d.len()),
                                },
                                d.len(),
                            )?;
                        }
                    }
                }
                for v in kernel(&node.op).gpu_saved(node, rule) {
                    if bwd_last[v] == Some(i) {
                        vals[v] = None;
                    }
                }
            }
        }
        drop(vals);
        for &v in &grad_out {
            if !captured[v] {
                captured[v] = true;
                let s = g.values[v].full_shape(nb);
                grad_sink.put(gpu, &mut rec, v, grads[v].as_ref(), s, b0)?;
            }
        }
        b0 += nb;
    }

    rec.submit()?;
    drop(targets_by_chunk);

    let output = fwd_sink.take(g.output, "the model output")?;
    let taps = taps
        .iter()
        .map(|&v| Ok((v, fwd_sink.take(v, &g.values[v].name)?)))
        .collect::<Result<Vec<_>>>()?;
    let input_grad = grad_sink.take(g.input, "the input gradient")?;
    let layer_grads = wrt
        .iter()
        .map(|&v| Ok((v, grad_sink.take(v, &g.values[v].name)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Gradients {
        output,
        taps,
        input_grad,
        layer_grads,
    })
}
