//! Exact t-SNE on the device (`shaders/tsne.wgsl`): P is built on the GPU (distances, one
//! workgroup per point for the perplexity search, in-place symmetrisation) and never leaves it;
//! each iteration is two dispatches (forces, update). `kl_every` iterations go into one
//! submission, followed by the KL kernel whose 2·N floats are the only read-back until the end.

use std::sync::atomic::Ordering;

use super::kernels::{Bind, Kernel, Params, Recorder};
use super::{readback, GpuBackend, GpuTensor};
use crate::backend::HostTensor;
use crate::error::{Error, Result};
use crate::methods::tsne::affinity::{P_FLOOR, SEARCH_STEPS, SEARCH_TOL};
use crate::methods::tsne::{Schedule, TsneResult};
use crate::progress::Progress;

impl GpuBackend {
    /// Dense symmetric P `[N, N]` of prepared features `x` `[N, D]` (dissimilarity
    /// `scale·‖x_i − x_j‖²`), computed on the device and read back (for checks; `tsne_exact`
    /// keeps it on the device).
    pub fn tsne_affinities(
        &self,
        x: &HostTensor,
        scale: f32,
        perplexity: f32,
    ) -> Result<HostTensor> {
        let _exclusive = self.exclusive()?;
        let p = self.tsne_p(x, scale, perplexity)?;
        let n = x.shape[0];
        let mut out = readback::read_many(self, &[&p])?;
        let mut t = out
            .pop()
            .ok_or_else(|| Error::internal("read-back returned nothing"))?;
        t.shape = vec![n, n];
        Ok(t)
    }

    /// Exact t-SNE from prepared features and a starting embedding `y0` `[N, 2 or 3]`.
    pub fn tsne_exact(
        &self,
        x: &HostTensor,
        scale: f32,
        perplexity: f32,
        y0: &HostTensor,
        schedule: &Schedule,
        progress: &dyn Progress,
    ) -> Result<TsneResult> {
        self.tsne_exact_with_gradient(x, scale, perplexity, y0, schedule, progress)
            .map(|r| r.0)
    }

    /// [`GpuBackend::tsne_exact`], also returning the gradient `[N, dims]` of the last step
    /// (without the constant 4), for checks against the CPU.
    pub fn tsne_exact_with_gradient(
        &self,
        x: &HostTensor,
        scale: f32,
        perplexity: f32,
        y0: &HostTensor,
        s: &Schedule,
        progress: &dyn Progress,
    ) -> Result<(TsneResult, HostTensor)> {
        let (n, dims) = (x.shape[0], y0.shape[1]);
        if y0.shape[0] != n || !(dims == 2 || dims == 3) {
            return Err(Error::bad_input(format!(
                "starting embedding {:?} does not match {n} points in 2 or 3 dimensions",
                y0.shape
            )));
        }
        let _exclusive = self.exclusive()?;
        let p = self.tsne_p(x, scale, perplexity)?;
        let y = self.alloc(vec![n * dims])?;
        self.queue
            .write_buffer(y.buffer(), 0, bytemuck::cast_slice(&y0.data));
        let acc = self.alloc(vec![n * 8])?;
        // update | gains | gradient; the first step restarts update and gains.
        let state = self.alloc(vec![3 * n * dims])?;
        let klout = self.alloc(vec![2 * n])?;
        self.stats.uploads.fetch_add(1, Ordering::Relaxed);

        let forces = if dims == 2 {
            Kernel::TsneForces2
        } else {
            Kernel::TsneForces3
        };
        let groups = n.div_ceil(256);
        let mut history = Vec::new();
        progress.start("t-SNE exact (GPU)", s.iterations as u64);
        let mut it = 0;
        while it < s.iterations {
            let end = ((it / s.kl_every + 1) * s.kl_every).min(s.iterations);
            let mut rec = Recorder::new(&self.device, &self.pipelines);
            for k in it..end {
                let (exag, momentum, restart) = s.at(k);
                rec.dispatch(
                    forces,
                    &[(&p).into(), (&y).into(), (&acc).into()],
                    Params::new().u(n),
                    [groups, 1, 1],
                )?;
                rec.dispatch(
                    Kernel::TsneUpdate,
                    &[(&y).into(), (&acc).into(), (&state).into()],
                    Params::new()
                        .u(n)
                        .u(dims)
                        .f(exag)
                        .f(s.learn_rate)
                        .f(momentum)
                        .u(restart as usize),
                    [groups, 1, 1],
                )?;
            }
            rec.dispatch(
                Kernel::TsneKl,
                &[(&p).into(), (&y).into(), (&klout).into()],
                Params::new().u(n).u(dims),
                [groups, 1, 1],
            )?;
            self.submit_recorded(rec, "t-SNE iterations")?;
            let kl = kl_from(&readback::read_many(self, &[&klout])?[0].data);
            history.push((end, kl));
            progress.message(&format!("KL {kl:.4}"));
            progress.advance((end - it) as u64);
            it = end;
        }
        progress.finish();
        let mut out = readback::read_many(self, &[&y, &state])?;
        let state_h = out
            .pop()
            .ok_or_else(|| Error::internal("read-back returned nothing"))?;
        let y_h = out
            .pop()
            .ok_or_else(|| Error::internal("read-back returned nothing"))?;
        let grad = HostTensor::new(vec![n, dims], state_h.data[2 * n * dims..].to_vec())?;
        let kl = history.last().map(|h| h.1).unwrap_or(f32::NAN);
        Ok((
            TsneResult {
                embedding: HostTensor::new(vec![n, dims], y_h.data)?,
                kl,
                kl_history: history,
                iterations: s.iterations,
            },
            grad,
        ))
    }

