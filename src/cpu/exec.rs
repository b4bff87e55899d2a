//! Graph execution: validation, scheduling across threads, buffer reuse and op fusion.
//!
//! The IR guarantees that no op mixes samples (axis 0 is never moved or reduced, checked in
//! `validate`), so a batch at least as large as the thread pool runs as independent single-sample
//! passes, one contiguous chunk of samples per thread: each pass's activations stay in cache and
//! threads never synchronise. Smaller batches run whole, with each op using all threads.

use std::sync::Arc;

use rayon::prelude::*;

use super::node::{numel, BufPool, CpuFwd, Values};
use crate::backend::{Forward, HostTensor};
use crate::error::{Error, Result};
use crate::model::{Graph, Model, Op, Unary, ValueId};
use crate::ops::kernel;

pub(crate) fn forward(
    model: &Model,
    input: &HostTensor,
    taps: &[ValueId],
) -> Result<Forward<Arc<HostTensor>>> {
    let g = &model.graph;
    let batch = check_input(model, input, taps)?;
    let in_shape = &g.values[g.input].shape;

    let mut keep = vec![g.output];
    let tap_slot: Vec<usize> = taps
        .iter()
        .map(|&t| {
            keep.iter().position(|&k| k == t).unwrap_or_else(|| {
                keep.push(t);
                keep.len() - 1
            })
        })
        .collect();
    let plan = Plan::new(g, &keep);
    let sample_lens: Vec<usize> = keep.iter().map(|&v| g.values[v].sample_len()).collect();
    let mut outs: Vec<Vec<f32>> = sample_lens.iter().map(|&n| vec![0.0; batch * n]).collect();
    let threads = rayon::current_num_threads().max(1);

    if batch < threads {
        let dests = outs.iter_mut().map(|o| &mut o[..]).collect();
        let cx = Cx {
            g,
            plan: &plan,
            input: &input.data,
            batch,
            par: true,
        };
        cx.run(&mut BufPool::default(), dests)?;
    } else {
        let isl = numel(in_shape);
        let work = split_by_thread(&mut outs, &sample_lens, batch, threads);
        work.into_par_iter()
            .map(|(start, count, mut dests)| {
                let mut pool = BufPool::default();
                for s in 0..count {
                    let at = (start + s) * isl;
                    let cx = Cx {
                        g,
                        plan: &plan,
                        input: &input.data[at..at + isl],
                        batch: 1,
                        par: false,
                    };
                    let d = dests
                        .iter_mut()
                        .zip(&sample_lens)
                        .map(|(d, &n)| &mut d[s * n..(s + 1) * n]);
                    cx.run(&mut pool, d.collect())?;
                }
                Ok(())
            })
            .collect::<Result<Vec<()>>>()?;
    }

    let tensors = keep
        .iter()
        .zip(outs)
        .map(|(&v, data)| HostTensor::new(g.values[v].full_shape(batch), data).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    Ok(Forward {
        output: tensors[0].clone(),
        taps: taps
            .iter()
            .zip(tap_slot)
            .map(|(&t, k)| (t, tensors[k].clone()))
            .collect(),
    })
}

/// Validates the graph, the input batch and the tap ids; returns the batch size.
pub(super) fn check_input(model: &Model, input: &HostTensor, taps: &[ValueId]) -> Result<usize> {
    let g = &model.graph;
    validate(g)?;
    let produced = produced_values(g);
    for &t in taps {
        if t >= g.values.len() || !produced[t] {
            return Err(Error::bad_input(format!(
                "model '{}' has no computed value with id {t} to tap",
                model.name
            )));
        }
    }
    let in_shape = &g.values[g.input].shape;
    if input.shape.len() != in_shape.len() + 1 || input.shape[1..] != in_shape[..] {
        return Err(Error::bad_input(format!(
            "input of shape {:?} does not match the model's input [N, {}]",
            input.shape,
            in_shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if input.data.len() != numel(&input.shape) {
        return Err(Error::bad_input(format!(
            "input has {} values for shape {:?}",
            input.data.len(),
            input.shape
        )));
    }
    let batch = input.shape[0];
    if batch == 0 {
        return Err(Error::bad_input("input batch is empty"));
    }
    Ok(batch)
}

pub(super) fn produced_values(g: &Graph) -> Vec<bool> {
    let mut p = vec![false; g.values.len()];
    if let Some(x) = p.get_mut(g.input) {
        *x = true;
    }
    for n in &g.nodes {
        if let Some(x) = p.get_mut(n.output) {
            *x = true;
        }
    }
    p
}

/// Structural checks that keep execution panic-free and per-sample splitting exact.
fn validate(g: &Graph) -> Result<()> {
    let nv = g.values.len();
    let bad = |m: String| Err(Error::internal(format!("malformed graph: {m}")));
    if g.input >= nv || g.output >= nv {
        return bad("input or output id out of range".into());
    }
    let mut produced = vec![false; nv];
    produced[g.input] = true;
    for (i, n) in g.nodes.iter().enumerate() {
        let k = kernel(&n.op);
        if !k.arity_ok(&n.op, n.inputs.len()) {
            return bad(format!(
                "node {i} ({}) has {} inputs",
                n.op.kind_name(),
                n.inputs.len()
            ));
        }
        if let Some(&v) = n.inputs.iter().find(|&&v| v >= nv || !produced[v]) {
            return bad(format!("node {i} reads value {v} before it is computed"));
        }
        if n.output >= nv || produced[n.output] {
            return bad(format!(
                "node {i} writes value {} that exists already",
                n.output
            ));
        }
        produced[n.output] = true;
        if k.mixes_batch(g, n) {
            return bad(format!(
                "node {i} ({}) moves the batch axis",
                n.op.kind_name()
            ));
        }
    }
    if !produced[g.output] {
        return bad("the output is never computed".into());
    }
    Ok(())
}

/// Per-forward facts about the graph: when values die, which values must survive, which
/// conv/linear + activation pairs run as one op.
pub(super) struct Plan {
    keep: Vec<ValueId>,
    last: Vec<Option<usize>>,
    kept: Vec<bool>,
    fuse: Vec<bool>,
}

impl Plan {
    /// `keep`: values that survive the pass (never fused away or overwritten in place).
    pub(super) fn new(g: &Graph, keep: &[ValueId]) -> Plan {
        let last = g.last_uses();
        let mut kept = vec![false; g.values.len()];
        keep.iter().for_each(|&v| kept[v] = true);
        let fuse = (0..g.nodes.len())
            .map(|i| {
                let (n, Some(next)) = (&g.nodes[i], g.nodes.get(i + 1)) else {
                    return false;
                };
                kernel(&n.op).cpu_fuses_activation()
                    && matches!(next.op, Op::Unary(_))
                    && next.inputs == [n.output]
                    && last[n.output] == Some(i + 1)
                    && !kept[n.output]
            })
            .collect();
        Plan {
            keep: keep.to_vec(),
            last,
            kept,
            fuse,
        }
    }
}

/// One pass over the graph for `batch` samples of `input`.
pub(super) struct Cx<'a> {
    pub(super) g: &'a Graph,
    pub(super) plan: &'a Plan,
    pub(super) input: &'a [f32],
    pub(super) batch: usize,
    pub(super) par: bool,
}

impl<'a> Cx<'a> {
    pub(super) fn shape(&self, v: ValueId) -> Vec<usize> {
        self.g.values[v].full_shape(self.batch)
    }

    /// Runs every node, then copies the kept values (output first, then taps) into `dests`.
    fn run(&self, pool: &mut BufPool, dests: Vec<&mut [f32]>) -> Result<()> {
        let vals = self.run_values(pool)?;
        if self.plan.keep.len() != dests.len() {
            return Err(Error::internal("kept values and destinations differ"));
        }
        for (dest, &v) in dests.into_iter().zip(&self.plan.keep) {
            let src = vals.get(v)?;
            if src.len() != dest.len() {
                return Err(Error::internal(format!(
                    "value {v} has {} values",
                    src.len()
                )));
            }
            dest.copy_from_slice(src);
        }
        vals.slots.into_iter().flatten().for_each(|b| pool.put(b));
        Ok(())
    }

    /// Runs every node; the kept values are still in the returned slots (the input never is:
    /// read it through `Values::get`).
    pub(super) fn run_values(&self, pool: &mut BufPool) -> Result<Values<'a>> {
        let g = self.g;
        let mut vals = Values {
            input_id: g.input,
            input: self.input,
            slots: vec![None; g.values.len()],
        };
        let mut i = 0;
        while i < g.nodes.len() {
            let node = &g.nodes[i];
            let fused = self.plan.fuse[i];
            let (out, act) = match g.nodes.get(i + 1).map(|n| (n, &n.op)) {
                Some((next, Op::Unary(u))) if fused => (next.output, Some(*u)),
                _ => (node.output, None),
            };
            let ys = self.shape(out);
            let y = self
                .node(i, act, ys.clone(), &mut vals, pool)
                .map_err(|e| e.context(format!("node {i} ({})", node.op.kind_name())))?;
            if y.len() != numel(&ys) {
                return Err(Error::internal(format!(
                    "node {i} ({}) produced {} values for shape {ys:?}",
                    node.op.kind_name(),
                    y.len()
                )));
            }
            vals.slots[out] = Some(y);
            for &v in node.inputs.iter().chain([&out]) {
                let dead = self.plan.last[v].is_none_or(|l| l == i);
                if dead && !self.plan.kept[v] {
                    if let Some(b) = vals.slots[v].take() {
                        pool.put(b);
                    }
                }
            }
            i += if fused { 2 } else { 1 };
        }
        Ok(vals)
    }

    /// Whether node `i` may overwrite input `v`: nothing reads it later, it is not the caller's
    /// input, a tap or the output, and the node does not read it twice.
    fn ownable(&self, i: usize, v: ValueId) -> bool {
        let n = &self.g.nodes[i];
        v != self.g.input
            && !self.plan.kept[v]
            && self.plan.last[v] == Some(i)
            && n.inputs.iter().filter(|&&u| u == v).count() == 1
    }

    /// Runs node `i` (with `act` fused on when the next node is its activation) through its op
    /// module.
    fn node(
        &self,
        i: usize,
        act: Option<Unary>,
        out_shape: Vec<usize>,
        vals: &mut Values,
        pool: &mut BufPool,
    ) -> Result<Vec<f32>> {
        let node = &self.g.nodes[i];
        let mut cx = CpuFwd {
            node,
            in_shapes: node.inputs.iter().map(|&v| self.shape(v)).collect(),
            out_shape,
            act,
            par: self.par,
            ownable: node.inputs.iter().map(|&v| self.ownable(i, v)).collect(),
            vals,
            pool,
        };
        kernel(&node.op).cpu_forward(&mut cx)
    }
}

/// Work of one thread: its first sample, its sample count, and its slice of each output.
pub(super) type ThreadWork<'a> = (usize, usize, Vec<&'a mut [f32]>);

/// Splits each full-batch output (`sample_lens[i]` floats per sample) into contiguous runs of
/// samples, one run per thread, so threads write disjoint slices without locks.
pub(super) fn split_by_thread<'a>(
    outs: &'a mut [Vec<f32>],
    sample_lens: &[usize],
    batch: usize,
    threads: usize,
) -> Vec<ThreadWork<'a>> {
    let mut rests: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[..]).collect();
    let mut work = Vec::with_capacity(threads);
    let mut start = 0;
    for t in 0..threads {
        let count = batch / threads + usize::from(t < batch % threads);
        let mut mine = Vec::with_capacity(sample_lens.len());
        for (rest, &n) in rests.iter_mut().zip(sample_lens) {
            let (head, tail) = std::mem::take(rest).split_at_mut(count * n);
            mine.push(head);
            *rest = tail;
        }
        work.push((start, count, mine));
        start += count;
    }
    work
}
