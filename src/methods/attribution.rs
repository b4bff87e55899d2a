//! One entry shape for every local attribution method, as Captum's `attribute()`: a method struct
//! with its options, a batch of inputs and a [`Target`] in, an [`Attribution`] out, whose maps
//! are backend handles (GPU buffers on the GPU backend) until [`Attribution::read`] brings them
//! back in one read-back.

use super::{channel_abs_max, check_class, scores, CamMap, PixelAttribution, Score};
use crate::backend::{Backend, HostTensor};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::progress::Progress;

/// Which class each sample of a batch is explained for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Class `i` for sample `i`: one class per sample.
    PerSample(Vec<usize>),
    /// The same class for every sample.
    Class(usize),
    /// Each sample's top predicted class. Finding it costs one forward of the batch and a
    /// read-back of its logits before the method starts, since the classes must be known on the
    /// host to build the method's batch.
    TopPrediction,
}

impl From<usize> for Target {
    fn from(class: usize) -> Self {
        Target::Class(class)
    }
}

impl From<Vec<usize>> for Target {
    fn from(classes: Vec<usize>) -> Self {
        Target::PerSample(classes)
    }
}

impl From<&[usize]> for Target {
    fn from(classes: &[usize]) -> Self {
        Target::PerSample(classes.to_vec())
    }
}

impl Target {
    /// The class of each sample of `inputs` (`[N] + model input shape`), checked against the
    /// batch size and the model's classes: a bad-input error, never a panic.
    pub fn classes<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
    ) -> Result<Vec<usize>> {
        let n = check_batch(model, inputs)?;
        let classes = match self {
            Target::PerSample(c) if c.len() == n => c.clone(),
            Target::PerSample(c) => {
                return Err(Error::bad_input(format!(
                    "{} target(s) for a batch of {n}: give one class per sample",
                    c.len()
                )))
            }
            Target::Class(c) => vec![*c; n],
            Target::TopPrediction => {
                let output = b.forward(model, &b.upload(inputs)?, &[])?.output;
                let logits = b.read(&output)?;
                (0..n)
                    .map(|i| crate::backend::top_k(logits.sample(i), 1)[0])
                    .collect()
            }
        };
        for &c in &classes {
            check_class(model, c)?;
        }
        Ok(classes)
    }
}

/// Checks that `inputs` is a non-empty batch `[N] + model input shape`; returns `N`.
fn check_batch(model: &Model, inputs: &HostTensor) -> Result<usize> {
    let fits = inputs.shape.len() == model.input_shape().len() + 1
        && inputs.shape[1..] == *model.input_shape();
    if !fits || inputs.batch() == 0 {
        return Err(Error::bad_input(format!(
            "expected a batch of images [N, {}] with N ≥ 1, got {:?}",
            model
                .input_shape()
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            inputs.shape
        )));
    }
    Ok(inputs.batch())
}

/// What one value of an attribution map stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// One signed value per input element: maps are `[N, C, H, W]` like the input (gradient
    /// methods). Drawn as MATLAB does, the max over channels of |value|.
    PerElement,
    /// One value per pixel: maps are `[N, 1, H, W]` (CAM methods, occlusion, LIME). Drawn as is.
    PerPixel,
}

/// A batch's attribution, still on the backend: on the GPU every tensor is a
/// [`GpuTensor`](crate::gpu::GpuTensor), whose `buffer()` a wgpu host can bind, and
/// [`GpuBackend::attribution_texture`](crate::gpu::GpuBackend::attribution_texture) turns a
/// sample's map into a texture; nothing has been read back unless the method's doc says so.
#[derive(Clone, Debug)]
pub struct Attribution<T> {
    /// The method's name (see [`Named::name`]).
    pub method: &'static str,
    /// Whether `maps` holds one value per input element or one per pixel.
    pub kind: MapKind,
    /// The maps at input resolution: `[N, C, H, W]` or `[N, 1, H, W]` (see `kind`), sample `i`
    /// explaining `targets[i]`.
    pub maps: T,
    /// Where the method has one, its map before upsampling, `[N, 1, h, w]`: a CAM at the
    /// layer's resolution, occlusion's grid of window positions.
    pub lowres: Option<T>,
    /// The layer a CAM method worked on (ONNX tensor name).
    pub layer: Option<String>,
    /// The model's output for the unperturbed inputs, `[N, classes]`.
    pub logits: T,
    /// The explained class of each sample.
    pub targets: Vec<usize>,
    /// Which score of the target the maps explain.
    pub score: Score,
    /// Where the method has a baseline (IG), the model's output at each sample's baseline,
    /// `[N, classes]`: read with the maps, it gives [`Extras::convergence_delta`].
    pub baseline_logits: Option<T>,
    /// What a method that finishes on the host knows beyond its maps, one per sample (empty
    /// when it has nothing to add).
    pub extras: Vec<Extras>,
}

