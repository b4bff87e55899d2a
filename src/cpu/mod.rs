//! The CPU backend: the numerical oracle for the GPU kernels, and the CPU side of benchmarks.
//!
//! Each op family lives in its own file as `pub(crate)` functions over input slices and full
//! shapes that overwrite a caller-provided output slice, so buffers can be pooled and backward
//! (VJP) functions can sit beside their forward.

mod conv;
mod depthwise;
mod eltwise;
mod exec;
mod gemm;
mod grad;
mod image;
mod layout;
mod linear;
mod lrn;
mod perturb;

pub(crate) use perturb::path_batch as path_batch_into;
mod pool;
mod reduce;
pub(crate) mod simd;
mod softmax;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::backend::{
    blur_weights, check_ascent, check_image_batch, check_occlude, check_path_batch,
    check_scaled_by_maps, check_segment_mask, AscentStep, Backend, Forward, GradRule, Gradients,
    HostTensor, OcclusionWindow, Seed,
};
use crate::error::Result;
use crate::model::{Model, ValueId};

/// Runs models on the host with rayon (batch samples across threads, or one sample's ops across
/// threads at batch sizes below the thread count).
#[derive(Clone, Debug, Default)]
pub struct CpuBackend {
    _private: (),
}

impl CpuBackend {
    /// The CPU backend; it holds no state and runs on the current rayon thread pool.
    pub fn new() -> Self {
        CpuBackend::default()
    }
}

impl Backend for CpuBackend {
    type Tensor = Arc<HostTensor>;

    fn name(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }

    /// 2 MiB of input per thread: a few 224² images each, whose activations mostly stay in cache.
    fn auto_chunk_bytes(&self) -> usize {
        (2 << 20) * rayon::current_num_threads()
    }

    fn upload(&self, tensor: &HostTensor) -> Result<Self::Tensor> {
        HostTensor::new(tensor.shape.clone(), tensor.data.clone()).map(Arc::new)
    }

    fn read(&self, tensor: &Self::Tensor) -> Result<HostTensor> {
        Ok(HostTensor::clone(tensor))
    }

    fn shape(&self, tensor: &Self::Tensor) -> Vec<usize> {
        tensor.shape.clone()
    }

    fn forward(
        &self,
        model: &Model,
        input: &Self::Tensor,
        taps: &[ValueId],
    ) -> Result<Forward<Self::Tensor>> {
        exec::forward(model, input, taps)
    }

    fn gradients(
        &self,
        model: &Model,
        input: &Self::Tensor,
        seed: &Seed<Self::Tensor>,
        rule: GradRule,
        wrt: &[ValueId],
        taps: &[ValueId],
    ) -> Result<Gradients<Self::Tensor>> {
        grad::gradients(model, input, seed, rule, wrt, taps)
    }

    fn occlude(
        &self,
        image: &Self::Tensor,
        windows: &[OcclusionWindow],
        value: &[f32],
    ) -> Result<Self::Tensor> {
        let (c, h, w) = check_occlude(&image.shape, windows, value)?;
        let mut out = HostTensor::zeros(vec![windows.len(), c, h, w]);
        perturb::occlude(&image.data, (c, h, w), windows, value, &mut out.data);
        Ok(Arc::new(out))
    }

    fn path_batch(
        &self,
        image: &Self::Tensor,
        baseline: &Self::Tensor,
        alphas: &[f32],
        sigmas: &[f32],
        seed: u64,
    ) -> Result<Self::Tensor> {
        check_path_batch(&image.shape, &baseline.shape, alphas, sigmas)?;
        let mut shape = image.shape.clone();
        shape[0] = alphas.len();
        let mut out = HostTensor::zeros(shape);
        perturb::path_batch(
            &image.data,
            &baseline.data,
            alphas,
            sigmas,
            seed,
            &mut out.data,
        );
        Ok(Arc::new(out))
    }

    fn cam_combine(
        &self,
        acts: &Self::Tensor,
        grads: &Self::Tensor,
        weighting: crate::backend::CamWeighting,
        relu: bool,
    ) -> Result<Self::Tensor> {
        let (n, _, hw) = crate::backend::check_cam_combine(&acts.shape, &grads.shape)?;
        let data = (0..n)
            .flat_map(|i| {
                crate::backend::cam_map(acts.sample(i), grads.sample(i), hw, weighting, relu)
            })
            .collect();
        let shape = vec![n, 1, acts.shape[2], acts.shape[3]];
        HostTensor::new(shape, data).map(Arc::new)
    }

    fn resize_bilinear(
        &self,
        x: &Self::Tensor,
        out_h: usize,
        out_w: usize,
    ) -> Result<Self::Tensor> {
        let [n, c, h, w] = check_image_batch(&x.shape, "bilinear resize")?;
        if out_h == 0 || out_w == 0 {
            return Err(crate::error::Error::bad_input(format!(
                "bilinear resize to {out_h}x{out_w}: the size must be positive"
            )));
        }
        let mut out = HostTensor::zeros(vec![n, c, out_h, out_w]);
        image::resize_bilinear(&x.data, (h, w), (out_h, out_w), &mut out.data);
        Ok(Arc::new(out))
    }

    fn roll(&self, x: &Self::Tensor, dy: i64, dx: i64) -> Result<Self::Tensor> {
        let [_, _, h, w] = check_image_batch(&x.shape, "roll")?;
        let mut out = HostTensor::zeros(x.shape.clone());
        image::roll(&x.data, (h, w), dy, dx, &mut out.data);
        Ok(Arc::new(out))
    }

    fn ascent_step(
        &self,
        x: &Self::Tensor,
        grad: &Self::Tensor,
        step: &AscentStep,
    ) -> Result<Self::Tensor> {
        let [_, c, h, w] = check_ascent(&x.shape, &grad.shape, step)?;
        let mut out = HostTensor::zeros(x.shape.clone());
        image::ascent_step(&x.data, &grad.data, (c, h, w), step, &mut out.data);
        Ok(Arc::new(out))
    }

    fn blur(&self, x: &Self::Tensor, sigma: f32) -> Result<Self::Tensor> {
        let [_, _, h, w] = check_image_batch(&x.shape, "blur")?;
        let weights = blur_weights(sigma)?;
        let mut out = HostTensor::zeros(x.shape.clone());
        image::blur(&x.data, (h, w), &weights, &mut out.data);
        Ok(Arc::new(out))
    }

    fn segment_mask_batch(
        &self,
        image: &Self::Tensor,
        labels: &Self::Tensor,
        first: usize,
        count: usize,
        seed: u64,
        value: &[f32],
    ) -> Result<Self::Tensor> {
        let (c, h, w) = check_segment_mask(&image.shape, &labels.shape, first, count, value)?;
        let mut out = HostTensor::zeros(vec![count, c, h, w]);
        perturb::segment_mask(&image.data, &labels.data, first, seed, value, &mut out.data);
        Ok(Arc::new(out))
    }

    fn scaled_by_maps(
        &self,
        image: &Self::Tensor,
        maps: &Self::Tensor,
        first: usize,
        count: usize,
    ) -> Result<Self::Tensor> {
        let (c, hh, ww, h, w) = check_scaled_by_maps(&image.shape, &maps.shape, first, count)?;
        let mut out = HostTensor::zeros(vec![count, c, hh, ww]);
        let maps = &maps.data[first * h * w..(first + count) * h * w];
        perturb::scale_by_maps(&image.data, (c, hh, ww), maps, (h, w), &mut out.data);
        Ok(Arc::new(out))
    }
}
