//! Deep dream (MATLAB `deepDreamImage`): gradient ascent on the input image to maximise the mean
//! activation of layer channels, or class logits, over an image pyramid.
//!
//! Every requested channel (or class) is one sample of ONE batch with its own objective, so a
//! run costs `levels × iterations` forward + backward passes whatever the channel count. The
//! whole ascent is recorded on the backend: per iteration one jitter roll, one `gradients`, one
//! normalised ascent step (and a blur if asked); nothing is read back until the end, where the
//! images and the objectives (before, per level, after) come back in one read.
//!
//! The pyramid instantiates the model at each level's input size (`import_bytes_with_input`),
//! which works for models that are fully convolutional up to the target layer (MobileNetV2 up to
//! its global pooling, for instance). The image starts at the smallest level and is resized up
//! (bilinear, on the backend) between levels.

use crate::backend::{AscentStep, Backend, GradRule, HostTensor, Seed};
use crate::error::{Error, Result};
use crate::input::Preprocess;
use crate::model::{Graph, Model, ValueId};
use crate::progress::{Progress, Silent};

/// What each sample of the batch maximises.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Sample `i` maximises the mean of channel `channels[i]` of `layer` (an ONNX tensor name).
    Channels {
        /// The layer whose channels are maximised (ONNX tensor name).
        layer: String,
        /// One channel of `layer` per sample.
        channels: Vec<usize>,
    },
    /// Sample `i` maximises the logit of class `classes[i]`.
    Classes(Vec<usize>),
}

impl Target {
    fn len(&self) -> usize {
        match self {
            Target::Channels { channels, .. } => channels.len(),
            Target::Classes(c) => c.len(),
        }
    }
}

/// The image the ascent starts from.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Start {
    /// Mid-gray (pixel 127.5) on every channel.
    Gray,
    /// Mid-gray plus seeded uniform noise of ±[`DeepDream::noise`] pixel levels, different per
    /// sample.
    #[default]
    Random,
    /// A given model input `[1, C, H, W]` at the model's own size, for every sample.
    Image(HostTensor),
}

/// The model's input space as deep dream needs it: per channel, the input value of mid-gray and
/// of pixels 0 and 255 (the clamping range).
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpace {
    /// Per channel, the input value of mid-gray (pixel 127.5), where the gray and random starts
    /// begin.
    pub gray: Vec<f32>,
    /// Per channel, the lower input value of pixels 0 and 255; every ascent step clamps to it.
    pub lo: Vec<f32>,
    /// Per channel, the upper input value of pixels 0 and 255; every ascent step clamps to it.
    pub hi: Vec<f32>,
}

impl InputSpace {
    /// From the preprocessing that maps pixels to the model's input.
    pub fn from_preprocess(pre: &Preprocess, channels: usize) -> Result<InputSpace> {
        let value = |p: f32| -> Result<Vec<f32>> {
            (0..channels)
                .map(|c| pre.input_value(channels, c, p))
                .collect()
        };
        let (a, b) = (value(0.0)?, value(255.0)?);
        // A negative std would swap the ends.
        let lo = a.iter().zip(&b).map(|(x, y)| x.min(*y)).collect();
        let hi = a.iter().zip(&b).map(|(x, y)| x.max(*y)).collect();
        Ok(InputSpace {
            gray: value(127.5)?,
            lo,
            hi,
        })
    }

    /// ImageNet normalisation for 3 channels, plain `/255` otherwise (the CLI's defaults).
    pub fn default_for(channels: usize) -> Result<InputSpace> {
        let pre = if channels == 3 {
            Preprocess::imagenet()
        } else {
            Preprocess::unit()
        };
        InputSpace::from_preprocess(&pre, channels)
    }

    /// Input units per pixel level on channel `c`.
    fn level(&self, c: usize) -> f32 {
        (self.hi[c] - self.lo[c]) / 255.0
    }
}

