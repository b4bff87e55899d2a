//! The tensor-op surface that both backends implement and every method is written against.

use crate::error::{Error, Result};
use crate::model::{BinaryKind, Model, ReduceKind, Unary, ValueId};

mod budget;
pub(crate) mod combine;
mod ops;
mod perturb;
pub mod tsne;

pub use budget::{human, parse_size, sample_bytes, Budget, AVAILABLE_FRACTION, FALLBACK_BYTES};
pub(crate) use ops::*;
pub use ops::{top_k, AscentStep, MAX_BLUR_RADIUS};
pub(crate) use perturb::{check_perturb, PerturbDims};
pub use perturb::{rank_shown, segment_kept, Fill, MaskSource, RiseMasks, MAX_RISE_GRID};

/// A dense f32 tensor in host memory, row-major, full shape (batch axis first).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Full shape, batch axis first.
    pub shape: Vec<usize>,
    /// Row-major elements; always `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Wraps row-major `data` of the given `shape`, or an internal error if their sizes differ.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::internal(format!(
                "tensor of shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(HostTensor { shape, data })
    }
    /// A tensor of the given shape filled with 0.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        HostTensor {
            shape,
            data: vec![0.0; n],
        }
    }
    /// Size of the batch axis (1 for a rank-0 tensor).
    pub fn batch(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
    /// Elements per sample.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
    /// The `i`-th sample's data.
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.data[i * n..(i + 1) * n]
    }
}

/// What a forward pass leaves behind: the output, and each tapped layer's activation, still where
/// the backend keeps them (on the GPU for the GPU backend) until read.
pub struct Forward<T> {
    /// The model output (logits), `[N, classes]`.
    pub output: T,
    /// The activation of each requested tap, full batch, in the order the taps were asked for.
    pub taps: Vec<(ValueId, T)>,
}

impl<T> Forward<T> {
    /// The activation kept for `value`, if it was requested as a tap.
    pub fn tap(&self, value: ValueId) -> Option<&T> {
        self.taps.iter().find(|(v, _)| *v == value).map(|(_, t)| t)
    }
}

/// How ReLU-like ops (Relu, Clip, LeakyRelu) pass gradients back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GradRule {
    /// The true gradient.
    #[default]
    Standard,
    /// Guided backprop (Springenberg et al.): pass only positive gradients through units whose
    /// forward input was in the op's active region.
    Guided,
    /// Deconvnet (Zeiler & Fergus): pass only positive gradients, ignoring the forward input.
    Deconvnet,
}

/// Where a backward pass starts: the gradient of the objective w.r.t. one value of the graph.
#[derive(Clone, Debug)]
pub enum Seed<T> {
    /// A given gradient at `at` (full batch shape `[N] + shape(at)`): a one-hot per sample for a
    /// logit objective, `1/(H·W)` on a channel for a channel-mean objective, a mask for a region.
    Grad {
        /// The value the gradient is given for.
        at: ValueId,
        /// d objective / d `at`, full batch shape.
        grad: T,
    },
    /// The gradient of softmax probability `targets[i]` of sample `i`, where `at` holds logits
    /// `[N, K]`: `p_k (e_k - p)`, computed by the backend from the forward values.
    SoftmaxProb {
        /// The logits value, `[N, K]`.
        at: ValueId,
        /// Per sample, the class whose probability is the objective (`N` entries).
        targets: Vec<usize>,
    },
}

impl<T> Seed<T> {
    /// The value where the gradient enters the graph.
    pub fn at(&self) -> ValueId {
        match self {
            Seed::Grad { at, .. } | Seed::SoftmaxProb { at, .. } => *at,
        }
    }
}

/// What a forward + backward pass leaves behind, all full-batch, all still on the backend.
pub struct Gradients<T> {
    /// The model output of the forward pass.
    pub output: T,
    /// Forward activations of the requested taps.
    pub taps: Vec<(ValueId, T)>,
    /// d objective / d input, shaped like the input.
    pub input_grad: T,
    /// d objective / d value for each requested layer.
    pub layer_grads: Vec<(ValueId, T)>,
}

impl<T> Gradients<T> {
    /// The forward activation kept for `value`, if it was requested as a tap.
    pub fn tap(&self, value: ValueId) -> Option<&T> {
        self.taps.iter().find(|(v, _)| *v == value).map(|(_, t)| t)
    }
    /// The gradient w.r.t. `value`, if it was requested in `wrt`.
    pub fn layer_grad(&self, value: ValueId) -> Option<&T> {
        self.layer_grads
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, t)| t)
    }
}

/// One occluding window in pixel coordinates of the image; it may reach past the border (only the
/// part inside the image is occluded), and a window of zero height or width occludes nothing,
/// which lets the unoccluded image ride along in the same batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OcclusionWindow {
    /// First covered row; negative when the window starts above the image.
    pub top: i64,
    /// First covered column; negative when the window starts left of the image.
    pub left: i64,
    /// Number of covered rows (0 covers nothing).
    pub height: usize,
    /// Number of covered columns (0 covers nothing).
    pub width: usize,
}

