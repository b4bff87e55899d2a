//! The one path from the GPU back to the host.

use super::pool::Usage;
use super::{GpuBackend, GpuTensor};
use crate::backend::HostTensor;
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;

/// Reads several tensors back with one copy submission and one map: a method's results (its
/// logits, gradients, maps) cross to the host in a single read-back.
pub(crate) fn read_many(gpu: &GpuBackend, tensors: &[&GpuTensor]) -> Result<Vec<HostTensor>> {
    let offsets: Vec<u64> = tensors
        .iter()
        .scan(0u64, |at, t| {
            let start = *at;
            *at += t.byte_len();
            Some(start)
        })
        .collect();
    let bytes: u64 = tensors.iter().map(|t| t.byte_len()).sum();
    if bytes == 0 {
        return tensors
            .iter()
            .map(|t| HostTensor::new(t.shape.clone(), Vec::new()))
            .collect();
    }
    let staging = gpu.pool.get(Usage::Staging, bytes);
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("netlens read"),
        });
    for (t, &at) in tensors.iter().zip(&offsets) {
        if t.byte_len() > 0 {
            encoder.copy_buffer_to_buffer(t.buffer(), 0, staging.buffer(), at, t.byte_len());
        }
    }
    let index = gpu.submit(encoder.finish());
    let (tx, rx) = std::sync::mpsc::channel();
    staging
        .buffer()
        .map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
            let _ = tx.send(r);
        });
    gpu.device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: None,
        })
        .map_err(|e| Error::device(format!("waiting for the GPU: {e}")))?;
    rx.recv()
        .map_err(|_| Error::device("GPU read-back was dropped"))?
        .map_err(|e| Error::device(format!("mapping a GPU buffer for reading: {e}")))?;
    let data = {
        let view = staging
            .buffer()
            .get_mapped_range(0..bytes)
            .map_err(|e| Error::internal(format!("reading a mapped GPU buffer: {e}")))?;
        bytemuck::pod_collect_to_vec::<u8, f32>(&view)
    };
    staging.buffer().unmap();
    gpu.stats.readbacks.fetch_add(1, Ordering::Relaxed);
    gpu.stats.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    tensors
        .iter()
        .zip(&offsets)
        .map(|(t, &at)| {
            let start = (at / 4) as usize;
            HostTensor::new(
                t.shape.clone(),
                data[start..start + (t.byte_len() / 4) as usize].to_vec(),
            )
        })
        .collect()
}
