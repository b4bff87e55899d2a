//! Reverse mode: one forward pass that keeps what the VJPs read, then a walk over the nodes in
//! reverse from the seed value, accumulating gradients of values read by several nodes.
//!
//! Scheduling follows the forward: a batch at least as large as the thread pool runs as
//! independent single-sample forward + backward passes (samples never mix, so this is exact),
//! smaller batches run whole with each op using all threads.

use std::sync::Arc;

use rayon::prelude::*;

use super::exec::{check_input, produced_values, split_by_thread, Cx, Plan};
use super::node::{numel, BufPool, CpuVjp, Values};
use crate::backend::{GradRule, Gradients, HostTensor, Seed};
use crate::error::{Error, Result};
use crate::model::{Graph, Model, ValueId};
use crate::ops::kernel;

pub(crate) fn gradients(
    model: &Model,
    input: &HostTensor,
    seed: &Seed<Arc<HostTensor>>,
    rule: GradRule,
    wrt: &[ValueId],
    taps: &[ValueId],
) -> Result<Gradients<Arc<HostTensor>>> {
    let g = &model.graph;
    let batch = check_input(model, input, taps)?;
    let produced = produced_values(g);
    let at = seed.at();
    for (&v, what) in wrt
        .iter()
        .map(|v| (v, "differentiate against"))
        .chain([(&at, "seed")])
    {
        if v >= g.values.len() || !produced[v] {
            return Err(Error::bad_input(format!(
                "model '{}' has no computed value with id {v} to {what}",
                model.name
            )));
        }
    }
    let at_len = g.values[at].sample_len();
    match seed {
        Seed::Grad { grad, .. } => {
            let want = g.values[at].full_shape(batch);
            if grad.shape != want || grad.data.len() != numel(&want) {
                return Err(Error::bad_input(format!(
                    "seed gradient of shape {:?} does not match value '{}' of shape {want:?}",
                    grad.shape, g.values[at].name
                )));
            }
        }
        Seed::SoftmaxProb { targets, .. } => {
            if targets.len() != batch {
                return Err(Error::bad_input(format!(
                    "{} targets for a batch of {batch}",
                    targets.len()
                )));
            }
            if let Some(t) = targets.iter().find(|&&t| t >= at_len) {
                return Err(Error::bad_input(format!(
                    "target class {t} out of range: '{}' has {at_len} classes",
                    g.values[at].name
                )));
            }
        }
    }

    let bw = BwPlan::new(g, at, rule, wrt, matches!(seed, Seed::SoftmaxProb { .. }));
    let mut keep = vec![g.output];
    keep.extend_from_slice(taps);
    keep.extend((0..g.values.len()).filter(|&v| bw.held[v]));
    let plan = Plan::new(g, &keep);

    // Destinations, per sample: output, taps, input gradient, wrt gradients.
    let in_len = g.values[g.input].sample_len();
    let lens: Vec<usize> = [g.output]
        .iter()
        .chain(taps)
        .chain([&g.input])
        .chain(wrt)
        .map(|&v| g.values[v].sample_len())
        .collect();
    let mut outs: Vec<Vec<f32>> = lens.iter().map(|&n| vec![0.0; batch * n]).collect();
    let threads = rayon::current_num_threads().max(1);
    let run = Run {
        g,
        bw: &bw,
        taps,
        wrt,
    };
    let seed_part = |start: usize, count: usize| match seed {
        Seed::Grad { grad, .. } => SeedPart::Grad(&grad.data[start * at_len..][..count * at_len]),
        Seed::SoftmaxProb { targets, .. } => SeedPart::Prob(&targets[start..start + count]),
    };

    if batch < threads {
        let cx = Cx {
            g,
            plan: &plan,
            input: &input.data,
            batch,
            par: true,
        };
        let dests = outs.iter_mut().map(|o| &mut o[..]).collect();
        run.run(&cx, &mut BufPool::default(), seed_part(0, batch), dests)?;
    } else {
        let work = split_by_thread(&mut outs, &lens, batch, threads);
        work.into_par_iter()
            .map(|(start, count, mut dests)| {
                let mut pool = BufPool::default();
                for s in 0..count {
                    let at = (start + s) * in_len;
                    let cx = Cx {
                        g,
                        plan: &plan,
                        input: &input.data[at..at + in_len],
                        batch: 1,
                        par: false,
                    };
                    let d = dests
                        .iter_mut()
                        .zip(&lens)
                        .map(|(d, &n)| &mut d[s * n..(s + 1) * n]);
                    run.run(&cx, &mut pool, seed_part(start + s, 1), d.collect())?;
                }
                Ok(())
            })
            .collect::<Result<Vec<()>>>()?;
    }

    let ids: Vec<ValueId> = [g.output]
        .iter()
        .chain(taps)
        .chain([&g.input])
        .chain(wrt)
        .copied()
        .collect();
    let mut tensors = ids
        .iter()
        .zip(outs)
        .map(|(&v, data)| HostTensor::new(g.values[v].full_shape(batch), data).map(Arc::new))
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let mut next = || {
        tensors
            .next()
            .ok_or_else(|| Error::internal("missing gradient output"))
    };
    let output = next()?;
    let taps = taps
        .iter()
        .map(|&t| Ok((t, next()?)))
        .collect::<Result<Vec<_>>>()?;
    let input_grad = next()?;
    let layer_grads = wrt
        .iter()
        .map(|&w| Ok((w, next()?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Gradients {
        output,
        taps,
        input_grad,
        layer_grads,
    })
}

/// The seed for the samples of one pass.
enum SeedPart<'a> {
    Grad(&'a [f32]),
    Prob(&'a [usize]),
}

/// What the backward walk needs, fixed per graph, seed value, rule and `wrt`.
struct BwPlan {
    at: ValueId,
    rule: GradRule,
    /// Last node the walk visits: the producer of the seed value (none for the input).
    stop: Option<usize>,
    /// Values whose gradient is wanted: those on a path from the input or a `wrt` value.
    reach: Vec<bool>,
    /// Per node: the forward values its VJP reads.
    saved: Vec<Vec<ValueId>>,
    /// Values kept after the forward for backward (the `saved` ones, and softmax seed logits).
    held: Vec<bool>,
    /// Per value: the node after whose VJP it is no longer read (the smallest reader index).
    release: Vec<Option<usize>>,
}

impl BwPlan {
    fn new(g: &Graph, at: ValueId, rule: GradRule, wrt: &[ValueId], prob: bool) -> BwPlan {
        let nv = g.values.len();
        let stop = g.producer(at);
        let mut reach = vec![false; nv];
        reach[g.input] = true;
        wrt.iter().for_each(|&w| reach[w] = true);
        for n in &g.nodes {
            if n.inputs.iter().any(|&v| reach[v]) {
                reach[n.output] = true;
            }
        }
        let saved: Vec<Vec<ValueId>> = g
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let active = stop.is_some_and(|s| i <= s) && n.inputs.iter().any(|&v| reach[v]);
                if active {
                    kernel(&n.op).cpu_saved(n, rule)
                } else {
                    vec![]
                }
            })
            .collect();
        let mut held = vec![false; nv];
        let mut release = vec![None; nv];
        for (i, vs) in saved.iter().enumerate() {
            for &v in vs {
                held[v] = true;
                release[v].get_or_insert(i);
            }
        }
        if prob {
            held[at] = true;
        }
        BwPlan {
            at,
            rule,
            stop,
            reach,
            saved,
            held,
            release,
        }
    }
}

/// One forward + backward pass over the samples of a `Cx`.
struct Run<'a> {
    g: &'a Graph,
    bw: &'a BwPlan,
    taps: &'a [ValueId],
    wrt: &'a [ValueId],
}