impl OcclusionWindow {
    /// Whether pixel `(y, x)` lies inside the window.
    pub fn covers(&self, y: usize, x: usize) -> bool {
        let (y, x) = (y as i64, x as i64);
        y >= self.top
            && y < self.top + self.height as i64
            && x >= self.left
            && x < self.left + self.width as i64
    }
}

/// The surface every method is written against. Tensors are backend handles; `read` is the only
/// way data crosses back to the host.
pub trait Backend {
    /// A handle to a tensor the backend holds (a GPU buffer, or host memory for the CPU).
    type Tensor: Clone;

    /// A human-readable name: the adapter and its API, or the CPU.
    fn name(&self) -> String;

    /// Copies a host tensor into the backend.
    fn upload(&self, tensor: &HostTensor) -> Result<Self::Tensor>;

    /// Copies a backend tensor to the host (for the GPU: one submission and one read-back).
    fn read(&self, tensor: &Self::Tensor) -> Result<HostTensor>;

    /// Copies several tensors to the host; the GPU does it in one submission and one read-back.
    fn read_many(&self, tensors: &[&Self::Tensor]) -> Result<Vec<HostTensor>> {
        tensors.iter().map(|t| self.read(t)).collect()
    }

    /// Bytes of input per chunk when a perturbation method picks its own mini-batch: a GPU wants
    /// large chunks to fill its cores; a CPU runs faster on chunks whose activations stay in its
    /// caches (MobileNetV2 on one thread: 24 ms per image at batch 2, 34 ms at batch 64).
    fn auto_chunk_bytes(&self) -> usize {
        64 << 20
    }

    /// The memory this backend may allocate: methods size their chunks by it and refuse, with a
    /// bad-input error, work that cannot be chunked to fit it.
    fn budget(&self) -> Budget;

    /// Full shape of a backend tensor.
    fn shape(&self, tensor: &Self::Tensor) -> Vec<usize>;

    /// Runs the model on a batch `[N, C, H, W]` (any N), keeping the activations of `taps`.
    fn forward(
        &self,
        model: &Model,
        input: &Self::Tensor,
        taps: &[ValueId],
    ) -> Result<Forward<Self::Tensor>>;

    /// Forward then reverse mode in one pass (for the GPU: one submission for the whole batch,
    /// chunked only by binding limits). The objective's gradient enters at `seed.at()`; ops after
    /// that value get zero gradient. Gradients flow to the input and to each of `wrt`, with
    /// ReLU-like ops following `rule`. Only activation gradients are computed, never weight
    /// gradients. Forward activations are released as soon as backward no longer needs them.
    fn gradients(
        &self,
        model: &Model,
        input: &Self::Tensor,
        seed: &Seed<Self::Tensor>,
        rule: GradRule,
        wrt: &[ValueId],
        taps: &[ValueId],
    ) -> Result<Gradients<Self::Tensor>>;

    /// The perturbed copies of one image `[1, C, H, W]` that every perturbation method runs:
    /// the batch `[source.count(), C, H, W]` whose sample `i` is the image under mask `i` of
    /// `source` (one value in `[0, 1]` per pixel), filled as `fill` says. Built where the image
    /// lives (on the GPU: one kernel family, recorded into the next submission, usually the
    /// forward that consumes it), never on the host; the masks are hashed or computed there from
    /// a few parameters, so no mask crosses the bus.
    fn perturb(
        &self,
        image: &Self::Tensor,
        source: &MaskSource<'_, Self::Tensor>,
        fill: &Fill,
    ) -> Result<Self::Tensor>;

    /// The batch whose sample `i` is `baseline + alphas[i] (image - baseline) + sigmas[i] ε_i`,
    /// where `ε_i` is standard normal noise from a counter-based generator keyed by
    /// `(seed, i, element)`: Integrated Gradients' path points and SmoothGrad's noisy copies,
    /// generated where the image lives. `image` and `baseline` are `[1, C, H, W]`.
    fn path_batch(
        &self,
        image: &Self::Tensor,
        baseline: &Self::Tensor,
        alphas: &[f32],
        sigmas: &[f32],
        seed: u64,
    ) -> Result<Self::Tensor> {
        self.path_chunk(image, baseline, alphas, sigmas, seed, 0)
    }

    /// [`Backend::path_batch`] for samples `first..first + alphas.len()` of a longer path: sample
    /// `i` of the batch draws the noise of sample `first + i`, so a path run in chunks gets the
    /// same noise as in one batch, whatever the chunk size.
    fn path_chunk(
        &self,
        image: &Self::Tensor,
        baseline: &Self::Tensor,
        alphas: &[f32],
        sigmas: &[f32],
        seed: u64,
        first: u32,
    ) -> Result<Self::Tensor>;

