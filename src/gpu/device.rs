//! Finding and opening an adapter: what `netlens adapters` lists, the device a `GpuBackend`
//! opens, and keeping Mesa's device-selection layer quiet on a headless machine.

use crate::error::{Error, Result};

const NO_ADAPTER: &str = "no GPU adapter found. Install a Vulkan driver (Debian/Ubuntu: \
`apt-get install -y mesa-vulkan-drivers` gives lavapipe, a software GPU), or run with --backend cpu";

/// One adapter as `netlens adapters` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name as the driver reports it.
    pub name: String,
    /// The graphics API wgpu reaches it through (Vulkan, Metal, DX12, GL, WebGPU).
    pub backend: String,
    /// Discrete, integrated, virtual, CPU or other, in `Debug` form (CPU means a software adapter).
    pub device_type: String,
    /// Driver name and version info, joined by a space (may be empty).
    pub driver: String,
}

/// Every adapter of every backend wgpu can reach (honouring `WGPU_BACKEND`).
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .map(|a| {
            let info = a.get_info();
            let driver = match (info.driver.is_empty(), info.driver_info.is_empty()) {
                (false, false) => format!("{} {}", info.driver, info.driver_info),
                (false, true) => info.driver.clone(),
                _ => info.driver_info.clone(),
            };
            AdapterSummary {
                name: info.name.clone(),
                backend: backend_name(info.backend).to_string(),
                device_type: format!("{:?}", info.device_type),
                driver,
            }
        })
        .collect()
}

pub(super) fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "Vulkan",
        wgpu::Backend::Metal => "Metal",
        wgpu::Backend::Dx12 => "DX12",
        wgpu::Backend::Gl => "GL",
        wgpu::Backend::BrowserWebGpu => "WebGPU",
        _ => "other",
    }
}

/// Keeps Mesa's Vulkan device-selection layer from asking Wayland for a display that is not
/// there. The layer is an implicit layer of every Vulkan instance on Linux with Mesa; it connects
/// to Wayland to find the compositor's GPU, and without a usable `XDG_RUNTIME_DIR` libwayland
/// prints `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` (twice per
/// instance) although nothing failed. With no session to ask, the layer has nothing to select by
/// (wgpu then picks by power preference itself), so it is turned off with `NODEVICE_SELECT=1` —
/// unless the user configured the layer (`NODEVICE_SELECT`, `MESA_VK_DEVICE_SELECT`, `DRI_PRIME`)
/// or names a Wayland socket by absolute path.
///
/// It changes the process environment, which is only sound while no other thread runs: call it
/// first thing in `main`. The netlens binary does.
pub fn quiet_headless_device_probe() {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let absolute = |k: &str| var(k).is_some_and(|v| v.to_string_lossy().starts_with('/'));
    let configured = ["NODEVICE_SELECT", "MESA_VK_DEVICE_SELECT", "DRI_PRIME"]
        .iter()
        .any(|k| var(k).is_some());
    // libwayland complains exactly when neither gives it an absolute path to connect to.
    if !configured && !absolute("XDG_RUNTIME_DIR") && !absolute("WAYLAND_DISPLAY") {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// The adapter wgpu prefers (`WGPU_BACKEND` and `WGPU_POWER_PREF` honoured), opened with its own
/// limits.
pub(crate) fn open_device() -> Result<(wgpu::Device, wgpu::Queue)> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let power_preference =
        wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance);
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference,
        ..Default::default()
    }))
    .map_err(|_| Error::device(NO_ADAPTER))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("netlens"),
        required_features: wgpu::Features::empty(),
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .map_err(|e| {
        Error::device(format!(
            "cannot open GPU device '{}': {e}",
            adapter.get_info().name
        ))
    })?;
    Ok((device, queue))
}