impl Run<'_> {
    /// `dests`: output, taps, input gradient, wrt gradients (zero-filled by the caller; values
    /// that get no gradient stay zero).
    fn run(
        &self,
        cx: &Cx<'_>,
        pool: &mut BufPool,
        seed: SeedPart,
        mut dests: Vec<&mut [f32]>,
    ) -> Result<()> {
        let (g, bw) = (self.g, self.bw);
        let mut vals = cx.run_values(pool)?;
        let nt = self.taps.len();
        for (dest, &v) in dests.iter_mut().zip([g.output].iter().chain(self.taps)) {
            copy(dest, vals.get(v)?)?;
        }
        // Values kept only as output or taps are done.
        for (v, slot) in vals.slots.iter_mut().enumerate() {
            if !bw.held[v] {
                if let Some(b) = slot.take() {
                    pool.put(b);
                }
            }
        }

        let at = bw.at;
        let len = numel(&cx.shape(at));
        let mut sd = pool.take(len)?;
        match seed {
            SeedPart::Grad(s) => copy(&mut sd, s)?,
            SeedPart::Prob(targets) => softmax_prob_seed(vals.get(at)?, targets, &mut sd)?,
        }
        if bw.release[at].is_none() {
            if let Some(b) = vals.slots[at].take() {
                pool.put(b);
            }
        }
        let mut grads: Vec<Option<Vec<f32>>> = vec![None; g.values.len()];
        grads[at] = Some(sd);

        let wrt_dests = nt + 2;
        if let Some(stop) = bw.stop {
            for i in (0..=stop).rev() {
                let v = g.nodes[i].output;
                if let Some(gy) = grads[v].take() {
                    // Every reader of `v` comes later in the graph, so its gradient is complete.
                    for (j, &w) in self.wrt.iter().enumerate() {
                        if w == v {
                            copy(dests[wrt_dests + j], &gy)?;
                        }
                    }
                    let contribs = self.node_vjp(cx, i, gy, &vals, pool).map_err(|e| {
                        e.context(format!("VJP of node {i} ({})", g.nodes[i].op.kind_name()))
                    })?;
                    for (u, d) in contribs {
                        match &mut grads[u] {
                            Some(acc) => {
                                if acc.len() != d.len() {
                                    return Err(Error::internal(format!(
                                        "gradients of value {u} differ in length"
                                    )));
                                }
                                acc.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
                                pool.put(d);
                            }
                            slot => *slot = Some(d),
                        }
                    }
                }
                for &u in &bw.saved[i] {
                    if bw.release[u] == Some(i) {
                        if let Some(b) = vals.slots[u].take() {
                            pool.put(b);
                        }
                    }
                }
            }
        }
        if let Some(gx) = &grads[g.input] {
            copy(dests[nt + 1], gx)?;
            for (j, &w) in self.wrt.iter().enumerate() {
                if w == g.input {
                    copy(dests[wrt_dests + j], gx)?;
                }
            }
        }
        grads
            .into_iter()
            .chain(vals.slots)
            .flatten()
            .for_each(|b| pool.put(b));
        Ok(())
    }

    /// The gradient contributions of node `i` to its inputs that need one, from `gy`, the
    /// gradient of its output (consumed: moved into a contribution or returned to the pool).
    fn node_vjp(
        &self,
        cx: &Cx,
        i: usize,
        gy: Vec<f32>,
        vals: &Values,
        pool: &mut BufPool,
    ) -> Result<Vec<(ValueId, Vec<f32>)>> {
        let node = &self.g.nodes[i];
        let reach = &self.bw.reach;
        if !node.inputs.iter().any(|&u| reach[u]) {
            pool.put(gy);
            return Ok(vec![]);
        }
        let mut vjp = CpuVjp {
            node,
            gy: Some(gy),
            in_shapes: node.inputs.iter().map(|&v| cx.shape(v)).collect(),
            out_shape: cx.shape(node.output),
            wanted: node.inputs.iter().map(|&v| reach[v]).collect(),
            rule: self.bw.rule,
            par: cx.par,
            saved: &self.bw.saved[i],
            vals,
            pool,
        };
        let out = kernel(&node.op).cpu_vjp(&mut vjp);
        if let Some(gy) = vjp.gy.take() {
            vjp.pool.put(gy);
        }
        out
    }
}