/// What a method knows beyond its map, for one sample: each field is set by the methods that
/// have it and `None` elsewhere, so callers handle one result type whatever the method.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extras {
    /// IG's completeness check: `sum(map) - (f(x) - f(baseline))`, near 0 when the quadrature is
    /// accurate.
    pub convergence_delta: Option<f32>,
    /// IG: `f(x) - f(baseline)`.
    pub score_difference: Option<f32>,
    /// Score-CAM: the weight of each channel of the layer (softmax of the masked scores).
    pub channel_weights: Option<Vec<f32>>,
    /// Occlusion: `[H, W]`, per pixel the mean score drop over the windows covering it
    /// (Captum's attribution), before the grid is upsampled into the map.
    pub per_pixel: Option<HostTensor>,
    /// LIME: the surrogate model fitted to the perturbed scores.
    pub surrogate: Option<SurrogateFit>,
}

/// A LIME surrogate: what it says of each segment and how well it fits.
#[derive(Clone, Debug, PartialEq)]
pub struct SurrogateFit {
    /// `[H, W]`: the segment id of each pixel (MATLAB `featureMap`), as whole f32 values.
    pub segments: HostTensor,
    /// One value per segment (MATLAB `featureImportance`).
    pub importance: Vec<f32>,
    /// The most important segment ids, most important first.
    pub top_segments: Vec<usize>,
    /// Weighted R² of the surrogate on the samples.
    pub r2: f64,
}

/// An [`Attribution`] read back to the host.
#[derive(Clone, Debug)]
pub struct HostAttribution {
    /// The method's name.
    pub method: &'static str,
    /// Whether `maps` holds one value per input element or one per pixel.
    pub kind: MapKind,
    /// `[N, C, H, W]` or `[N, 1, H, W]`.
    pub maps: HostTensor,
    /// `[N, 1, h, w]`, where the method has a map before upsampling.
    pub lowres: Option<HostTensor>,
    /// The layer a CAM method worked on.
    pub layer: Option<String>,
    /// `[N, classes]`: the model's output for the inputs.
    pub logits: HostTensor,
    /// The explained class of each sample.
    pub targets: Vec<usize>,
    /// Which score the maps explain.
    pub score: Score,
    /// That score of each sample's target on the unperturbed input.
    pub scores: Vec<f32>,
    /// Per sample, what the method knows beyond the map (IG's convergence delta, LIME's fit,
    /// Score-CAM's channel weights, occlusion's per-pixel map); all `None` where it has nothing.
    pub extras: Vec<Extras>,
}

impl<T> Attribution<T> {
    /// Copies the attribution to the host: one `read_many` (on the GPU one submission and one
    /// read-back).
    pub fn read<B: Backend<Tensor = T>>(&self, b: &B) -> Result<HostAttribution> {
        Ok(self.read_with(b, &[])?.0)
    }

    /// [`Attribution::read`] plus `extra` tensors in the same read-back.
    pub(crate) fn read_with<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        extra: &[&T],
    ) -> Result<(HostAttribution, Vec<HostTensor>)> {
        let mut wanted = vec![&self.maps, &self.logits];
        wanted.extend(self.lowres.as_ref());
        wanted.extend(self.baseline_logits.as_ref());
        wanted.extend_from_slice(extra);
        let mut read = b.read_many(&wanted)?.into_iter();
        let short = || Error::internal("read-back returned fewer tensors than asked");
        let maps = read.next().ok_or_else(short)?;
        let logits = read.next().ok_or_else(short)?;
        let lowres = match self.lowres {
            Some(_) => Some(read.next().ok_or_else(short)?),
            None => None,
        };
        let baseline_logits = match self.baseline_logits {
            Some(_) => Some(read.next().ok_or_else(short)?),
            None => None,
        };
        let scores = scores(&logits, self.score, &self.targets);
        let mut extras = self.extras.clone();
        extras.resize(self.targets.len(), Extras::default());
        if let Some(base) = baseline_logits {
            let base_scores = super::scores(&base, self.score, &self.targets);
            for (i, e) in extras.iter_mut().enumerate() {
                // As IG's own `attribute` has always computed it: the map's sum in f64.
                let total: f64 = maps.sample(i).iter().map(|&v| v as f64).sum();
                let difference = scores[i] - base_scores[i];
                e.convergence_delta = Some((total - difference as f64) as f32);
                e.score_difference = Some(difference);
            }
        }
        let host = HostAttribution {
            method: self.method,
            kind: self.kind,
            maps,
            lowres,
            layer: self.layer.clone(),
            logits,
            targets: self.targets.clone(),
            score: self.score,
            scores,
            extras,
        };
        Ok((host, read.collect()))
    }
}

