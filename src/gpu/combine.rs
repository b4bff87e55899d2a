//! The batch-combining backend ops on the device, composed from the model's own kernels
//! (broadcasting binary op, reduction) and buffer copies. Each is deferred into the next
//! submission, so a method that ends with them has still read nothing back.

use super::kernels::Recorder;
use super::ops::{binary_op, reduce as record_reduce, unary as record_unary};
use super::shape::MAX_RANK;
use super::{GpuBackend, GpuTensor};
use crate::backend::combine::{
    self, check_concat, check_elementwise, check_reduce, check_weighted_sum,
};
use crate::backend::Backend;
use crate::error::Result;
use crate::model::{Binary, BinaryKind, ReduceKind, Unary};
use std::sync::atomic::Ordering;

/// Whether the kernels can bind `t` whole (from offset 0, indexed in u32). Larger operands are
/// combined on the host instead, as `path_batch` builds its largest batches: correct, but a
/// read-back.
fn fits(gpu: &GpuBackend, t: &GpuTensor) -> bool {
    t.byte_len() <= gpu.binding_limit && t.len() <= u32::MAX as usize && t.shape().len() <= MAX_RANK
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
    binary_op(gpu, rec, a, Some(b), out, &op, "a batch-combining op")
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
    let out = gpu.alloc(shape.to_vec())?;
    if out.is_empty() {
        return Ok(out);
    }
    gpu.record_deferred("GPU weighted sum", |rec| {
        // Written under the submission lock: `write_buffer` lands before every command already
        // recorded, so the buffer must not be one a recording in flight still uses.
        let w = gpu.alloc(vec![g, s, 1])?;
        gpu.queue
            .write_buffer(w.buffer(), 0, bytemuck::cast_slice(weights));
        gpu.stats.uploads.fetch_add(1, Ordering::Relaxed);
        let products = gpu.alloc(vec![g, s, l])?;
        rec.keep([x, &w, &products, &out]);
        let (x3, out3) = (x.reshaped(vec![g, s, l]), out.reshaped(vec![g, 1, l]));
        record_binary(gpu, rec, &x3, &w, &products, BinaryKind::Mul)?;
        record_reduce(rec, &products, &out3, ReduceKind::Sum, &[1])
    })?;
    Ok(out)
}

/// One binary-kernel dispatch (the kernel broadcasts `b` onto `a`'s shape).
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
    let out = gpu.alloc(a.shape().to_vec())?;
    if out.is_empty() {
        return Ok(out);
    }
    gpu.record_deferred("GPU element-wise op", |rec| {
        rec.keep([a, b, &out]);
        record_binary(gpu, rec, a, b, &out, op)
    })?;
    Ok(out)
}

/// One dispatch of the model's reduce kernel, keeping the reduced axes.
pub(crate) fn reduce(
    gpu: &GpuBackend,
    x: &GpuTensor,
    kind: ReduceKind,
    axes: &[usize],
) -> Result<GpuTensor> {
    let shape = check_reduce(x.shape(), axes)?;
    if !fits(gpu, x) {
        return gpu.upload(&combine::reduce(&gpu.read(x)?, kind, axes)?);
    }
    let out = gpu.alloc(shape)?;
    if out.is_empty() || x.is_empty() {
        return Ok(out);
    }
    gpu.record_deferred("GPU reduction", |rec| {
        rec.keep([x, &out]);
        record_reduce(rec, x, &out, kind, axes)
    })?;
    Ok(out)
}

/// One dispatch of the model's unary (activation) kernel.
pub(crate) fn unary(gpu: &GpuBackend, x: &GpuTensor, op: Unary) -> Result<GpuTensor> {
    if !fits(gpu, x) {
        return gpu.upload(&combine::unary(&gpu.read(x)?, op));
    }
    let out = gpu.alloc(x.shape().to_vec())?;
    if out.is_empty() {
        return Ok(out);
    }
    gpu.record_deferred("GPU activation", |rec| {
        rec.keep([x, &out]);
        record_unary(rec, x, &out, op)
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
    let out = gpu.alloc(shape)?;
    gpu.record_deferred("GPU concatenation", |rec| {
        rec.keep(parts.iter().copied().chain([&out]));
        let mut at = 0;
        for p in parts {
            rec.copy(p.buffer(), 0, out.buffer(), at, p.byte_len());
            at += p.byte_len();
        }
        Ok(())
    })?;
    Ok(out)
}
