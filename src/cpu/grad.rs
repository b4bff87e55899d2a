//! Reverse mode: one forward pass that keeps what the VJPs read, then a walk over the nodes in
//! reverse from the seed value, accumulating gradients of values read by several nodes.
//!
//! Scheduling follows the forward: a batch at least as large as the thread pool runs as
//! independent single-sample forward + backward passes (samples never mix, so this is exact),
//! smaller batches run whole with each op using all threads.

use std::sync::Arc;

use rayon::prelude::*;

use super::exec::{check_input, produced_values, split_by_thread, BufPool, Cx, Plan};
use super::{conv, eltwise, layout, linear, lrn, pool, reduce, softmax};
use crate::backend::{GradRule, Gradients, HostTensor, Seed};
use crate::error::{Error, Result};
use crate::model::{BinaryKind, Graph, Model, Op, PoolKind, ReduceKind, ValueId};

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

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
                    saved_by(n, rule)
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

/// The forward values the VJP of `n` reads.
fn saved_by(n: &crate::model::Node, rule: GradRule) -> Vec<ValueId> {
    let x = n.inputs[0];
    match &n.op {
        Op::Unary(u) if u.is_relu_like() && rule == GradRule::Deconvnet => vec![],
        Op::Unary(u) if eltwise::unary_vjp_reads_input(*u) => vec![x],
        Op::Unary(_) | Op::Softmax { .. } => vec![n.output],
        Op::Binary(b) => match (&b.konst, b.kind) {
            (None, BinaryKind::Mul | BinaryKind::Div) => n.inputs.clone(),
            (Some(_), BinaryKind::Div) if b.konst_is_lhs => vec![x],
            _ => vec![],
        },
        Op::Pool(p) if p.kind == PoolKind::Max => vec![x],
        Op::GlobalPool { max: true } => vec![x],
        Op::Reduce {
            kind: ReduceKind::Max,
            ..
        } => vec![x],
        Op::Lrn { .. } => vec![x],
        _ => vec![],
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
        cx: &Cx,
        pool: &mut BufPool,
        seed: SeedPart,
        mut dests: Vec<&mut [f32]>,
    ) -> Result<()> {
        let (g, bw) = (self.g, self.bw);
        let mut vals = cx.run_values(pool)?;
        let nt = self.taps.len();
        for (dest, &v) in dests.iter_mut().zip([g.output].iter().chain(self.taps)) {
            copy(dest, cx.get(&vals, v)?)?;
        }
        // Values kept only as output or taps are done.
        for (v, slot) in vals.iter_mut().enumerate() {
            if !bw.held[v] {
                if let Some(b) = slot.take() {
                    pool.put(b);
                }
            }
        }

        let at = bw.at;
        let len = numel(&cx.shape(at));
        let mut sd = pool.take(len);
        match seed {
            SeedPart::Grad(s) => copy(&mut sd, s)?,
            SeedPart::Prob(targets) => softmax_prob_seed(cx.get(&vals, at)?, targets, &mut sd)?,
        }
        if bw.release[at].is_none() {
            if let Some(b) = vals[at].take() {
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
                        if let Some(b) = vals[u].take() {
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
            .chain(vals)
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
        mut gy: Vec<f32>,
        vals: &[Option<Vec<f32>>],
        pool: &mut BufPool,
    ) -> Result<Vec<(ValueId, Vec<f32>)>> {
        let node = &self.g.nodes[i];
        let reach = &self.bw.reach;
        let a = node.inputs[0];
        let xs = cx.shape(a);
        let ys = cx.shape(node.output);
        let par = cx.par;
        let get = |v: ValueId| cx.get(vals, v);
        if !node.inputs.iter().any(|&u| reach[u]) {
            pool.put(gy);
            return Ok(vec![]);
        }
        match &node.op {
            Op::Unary(u) => {
                let saved: &[f32] = match self.bw.saved[i].first() {
                    Some(&v) => get(v)?,
                    None => &[],
                };
                eltwise::unary_vjp_inplace(*u, self.bw.rule, saved, &mut gy)?;
                return Ok(vec![(a, gy)]);
            }
            Op::ChannelAffine { scale, .. } => {
                eltwise::channel_affine_vjp_inplace(&mut gy, &xs, &scale.data)?;
                return Ok(vec![(a, gy)]);
            }
            Op::Reshape => {
                if gy.len() != numel(&xs) {
                    return Err(Error::internal(format!("Reshape {xs:?} -> {ys:?}")));
                }
                return Ok(vec![(a, gy)]);
            }
            Op::Binary(b) => {
                // (value, is lhs, operand shape) per value operand; a constant is the other side.
                let mut slots = vec![];
                let (lhs_data, lhs_shape, rhs_data, rhs_shape);
                let reads = matches!(b.kind, BinaryKind::Mul | BinaryKind::Div);
                let saved = |v: ValueId| -> Result<Option<&[f32]>> {
                    if self.bw.saved[i].contains(&v) {
                        get(v).map(Some)
                    } else {
                        Ok(None)
                    }
                };
                match &b.konst {
                    Some(k) => {
                        let xd = saved(a)?;
                        if b.konst_is_lhs {
                            (lhs_data, lhs_shape) = (Some(&k.data[..]), k.shape.clone());
                            (rhs_data, rhs_shape) = (xd, xs.clone());
                            slots.push((a, false));
                        } else {
                            (lhs_data, lhs_shape) = (xd, xs.clone());
                            (rhs_data, rhs_shape) = (Some(&k.data[..]), k.shape.clone());
                            slots.push((a, true));
                        }
                    }
                    None => {
                        let c = node.inputs[1];
                        let (da, dc) = if reads {
                            (Some(get(a)?), Some(get(c)?))
                        } else {
                            (None, None)
                        };
                        (lhs_data, lhs_shape) = (da, xs.clone());
                        (rhs_data, rhs_shape) = (dc, cx.shape(c));
                        slots.extend([(a, true), (c, false)]);
                    }
                }
                slots.retain(|&(v, _)| reach[v]);
                let mut out = Vec::with_capacity(slots.len());
                let last = slots.len();
                for (k, (v, lhs)) in slots.into_iter().enumerate() {
                    let own = if lhs { &lhs_shape } else { &rhs_shape };
                    // The last operand of an Add/Sub without broadcast takes `gy` itself.
                    let movable = k + 1 == last
                        && own == &ys
                        && matches!(b.kind, BinaryKind::Add | BinaryKind::Sub);
                    if movable {
                        if b.kind == BinaryKind::Sub && !lhs {
                            gy.iter_mut().for_each(|g| *g = -*g);
                        }
                        out.push((v, std::mem::take(&mut gy)));
                        continue;
                    }
                    let mut dx = pool.take(numel(own));
                    eltwise::binary_vjp(
                        b.kind, lhs, lhs_data, &lhs_shape, rhs_data, &rhs_shape, &gy, &ys, &mut dx,
                    )?;
                    out.push((v, dx));
                }
                pool.put(gy);
                return Ok(out);
            }
            Op::Concat { axis } => {
                let mut out = vec![];
                let mut offset = 0;
                for &v in &node.inputs {
                    let s = cx.shape(v);
                    if reach[v] {
                        let mut dx = pool.take(numel(&s));
                        layout::concat_vjp(&gy, &ys, *axis, offset, &s, &mut dx)?;
                        out.push((v, dx));
                    }
                    offset += s.get(*axis).copied().unwrap_or(0);
                }
                pool.put(gy);
                return Ok(out);
            }
            _ => {}
        }
        let mut dx = pool.take(numel(&xs));
        let x_if = |read: bool| -> Result<&[f32]> {
            if read {
                get(a)
            } else {
                Ok(&[])
            }
        };
        match &node.op {
            Op::Conv(c) => conv::conv2d_vjp(&gy, &ys, c, &xs, par, &mut dx)?,
            Op::Linear(l) => linear::linear_vjp(&gy, l, &xs, par, &mut dx)?,
            Op::Pool(p) => {
                let x = x_if(p.kind == PoolKind::Max)?;
                pool::pool2d_vjp(x, &xs, p, &gy, &ys, par, &mut dx)?
            }
            Op::GlobalPool { max } => pool::global_pool_vjp(x_if(*max)?, &xs, *max, &gy, &mut dx)?,
            Op::Reduce { kind, axes, .. } => {
                let x = x_if(*kind == ReduceKind::Max)?;
                reduce::reduce_vjp(x, &xs, *kind, axes, &gy, &mut dx)?
            }
            Op::Transpose { perm } => layout::transpose_vjp(&gy, &xs, perm, &mut dx)?,
            Op::Slice { starts, steps } => {
                layout::slice_vjp(&gy, &ys, starts, steps, &xs, &mut dx)?
            }
            Op::Pad { pads, .. } => layout::pad_vjp(&gy, &xs, pads, &mut dx)?,
            Op::Softmax { axis } => {
                softmax::softmax_vjp(get(node.output)?, &xs, *axis, &gy, &mut dx)?
            }
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => lrn::lrn_vjp(get(a)?, &xs, *size, *alpha, *beta, *bias, &gy, &mut dx)?,
            Op::Unary(_)
            | Op::ChannelAffine { .. }
            | Op::Reshape
            | Op::Binary(_)
            | Op::Concat { .. } => return Err(Error::internal("VJP dispatched twice")),
        }
        pool.put(gy);
        Ok(vec![(a, dx)])
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