impl HostAttribution {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Sample `i`'s map without the batch axis: `[C, H, W]`, or `[H, W]` for one value per pixel.
    pub fn map(&self, i: usize) -> HostTensor {
        plane(&self.maps, i, self.kind == MapKind::PerPixel)
    }

    /// Sample `i`'s map before upsampling, `[h, w]`, where the method has one.
    pub fn lowres_map(&self, i: usize) -> Option<HostTensor> {
        self.lowres.as_ref().map(|l| plane(l, i, true))
    }

    /// Sample `i`'s map as it is drawn, `[H, W]`: the max over channels of |value| for
    /// [`MapKind::PerElement`], the map itself for [`MapKind::PerPixel`].
    pub fn display(&self, i: usize) -> HostTensor {
        match self.kind {
            MapKind::PerElement => channel_abs_max(&self.map(i)),
            MapKind::PerPixel => self.map(i),
        }
    }

    /// The samples as the gradient methods' host results.
    pub(crate) fn pixel_attributions(&self) -> Vec<PixelAttribution> {
        (0..self.len())
            .map(|i| PixelAttribution {
                class: self.targets[i],
                score: self.scores[i],
                map: self.map(i),
            })
            .collect()
    }

    /// The samples as the CAM methods' host results.
    pub(crate) fn cam_maps(&self) -> Result<Vec<CamMap>> {
        (0..self.len())
            .map(|i| {
                let lowres = self
                    .lowres_map(i)
                    .ok_or_else(|| Error::internal("a CAM attribution without its low-res map"))?;
                Ok(CamMap {
                    class: self.targets[i],
                    score: self.scores[i],
                    layer: self.layer.clone().unwrap_or_default(),
                    lowres,
                    upsampled: self.map(i),
                })
            })
            .collect()
    }
}

/// Sample `i` of a `[N, C, H, W]` tensor, without the batch axis, and without the channel axis
/// too if `squeeze`.
fn plane(t: &HostTensor, i: usize, squeeze: bool) -> HostTensor {
    let skip = if squeeze { 2 } else { 1 };
    HostTensor {
        shape: t.shape[skip..].to_vec(),
        data: t.sample(i).to_vec(),
    }
}

/// A method's short name, as the CLI spells it where it has one (`saliency`, `gradcam`,
/// `occlusion`, ...). Apart from [`Attribute`] because it does not depend on the backend: a
/// method struct answers it without naming one.
pub trait Named {
    /// The method's short name.
    fn name(&self) -> &'static str;
}

/// The uniform entry point of the local attribution methods (Captum's `attribute()`), for one
/// backend type, so that a method is an object: `Box<dyn Attribute<B>>` is what the
/// [registry](super::registry) builds from a subcommand's options. Every method struct
/// implements it for every backend (`impl<B: Backend> Attribute<B> for GradCam`).
///
/// Sample `i` of `inputs` (`[N, C, H, W]`) is explained for class `i` of the target; each
/// method's own `attribute` (one image, several classes, host results) is this call followed by
/// [`Attribution::read`], so both give the same numbers.
///
/// ```
/// use netlens::cpu::CpuBackend;
/// use netlens::methods::attribution::{Attribute, Target};
/// use netlens::methods::gradcam::GradCam;
/// use netlens::methods::saliency::Saliency;
/// use netlens::model::import::load_model;
/// use netlens::HostTensor;
///
/// let model = load_model(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/models/tiny_digits.onnx"))?;
/// let b = CpuBackend::new();
/// // Two 16×16 grey images, explained for classes 3 and 7.
/// let inputs = HostTensor::new(vec![2, 1, 16, 16], vec![0.5; 512])?;
/// let target = Target::PerSample(vec![3, 7]);
///
/// let saliency = Saliency::default().attribute_batch(&b, &model, &inputs, &target)?;
/// let cam = GradCam::default().attribute_batch(&b, &model, &inputs, &target)?;
/// // The maps stay on the backend until read: one read-back each.
/// let (saliency, cam) = (saliency.read(&b)?, cam.read(&b)?);
/// assert_eq!(saliency.maps.shape, vec![2, 1, 16, 16]);
/// assert_eq!(cam.maps.shape, vec![2, 1, 16, 16]);
/// assert_eq!(cam.targets, vec![3, 7]);
///
/// // The same methods as objects, side by side.
/// let methods: Vec<Box<dyn Attribute<CpuBackend>>> =
///     vec![Box::new(Saliency::default()), Box::new(GradCam::default())];
/// for m in &methods {
///     let a = m.attribute_batch(&b, &model, &inputs, &target)?.read(&b)?;
///     assert_eq!((a.method, a.extras.len()), (m.name(), 2));
/// }
/// # Ok::<(), netlens::Error>(())
/// ```
pub trait Attribute<B: Backend>: Named {
    /// Explains each sample of `inputs` (`[N] + model input shape`, N ≥ 1) for its class in
    /// `target`. A bad batch or target is a bad-input error.
    fn attribute_batch(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
    ) -> Result<Attribution<B::Tensor>>;

