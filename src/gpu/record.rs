//! The one way netlens work reaches the queue. [`GpuBackend::begin`] opens a [`Recording`]: it
//! holds the submission lock and a validation error scope and hands out its [`Recorder`];
//! [`Recording::submit`] or [`Recording::defer`] ends it, counting the submission and the
//! dispatches. [`GpuBackend::record`] and [`GpuBackend::record_deferred`] wrap the three steps
//! around a closure.

use super::kernels::Recorder;
use super::{Deferred, GpuBackend};
use crate::error::{Error, Result};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

/// Work being recorded: dereferences to its [`Recorder`]. Dropping it unsubmitted discards the
/// commands (as an error return does).
pub(crate) struct Recording<'a> {
    gpu: &'a GpuBackend,
    rec: Recorder<'a>,
    what: String,
    scope: wgpu::ErrorScopeGuard,
    /// Recording hands intermediate buffers back to the pool before the commands are
    /// submitted; that is safe only while no other thread can take one and get its own work
    /// onto the queue first. Dropped last.
    _exclusive: MutexGuard<'a, ()>,
}

impl GpuBackend {
    /// Takes the submission lock and opens a validation error scope for work that `what`
    /// names in errors. Inside, pooled tensors may be allocated, released and written with
    /// `queue.write_buffer`, but nothing may be called that takes the lock itself (`upload`,
    /// `read`, another `begin`).
    pub(crate) fn begin(&self, what: impl Into<String>) -> Result<Recording<'_>> {
        let exclusive = self.exclusive()?;
        Ok(Recording {
            gpu: self,
            rec: Recorder::new(&self.device, &self.pipelines),
            what: what.into(),
            scope: self.device.push_error_scope(wgpu::ErrorFilter::Validation),
            _exclusive: exclusive,
        })
    }

    /// Records whatever `f` adds and submits it now ([`Recording::submit`]).
    pub(crate) fn record<R>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Recorder) -> Result<R>,
    ) -> Result<R> {
        let mut rec = self.begin(what)?;
        let out = f(&mut rec)?;
        rec.submit()?;
        Ok(out)
    }

    /// Records whatever `f` adds for the next submission ([`Recording::defer`]); every pooled
    /// tensor the commands touch must be handed to [`Recorder::keep`].
    pub(crate) fn record_deferred<R>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Recorder) -> Result<R>,
    ) -> Result<R> {
        let mut rec = self.begin(what)?;
        let out = f(&mut rec)?;
        rec.defer()?;
        Ok(out)
    }
}

impl<'a> Recording<'a> {
    /// Submits the commands now, in one `queue.submit` after every deferred recording.
    pub(crate) fn submit(self) -> Result<()> {
        self.end(false)
    }

    /// Queues the commands for the next submission (the forward that consumes their output, or
    /// a read-back), so they cost no submission of their own; nothing is queued when nothing was
    /// recorded. Every pooled tensor the commands touch must have been handed to
    /// [`Recorder::keep`], or the pool could lend it out before the commands run.
    pub(crate) fn defer(self) -> Result<()> {
        self.end(true)
    }

    fn end(self, defer: bool) -> Result<()> {
        let Recording {
            gpu,
            rec,
            what,
            scope,
            _exclusive,
        } = self;
        let dispatches = rec.dispatches() as u64;
        if !defer {
            let (commands, uniform, keep) = rec.finish(&gpu.queue, &gpu.pool);
            gpu.submit(commands);
            drop((uniform, keep));
        } else if !rec.is_empty() {
            let (commands, uniform, keep) = rec.finish(&gpu.queue, &gpu.pool);
            gpu.defer(Deferred {
                commands,
                uniform,
                keep,
            });
        }
        gpu.stats
            .dispatches
            .fetch_add(dispatches, Ordering::Relaxed);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::internal(format!("{what} failed validation: {e}")));
        }
        Ok(())
    }
}

impl<'a> Deref for Recording<'a> {
    type Target = Recorder<'a>;
    fn deref(&self) -> &Recorder<'a> {
        &self.rec
    }
}

impl<'a> DerefMut for Recording<'a> {
    fn deref_mut(&mut self) -> &mut Recorder<'a> {
        &mut self.rec
    }
}
