//! Graph execution: validation, scheduling across threads, buffer reuse and op fusion.
//!
//! The IR guarantees that no op mixes samples (axis 0 is never moved or reduced, checked in
//! `validate`), so a batch at least as large as the thread pool runs as independent single-sample
//! passes, one contiguous chunk of samples per thread: each pass's activations stay in cache and
//! threads never synchronise. Smaller batches run whole, with each op using all threads.

use std::sync::Arc;

use rayon::prelude::*;

use super::{conv, eltwise, layout, linear, lrn, pool, reduce, softmax};
use crate::backend::{Forward, HostTensor};
use crate::error::{Error, Result};
use crate::model::{Graph, Model, Op, ValueId};

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

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
        let arity_ok = match &n.op {
            Op::Binary(b) => n.inputs.len() == if b.konst.is_some() { 1 } else { 2 },
            Op::Concat { .. } => !n.inputs.is_empty(),
            _ => n.inputs.len() == 1,
        };
        if !arity_ok {
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
        let mixes_batch = match &n.op {
            Op::Transpose { perm } => perm.first() != Some(&0),
            Op::Concat { axis } | Op::Softmax { axis } => *axis == 0,
            Op::Reduce { axes, .. } => axes.contains(&0),
            Op::Slice { starts, steps } => starts.first() != Some(&0) || steps.first() != Some(&1),
            Op::Pad { pads, .. } => pads.first() != Some(&(0, 0)),
            Op::Reshape => g.values[n.output].sample_len() != g.values[n.inputs[0]].sample_len(),
            _ => false,
        };
        if mixes_batch {
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
                matches!(n.op, Op::Conv(_) | Op::Linear(_))
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

/// Freed activation buffers, handed out again so steady-state passes do not allocate.
#[derive(Default)]
pub(super) struct BufPool {
    free: Vec<Vec<f32>>,
}

impl BufPool {
    /// A buffer of length `n` with unspecified contents (every op overwrites its output).
    pub(super) fn take(&mut self, n: usize) -> Vec<f32> {
        // Best fit among buffers already long enough: truncating costs nothing.
        let fit = (0..self.free.len())
            .filter(|&i| self.free[i].len() >= n)
            .min_by_key(|&i| self.free[i].len());
        if let Some(i) = fit {
            let mut v = self.free.swap_remove(i);
            v.truncate(n);
            return v;
        }
        let grow = (0..self.free.len())
            .filter(|&i| self.free[i].capacity() >= n)
            .max_by_key(|&i| self.free[i].len());
        if let Some(i) = grow {
            let mut v = self.free.swap_remove(i);
            v.resize(n, 0.0);
            return v;
        }
        vec![0.0; n]
    }

    pub(super) fn put(&mut self, v: Vec<f32>) {
        if v.capacity() > 0 {
            self.free.push(v);
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

impl Cx<'_> {
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
            let src = self.get(&vals, v)?;
            if src.len() != dest.len() {
                return Err(Error::internal(format!(
                    "value {v} has {} values",
                    src.len()
                )));
            }
            dest.copy_from_slice(src);
        }
        vals.into_iter().flatten().for_each(|b| pool.put(b));
        Ok(())
    }

    /// Runs every node; the kept values are still in the returned slots (the input never is:
    /// read it through `get`).
    pub(super) fn run_values(&self, pool: &mut BufPool) -> Result<Vec<Option<Vec<f32>>>> {
        let g = self.g;
        let mut vals: Vec<Option<Vec<f32>>> = vec![None; g.values.len()];
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
                .node(i, act, &ys, &mut vals, pool)
                .map_err(|e| e.context(format!("node {i} ({})", node.op.kind_name())))?;
            if y.len() != numel(&ys) {
                return Err(Error::internal(format!(
                    "node {i} ({}) produced {} values for shape {ys:?}",
                    node.op.kind_name(),
                    y.len()
                )));
            }
            vals[out] = Some(y);
            for &v in node.inputs.iter().chain([&out]) {
                let dead = self.plan.last[v].is_none_or(|l| l == i);
                if dead && !self.plan.kept[v] {
                    if let Some(b) = vals[v].take() {
                        pool.put(b);
                    }
                }
            }
            i += if fused { 2 } else { 1 };
        }
        Ok(vals)
    }

    pub(super) fn get<'v>(&'v self, vals: &'v [Option<Vec<f32>>], v: ValueId) -> Result<&'v [f32]> {
        if v == self.g.input {
            return Ok(self.input);
        }
        vals[v]
            .as_deref()
            .ok_or_else(|| Error::internal(format!("value {v} read after release")))
    }
}

impl Cx<'_> {
    /// Whether node `i` may overwrite input `v`: nothing reads it later, it is not the caller's
    /// input, a tap or the output, and the node does not read it twice.
    fn ownable(&self, i: usize, v: ValueId) -> bool {
        let n = &self.g.nodes[i];
        v != self.g.input
            && !self.plan.kept[v]
            && self.plan.last[v] == Some(i)
            && n.inputs.iter().filter(|&&u| u == v).count() == 1
    }

    fn take(&self, vals: &mut [Option<Vec<f32>>], v: ValueId) -> Result<Vec<f32>> {
        vals[v]
            .take()
            .ok_or_else(|| Error::internal(format!("value {v} read after release")))
    }

    /// Runs node `i` (with `act` fused on when the next node is its activation).
    fn node(
        &self,
        i: usize,
        act: Option<crate::model::Unary>,
        ys: &[usize],
        vals: &mut [Option<Vec<f32>>],
        pool: &mut BufPool,
    ) -> Result<Vec<f32>> {
        let node = &self.g.nodes[i];
        let a = node.inputs[0];
        let xs = self.shape(a);
        let n_out = numel(ys);
        let par = self.par;
        match &node.op {
            Op::Unary(u) if self.ownable(i, a) => {
                let mut y = self.take(vals, a)?;
                eltwise::unary_inplace(*u, &mut y);
                Ok(y)
            }
            Op::ChannelAffine { scale, shift } if self.ownable(i, a) => {
                let mut y = self.take(vals, a)?;
                eltwise::channel_affine_inplace(&mut y, &xs, &scale.data, &shift.data)?;
                Ok(y)
            }
            Op::Reshape if self.ownable(i, a) => self.take(vals, a),
            Op::Binary(b) => {
                if let Some(k) = &b.konst {
                    if xs == ys && self.ownable(i, a) {
                        let mut y = self.take(vals, a)?;
                        eltwise::binary_assign(
                            b.kind,
                            &mut y,
                            ys,
                            &k.data,
                            &k.shape,
                            !b.konst_is_lhs,
                        )?;
                        return Ok(y);
                    }
                    let x = self.get(vals, a)?;
                    let mut y = pool.take(n_out);
                    if b.konst_is_lhs {
                        eltwise::binary(b.kind, &k.data, &k.shape, x, &xs, &mut y, ys)?;
                    } else {
                        eltwise::binary(b.kind, x, &xs, &k.data, &k.shape, &mut y, ys)?;
                    }
                    return Ok(y);
                }
                let c = node.inputs[1];
                let cs = self.shape(c);
                for (acc, other, os, acc_is_lhs) in [(a, c, &cs, true), (c, a, &xs, false)] {
                    if self.shape(acc) == ys && self.ownable(i, acc) {
                        let mut y = self.take(vals, acc)?;
                        let o = self.get(vals, other)?;
                        eltwise::binary_assign(b.kind, &mut y, ys, o, os, acc_is_lhs)?;
                        return Ok(y);
                    }
                }
                let mut y = pool.take(n_out);
                let (x, z) = (self.get(vals, a)?, self.get(vals, c)?);
                eltwise::binary(b.kind, x, &xs, z, &cs, &mut y, ys)?;
                Ok(y)
            }
            Op::Concat { axis } => {
                let shapes: Vec<Vec<usize>> = node.inputs.iter().map(|&v| self.shape(v)).collect();
                let inputs = node
                    .inputs
                    .iter()
                    .zip(&shapes)
                    .map(|(&v, s)| Ok((self.get(vals, v)?, &s[..])))
                    .collect::<Result<Vec<_>>>()?;
                let mut y = pool.take(n_out);
                layout::concat(&inputs, *axis, ys, &mut y)?;
                Ok(y)
            }
            op => {
                let x = self.get(vals, a)?;
                let mut y = pool.take(n_out);
                match op {
                    Op::Conv(c) => conv::conv2d(x, &xs, c, ys, act, par, &mut y)?,
                    Op::Linear(l) => {
                        let o = l.weight.shape.first().copied().unwrap_or(0);
                        if ys.split_last() != Some((&o, &xs[..xs.len().saturating_sub(1)])) {
                            return Err(Error::internal(format!("Linear {xs:?} -> {ys:?}")));
                        }
                        linear::linear(x, &xs, l, act, par, &mut y)?
                    }
                    Op::Unary(u) => eltwise::unary(*u, x, &mut y)?,
                    Op::ChannelAffine { scale, shift } => {
                        eltwise::channel_affine(x, &xs, &scale.data, &shift.data, &mut y)?
                    }
                    Op::Pool(p) => pool::pool2d(x, &xs, p, ys, par, &mut y)?,
                    Op::GlobalPool { max } => pool::global_pool(x, &xs, *max, &mut y)?,
                    Op::Reduce { kind, axes, .. } => reduce::reduce(x, &xs, *kind, axes, &mut y)?,
                    Op::Reshape => {
                        if x.len() != y.len() {
                            return Err(Error::internal(format!("Reshape {xs:?} -> {ys:?}")));
                        }
                        y.copy_from_slice(x)
                    }
                    Op::Transpose { perm } => {
                        if perm
                            .iter()
                            .map(|&p| xs.get(p).copied())
                            .collect::<Option<Vec<_>>>()
                            != Some(ys.to_vec())
                        {
                            return Err(Error::internal(format!("Transpose {xs:?} -> {ys:?}")));
                        }
                        layout::transpose(x, &xs, perm, &mut y)?
                    }
                    Op::Slice { starts, steps } => {
                        layout::slice(x, &xs, starts, steps, ys, &mut y)?
                    }
                    Op::Pad { pads, value } => layout::pad(x, &xs, pads, *value, &mut y)?,
                    Op::Softmax { axis } => softmax::softmax(x, &xs, *axis, &mut y)?,
                    Op::Lrn {
                        size,
                        alpha,
                        beta,
                        bias,
                    } => lrn::lrn(x, &xs, *size, *alpha, *beta, *bias, &mut y)?,
                    Op::Binary(_) | Op::Concat { .. } => {
                        return Err(Error::internal("binary/concat dispatched twice"))
                    }
                }
                Ok(y)
            }
        }
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