/// Deep dream's options, with MATLAB's pyramid defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct DeepDream {
    /// Pyramid levels (MATLAB `PyramidLevels`).
    pub levels: usize,
    /// Size ratio between consecutive levels (MATLAB `PyramidScale`).
    pub scale: f32,
    /// Ascent steps per level (MATLAB `NumIterations`).
    pub iterations: usize,
    /// Step length in pixel levels (0..255) per iteration, applied to the gradient normalised to
    /// mean |g| = 1 per sample.
    pub step: f32,
    /// Largest random circular shift, in pixels, before each gradient (0: none, the default).
    /// Jitter (2 to 8) gives smoother images but optimises a shift-averaged objective, so the
    /// measured objective of the final image rises less (MobileNetV2: about a quarter less).
    pub jitter: usize,
    /// Gaussian blur σ in pixels after each step (0: none).
    pub blur: f32,
    /// The image the ascent starts from (default [`Start::Random`]).
    pub start: Start,
    /// Amplitude of the random start, in pixel levels.
    pub noise: f32,
    /// Seeds the random start and the jitter.
    pub seed: u64,
    /// The model's input space; `None`: [`InputSpace::default_for`] the model's channels.
    pub space: Option<InputSpace>,
}

impl Default for DeepDream {
    fn default() -> Self {
        DeepDream {
            levels: 3,
            scale: 1.4,
            iterations: 10,
            step: 8.0,
            jitter: 0,
            blur: 0.0,
            start: Start::Random,
            noise: 16.0,
            seed: 0,
            space: None,
        }
    }
}

/// What a dream leaves behind, all read back in one go at the end.
#[derive(Clone, Debug)]
pub struct DreamResult {
    /// The dreamed inputs `[N, C, H, W]` at the model's size, in its input space.
    pub images: HostTensor,
    /// Each sample's objective on the start image.
    pub objective_before: Vec<f32>,
    /// Each sample's objective on the dreamed image.
    pub objective_after: Vec<f32>,
    /// `[level][sample]`: the objective at the last iteration of each level (on the jittered
    /// image, at that level's size).
    pub objective_per_level: Vec<Vec<f32>>,
    /// `[H, W]` of each level, smallest first.
    pub sizes: Vec<[usize; 2]>,
}

/// A model at one pyramid level, cut at the target, with its seed.
struct Level<T> {
    model: Model,
    seed: Seed<T>,
    size: [usize; 2],
}

