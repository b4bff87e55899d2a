//! The loop every perturbation method shares (occlusion, LIME, Score-CAM, RISE): the samples,
//! described by a [`MaskSource`] per chunk, are built by [`Backend::perturb`] from the one
//! uploaded image and run in chunks of `mini_batch`, one `perturb` + `forward` per chunk (on the
//! GPU one submission: the masking kernel is deferred into its forward). Only the logits stay
//! behind, and every chunk's logits cross to the host in one `read_many` at the end, together
//! with whatever else the method asks for.

use super::concat_rows;
use crate::backend::{sample_bytes, Backend, Fill, HostTensor, MaskSource};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::progress::Progress;

/// The batches of one perturbation run.
pub(crate) struct Perturbations<'a, B: Backend> {
    /// The image `[1, C, H, W]`, on the backend.
    pub image: &'a B::Tensor,
    /// How many samples in all.
    pub samples: usize,
    /// Samples per forward.
    pub mini_batch: usize,
    /// What the masked pixels show.
    pub fill: Fill<'a>,
    /// The method's name, for the progress bar and errors.
    pub method: &'static str,
}

impl<B: Backend> Perturbations<'_, B> {
    /// Runs every chunk `first..first + count` of samples built from `source(first, count)`
    /// and returns their logits `[samples, classes]`, plus `also_read` read back in the same
    /// read-back (in their order).
    pub(crate) fn logits<'s>(
        &self,
        b: &B,
        model: &Model,
        source: impl Fn(usize, usize) -> MaskSource<'s, B::Tensor>,
        also_read: &[&B::Tensor],
        progress: &dyn Progress,
    ) -> Result<(HostTensor, Vec<HostTensor>)>
    where
        B::Tensor: 's,
    {
        // The logits of every chunk stay on the backend until the one read-back, where they are
        // copied and joined: three copies of `samples × K` floats, budgeted before the first
        // forward. The chunk itself takes its input and at most every activation per sample; a
        // mini-batch over the budget shrinks to fit it.
        let budget = b.budget();
        let logits_bytes = (self.samples as u128)
            .saturating_mul(model.num_classes() as u128)
            .saturating_mul(12);
        budget.check(&format!("{}'s logits", self.method), logits_bytes)?;
        let image_len: usize = b.shape(self.image).iter().product();
        let per_sample = sample_bytes(model, false) + image_len as u128 * 4;
        let what = format!("{}'s forward", self.method);
        let mini_batch = budget.samples(&what, per_sample, logits_bytes, self.mini_batch)?;
        let chunks = self.samples.div_ceil(mini_batch);
        let mut outputs = Vec::with_capacity(chunks);
        progress.start(self.method, chunks as u64);
        for first in (0..self.samples).step_by(mini_batch) {
            let count = mini_batch.min(self.samples - first);
            let batch = b.perturb(self.image, &source(first, count), &self.fill)?;
            outputs.push(b.forward(model, &batch, &[])?.output);
            progress.advance(1);
        }
        let mut wanted = also_read.to_vec();
        wanted.extend(outputs.iter());
        let mut read = b.read_many(&wanted)?;
        if read.len() != wanted.len() {
            return Err(Error::internal(
                "read-back returned fewer tensors than asked",
            ));
        }
        let logits = concat_rows(read.split_off(also_read.len()))?;
        progress.finish();
        if logits.batch() != self.samples {
            return Err(Error::internal(format!(
                "{} read {} rows of logits for {} samples",
                self.method,
                logits.batch(),
                self.samples
            )));
        }
        Ok((logits, read))
    }
}