    // Image ops for deep dream (and Grad-CAM's upsampling), on `[N, C, H, W]` batches.

    /// Bilinear resize of every plane of `x` (`[N, C, h, w]`) to `[N, C, out_h, out_w]`, with
    /// half-pixel centres and clamped edges (PyTorch's `align_corners=False` without
    /// antialiasing): the same arithmetic as [`crate::methods::upsample_bilinear`].
    fn resize_bilinear(&self, x: &Self::Tensor, out_h: usize, out_w: usize)
        -> Result<Self::Tensor>;

    /// Circular shift of every plane: `out[.., y, x] = x[.., (y - dy) mod h, (x - dx) mod w]`
    /// (numpy's `roll` over the last two axes).
    fn roll(&self, x: &Self::Tensor, dy: i64, dx: i64) -> Result<Self::Tensor>;

    /// One normalised gradient-ascent step per sample: `x + step · g / (mean|g| + 1e-8)`, the
    /// mean over that sample's elements, clamped per channel to `[step.lo[c], step.hi[c]]`.
    /// `grad` was taken at `roll(x, step.jitter)`, so it is rolled back before use.
    fn ascent_step(
        &self,
        x: &Self::Tensor,
        grad: &Self::Tensor,
        step: &AscentStep,
    ) -> Result<Self::Tensor>;

    /// Gaussian blur of every plane with standard deviation `sigma` (pixels), radius
    /// `ceil(3 sigma)` (at most [`MAX_BLUR_RADIUS`]), edges replicated; `sigma <= 0` copies.
    fn blur(&self, x: &Self::Tensor, sigma: f32) -> Result<Self::Tensor>;

    // Batch-combining ops, so an attribution's last steps (averaging over samples, weighting a
    // layer's channels, multiplying by the input, a CAM's weights formula) can stay where the
    // gradients are. Their
    // defaults run the host formulas of `combine` through `read` and `upload`: right for a
    // backend in host memory (the CPU backend uses them); a device backend overrides them (the
    // GPU backend records them as deferred dispatches, submitted with the next forward or
    // read-back, except for an operand over one storage binding, which it combines on the host
    // as `path_batch` builds its largest batches).

    /// `x` taken as `[G, S, L]` (its elements in order) and `weights` as `[G, S]`, where
    /// `G = shape[0]` and `L` is the product of `shape[1..]`: `out[g, l] = Σ_s weights[g, s] ·
    /// x[g, s, l]`, shaped `shape`, each product rounded to f32 and summed from `s = 0` up.
    /// Averages groups of samples (`[N·S, C, H, W]` into `[N, C, H, W]`: IG's path points,
    /// SmoothGrad's noisy copies), weighs a layer's channels (`[N, K, h, w]` into
    /// `[N, 1, h, w]`: classic CAM) or, with one-hot weights, picks one sample of each group.
    fn weighted_sum(
        &self,
        x: &Self::Tensor,
        weights: &[f32],
        shape: &[usize],
    ) -> Result<Self::Tensor> {
        self.upload(&combine::weighted_sum(&self.read(x)?, weights, shape)?)
    }

    /// `a ∘ b` element by element, shaped like `a`; `b` has `a`'s shape or is broadcast onto it
    /// (same rank, each axis `a`'s or 1: a per-channel `[N, K, 1, 1]` against `[N, K, h, w]`).
    fn elementwise(
        &self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        op: BinaryKind,
    ) -> Result<Self::Tensor> {
        self.upload(&combine::elementwise(&self.read(a)?, &self.read(b)?, op)?)
    }

    /// `x` reduced over `axes` (distinct, never the batch axis 0), which are kept with size 1:
    /// `[N, K, h, w]` over `[2, 3]` gives `[N, K, 1, 1]` (a per-channel spatial sum or mean),
    /// over `[1]` gives `[N, 1, h, w]`. Each group folds in f32 in row-major order from its first
    /// element; the mean is that sum divided by the group's size.
    fn reduce(&self, x: &Self::Tensor, kind: ReduceKind, axes: &[usize]) -> Result<Self::Tensor> {
        self.upload(&combine::reduce(&self.read(x)?, kind, axes)?)
    }

    /// The activation `op` (ReLU, ...) of every element.
    fn unary(&self, x: &Self::Tensor, op: Unary) -> Result<Self::Tensor> {
        self.upload(&combine::unary(&self.read(x)?, op))
    }

    /// The tensors stacked along the batch axis (equal shapes past it).
    fn concat(&self, parts: &[&Self::Tensor]) -> Result<Self::Tensor> {
        let host = parts
            .iter()
            .map(|p| self.read(p))
            .collect::<Result<Vec<_>>>()?;
        self.upload(&combine::concat(&host.iter().collect::<Vec<_>>())?)
    }
}
