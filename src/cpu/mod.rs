//! The CPU backend: the numerical oracle for the GPU kernels, and the CPU side of benchmarks.
//!
//! Each op family lives in its own file as `pub(crate)` functions over input slices and full
//! shapes that overwrite a caller-provided output slice, so buffers can be pooled and backward
//! (VJP) functions can sit beside their forward.

pub(crate) mod conv;
mod depthwise;
pub(crate) mod eltwise;
mod exec;
mod gemm;
mod geom;
mod grad;
mod image;
pub(crate) mod layernorm;
pub(crate) mod layout;
pub(crate) mod linear;
pub(crate) mod logsoftmax;
pub(crate) mod lrn;
pub(crate) mod node;
mod perturb;
pub(crate) mod pool;
pub(crate) mod reduce;
pub(crate) mod simd;
pub(crate) mod softmax;
pub mod tsne;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::backend::{
    blur_weights, check_ascent, check_image_batch, check_path_batch, check_perturb, combine,
    path_batch_host, AscentStep, Backend, Budget, Fill, Forward, GradRule, Gradients, HostTensor,
    MaskSource, Seed,
};
use crate::error::Result;
use crate::model::{BinaryKind, Model, ReduceKind, Unary, ValueId};

/// Runs models on the host with rayon (batch samples across threads, or one sample's ops across
/// threads at batch sizes below the thread count).
#[derive(Clone, Debug, Default)]
pub struct CpuBackend {
    budget: Budget,
}

impl CpuBackend {
    /// The CPU backend on the current rayon thread pool, with the default memory budget.
    pub fn new() -> Self {
        CpuBackend::default()
    }

    /// Replaces the memory budget (the CLI's `--max-memory`).
    pub fn set_budget(&mut self, budget: Budget) {
        self.budget = budget;
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

    fn budget(&self) -> Budget {
        self.budget.clone()
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
        self.budget.check_pass(model, input.batch(), false)?;
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
        self.budget.check_pass(model, input.batch(), true)?;
        grad::gradients(model, input, seed, rule, wrt, taps)
    }

    fn perturb(
        &self,
        image: &Self::Tensor,
        source: &MaskSource<'_, Self::Tensor>,
        fill: &Fill,
    ) -> Result<Self::Tensor> {
        let d = check_perturb(&image.shape, source, fill, |t| t.shape.clone())?;
        let mut out = HostTensor::zeros(vec![d.count, d.c, d.h, d.w]);
        perturb::perturb(&image.data, d, source, fill, &mut out.data);
        Ok(Arc::new(out))
    }

    fn path_chunk(
        &self,
        image: &Self::Tensor,
        baseline: &Self::Tensor,
        alphas: &[f32],
        sigmas: &[f32],
        seed: u64,
        first: u32,
    ) -> Result<Self::Tensor> {
        check_path_batch(&image.shape, &baseline.shape, alphas, sigmas)?;
        let mut shape = image.shape.clone();
        shape[0] = alphas.len();
        let mut out = HostTensor::zeros(shape);
        path_batch_host(
            &image.data,
            &baseline.data,
            (alphas, sigmas),
            seed,
            first,
            &mut out.data,
        );
        Ok(Arc::new(out))
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

    // The combining ops run the host formulas on the tensors in place: the trait's defaults would
    // copy each operand through `read` and the result through `upload`.

    fn weighted_sum(
        &self,
        x: &Self::Tensor,
        weights: &[f32],
        shape: &[usize],
    ) -> Result<Self::Tensor> {
        combine::weighted_sum(x, weights, shape).map(Arc::new)
    }

    fn elementwise(
        &self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        op: BinaryKind,
    ) -> Result<Self::Tensor> {
        combine::elementwise(a, b, op).map(Arc::new)
    }

    fn reduce(&self, x: &Self::Tensor, kind: ReduceKind, axes: &[usize]) -> Result<Self::Tensor> {
        combine::reduce(x, kind, axes).map(Arc::new)
    }

    fn unary(&self, x: &Self::Tensor, op: Unary) -> Result<Self::Tensor> {
        Ok(Arc::new(combine::unary(x, op)))
    }

    fn blur(&self, x: &Self::Tensor, sigma: f32) -> Result<Self::Tensor> {
        let [_, _, h, w] = check_image_batch(&x.shape, "blur")?;
        let weights = blur_weights(sigma)?;
        let mut out = HostTensor::zeros(x.shape.clone());
        image::blur(&x.data, (h, w), &weights, &mut out.data);
        Ok(Arc::new(out))
    }
}
