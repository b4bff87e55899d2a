//! Backend selection for the CLI and for users who want "the best available" without caring
//! which backend runs.

use crate::backend::{Backend, Budget, HostTensor};
// top_k lives with the backend's host formulas (methods use it); kept here for the CLI's paths.
pub use crate::backend::top_k;
use crate::cpu::CpuBackend;
use crate::error::{Error, ErrorKind, Result};
use crate::gpu::{GpuBackend, GpuOptions};
use crate::methods::tsne::{tsne, Tsne, TsneResult};
use crate::model::{Model, ValueId};
use crate::progress::Progress;

/// Environment variable that picks the backend when no `--backend` flag is given.
pub const BACKEND_ENV: &str = "NETLENS_BACKEND";

/// Which backend to run on, as `--backend` or `NETLENS_BACKEND` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// The GPU if wgpu finds a hardware adapter, else the CPU (also when the only adapter is a
    /// software one such as lavapipe).
    Auto,
    /// The wgpu backend on whatever adapter wgpu picks, software ones included; fails without one.
    Gpu,
    /// The host backend, always available.
    Cpu,
}

impl BackendChoice {
    /// Parses `auto` (or empty), `gpu` (or `wgpu`) and `cpu`, case-insensitively.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(BackendChoice::Auto),
            "gpu" | "wgpu" => Ok(BackendChoice::Gpu),
            "cpu" => Ok(BackendChoice::Cpu),
            other => Err(Error::bad_input(format!(
                "unknown backend '{other}': use gpu, cpu or auto"
            ))),
        }
    }

    /// The flag's value if given, else `NETLENS_BACKEND`, else `Auto`.
    pub fn resolve(flag: Option<&str>) -> Result<Self> {
        match flag {
            Some(f) => Self::parse(f),
            None => match std::env::var(BACKEND_ENV) {
                Ok(v) => Self::parse(&v).map_err(|e| e.context(BACKEND_ENV)),
                Err(_) => Ok(BackendChoice::Auto),
            },
        }
    }
}

/// One of the two backends, chosen at run time.
pub enum Engine {
    /// The wgpu backend.
    // Boxed: the GPU backend is large and an Engine is moved around by value.
    Gpu(Box<GpuBackend>),
    /// The host backend.
    Cpu(CpuBackend),
}

impl Engine {
    /// The backend `choice` asks for; notes (such as the software-adapter fallback) go to stderr.
    pub fn new(choice: BackendChoice) -> Result<Engine> {
        Self::select(choice, &mut |m| eprintln!("netlens: {m}"))
    }

    /// The backend `choice` asks for, with notes going to `note`. `Auto` takes the GPU when wgpu
    /// offers a hardware adapter; when the adapter it would pick is a software one (lavapipe,
    /// llvmpipe: `DeviceType::Cpu`), it takes the CPU backend instead, which runs the same
    /// cores far faster than an emulated GPU. `Gpu` takes any adapter.
    pub fn select(choice: BackendChoice, note: &mut dyn FnMut(&str)) -> Result<Engine> {
        match choice {
            BackendChoice::Cpu => Ok(Engine::Cpu(CpuBackend::new())),
            BackendChoice::Gpu => Ok(Engine::Gpu(Box::new(GpuBackend::new(
                &GpuOptions::default(),
            )?))),
            BackendChoice::Auto => match preferred_adapter() {
                Some(info) if info.device_type == wgpu::DeviceType::Cpu => {
                    note(&format!(
                        "the only GPU adapter is a software one ({}); using the CPU backend, which is faster here (--backend gpu forces the adapter)",
                        info.name
                    ));
                    Ok(Engine::Cpu(CpuBackend::new()))
                }
                _ => match GpuBackend::new(&GpuOptions::default()) {
                    Ok(g) => Ok(Engine::Gpu(Box::new(g))),
                    Err(e) if e.kind == ErrorKind::Device => {
                        note(&format!("no GPU ({e}); using the CPU backend"));
                        Ok(Engine::Cpu(CpuBackend::new()))
                    }
                    Err(e) => Err(e),
                },
            },
        }
    }

    /// The GPU backend on a device the host application already owns (clones of its handles);
    /// see [`crate::gpu::embed`] for the order of calls and keeping a frame loop unblocked.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Result<Engine> {
        Ok(Engine::Gpu(Box::new(GpuBackend::from_wgpu(
            device,
            queue,
            &GpuOptions::default(),
        )?)))
    }

    /// The GPU backend, if this engine runs on one (for GPU-only calls such as
    /// [`GpuBackend::map_texture`]).
    pub fn gpu(&self) -> Option<&GpuBackend> {
        match self {
            Engine::Gpu(g) => Some(g),
            Engine::Cpu(_) => None,
        }
    }

    /// Sets the memory budget the backend and the methods on it size their work by.
    pub fn set_budget(&mut self, budget: Budget) {
        match self {
            Engine::Gpu(g) => g.set_budget(budget),
            Engine::Cpu(c) => c.set_budget(budget),
        }
    }

    /// The running backend's [`Backend::name`], for logs and report headers.
    pub fn name(&self) -> String {
        match self {
            Engine::Gpu(g) => g.name(),
            Engine::Cpu(c) => c.name(),
        }
    }

    /// Runs a host batch and reads back the output and every tap.
    pub fn forward_host(
        &self,
        model: &Model,
        input: &HostTensor,
        taps: &[ValueId],
    ) -> Result<(HostTensor, Vec<HostTensor>)> {
        match self {
            Engine::Gpu(g) => forward_host(g.as_ref(), model, input, taps),
            Engine::Cpu(c) => forward_host(c, model, input, taps),
        }
    }
}

/// The adapter `GpuBackend::new` would open (same backends and power preference), without
/// opening a device.
fn preferred_adapter() -> Option<wgpu::AdapterInfo> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let power_preference =
        wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance);
    pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference,
        ..Default::default()
    }))
    .ok()
    .map(|a| a.get_info())
}

/// Upload, forward, read back: the whole round trip on any backend.
pub fn forward_host<B: Backend>(
    b: &B,
    model: &Model,
    input: &HostTensor,
    taps: &[ValueId],
) -> Result<(HostTensor, Vec<HostTensor>)> {
    let x = b.upload(input)?;
    let f = b.forward(model, &x, taps)?;
    let out = b.read(&f.output)?;
    let taps = taps
        .iter()
        .map(|&v| {
            let t = f
                .tap(v)
                .ok_or_else(|| Error::internal(format!("backend returned no tap for value {v}")))?;
            b.read(t)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((out, taps))
}

/// Numerically stable softmax of each row of `[N, K]` logits.
pub fn softmax_rows(logits: &HostTensor) -> Vec<Vec<f32>> {
    let k = logits.sample_len().max(1);
    logits
        .data
        .chunks(k)
        .map(|row| {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect()
        })
        .collect()
}

/// [`tsne`] on the engine's backend (the GPU backend runs `Exact` on
/// the device).
pub fn tsne_on(
    x: &HostTensor,
    opts: &Tsne,
    engine: &Engine,
    progress: &dyn Progress,
) -> Result<TsneResult> {
    match engine {
        Engine::Gpu(g) => tsne(x, opts, g.as_ref(), progress),
        Engine::Cpu(c) => tsne(x, opts, c, progress),
    }
}