impl DeepDream {
    /// Dreams every target of `target` as one batch. `model` is the model at its own (top)
    /// size; `at_size(h, w)` gives the same model instantiated at input `h × w` for the smaller
    /// levels (see [`crate::model::import::import_bytes_with_input`]).
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        at_size: &dyn Fn(usize, usize) -> Result<Model>,
        target: &Target,
    ) -> Result<DreamResult> {
        self.attribute_with_progress(b, model, at_size, target, &Silent)
    }

    /// [`DeepDream::attribute`], reporting each level's iterations to `progress`.
    pub fn attribute_with_progress<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        at_size: &dyn Fn(usize, usize) -> Result<Model>,
        target: &Target,
        progress: &dyn Progress,
    ) -> Result<DreamResult> {
        self.validate()?;
        let &[c, h, w] = model.input_shape() else {
            return Err(Error::bad_input(format!(
                "deep dream needs an image model [C, H, W], the input is {:?}",
                model.input_shape()
            )));
        };
        let n = target.len();
        if n == 0 {
            return Err(Error::bad_input(
                "deep dream needs at least one channel or class to maximise",
            ));
        }
        let space = match &self.space {
            Some(s) => s.clone(),
            None => InputSpace::default_for(c)?,
        };
        if space.gray.len() != c || space.lo.len() != c || space.hi.len() != c {
            return Err(Error::bad_input(format!(
                "the input space has {} channel(s), the model {c}",
                space.gray.len()
            )));
        }
        let top = cut(model, target)?;
        let sizes = self.sizes(h, w);
        let mut levels = Vec::with_capacity(sizes.len());
        for &size in &sizes {
            let (m, at) = if size == [h, w] {
                top.clone()
            } else {
                let m = at_size(size[0], size[1]).map_err(|e| {
                    e.context(format!(
                        "pyramid level {}x{} (use fewer --levels or a smaller --scale)",
                        size[0], size[1]
                    ))
                })?;
                cut(&m, target)?
            };
            let seed = Seed::Grad {
                at,
                grad: b.upload(&seed_grad(&m.graph, at, target)?)?,
            };
            levels.push(Level {
                model: m,
                seed,
                size,
            });
        }

        let start = b.upload(&self.start_image(c, h, w, n, &space)?)?;
        let before = b.forward(&top.0, &start, &[])?.output;
        let mut x = start;
        let step = self.step * (0..c).map(|ch| space.level(ch)).sum::<f32>() / c as f32;
        let mut rng = Rng(self.seed ^ 0x9e37_79b9_7f4a_7c15);
        let mut per_level = Vec::with_capacity(levels.len());
        for (l, level) in levels.iter().enumerate() {
            let [lh, lw] = level.size;
            if b.shape(&x)[2..] != [lh, lw] {
                x = b.resize_bilinear(&x, lh, lw)?;
            }
            progress.start(
                &format!("level {}/{} {lh}x{lw}", l + 1, levels.len()),
                self.iterations as u64,
            );
            let mut last = None;
            for _ in 0..self.iterations {
                let j = self.jitter as i64;
                let jitter = [rng.range(-j, j), rng.range(-j, j)];
                let xj = if jitter == [0, 0] {
                    x.clone()
                } else {
                    b.roll(&x, jitter[0], jitter[1])?
                };
                let g =
                    b.gradients(&level.model, &xj, &level.seed, GradRule::Standard, &[], &[])?;
                let s = AscentStep {
                    step,
                    jitter,
                    lo: space.lo.clone(),
                    hi: space.hi.clone(),
                };
                x = b.ascent_step(&x, &g.input_grad, &s)?;
                if self.blur > 0.0 {
                    x = b.blur(&x, self.blur)?;
                }
                last = Some(g.output);
                progress.advance(1);
            }
            progress.finish();
            per_level.extend(last);
        }
        if b.shape(&x)[2..] != [h, w] {
            x = b.resize_bilinear(&x, h, w)?;
        }
        let after = b.forward(&top.0, &x, &[])?.output;

        let mut reads: Vec<&B::Tensor> = vec![&x, &before, &after];
        reads.extend(per_level.iter());
        let mut host = b.read_many(&reads)?.into_iter();
        let mut next = || {
            host.next()
                .ok_or_else(|| Error::internal("read-back came short"))
        };
        let images = next()?;
        let objective_before = objective(&next()?, target);
        let objective_after = objective(&next()?, target);
        let objective_per_level = (0..per_level.len())
            .map(|_| next().map(|t| objective(&t, target)))
            .collect::<Result<_>>()?;
        Ok(DreamResult {
            images,
            objective_before,
            objective_after,
            objective_per_level,
            sizes,
        })
    }

    fn validate(&self) -> Result<()> {
        if self.levels == 0 {
            return Err(Error::bad_input(
                "deep dream needs at least one pyramid level",
            ));
        }
        if !(self.scale.is_finite() && self.scale >= 1.0) {
            return Err(Error::bad_input(format!(
                "pyramid scale must be a number >= 1, got {}",
                self.scale
            )));
        }
        for (name, v) in [
            ("step", self.step),
            ("noise", self.noise),
            ("blur", self.blur),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::bad_input(format!(
                    "deep dream {name} must be a number >= 0, got {v}"
                )));
            }
        }
        crate::backend::blur_weights(self.blur)?;
        Ok(())
    }

    /// `[H, W]` per level, smallest first; the last is the model's own size.
    pub fn sizes(&self, h: usize, w: usize) -> Vec<[usize; 2]> {
        (0..self.levels)
            .map(|l| {
                let f = self.scale.powi((self.levels - 1 - l) as i32);
                let side = |v: usize| ((v as f32 / f).round() as usize).max(1);
                [side(h), side(w)]
            })
            .collect()
    }

    fn start_image(
        &self,
        c: usize,
        h: usize,
        w: usize,
        n: usize,
        space: &InputSpace,
    ) -> Result<HostTensor> {
        let hw = h * w;
        let one = match &self.start {
            Start::Image(t) => {
                if t.shape != [1, c, h, w] {
                    return Err(Error::bad_input(format!(
                        "the start image must have the model's shape [1, {c}, {h}, {w}], got {:?}",
                        t.shape
                    )));
                }
                return Ok(super::repeat(t, n));
            }
            Start::Gray | Start::Random => {
                (0..c * hw).map(|i| space.gray[i / hw]).collect::<Vec<_>>()
            }
        };
        let mut data = one.repeat(n);
        if self.start == Start::Random {
            let per = c * hw;
            for (i, v) in data.iter_mut().enumerate() {
                let (s, e) = ((i / per) as u32, (i % per) as u32);
                let key = crate::backend::noise::pcg(
                    e ^ crate::backend::noise::pcg(
                        s ^ crate::backend::noise::pcg(self.seed as u32),
                    ),
                );
                let u = (key >> 8) as f32 / 16777216.0 * 2.0 - 1.0;
                let ch = e as usize / hw;
                *v = (*v + u * self.noise * space.level(ch)).clamp(space.lo[ch], space.hi[ch]);
            }
        }
        HostTensor::new(vec![n, c, h, w], data)
    }
}