    /// [`Attribute::attribute_batch`], reporting its mini-batches to `progress` where the method
    /// has some (the perturbation methods); the others ignore it.
    fn attribute_batch_with_progress(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
        progress: &dyn Progress,
    ) -> Result<Attribution<B::Tensor>> {
        let _ = progress;
        self.attribute_batch(b, model, inputs, target)
    }
}

/// One sample's result of a method whose last step runs on the host.
pub(crate) struct HostResult {
    /// `[H, W]` at input resolution.
    pub map: HostTensor,
    /// `[h, w]` before upsampling, where the method has one.
    pub lowres: Option<HostTensor>,
    /// The model's output for the unperturbed sample, `[1, classes]`.
    pub logits: HostTensor,
    /// What the method knows beyond the map.
    pub extras: Extras,
}

/// For the methods that finish on the host (occlusion, LIME, Score-CAM): explains each image
/// with `explain(image [1, C, H, W], classes, progress)`, one result per class (each call reads
/// its scores back), then uploads the stacked results, so they leave as the same kind of
/// [`Attribution`] as the device methods'. Consecutive samples that repeat one image (one image
/// explained for several classes) are explained in one call, so they share its forwards.
pub(crate) fn explain_each<B: Backend>(
    b: &B,
    model: &Model,
    inputs: &HostTensor,
    target: &Target,
    (method, score, layer): (&'static str, Score, Option<String>),
    progress: &dyn Progress,
    mut explain: impl FnMut(&HostTensor, &[usize], &dyn Progress) -> Result<Vec<HostResult>>,
) -> Result<Attribution<B::Tensor>> {
    let targets = target.classes(b, model, inputs)?;
    let mut shape = inputs.shape.clone();
    shape[0] = 1;
    let mut results = Vec::with_capacity(targets.len());
    let mut first = 0;
    while first < targets.len() {
        let image = inputs.sample(first);
        let mut end = first + 1;
        while end < targets.len() && inputs.sample(end) == image {
            end += 1;
        }
        let x = HostTensor::new(shape.clone(), image.to_vec())?;
        let group = explain(&x, &targets[first..end], progress)?;
        if group.len() != end - first {
            return Err(Error::internal(format!(
                "{method} returned {} maps for {} classes",
                group.len(),
                end - first
            )));
        }
        results.extend(group);
        first = end;
    }
    // [h, w] planes stacked into [N, 1, h, w].
    let stack = |planes: Vec<&HostTensor>| -> Result<B::Tensor> {
        let mut shape = vec![planes.len(), 1];
        shape.extend_from_slice(planes.first().map_or(&[][..], |p| &p.shape));
        let data = planes.iter().flat_map(|p| p.data.iter().copied()).collect();
        b.upload(&HostTensor::new(shape, data)?)
    };
    let logits = super::concat_rows(results.iter().map(|r| r.logits.clone()).collect())?;
    let lowres = match results.iter().map(|r| r.lowres.as_ref()).collect() {
        Some(planes) => Some(stack(planes)?),
        None => None,
    };
    Ok(Attribution {
        method,
        kind: MapKind::PerPixel,
        maps: stack(results.iter().map(|r| &r.map).collect())?,
        lowres,
        layer,
        logits: b.upload(&logits)?,
        targets,
        score,
        baseline_logits: None,
        extras: results.into_iter().map(|r| r.extras).collect(),
    })
}
