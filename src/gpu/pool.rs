//! Buffer pool keyed by usage and size class, so repeated forwards allocate nothing new.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What a pooled buffer is for; buffers of different usages never mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Usage {
    /// Activations, inputs, outputs: bound as storage and copied both ways.
    Storage,
    /// One forward's kernel parameters.
    Uniform,
    /// Read-back staging.
    Staging,
}

impl Usage {
    fn flags(self) -> wgpu::BufferUsages {
        use wgpu::BufferUsages as U;
        match self {
            Usage::Storage => U::STORAGE | U::COPY_SRC | U::COPY_DST,
            Usage::Uniform => U::UNIFORM | U::COPY_DST,
            Usage::Staging => U::MAP_READ | U::COPY_DST,
        }
    }
}

pub(crate) struct Pool {
    device: wgpu::Device,
    max_buffer_size: u64,
    free: Mutex<HashMap<(Usage, u64), Vec<wgpu::Buffer>>>,
    created: AtomicU64,
}

/// A buffer on loan from the pool; it goes back when the last handle drops. Work already
/// recorded or submitted against it stays valid: later users are ordered after it on the queue.
pub(crate) struct PooledBuffer {
    buffer: wgpu::Buffer,
    key: (Usage, u64),
    pool: Arc<Pool>,
}

impl PooledBuffer {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.free.lock() {
            free.entry(self.key).or_default().push(self.buffer.clone());
        }
    }
}

/// Size classes in quarter steps between powers of two (at most 25% waste), 256 bytes minimum.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    let p = 1u64 << (63 - b.leading_zeros());
    if b == p {
        return p;
    }
    let quarter = p / 4;
    p + (b - p).div_ceil(quarter) * quarter
}

impl Pool {
    pub(crate) fn new(device: wgpu::Device, max_buffer_size: u64) -> Arc<Pool> {
        Arc::new(Pool {
            device,
            max_buffer_size,
            free: Mutex::new(HashMap::new()),
            created: AtomicU64::new(0),
        })
    }

    /// Number of wgpu buffers this pool has ever created.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Lends a buffer of at least `bytes` bytes. Callers check `bytes <= max_buffer_size`.
    pub(crate) fn get(self: &Arc<Self>, usage: Usage, bytes: u64) -> PooledBuffer {
        let mut class = size_class(bytes);
        if class > self.max_buffer_size {
            class = bytes.max(4).next_multiple_of(4);
        }
        let key = (usage, class);
        let reused = self
            .free
            .lock()
            .ok()
            .and_then(|mut f| f.get_mut(&key).and_then(Vec::pop));
        let buffer = reused.unwrap_or_else(|| {
            self.created.fetch_add(1, Ordering::Relaxed);
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("netlens pooled"),
                size: class,
                usage: usage.flags(),
                mapped_at_creation: false,
            })
        });
        PooledBuffer {
            buffer,
            key,
            pool: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_are_quarter_steps() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(256), 256);
        assert_eq!(size_class(257), 320);
        assert_eq!(size_class(1000), 1024);
        assert_eq!(size_class(1025), 1280);
        for b in [300u64, 5000, 123_457, 10_000_000] {
            let c = size_class(b);
            assert!(c >= b && c as f64 <= b as f64 * 1.25 + 256.0, "{b} -> {c}");
            assert_eq!(c % 4, 0);
        }
    }
}
