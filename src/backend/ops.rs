//! Argument checks of the backend ops and the small formulas both backends share (CAM weighting,
//! the LIME segment hash, blur weights, aligned-corner scales), so the GPU and the CPU reject the
//! same inputs with the same messages and compute the same thing.

use super::*;

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
