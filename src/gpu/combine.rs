//! The batch-combining backend ops on the device, composed from the model's own kernels
//! (broadcasting binary op, reduction) and buffer copies. Each is deferred into the next
//! submission, so a method that ends with them has still read nothing back.

use super::kernels::Recorder;
use super::ops::{binary, reduce};
use super::perturb::defer_dispatches;
use super::{GpuBackend, GpuTensor};
use crate::backend::combine::{self, check_concat, check_elementwise, check_weighted_sum};
use crate::backend::Backend;
use crate::error::Result;
use crate::model::{Binary, BinaryKind, ReduceKind};
use std::sync::atomic::Ordering;

/// Whether the kernels can bind `t` whole (from offset 0, indexed in u32). Larger operands are
/// combined on the host instead, as `path_batch` builds its largest batches: correct, but a
/// read-back.
fn fits(gpu: &GpuBackend, t: &GpuTensor) -> bool {
    t.byte_len() <= gpu.binding_limit && t.len() <= u32::MAX as usize
}

/// `out = a ∘ b` recorded into `rec` (broadcasting `b` as the binary kernel does).
fn record_binary(
    gpu: &GpuBackend,
    rec: &mut Recorder,
    a: &GpuTensor,
    b: &GpuTensor,
    out: &GpuTensor,
    kind: BinaryKind,
) -> Result<()> {
    let op = Binary {
        kind,
        konst: None,
        konst_is_lhs: false,
    };
    binary(gpu, rec, a, Some(b), out, &op, "a batch-combining op")
}

/// Products into a scratch tensor, then a sum over the sample axis of `[G, S, L]`: the same
/// f32 products and summation order as the host formula.
pub(crate) fn weighted_sum(
    gpu: &GpuBackend,
    x: &GpuTensor,
    weights: &[f32],
    shape: &[usize],
) -> Result<GpuTensor> {
    let (g, s, l) = check_weighted_sum(x.shape(), weights.len(), shape)?;
    if !fits(gpu, x) {
        return gpu.upload(&combine::weighted_sum(&gpu.read(x)?, weights, shape)?);
    }
    let _exclusive = gpu.exclusive()?;
    let out = gpu.alloc(shape.to_vec())?;
    if out.is_empty() {
        return Ok(out);
    }
    let w = gpu.alloc(vec![g, s, 1])?;
    gpu.queue
        .write_buffer(w.buffer(), 0, bytemuck::cast_slice(weights));
    gpu.stats.uploads.fetch_add(1, Ordering::Relaxed);
    let products = gpu.alloc(vec![g, s, l])?;
    let (x3, out3) = (x.reshaped(vec![g, s, l]), out.reshaped(vec![g, 1, l]));
    defer_dispatches(gpu, &[x, &w, &products, &out], "GPU weighted sum", |rec| {
        record_binary(gpu, rec, &x3, &w, &products, BinaryKind::Mul)?;
        reduce(rec, &products, &out3, ReduceKind::Sum, &[1])
    })?;
    Ok(out)
}

/// One binary-kernel dispatch.
pub(crate) fn elementwise(
    gpu: &GpuBackend,
    a: &GpuTensor,
    b: &GpuTensor,
    op: BinaryKind,
) -> Result<GpuTensor> {
    check_elementwise(a.shape(), b.shape())?;
    if !fits(gpu, a) {
        return gpu.upload(&combine::elementwise(&gpu.read(a)?, &gpu.read(b)?, op)?);
    }
    let _exclusive = gpu.exclusive()?;
    let out = gpu.alloc(a.shape().to_vec())?;
    if out.is_empty() {
        return Ok(out);
    }
    defer_dispatches(gpu, &[a, b, &out], "GPU element-wise op", |rec| {
        record_binary(gpu, rec, a, b, &out, op)
    })?;
    Ok(out)
}

/// Buffer-to-buffer copies; a single part is returned as it is (tensors are never written
/// after they are made, so sharing its buffer is safe).
pub(crate) fn concat(gpu: &GpuBackend, parts: &[&GpuTensor]) -> Result<GpuTensor> {
    let shapes: Vec<&[usize]> = parts.iter().map(|p| p.shape()).collect();
    let shape = check_concat(&shapes)?;
    if let [one] = parts {
        return Ok((*one).clone());
    }
    let _exclusive = gpu.exclusive()?;
    let out = gpu.alloc(shape)?;
    let mut keep = parts.to_vec();
    keep.push(&out);
    defer_dispatches(gpu, &keep, "GPU concatenation", |rec| {
        let mut at = 0;
        for p in parts {
            rec.copy(p.buffer(), 0, out.buffer(), at, p.byte_len());
            at += p.byte_len();
        }
        Ok(())
    })?;
    Ok(out)
}
