//! Exact t-SNE on the device (`shaders/tsne.wgsl`): P is built on the GPU (distances, one
//! workgroup per point for the perplexity search, in-place symmetrisation) and never leaves it;
//! each iteration is the forces (one dispatch per row block of P) and the update. `kl_every`
//! iterations go into one submission, followed by the KL kernel whose 2·N floats are the only
//! read-back until the end.
//!
//! P is held as row blocks, each its own buffer within one storage binding, so N is bounded by
//! device memory rather than by the binding limit (one block, as before, up to 5792 points on a
//! 128 MiB binding).

use super::kernels::{Bind, Kernel, Recorder, TypedParams};
use super::params::word;
use super::{GpuBackend, GpuTensor};
use crate::backend::tsne::affinity::{P_FLOOR, SEARCH_STEPS, SEARCH_TOL};
use crate::backend::tsne::{host_memory_available, Schedule, TsneExact, TsneResult};
use crate::backend::Backend;
use crate::backend::HostTensor;
use crate::error::{Error, Result};
use crate::progress::Progress;
use bytemuck::{Pod, Zeroable};

// Parameter structs, mirrored by the WGSL structs of the same names in `shaders/tsne.wgsl`: `r0`
// and `rows` name the block of P a dispatch sees, `first` and `last` are 1 when the block starts
// or ends the sums.

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct DistParams {
    pub(crate) n: u32,
    pub(crate) d: u32,
    pub(crate) scale: f32,
    pub(crate) r0: u32,
    pub(crate) rows: u32,
}
impl TypedParams for DistParams {
    const KERNELS: &'static [Kernel] = &[Kernel::TsneDist];
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct PcondParams {
    pub(crate) n: u32,
    pub(crate) perplexity: f32,
    pub(crate) steps: u32,
    pub(crate) tol: f32,
    pub(crate) r0: u32,
    pub(crate) rows: u32,
}
impl TypedParams for PcondParams {
    const KERNELS: &'static [Kernel] = &[Kernel::TsnePcond];
}

/// `inv` is 1/(2N).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct SymParams {
    pub(crate) n: u32,
    pub(crate) inv: f32,
    pub(crate) floor: f32,
    pub(crate) r0: u32,
    pub(crate) rows: u32,
}
impl TypedParams for SymParams {
    const KERNELS: &'static [Kernel] = &[Kernel::TsneSym];
}

/// `r0_b` and `rows_b` name block PB, below P.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct SymPairParams {
    pub(crate) n: u32,
    pub(crate) inv: f32,
    pub(crate) floor: f32,
    pub(crate) r0: u32,
    pub(crate) rows: u32,
    pub(crate) r0_b: u32,
    pub(crate) rows_b: u32,
}
impl TypedParams for SymPairParams {
    const KERNELS: &'static [Kernel] = &[Kernel::TsneSymPair];
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct ForcesParams {
    pub(crate) n: u32,
    pub(crate) r0: u32,
    pub(crate) rows: u32,
    pub(crate) first: u32,
    pub(crate) last: u32,
}
impl TypedParams for ForcesParams {
    const KERNELS: &'static [Kernel] = &[Kernel::TsneForces2, Kernel::TsneForces3];
}

/// `restart` is 1 to set update 0 and gains 1 before the step.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct UpdateParams {
    pub(crate) n: u32,
    pub(crate) dims: u32,
    pub(crate) exag: f32,
    pub(crate) lr: f32,
    pub(crate) momentum: f32,
    pub(crate) restart: u32,
}
impl TypedParams for UpdateParams {
    const KERNELS: &'static [Kernel] = &[Kernel::TsneUpdate];
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct KlParams {
    pub(crate) n: u32,
    pub(crate) dims: u32,
    pub(crate) r0: u32,
    pub(crate) rows: u32,
    pub(crate) first: u32,
}
impl TypedParams for KlParams {
    const KERNELS: &'static [Kernel] = &[Kernel::TsneKl];
}

/// Rows `r0 .. r0 + rows` of the dense P `[N, N]`, in a buffer of their own.
struct PBlock {
    r0: usize,
    rows: usize,
    buffer: wgpu::Buffer,
}

impl PBlock {
    fn bind(&self) -> Bind {
        (&self.buffer).into()
    }
}

impl TsneExact for GpuBackend {
    fn tsne_exact(
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
}

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
        let (xb, p) = self.tsne_p_alloc(x)?;
        let n = x.shape[0];
        let full = self.alloc(vec![n, n])?;
        self.record("t-SNE affinities", |rec| {
            self.record_p(rec, &xb, &p, scale, perplexity)?;
            for b in &p {
                let row = n as u64 * 4;
                rec.copy(
                    &b.buffer,
                    0,
                    full.buffer(),
                    b.r0 as u64 * row,
                    b.rows as u64 * row,
                );
            }
            Ok(())
        })?;
        self.read(&full)
    }