/// A small seeded generator for the jitter offsets (scalars drawn on the host).
struct Rng(u64);

impl Rng {
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + ((self.0 >> 33) % (hi - lo + 1) as u64) as i64
    }
}

/// `model` with `target`'s value as its output and every node after it dropped (nothing past the
/// target is computed, and nothing past it has to work at other input sizes), plus that value.
fn cut(model: &Model, target: &Target) -> Result<(Model, ValueId)> {
    let at = match target {
        Target::Classes(classes) => {
            for &k in classes {
                super::check_class(model, k)?;
            }
            return Ok((model.clone(), model.graph.output));
        }
        Target::Channels { layer, channels } => {
            let at = model.layer(layer)?;
            if at == model.graph.input {
                return Err(Error::bad_input(format!(
                    "'{layer}' is the model input; deep dream needs a layer computed from it"
                )));
            }
            let shape = &model.graph.values[at].shape;
            let k = shape.first().copied().unwrap_or(1);
            if let Some(&bad) = channels.iter().find(|&&ch| ch >= k) {
                return Err(Error::bad_input(format!(
                    "channel {bad} is out of range: layer '{layer}' has {k} channels (0..{}), \
                     shape {shape:?}",
                    k.saturating_sub(1)
                )));
            }
            at
        }
    };
    Ok((truncated(model, at), at))
}

/// The sub-graph that computes `at`, with `at` as the output.
pub fn truncated(model: &Model, at: ValueId) -> Model {
    let g = &model.graph;
    let mut live = vec![false; g.values.len()];
    live[at] = true;
    let mut keep = vec![false; g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate().rev() {
        if live[node.output] {
            keep[i] = true;
            for &v in &node.inputs {
                live[v] = true;
            }
        }
    }
    let nodes = g
        .nodes
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(n, _)| n.clone())
        .collect();
    Model {
        graph: Graph {
            values: g.values.clone(),
            nodes,
            input: g.input,
            output: at,
        },
        name: model.name.clone(),
    }
}

/// The seed `[N] + shape(at)`: `1/spatial` on channel `c_i` of sample `i` (the gradient of the
/// channel mean), or a one-hot on class `k_i`.
fn seed_grad(g: &Graph, at: ValueId, target: &Target) -> Result<HostTensor> {
    let shape = &g.values[at].shape;
    let n = target.len();
    let mut t = HostTensor::zeros(g.values[at].full_shape(n));
    let per = t.sample_len();
    match target {
        Target::Classes(classes) => {
            for (i, &k) in classes.iter().enumerate() {
                t.data[i * per + k] = 1.0;
            }
        }
        Target::Channels { channels, .. } => {
            let spatial = shape.iter().skip(1).product::<usize>().max(1);
            for (i, &ch) in channels.iter().enumerate() {
                let at = i * per + ch * spatial;
                t.data[at..at + spatial].fill(1.0 / spatial as f32);
            }
        }
    }
    Ok(t)
}

/// Each sample's objective from the target value `[N] + shape(at)`.
fn objective(t: &HostTensor, target: &Target) -> Vec<f32> {
    let per = t.sample_len();
    match target {
        Target::Classes(classes) => classes
            .iter()
            .enumerate()
            .map(|(i, &k)| t.data[i * per + k])
            .collect(),
        Target::Channels { channels, .. } => {
            let spatial = t.shape.iter().skip(2).product::<usize>().max(1);
            channels
                .iter()
                .enumerate()
                .map(|(i, &ch)| {
                    let at = i * per + ch * spatial;
                    let sum: f64 = t.data[at..at + spatial].iter().map(|&v| f64::from(v)).sum();
                    (sum / spatial as f64) as f32
                })
                .collect()
        }
    }
}
