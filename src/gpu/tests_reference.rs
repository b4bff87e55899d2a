//! Straightforward reference loops over full-shape host tensors, written to be obviously
//! correct rather than fast.

use crate::backend::HostTensor;
use crate::model::*;

pub(super) fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &n)| acc * n + i)
}

/// numpy broadcasting, spelled out: right-align, size-1 axes read index 0.
fn bcast_read(t: &[f32], shape: &[usize], out_idx: &[usize]) -> f32 {
    let off = out_idx.len() - shape.len();
    let idx: Vec<usize> = (0..shape.len())
        .map(|d| if shape[d] == 1 { 0 } else { out_idx[d + off] })
        .collect();
    t[ravel(&idx, shape)]
}

pub(super) fn reference(g: &Graph, input: &HostTensor) -> Vec<Option<HostTensor>> {
    let n = input.shape[0];
    let mut vals: Vec<Option<HostTensor>> = vec![None; g.values.len()];
    vals[g.input] = Some(input.clone());
    for node in &g.nodes {
        let x = vals[node.inputs[0]].clone().expect("input computed");
        let os = g.values[node.output].full_shape(n);
        let total: usize = os.iter().product();
        let mut out = vec![0f32; total];
        let xs = &x.shape;
        match &node.op {
            Op::Conv(c) => {
                let (ch, h, w) = (xs[1], xs[2], xs[3]);
                let (oc, oh, ow) = (os[1], os[2], os[3]);
                let (kh, kw) = (c.weight.shape[2], c.weight.shape[3]);
                let icg = ch / c.groups;
                let ocg = oc / c.groups;
                for (i, o) in out.iter_mut().enumerate() {
                    let [b, co, oy, ox] = unravel(i, &os)[..] else {
                        unreachable!()
                    };
                    let g0 = co / ocg;
                    let mut acc = c.bias.as_ref().map_or(0.0, |b| b.data[co]);
                    for ci in 0..icg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * c.strides[0] + ky * c.dilations[0]) as isize
                                    - c.pads[0] as isize;
                                let ix = (ox * c.strides[1] + kx * c.dilations[1]) as isize
                                    - c.pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x.data
                                    [ravel(&[b, g0 * icg + ci, iy as usize, ix as usize], xs)];
                                let wv = c.weight.data[ravel(&[co, ci, ky, kx], &c.weight.shape)];
                                acc += xv * wv;
                            }
                        }
                    }
                    *o = acc;
                }
                let _ = (oh, ow);
            }
            Op::Linear(l) => {
                let k = *xs.last().unwrap();
                let o = l.weight.shape[0];
                for (i, v) in out.iter_mut().enumerate() {
                    let (r, j) = (i / o, i % o);
                    let mut acc = l.bias.as_ref().map_or(0.0, |b| b.data[j]);
                    for kk in 0..k {
                        acc += x.data[r * k + kk] * l.weight.data[j * k + kk];
                    }
                    *v = acc;
                }
            }
            Op::Unary(u) => out
                .iter_mut()
                .zip(&x.data)
                .for_each(|(o, &v)| *o = u.apply(v)),
            Op::Binary(b) => {
                let (a, ashape, c, cshape) = match &b.konst {
                    None => {
                        let y = vals[node.inputs[1]].clone().unwrap();
                        (x.data.clone(), x.shape.clone(), y.data, y.shape)
                    }
                    Some(k) if b.konst_is_lhs => (
                        k.data.to_vec(),
                        k.shape.clone(),
                        x.data.clone(),
                        x.shape.clone(),
                    ),
                    Some(k) => (
                        x.data.clone(),
                        x.shape.clone(),
                        k.data.to_vec(),
                        k.shape.clone(),
                    ),
                };
                for (i, o) in out.iter_mut().enumerate() {
                    let idx = unravel(i, &os);
                    *o = b
                        .kind
                        .apply(bcast_read(&a, &ashape, &idx), bcast_read(&c, &cshape, &idx));
                }
            }
            Op::ChannelAffine { scale, shift } => {
                for (i, o) in out.iter_mut().enumerate() {
                    let c = unravel(i, &os)[1];
                    *o = x.data[i] * scale.data[c] + shift.data[c];
                }
            }
            Op::Pool(p) => {
                let (h, w) = (xs[2] as isize, xs[3] as isize);
                let [pt, pl, pb, pr] = p.pads.map(|v| v as isize);
                for (i, o) in out.iter_mut().enumerate() {
                    let [b, c, oy, ox] = unravel(i, &os)[..] else {
                        unreachable!()
                    };
                    let (mut mx, mut sum, mut inb, mut padded) = (f32::NEG_INFINITY, 0.0, 0, 0);
                    for ky in 0..p.kernel[0] {
                        for kx in 0..p.kernel[1] {
                            let iy = (oy * p.strides[0] + ky * p.dilations[0]) as isize - pt;
                            let ix = (ox * p.strides[1] + kx * p.dilations[1]) as isize - pl;
                            if iy >= -pt && iy < h + pb && ix >= -pl && ix < w + pr {
                                padded += 1;
                            }
                            if iy >= 0 && iy < h && ix >= 0 && ix < w {
                                let v = x.data[ravel(&[b, c, iy as usize, ix as usize], xs)];
                                mx = mx.max(v);
                                sum += v;
                                inb += 1;
                            }
                        }
                    }
                    *o = match p.kind {
                        PoolKind::Max => mx,
                        PoolKind::Avg {
                            count_include_pad: false,
                        } => sum / inb as f32,
                        PoolKind::Avg {
                            count_include_pad: true,
                        } => sum / padded as f32,
                    };
                }
            }
            Op::GlobalPool { max } => {
                let hw = xs[2] * xs[3];
                for (i, o) in out.iter_mut().enumerate() {
                    let s = &x.data[i * hw..(i + 1) * hw];
                    *o = if *max {
                        s.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                    } else {
                        s.iter().sum::<f32>() / hw as f32
                    };
                }
            }
            Op::Reduce { kind, axes, .. } => {
                let kept: Vec<usize> = (0..xs.len()).filter(|d| !axes.contains(d)).collect();
                let kshape: Vec<usize> = kept.iter().map(|&d| xs[d]).collect();
                let count: usize = axes.iter().map(|&a| xs[a]).product();
                let init = if *kind == ReduceKind::Max {
                    f32::NEG_INFINITY
                } else {
                    0.0
                };
                out.iter_mut().for_each(|o| *o = init);
                for (i, &v) in x.data.iter().enumerate() {
                    let idx = unravel(i, xs);
                    let kidx: Vec<usize> = kept.iter().map(|&d| idx[d]).collect();
                    let o = &mut out[ravel(&kidx, &kshape)];
                    *o = if *kind == ReduceKind::Max {
                        o.max(v)
                    } else {
                        *o + v
                    };
                }
                if *kind == ReduceKind::Mean {
                    out.iter_mut().for_each(|o| *o /= count as f32);
                }
            }
            Op::Reshape => out.copy_from_slice(&x.data),
            Op::Transpose { perm } => {
                for (i, o) in out.iter_mut().enumerate() {
                    let oidx = unravel(i, &os);
                    let mut iidx = vec![0; xs.len()];
                    for (d, &p) in perm.iter().enumerate() {
                        iidx[p] = oidx[d];
                    }
                    *o = x.data[ravel(&iidx, xs)];
                }
            }
            Op::Concat { axis } => {
                for (i, o) in out.iter_mut().enumerate() {
                    let mut idx = unravel(i, &os);
                    for &v in &node.inputs {
                        let t = vals[v].as_ref().unwrap();
                        if idx[*axis] < t.shape[*axis] {
                            *o = t.data[ravel(&idx, &t.shape)];
                            break;
                        }
                        idx[*axis] -= t.shape[*axis];
                    }
                }
            }
            Op::Slice { starts, steps } => {
                for (i, o) in out.iter_mut().enumerate() {
                    let idx = unravel(i, &os);
                    let src: Vec<usize> = (0..idx.len())
                        .map(|d| (starts[d] + idx[d] as i64 * steps[d]) as usize)
                        .collect();
                    *o = x.data[ravel(&src, xs)];
                }
            }
            Op::Pad { pads, value } => {
                for (i, o) in out.iter_mut().enumerate() {
                    let idx = unravel(i, &os);
                    let src: Vec<i64> = (0..idx.len())
                        .map(|d| idx[d] as i64 - pads[d].0 as i64)
                        .collect();
                    let inside = src.iter().zip(xs).all(|(&s, &n)| s >= 0 && s < n as i64);
                    *o = if inside {
                        x.data[ravel(&src.iter().map(|&s| s as usize).collect::<Vec<_>>(), xs)]
                    } else {
                        *value
                    };
                }
            }
            Op::Softmax { axis } => {
                for (i, o) in out.iter_mut().enumerate() {
                    let idx = unravel(i, &os);
                    let at = |j: usize| {
                        let mut k = idx.clone();
                        k[*axis] = j;
                        x.data[ravel(&k, xs)]
                    };
                    let mx = (0..xs[*axis]).map(at).fold(f32::NEG_INFINITY, f32::max);
                    let sum: f32 = (0..xs[*axis]).map(|j| (at(j) - mx).exp()).sum();
                    *o = (x.data[i] - mx).exp() / sum;
                }
            }
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => {
                for (i, o) in out.iter_mut().enumerate() {
                    let idx = unravel(i, &os);
                    let c = idx[1] as isize;
                    let lo = (c - ((size - 1) / 2) as isize).max(0);
                    let hi = (c + (size - 1).div_ceil(2) as isize).min(xs[1] as isize - 1);
                    let mut sq = 0.0;
                    for cc in lo..=hi {
                        let mut k = idx.clone();
                        k[1] = cc as usize;
                        sq += x.data[ravel(&k, xs)].powi(2);
                    }
                    *o = x.data[i] / (bias + alpha / *size as f32 * sq).powf(*beta);
                }
            }
            Op::LogSoftmax { axis } => {
                for (i, o) in out.iter_mut().enumerate() {
                    let idx = unravel(i, &os);
                    let at = |j: usize| {
                        let mut k = idx.clone();
                        k[*axis] = j;
                        x.data[ravel(&k, xs)]
                    };
                    let mx = (0..xs[*axis]).map(at).fold(f32::NEG_INFINITY, f32::max);
                    let sum: f32 = (0..xs[*axis]).map(|j| (at(j) - mx).exp()).sum();
                    *o = x.data[i] - mx - sum.ln();
                }
            }
            Op::LayerNorm {
                axis,
                epsilon,
                scale,
                bias,
            } => {
                let len: usize = xs[*axis..].iter().product();
                for (r, row) in x.data.chunks(len).enumerate() {
                    let mean = row.iter().sum::<f32>() / len as f32;
                    let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / len as f32;
                    for (j, v) in row.iter().enumerate() {
                        let b = bias.as_ref().map_or(0.0, |b| b.data[j]);
                        out[r * len + j] = (v - mean) / (var + epsilon).sqrt() * scale.data[j] + b;
                    }
                }
            }
        }
        vals[node.output] = Some(HostTensor {
            shape: os,
            data: out,
        });
    }
    vals
}
