//! The method-level half of embedding netlens in a wgpu application: an
//! [`Attribution`] of GPU tensors to a map tensor or a texture. It sits above both the methods and
//! the GPU backend, so the backend knows no method type; the device work is
//! [`GpuBackend::sample_map`] and [`GpuBackend::map_texture`], and the order of calls is in
//! [`crate::gpu::embed`].

use crate::error::Result;
use crate::gpu::{GpuBackend, GpuTensor, MapFormat};
use crate::methods::attribution::{Attribution, MapKind};

impl GpuBackend {
    /// Sample `sample`'s map of `attribution` as a `[1, 1, h, w]` tensor on the device, in the
    /// form it is drawn (as [`HostAttribution::display`] gives it on the host): the low-resolution
    /// map where the method has one (a CAM at the layer's resolution, occlusion's grid), else
    /// the input-resolution map; for [`MapKind::PerElement`] maps, the max over channels of
    /// |value|. At most three deferred dispatches and a copy, submitted with the next submission
    /// (such as [`GpuBackend::map_texture`]'s); nothing is read back. Its
    /// [`buffer`](GpuTensor::buffer) is the map as a `wgpu::Buffer`.
    ///
    /// [`HostAttribution::display`]: crate::methods::attribution::HostAttribution::display
    pub fn attribution_map(
        &self,
        attribution: &Attribution<GpuTensor>,
        sample: usize,
    ) -> Result<GpuTensor> {
        let maps = attribution.lowres.as_ref().unwrap_or(&attribution.maps);
        self.sample_map(maps, sample, attribution.kind == MapKind::PerElement)
    }

    /// Sample `sample`'s map of `attribution` as a texture: [`GpuBackend::attribution_map`], then
    /// [`GpuBackend::map_texture`], in one submission that this call does not wait for.
    pub fn attribution_texture(
        &self,
        attribution: &Attribution<GpuTensor>,
        sample: usize,
        format: MapFormat,
        width: u32,
        height: u32,
    ) -> Result<wgpu::Texture> {
        let map = self.attribution_map(attribution, sample)?;
        self.map_texture(&map, format, width, height)
    }
}
