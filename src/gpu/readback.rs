//! The one path from the GPU back to the host.

use super::pool::Usage;
use super::{GpuBackend, GpuTensor};
use crate::backend::HostTensor;
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;

pub(crate) fn read(gpu: &GpuBackend, tensor: &GpuTensor) -> Result<HostTensor> {
    let bytes = tensor.byte_len();
    if bytes == 0 {
        return HostTensor::new(tensor.shape.clone(), Vec::new());
    }
    let staging = gpu.pool.get(Usage::Staging, bytes);
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("netlens read"),
        });
    encoder.copy_buffer_to_buffer(tensor.buffer(), 0, staging.buffer(), 0, bytes);
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
    HostTensor::new(tensor.shape.clone(), data)
}
