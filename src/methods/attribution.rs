//! One entry shape for every local attribution method, as Captum's `attribute()`: a method struct
//! with its options, a batch of inputs and a [`Target`] in, an [`Attribution`] out, whose maps
//! are backend handles (GPU buffers on the GPU backend) until [`Attribution::read`] brings them
//! back in one read-back.

use super::gradcam::CamMap;
use super::{channel_abs_max, check_class, scores, PixelAttribution, Score};
use crate::backend::{Backend, HostTensor};
use crate::error::{Error, Result};
use crate::model::Model;

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
                    .map(|i| crate::engine::top_k(logits.sample(i), 1)[0])
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
    /// The method's name (see [`Attribute::name`]).
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
        wanted.extend_from_slice(extra);
        let mut read = b.read_many(&wanted)?.into_iter();
        let short = || Error::internal("read-back returned fewer tensors than asked");
        let maps = read.next().ok_or_else(short)?;
        let logits = read.next().ok_or_else(short)?;
        let lowres = match self.lowres {
            Some(_) => Some(read.next().ok_or_else(short)?),
            None => None,
        };
        let scores = scores(&logits, self.score, &self.targets);
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

/// The uniform entry point of the local attribution methods (Captum's `attribute()`).
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
/// # Ok::<(), netlens::Error>(())
/// ```
pub trait Attribute {
    /// The method's short name, as the CLI spells it where it has one (`saliency`, `gradcam`,
    /// `occlusion`, ...).
    fn name(&self) -> &'static str;

    /// Explains each sample of `inputs` (`[N] + model input shape`, N ≥ 1) for its class in
    /// `target`. A bad batch or target is a bad-input error.
    fn attribute_batch<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
    ) -> Result<Attribution<B::Tensor>>;
}

/// One sample's result of a method whose last step runs on the host.
pub(crate) struct HostResult {
    /// `[H, W]` at input resolution.
    pub map: HostTensor,
    /// `[h, w]` before upsampling, where the method has one.
    pub lowres: Option<HostTensor>,
    /// The model's output for the unperturbed sample, `[1, classes]`.
    pub logits: HostTensor,
}

/// For the methods that finish on the host (occlusion, LIME, Score-CAM): explains each sample
/// alone with `explain` (each call reads its scores back), then uploads the stacked results, so
/// they leave as the same kind of [`Attribution`] as the device methods'.
pub(crate) fn explain_each<B: Backend>(
    b: &B,
    model: &Model,
    inputs: &HostTensor,
    target: &Target,
    (method, score, layer): (&'static str, Score, Option<String>),
    mut explain: impl FnMut(&HostTensor, usize) -> Result<HostResult>,
) -> Result<Attribution<B::Tensor>> {
    let targets = target.classes(b, model, inputs)?;
    let mut shape = inputs.shape.clone();
    shape[0] = 1;
    let results = targets
        .iter()
        .enumerate()
        .map(|(i, &class)| {
            explain(
                &HostTensor::new(shape.clone(), inputs.sample(i).to_vec())?,
                class,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    // [h, w] planes stacked into [N, 1, h, w].
    let stack = |planes: Vec<&HostTensor>| -> Result<B::Tensor> {
        let mut shape = vec![planes.len(), 1];
        shape.extend_from_slice(planes.first().map_or(&[][..], |p| &p.shape));
        let data = planes.iter().flat_map(|p| p.data.iter().copied()).collect();
        b.upload(&HostTensor::new(shape, data)?)
    };
    let logits = super::occlusion::concat_rows(results.iter().map(|r| r.logits.clone()).collect())?;
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
    })
}
