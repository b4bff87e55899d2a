//! The tensor-op surface that both backends implement and every method is written against.

use crate::error::{Error, Result};
use crate::model::{BinaryKind, Model, ValueId};

pub(crate) mod combine;

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

    /// From one image `[1, C, H, W]`, the batch `[windows.len(), C, H, W]` whose sample `i` is the
    /// image with window `i` (clipped to the image) set to `value[c]` on channel `c`. The batch is
    /// built where the image lives (on the GPU: one kernel, submitted with the next forward or
    /// read-back), never on the host.
    fn occlude(
        &self,
        image: &Self::Tensor,
        windows: &[OcclusionWindow],
        value: &[f32],
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
    ) -> Result<Self::Tensor>;

    /// A class activation map from a feature layer's activations and gradients, both
    /// `[N, K, h, w]`: `[N, 1, h, w]`, the channels combined as `weighting` says, then ReLU if
    /// `relu`. Computed where the tensors live, so a CAM can stay on the GPU (see
    /// [`cam_map`] for the formulas both backends follow).
    fn cam_combine(
        &self,
        acts: &Self::Tensor,
        grads: &Self::Tensor,
        weighting: CamWeighting,
        relu: bool,
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

    /// LIME's perturbed copies of one image `[1, C, H, W]`: the batch `[count, C, H, W]` of
    /// samples `first..first + count`, where sample `s` shows segment `k` of the image iff
    /// [`segment_kept`]`(seed, s, k)` and `value[c]` on channel `c` elsewhere. `labels` is `[H, W]`
    /// (segment ids as whole f32 values, uploaded once). Built where the image lives (on the GPU:
    /// one kernel, submitted with the next forward); the on/off matrix never crosses to the host,
    /// which recomputes it with [`segment_kept`].
    fn segment_mask_batch(
        &self,
        image: &Self::Tensor,
        labels: &Self::Tensor,
        first: usize,
        count: usize,
        seed: u64,
        value: &[f32],
    ) -> Result<Self::Tensor>;

    /// Score-CAM's masked inputs: from one image `[1, C, H, W]` and activation maps `[1, K, h, w]`,
    /// the batch `[count, C, H, W]` whose sample `i` is the image times map `first + i`, upsampled
    /// to `H × W` (bilinear with aligned corners, PyTorch's `UpsamplingBilinear2d`) and min-max
    /// normalised over the upsampled map: `(u - min) / (max - min + 1e-8)`. Built where the image
    /// lives (on the GPU: two kernels, submitted with the next forward).
    fn scaled_by_maps(
        &self,
        image: &Self::Tensor,
        maps: &Self::Tensor,
        first: usize,
        count: usize,
    ) -> Result<Self::Tensor>;

    // Batch-combining ops, so an attribution's last steps (averaging over samples, weighting a
    // layer's channels, multiplying by the input) can stay where the gradients are. Their
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

    /// `a ∘ b` element by element, for operands of one shape.
    fn elementwise(
        &self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        op: BinaryKind,
    ) -> Result<Self::Tensor> {
        self.upload(&combine::elementwise(&self.read(a)?, &self.read(b)?, op)?)
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

/// Checks the operands of [`Backend::path_batch`]; returns the per-sample element count.
pub(crate) fn check_path_batch(
    image: &[usize],
    baseline: &[usize],
    alphas: &[f32],
    sigmas: &[f32],
) -> Result<usize> {
    if image.len() != 4 || image[0] != 1 || image != baseline {
        return Err(Error::bad_input(format!(
            "path batches need one image and a baseline of the same shape [1, C, H, W], got {image:?} and {baseline:?}"
        )));
    }
    if alphas.len() != sigmas.len() {
        return Err(Error::internal(
            "path batch: one alpha and one sigma per sample",
        ));
    }
    Ok(image[1..].iter().product())
}

/// Standard normal noise shared bit-for-bit in its integer part by both backends (a PCG hash of
/// seed, sample and element, then Box-Muller in f32), so a seed means the same noise everywhere.
pub(crate) mod noise {
    pub fn pcg(v: u32) -> u32 {
        let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
        let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
        (word >> 22) ^ word
    }

    pub fn normal(seed: u64, sample: u32, element: u32) -> f32 {
        let key = pcg(element ^ pcg(sample ^ pcg(seed as u32 ^ pcg((seed >> 32) as u32))));
        let u1 = ((key >> 8) as f32 + 1.0) / 16777216.0;
        let u2 = (pcg(key) >> 8) as f32 / 16777216.0;
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// Checks the operands of [`Backend::occlude`]; returns `(C, H, W)`.
pub(crate) fn check_occlude(
    shape: &[usize],
    windows: &[OcclusionWindow],
    value: &[f32],
) -> Result<(usize, usize, usize)> {
    if shape.len() != 4 || shape[0] != 1 {
        return Err(Error::bad_input(format!(
            "occlusion needs one image [1, C, H, W], got {shape:?}"
        )));
    }
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    if value.len() != c {
        return Err(Error::bad_input(format!(
            "occlusion mask value has {} channel(s), the image has {c}",
            value.len()
        )));
    }
    // The GPU kernel does its window arithmetic in i32.
    let lim = i32::MAX as i64 / 4;
    for win in windows {
        let fits = |v: i64| (-lim..=lim).contains(&v);
        if !(fits(win.top) && fits(win.left) && fits(win.height as i64) && fits(win.width as i64)) {
            return Err(Error::bad_input(format!(
                "occlusion window {win:?} is out of range"
            )));
        }
    }
    Ok((c, h, w))
}

/// How [`Backend::cam_combine`] weighs a feature layer's channels (pytorch-grad-cam's formulas).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CamWeighting {
    /// Grad-CAM: each channel weighted by the spatial mean of its gradient.
    #[default]
    GradMean,
    /// Grad-CAM++: each channel weighted by its positive gradients times the closed-form alphas.
    GradPlusPlus,
    /// LayerCAM: each location weighted by its positive gradient.
    PositiveGrad,
}

/// Checks the operands of [`Backend::cam_combine`]; returns `(N, K, h·w)`.
pub(crate) fn check_cam_combine(acts: &[usize], grads: &[usize]) -> Result<(usize, usize, usize)> {
    if acts.len() != 4 || acts != grads {
        return Err(Error::bad_input(format!(
            "a CAM needs activations and gradients of one shape [N, K, h, w], got {acts:?} and {grads:?}"
        )));
    }
    Ok((acts[0], acts[1], acts[2] * acts[3]))
}

/// One sample's CAM from its activations `a` and gradients `d` (`[K, hw]` each): the host
/// formula the CPU backend runs and the GPU kernel (`shaders/cam.wgsl`) mirrors, in the same
/// summation order.
pub fn cam_map(a: &[f32], d: &[f32], hw: usize, weighting: CamWeighting, relu: bool) -> Vec<f32> {
    let k = a.len().checked_div(hw).unwrap_or(0);
    let mut cam = vec![0.0f32; hw];
    match weighting {
        CamWeighting::GradMean | CamWeighting::GradPlusPlus => {
            for c in 0..k {
                let (ac, dc) = (&a[c * hw..(c + 1) * hw], &d[c * hw..(c + 1) * hw]);
                let w = if weighting == CamWeighting::GradMean {
                    dc.iter().sum::<f32>() / hw as f32
                } else {
                    let sum_a: f32 = ac.iter().sum();
                    dc.iter()
                        .map(|&g| {
                            if g == 0.0 {
                                return 0.0;
                            }
                            let (g2, g3) = (g * g, g * g * g);
                            let alpha = g2 / (2.0 * g2 + sum_a * g3 + 1e-6);
                            g.max(0.0) * alpha
                        })
                        .sum()
                };
                for (v, &x) in cam.iter_mut().zip(ac) {
                    *v += w * x;
                }
            }
        }
        CamWeighting::PositiveGrad => {
            for c in 0..k {
                for (j, v) in cam.iter_mut().enumerate() {
                    *v += d[c * hw + j].max(0.0) * a[c * hw + j];
                }
            }
        }
    }
    if relu {
        cam.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    cam
}

/// The parameters of [`Backend::ascent_step`].
#[derive(Clone, Debug, PartialEq)]
pub struct AscentStep {
    /// Step length in input units, applied to the gradient normalised to mean |g| = 1.
    pub step: f32,
    /// The `(dy, dx)` given to [`Backend::roll`] before the gradient was taken.
    pub jitter: [i64; 2],
    /// Per-channel lower bound of the valid input range.
    pub lo: Vec<f32>,
    /// Per-channel upper bound.
    pub hi: Vec<f32>,
}

/// The largest blur radius: its weights travel in a kernel's parameter block.
pub const MAX_BLUR_RADIUS: usize = 24;

/// The most channels [`Backend::ascent_step`] clamps per channel (their bounds travel in a
/// kernel's parameter block); image inputs have 1 or 3.
pub const MAX_ASCENT_CHANNELS: usize = 24;

/// Checks a `[N, C, H, W]` operand of the image ops; returns its four dimensions.
pub(crate) fn check_image_batch(shape: &[usize], what: &str) -> Result<[usize; 4]> {
    match *shape {
        [n, c, h, w] if h > 0 && w > 0 => Ok([n, c, h, w]),
        _ => Err(Error::bad_input(format!(
            "{what} needs a batch of images [N, C, H, W] with H, W > 0, got {shape:?}"
        ))),
    }
}

/// Checks the operands of [`Backend::ascent_step`]; returns the dimensions of `x`.
pub(crate) fn check_ascent(x: &[usize], grad: &[usize], step: &AscentStep) -> Result<[usize; 4]> {
    let d = check_image_batch(x, "a gradient-ascent step")?;
    if x != grad {
        return Err(Error::bad_input(format!(
            "gradient-ascent step: the gradient {grad:?} must match the image {x:?}"
        )));
    }
    let c = d[1];
    if c > MAX_ASCENT_CHANNELS || step.lo.len() != c || step.hi.len() != c {
        return Err(Error::bad_input(format!(
            "gradient-ascent step: {} lower and {} upper bounds for {c} channels (one per channel, \
             at most {MAX_ASCENT_CHANNELS})",
            step.lo.len(),
            step.hi.len()
        )));
    }
    if !step.step.is_finite() {
        return Err(Error::bad_input(
            "gradient-ascent step length is not finite",
        ));
    }
    Ok(d)
}

/// The normalised 1-D Gaussian weights `w[0..=r]` (`w[k]` for offsets ±k) of [`Backend::blur`],
/// computed once on the host so both backends use the same numbers.
pub(crate) fn blur_weights(sigma: f32) -> Result<Vec<f32>> {
    if !sigma.is_finite() {
        return Err(Error::bad_input("blur sigma is not finite"));
    }
    if sigma <= 0.0 {
        return Ok(vec![1.0]);
    }
    let r = (3.0 * sigma).ceil() as usize;
    if r > MAX_BLUR_RADIUS {
        return Err(Error::bad_input(format!(
            "blur sigma {sigma} is too large: at most {} pixels",
            MAX_BLUR_RADIUS as f32 / 3.0
        )));
    }
    let w: Vec<f64> = (0..=r)
        .map(|k| (-((k * k) as f64) / (2.0 * f64::from(sigma).powi(2))).exp())
        .collect();
    let total = w[0] + 2.0 * w[1..].iter().sum::<f64>();
    Ok(w.iter().map(|v| (v / total) as f32).collect())
}

/// Whether LIME sample `sample` keeps segment `segment` under `seed`: the top bit of the shared
/// PCG hash, so both backends and the host's regression see the same on/off matrix. Sample 0
/// keeps every segment: it is the unperturbed image.
pub fn segment_kept(seed: u64, sample: u32, segment: u32) -> bool {
    use noise::pcg;
    sample == 0
        || pcg(segment ^ pcg(sample ^ pcg(seed as u32 ^ pcg((seed >> 32) as u32)))) >> 31 == 1
}

/// Checks the operands of [`Backend::segment_mask_batch`]; returns `(C, H, W)`.
pub(crate) fn check_segment_mask(
    image: &[usize],
    labels: &[usize],
    first: usize,
    count: usize,
    value: &[f32],
) -> Result<(usize, usize, usize)> {
    if image.len() != 4 || image[0] != 1 {
        return Err(Error::bad_input(format!(
            "segment masking needs one image [1, C, H, W], got {image:?}"
        )));
    }
    let (c, h, w) = (image[1], image[2], image[3]);
    if labels != [h, w] {
        return Err(Error::bad_input(format!(
            "the segment label map is {labels:?}, the image is [{h}, {w}]"
        )));
    }
    if value.len() != c {
        return Err(Error::bad_input(format!(
            "the mask value has {} channel(s), the image has {c}",
            value.len()
        )));
    }
    if (first + count) as u64 > u32::MAX as u64 {
        return Err(Error::bad_input("too many LIME samples (at most 2^32)"));
    }
    Ok((c, h, w))
}

/// Checks the operands of [`Backend::scaled_by_maps`]; returns `(C, H, W, h, w)`.
pub(crate) fn check_scaled_by_maps(
    image: &[usize],
    maps: &[usize],
    first: usize,
    count: usize,
) -> Result<(usize, usize, usize, usize, usize)> {
    if image.len() != 4 || image[0] != 1 || maps.len() != 4 || maps[0] != 1 {
        return Err(Error::bad_input(format!(
            "Score-CAM masking needs one image [1, C, H, W] and maps [1, K, h, w], got {image:?} and {maps:?}"
        )));
    }
    if first + count > maps[1] {
        return Err(Error::internal(format!(
            "maps {first}..{} of {}",
            first + count,
            maps[1]
        )));
    }
    if maps[2] == 0 || maps[3] == 0 {
        return Err(Error::bad_input("Score-CAM maps are empty"));
    }
    Ok((image[1], image[2], image[3], maps[2], maps[3]))
}

/// `(in - 1) / (out - 1)`: the source step of an aligned-corners resize (0 for one output).
pub(crate) fn aligned_scale(inp: usize, out: usize) -> f32 {
    if out > 1 {
        (inp as f32 - 1.0) / (out as f32 - 1.0)
    } else {
        0.0
    }
}