    /// Records and submits the three affinity kernels; P stays on the device.
    fn tsne_p(&self, x: &HostTensor, scale: f32, perplexity: f32) -> Result<GpuTensor> {
        if x.shape.len() != 2 || x.shape[0] < 2 {
            return Err(Error::bad_input(format!(
                "t-SNE takes a feature matrix [N, D] with N ≥ 2, got {:?}",
                x.shape
            )));
        }
        let (n, d) = (x.shape[0], x.shape[1]);
        let bytes = (n * n * 4) as u64;
        if bytes > self.binding_limit || n > u16::MAX as usize {
            let max_n = ((self.binding_limit / 4) as f64).sqrt() as usize;
            return Err(Error::bad_input(format!(
                "exact t-SNE on the GPU keeps the dense {n}×{n} P ({bytes} bytes) in one binding, \
                 over this GPU's limit of {} bytes (at most {max_n} points); use the Barnes-Hut \
                 algorithm (--algorithm barneshut)",
                self.binding_limit
            )));
        }
        let xb = self.alloc(vec![n * d])?;
        self.queue
            .write_buffer(xb.buffer(), 0, bytemuck::cast_slice(&x.data));
        self.stats.uploads.fetch_add(1, Ordering::Relaxed);
        let p = self.alloc(vec![n * n])?;
        let tiles = n.div_ceil(16);
        let mut rec = Recorder::new(&self.device, &self.pipelines);
        let pb: Bind = (&p).into();
        rec.dispatch(
            Kernel::TsneDist,
            &[(&xb).into(), pb.clone()],
            Params::new().u(n).u(d).f(scale),
            [tiles, tiles, 1],
        )?;
        rec.dispatch(
            Kernel::TsnePcond,
            std::slice::from_ref(&pb),
            Params::new()
                .u(n)
                .f(perplexity)
                .u(SEARCH_STEPS)
                .f(SEARCH_TOL),
            [n, 1, 1],
        )?;
        rec.dispatch(
            Kernel::TsneSym,
            std::slice::from_ref(&pb),
            Params::new().u(n).f(1.0 / (2.0 * n as f32)).f(P_FLOOR),
            [tiles, tiles, 1],
        )?;
        self.submit_recorded(rec, "t-SNE affinities")?;
        Ok(p)
    }

    fn submit_recorded(&self, rec: Recorder<'_>, what: &str) -> Result<()> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let dispatches = rec.dispatches() as u64;
        let (commands, uniform) = rec.finish(&self.queue, &self.pool);
        self.submit(commands);
        drop(uniform);
        self.stats
            .dispatches
            .fetch_add(dispatches, Ordering::Relaxed);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::internal(format!("{what} failed validation: {e}")));
        }
        Ok(())
    }
}

/// KL(P‖Q) from the per-point sums of `tsne_kl` (P sums to 1).
fn kl_from(out: &[f32]) -> f32 {
    let (mut s, mut z) = (0f64, 0f64);
    for pair in out.chunks(2) {
        s += pair[0] as f64;
        z += pair[1] as f64;
    }
    (s + z.ln()) as f32
}