/// `p_t (e_t - p)` per sample, `p` the softmax of the sample's logits (all its values).
fn softmax_prob_seed(logits: &[f32], targets: &[usize], out: &mut [f32]) -> Result<()> {
    let n = targets.len();
    if n == 0 || logits.len() != out.len() || !logits.len().is_multiple_of(n) {
        return Err(Error::internal(
            "softmax seed: logits do not split into samples",
        ));
    }
    let k = logits.len() / n;
    for ((z, o), &t) in logits.chunks(k).zip(out.chunks_mut(k)).zip(targets) {
        // f64 so the seed itself adds no error beyond the logits'.
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = z.iter().map(|&v| (v as f64 - m).exp()).sum();
        let p = |j: usize| (z[j] as f64 - m).exp() / sum;
        let pt = p(t);
        for (j, o) in o.iter_mut().enumerate() {
            let e = if j == t { 1.0 } else { 0.0 };
            *o = (pt * (e - p(j))) as f32;
        }
    }
    Ok(())
}

fn copy(dest: &mut [f32], src: &[f32]) -> Result<()> {
    if dest.len() != src.len() {
        return Err(Error::internal(format!(
            "{} values for a destination of {}",
            src.len(),
            dest.len()
        )));
    }
    dest.copy_from_slice(src);
    Ok(())
}
