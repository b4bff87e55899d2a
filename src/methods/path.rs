//! The loop the path methods share (Integrated Gradients' path points, SmoothGrad's noisy
//! copies): each image's `per` samples are generated where the image lives and run through
//! `gradients` in chunks sized by the backend's [`Backend::auto_chunk_bytes`] and its memory
//! [`Budget`](crate::backend::Budget), and each chunk's gradients are folded at once into running
//! weighted sums on the backend, so memory is flat in the sample count. A run that fits one chunk
//! makes exactly the calls of one batch (on the GPU: one gradients submission, the combining
//! dispatches deferred into the read-back); a larger run adds one gradients call per chunk, and
//! still reads back once.

use super::{pick_rows, repeat_each, score_seed, Score};
use crate::backend::{sample_bytes, Backend, HostTensor};
use crate::error::{Error, Result};
use crate::model::{BinaryKind, Model};
use crate::progress::Progress;

/// One path run: `per` samples per image, sample `i` weighing `weight(i)` in the sums.
pub(crate) struct PathRun<'a> {
    /// The method's name, for the progress bar and the budget's messages.
    pub method: &'static str,
    /// Samples per image.
    pub per: usize,
    /// The explained score.
    pub score: Score,
    /// Whether to sum the gradients (`Σ w g`).
    pub sum: bool,
    /// Whether to sum the squared gradients (`Σ w g²`).
    pub sum_sq: bool,
    /// Samples whose logits are kept, `[images, K]` each (the clean image, IG's baseline).
    pub rows: &'a [usize],
    /// Told of each chunk.
    pub progress: &'a dyn Progress,
}

/// What a path run leaves on the backend.
pub(crate) struct PathSums<T> {
    /// `Σ_i weight(i) g_i`, shaped like the inputs (if asked).
    pub sum: Option<T>,
    /// `Σ_i weight(i) g_i²` (if asked).
    pub sum_sq: Option<T>,
    /// The logits of each of `rows`, `[images, K]`, in their order.
    pub rows: Vec<T>,
}

impl PathRun<'_> {
    /// Samples per image in one chunk: as many as the backend's auto chunk holds, fewer if the
    /// budget says so (every image's samples of a chunk run in one gradients call, each taking
    /// its input, and at most its activations and their gradients).
    fn chunk<B: Backend>(&self, b: &B, model: &Model, inputs: &HostTensor) -> Result<usize> {
        let image_bytes = (inputs.sample_len() * 4).max(1);
        let auto = (b.auto_chunk_bytes() / image_bytes).max(1);
        let per_sample = (sample_bytes(model, true) + image_bytes as u128)
            .saturating_mul(inputs.batch().max(1) as u128);
        let what = format!("{}'s gradients", self.method);
        let fit = b.budget().samples(&what, per_sample, 0, self.per)?;
        Ok(fit.min(auto).max(1))
    }

    /// Runs the samples of every image of `inputs` against `targets` (one per image):
    /// `batch(i, image, first, count)` builds image `i`'s samples `first..first + count` from the
    /// image uploaded alone (`[1, C, H, W]`).
    pub(crate) fn run<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        targets: &[usize],
        weight: impl Fn(usize) -> f32,
        batch: impl Fn(usize, &B::Tensor, usize, usize) -> Result<B::Tensor>,
    ) -> Result<PathSums<B::Tensor>> {
        if self.per > u32::MAX as usize {
            return Err(Error::bad_input(format!(
                "{}: at most 2^32 samples per image",
                self.method
            )));
        }
        let chunk = self.chunk(b, model, inputs)?;
        let groups = inputs.batch();
        let mut one = inputs.shape.clone();
        one[0] = 1;
        let images = (0..groups)
            .map(|i| b.upload(&HostTensor::new(one.clone(), inputs.sample(i).to_vec())?))
            .collect::<Result<Vec<_>>>()?;
        let mut sums = PathSums {
            sum: None,
            sum_sq: None,
            rows: Vec::new(),
        };
        let mut rows: Vec<Option<B::Tensor>> = vec![None; self.rows.len()];
        let add = |acc: Option<B::Tensor>, t: B::Tensor| match acc {
            None => Ok(Some(t)),
            Some(a) => b.elementwise(&a, &t, BinaryKind::Add).map(Some),
        };
        let progress = self.progress;
        progress.start(self.method, self.per.div_ceil(chunk) as u64);
        for first in (0..self.per).step_by(chunk) {
            let count = chunk.min(self.per - first);
            let parts = images
                .iter()
                .enumerate()
                .map(|(i, image)| batch(i, image, first, count))
                .collect::<Result<Vec<_>>>()?;
            let x = b.concat(&parts.iter().collect::<Vec<_>>())?;
            drop(parts);
            let seed = score_seed(b, model, self.score, &repeat_each(targets, count))?;
            let g = b.gradients(
                model,
                &x,
                &seed,
                crate::backend::GradRule::Standard,
                &[],
                &[],
            )?;
            drop(x);
            let w: Vec<f32> = (first..first + count)
                .map(&weight)
                .collect::<Vec<_>>()
                .repeat(groups);
            if self.sum {
                let s = b.weighted_sum(&g.input_grad, &w, &inputs.shape)?;
                sums.sum = add(sums.sum.take(), s)?;
            }
            if self.sum_sq {
                let sq = b.elementwise(&g.input_grad, &g.input_grad, BinaryKind::Mul)?;
                let s = b.weighted_sum(&sq, &w, &inputs.shape)?;
                sums.sum_sq = add(sums.sum_sq.take(), s)?;
            }
            for (slot, &r) in rows.iter_mut().zip(self.rows) {
                if (first..first + count).contains(&r) {
                    *slot = Some(pick_rows(b, &g.output, groups, count, r - first)?);
                }
            }
            progress.advance(1);
        }
        progress.finish();
        sums.rows = rows
            .into_iter()
            .map(|r| r.ok_or_else(|| Error::internal("a path run's kept row was never run")))
            .collect::<Result<_>>()?;
        Ok(sums)
    }
}