    /// [`TsneExact::tsne_exact`], also returning the gradient `[N, dims]` of the last step
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
        let n = x.shape.first().copied().unwrap_or(0);
        let dims = y0.shape.get(1).copied().unwrap_or(0);
        if y0.shape.len() != 2 || y0.shape[0] != n || !(dims == 2 || dims == 3) {
            return Err(Error::bad_input(format!(
                "starting embedding {:?} does not match {n} points in 2 or 3 dimensions",
                y0.shape
            )));
        }
        let p = self.tsne_p(x, scale, perplexity)?;
        let y = self.upload(y0)?;
        let acc = self.alloc(vec![n * 8])?;
        // update | gains | gradient; the first step restarts update and gains.
        let state = self.alloc(vec![3 * n * dims])?;
        let klout = self.alloc(vec![2 * n])?;

        let nb = p.len();
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
            self.record("t-SNE iterations", |rec| {
                for k in it..end {
                    let (exag, momentum, restart) = s.at(k);
                    for (bi, b) in p.iter().enumerate() {
                        let params = ForcesParams {
                            n: word(n),
                            r0: word(b.r0),
                            rows: word(b.rows),
                            first: (bi == 0) as u32,
                            last: (bi + 1 == nb) as u32,
                        };
                        let binds = [b.bind(), (&y).into(), (&acc).into()];
                        rec.dispatch(forces, &binds, params, [groups, 1, 1])?;
                    }
                    let params = UpdateParams {
                        n: word(n),
                        dims: word(dims),
                        exag,
                        lr: s.learn_rate,
                        momentum,
                        restart: restart as u32,
                    };
                    let binds = [(&y).into(), (&acc).into(), (&state).into()];
                    rec.dispatch(Kernel::TsneUpdate, &binds, params, [groups, 1, 1])?;
                }
                for (bi, b) in p.iter().enumerate() {
                    let params = KlParams {
                        n: word(n),
                        dims: word(dims),
                        r0: word(b.r0),
                        rows: word(b.rows),
                        first: (bi == 0) as u32,
                    };
                    let binds = [b.bind(), (&y).into(), (&klout).into()];
                    rec.dispatch(Kernel::TsneKl, &binds, params, [groups, 1, 1])?;
                }
                Ok(())
            })?;
            let kl = kl_from(&self.read(&klout)?.data);
            history.push((end, kl));
            progress.message(&format!("KL {kl:.4}"));
            progress.advance((end - it) as u64);
            it = end;
        }
        progress.finish();
        let mut out = self.read_many(&[&y, &state])?;
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

    /// Records and submits the affinity kernels; P stays on the device.
    fn tsne_p(&self, x: &HostTensor, scale: f32, perplexity: f32) -> Result<Vec<PBlock>> {
        let (xb, p) = self.tsne_p_alloc(x)?;
        self.record("t-SNE affinities", |rec| {
            self.record_p(rec, &xb, &p, scale, perplexity)
        })?;
        Ok(p)
    }

    /// Checks every size exact t-SNE of `x` depends on, uploads `x` and allocates P's blocks.
    fn tsne_p_alloc(&self, x: &HostTensor) -> Result<(GpuTensor, Vec<PBlock>)> {
        if x.shape.len() != 2 || x.shape[0] < 2 {
            return Err(Error::bad_input(format!(
                "t-SNE takes a feature matrix [N, D] with N ≥ 2, got {:?}",
                x.shape
            )));
        }
        let (n, d) = (x.shape[0], x.shape[1]);
        let rows = self.p_block_rows(n, d)?;
        let xb = self.upload(x)?;
        // Not from the pool: P is the one allocation that can exhaust the device, a failed buffer
        // must not be lent out again, and hundreds of MB should not stay parked after the run.
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let blocks: Vec<PBlock> = (0..n)
            .step_by(rows)
            .map(|r0| {
                let rows = rows.min(n - r0);
                let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("netlens t-SNE P"),
                    size: (rows * n * 4) as u64,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                PBlock { r0, rows, buffer }
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::bad_input(format!(
                "exact t-SNE of {n} points keeps the dense {n}×{n} P ({:.2} GB) on the GPU, and \
                 the GPU could not allocate it ({e}); use the Barnes-Hut algorithm \
                 (--algorithm barneshut)",
                p_bytes(n) as f64 / 1e9
            )));
        }
        Ok((xb, blocks))
    }

    /// Rows of P per block for `n` points of `d` features: as many as one storage binding holds
    /// (and u32 indices reach). Sizes the device cannot hold are bad input, reported here before
    /// anything is allocated.
    fn p_block_rows(&self, n: usize, d: usize) -> Result<usize> {
        let barnes_hut = "use the Barnes-Hut algorithm (--algorithm barneshut)";
        let limit = self.binding_limit;
        let bytes = p_bytes(n);
        // A software adapter's memory is host memory that Linux overcommits: allocating past it
        // succeeds, and the process is killed when the kernels first touch the pages.
        if self.info.device_type == wgpu::DeviceType::Cpu {
            if let Some(avail) = host_memory_available() {
                if bytes > avail {
                    return Err(Error::bad_input(format!(
                        "exact t-SNE of {n} points keeps the dense {n}×{n} P ({:.2} GB) on the \
                         GPU, more than the {:.2} GB of host memory available to this software \
                         GPU ({}); {barnes_hut}",
                        bytes as f64 / 1e9,
                        avail as f64 / 1e9,
                        self.info.name
                    )));
                }
            }
        }
        let row = n as u64 * 4;
        // acc (8 floats per point) is the largest per-point buffer bound whole.
        if row > limit || n as u64 * 32 > limit {
            return Err(Error::bad_input(format!(
                "exact t-SNE on the GPU binds one row of P and the per-point state of all {n} \
                 points ({} bytes), over this GPU's storage binding limit of {limit} bytes; \
                 {barnes_hut}",
                row.max(n as u64 * 32)
            )));
        }
        let x_bytes = (n * d) as u64 * 4;
        if x_bytes > limit {
            return Err(Error::bad_input(format!(
                "the feature matrix [{n}, {d}] ({x_bytes} bytes) is over this GPU's storage \
                 binding limit of {limit} bytes; reduce the features (e.g. with PCA) or {barnes_hut}"
            )));
        }
        // tsne_dist covers the columns with 16-wide workgroups along x, without a grid stride.
        let max_groups = self.limits.max_compute_workgroups_per_dimension as usize;
        if n.div_ceil(16) > max_groups {
            return Err(Error::bad_input(format!(
                "exact t-SNE on the GPU handles at most {} points, got {n}; {barnes_hut}",
                max_groups * 16
            )));
        }
        let rows = (limit / row).min(u32::MAX as u64 / n as u64) as usize;
        Ok(rows.min(n))
    }

    /// Records the affinity kernels into `rec`: distances and the perplexity search per block,
    /// then the symmetrisation per pair of blocks (a diagonal block in place, every other pair
    /// once, with both blocks bound).
    fn record_p(
        &self,
        rec: &mut Recorder<'_>,
        xb: &GpuTensor,
        p: &[PBlock],
        scale: f32,
        perplexity: f32,
    ) -> Result<()> {
        let (n, d) = (xb.shape()[0], xb.shape()[1]);
        for b in p {
            let dist = DistParams {
                n: word(n),
                d: word(d),
                scale,
                r0: word(b.r0),
                rows: word(b.rows),
            };
            let groups = [n.div_ceil(16), b.rows.div_ceil(16), 1];
            rec.dispatch(Kernel::TsneDist, &[xb.into(), b.bind()], dist, groups)?;
            let pcond = PcondParams {
                n: word(n),
                perplexity,
                steps: word(SEARCH_STEPS),
                tol: SEARCH_TOL,
                r0: word(b.r0),
                rows: word(b.rows),
            };
            rec.dispatch(Kernel::TsnePcond, &[b.bind()], pcond, [b.rows, 1, 1])?;
        }
        let inv = 1.0 / (2.0 * n as f32);
        for (k, a) in p.iter().enumerate() {
            let tiles = a.rows.div_ceil(16);
            let sym = SymParams {
                n: word(n),
                inv,
                floor: P_FLOOR,
                r0: word(a.r0),
                rows: word(a.rows),
            };
            rec.dispatch(Kernel::TsneSym, &[a.bind()], sym, [tiles, tiles, 1])?;
            for b in &p[k + 1..] {
                let pair = SymPairParams {
                    n: word(n),
                    inv,
                    floor: P_FLOOR,
                    r0: word(a.r0),
                    rows: word(a.rows),
                    r0_b: word(b.r0),
                    rows_b: word(b.rows),
                };
                let groups = [b.rows.div_ceil(16), tiles, 1];
                rec.dispatch(Kernel::TsneSymPair, &[a.bind(), b.bind()], pair, groups)?;
            }
        }
        Ok(())
    }
}

/// Bytes of the dense P of `n` points (saturating: a P past u64 is impossible anyway).
fn p_bytes(n: usize) -> u64 {
    (n as u64).saturating_mul(n as u64).saturating_mul(4)
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
