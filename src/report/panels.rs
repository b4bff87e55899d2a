//! Runs every local method on one image and class and turns each map into a report panel.

use std::time::Instant;

use super::{png_bytes, Panel};
use crate::backend::{Backend, GradRule, HostTensor};
use crate::error::{Error, ErrorKind, Result};
use crate::methods::gradcam::{guided_gradcam, CamVariant, GradCam};
use crate::methods::integrated_gradients::IntegratedGradients;
use crate::methods::lime::Lime;
use crate::methods::occlusion::Occlusion;
use crate::methods::saliency::Saliency;
use crate::methods::smoothgrad::SmoothGrad;
use crate::methods::{cam, check_single_image, upsample_bilinear};
use crate::model::Model;
use crate::progress::Progress;

/// The report's method parameters. The defaults keep the whole report for MobileNetV2 well under
/// ten seconds on the CPU backend of a two-core machine (see the README) while the maps stay
/// close to their converged form; `netlens bench` times the same settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Integrated Gradients: Gauss-Legendre steps from a zero baseline.
    pub ig_steps: usize,
    /// SmoothGrad: noisy samples.
    pub smoothgrad_samples: usize,
    /// SmoothGrad: noise σ as a fraction of the input range.
    pub noise: f32,
    /// Occlusion: square window side in pixels.
    pub occlusion_mask: usize,
    /// Occlusion: stride in pixels.
    pub occlusion_stride: usize,
    /// SmoothGrad's noise seed and LIME's sampling seed.
    pub seed: u64,
    /// LIME: perturbed samples (MATLAB's default is 2048; fewer keep the report quick).
    pub lime_samples: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ig_steps: 16,
            smoothgrad_samples: 16,
            noise: 0.15,
            occlusion_mask: 32,
            occlusion_stride: 16,
            seed: 0,
            lime_samples: 512,
        }
    }
}

impl Settings {
    /// The Integrated Gradients these settings describe.
    pub fn ig(&self) -> IntegratedGradients {
        IntegratedGradients {
            steps: self.ig_steps,
            ..Default::default()
        }
    }
    /// The SmoothGrad these settings describe.
    pub fn smoothgrad(&self) -> SmoothGrad {
        SmoothGrad {
            samples: self.smoothgrad_samples,
            noise: self.noise,
            seed: self.seed,
            ..Default::default()
        }
    }
    /// The LIME these settings describe: MATLAB's defaults (49 SLIC superpixels, regression
    /// tree) with `lime_samples` samples.
    pub fn lime(&self) -> Lime {
        Lime {
            num_samples: self.lime_samples,
            seed: self.seed,
            ..Default::default()
        }
    }
    /// The occlusion these settings describe (MATLAB's clipping and mean fill).
    pub fn occlusion(&self) -> Occlusion {
        Occlusion {
            mask_size: Some([self.occlusion_mask; 2]),
            stride: Some([self.occlusion_stride; 2]),
            ..Default::default()
        }
    }
}

/// The feature channel that fires most on the image.
#[derive(Clone, Debug)]
pub struct StrongestChannel {
    /// The layer (ONNX tensor name): the CAM layer, the input of the last global pooling.
    pub layer: String,
    /// The channel's index in the layer.
    pub channel: usize,
    /// The layer's channel count, for context ("channel 17 of 1280").
    pub channels: usize,
    /// Its mean activation over the layer's spatial positions.
    pub mean: f32,
    /// The channel's activation `[H, W]`, bilinearly upsampled to the input.
    pub upsampled: HostTensor,
}

/// The channel of the CAM layer with the highest mean activation on `x` (`[1, C, H, W]`): the
/// first thing UNPIC shows, what the network sees most of before it decides.
pub fn strongest_channel<B: Backend>(
    b: &B,
    model: &Model,
    x: &HostTensor,
) -> Result<StrongestChannel> {
    check_single_image(model, x)?;
    let layer = crate::methods::gradcam::feature_layer(model, None)?;
    let f = b.forward(model, &b.upload(x)?, &[layer])?;
    let tap = f
        .tap(layer)
        .ok_or_else(|| Error::internal("backend returned no tap"))?;
    let acts = b.read(tap)?;
    let (channels, h, w) = (acts.shape[1], acts.shape[2], acts.shape[3]);
    let hw = h * w;
    let means: Vec<f32> = acts
        .data
        .chunks(hw)
        .map(|c| c.iter().sum::<f32>() / hw as f32)
        .collect();
    let channel = crate::engine::top_k(&means, 1)[0];
    let lowres = HostTensor {
        shape: vec![h, w],
        data: acts.data[channel * hw..(channel + 1) * hw].to_vec(),
    };
    Ok(StrongestChannel {
        layer: model.graph.values[layer].name.clone(),
        channel,
        channels,
        mean: means[channel],
        upsampled: upsample_bilinear(&lowres, x.shape[2], x.shape[3]),
    })
}

/// What one method hands the report: a map `[H, W]` over the input, its parameters, a remark.
struct Shown {
    map: HostTensor,
    params: String,
    note: Option<String>,
}

fn shown(map: HostTensor, params: impl Into<String>) -> Result<Shown> {
    Ok(Shown {
        map,
        params: params.into(),
        note: None,
    })
}

type Step<'a> = (&'static str, Box<dyn Fn() -> Result<Shown> + 'a>);

/// Every local method's map of `class` on `x` (`[1, C, H, W]`), overlaid on `image_rgb` (the
/// input in display space, interleaved RGB in [0, 1], [`crate::viz::display_image`]), in the
/// report's order. `progress` gets one step per method. A method that does not apply to the
/// model (bad input, e.g. CAM without global average pooling) gives a panel with a note; device
/// and internal errors end the report.
pub fn panels<B: Backend>(
    b: &B,
    model: &Model,
    x: &HostTensor,
    image_rgb: &[f32],
    class: usize,
    settings: &Settings,
    progress: &dyn Progress,
) -> Result<Vec<Panel>> {
    check_single_image(model, x)?;
    crate::methods::check_class(model, class)?;
    let classes = [class];
    let gradcam = |variant: CamVariant| -> Result<Shown> {
        let m = GradCam {
            variant,
            ..Default::default()
        }
        .attribute(b, model, x, &classes)?
        .remove(0);
        shown(m.upsampled, format!("layer {}, ReLU", m.layer))
    };
    let pixel = |rule: GradRule, times_input: bool| -> Result<HostTensor> {
        let s = Saliency {
            rule,
            times_input,
            ..Default::default()
        };
        Ok(s.attribute(b, model, x, &classes)?.remove(0).display())
    };
    let steps: Vec<Step> = vec![
        (
            "Strongest activation channel",
            Box::new(|| {
                let s = strongest_channel(b, model, x)?;
                shown(
                    s.upsampled,
                    format!(
                        "layer {}, channel {} of {} (mean activation {:.3})",
                        s.layer, s.channel, s.channels, s.mean
                    ),
                )
            }),
        ),
        (
            "CAM",
            Box::new(|| {
                let m = cam::cam(b, model, x, &classes)?.remove(0);
                shown(m.upsampled, format!("layer {}", m.layer))
            }),
        ),
        ("Grad-CAM", Box::new(|| gradcam(CamVariant::GradCam))),
        (
            "Grad-CAM++",
            Box::new(|| gradcam(CamVariant::GradCamPlusPlus)),
        ),
        ("LayerCAM", Box::new(|| gradcam(CamVariant::LayerCam))),
        (
            "Occlusion sensitivity",
            Box::new(|| {
                let occ = settings.occlusion();
                let (rows, cols, _) = occ.windows(x.shape[2], x.shape[3])?;
                let m = occ.attribute(b, model, x, &classes)?.remove(0);
                let map = m.upsampled.unwrap_or(m.per_pixel);
                shown(
                    map,
                    format!(
                        "window {0}×{0}, stride {1} ({rows}×{cols} positions), image-mean fill, bicubic upsampling",
                        settings.occlusion_mask, settings.occlusion_stride
                    ),
                )
            }),
        ),
        (
            "LIME",
            Box::new(|| {
                let lime = settings.lime();
                let m = lime.attribute(b, model, x, &classes)?.remove(0);
                shown(
                    m.score_map,
                    format!(
                        "{} samples, {} superpixels (SLIC), regression tree, weighted R² {:.2}",
                        lime.num_samples,
                        m.feature_importance.len(),
                        m.r2
                    ),
                )
            }),
        ),
        (
            "Vanilla gradient",
            Box::new(|| {
                shown(
                    pixel(GradRule::Standard, false)?,
                    "logit, max |∂/∂x| over channels",
                )
            }),
        ),
        (
            "Gradient × input",
            Box::new(|| {
                shown(
                    pixel(GradRule::Standard, true)?,
                    "logit, max |·| over channels",
                )
            }),
        ),
        (
            "SmoothGrad",
            Box::new(|| {
                let a = settings.smoothgrad().attribute(b, model, x, class)?;
                shown(
                    a.display(),
                    format!(
                        "{} samples, σ = {} × input range, seed {}",
                        settings.smoothgrad_samples, settings.noise, settings.seed
                    ),
                )
            }),
        ),
        (
            "Integrated Gradients",
            Box::new(|| {
                let r = settings.ig().attribute(b, model, x, class)?;
                Ok(Shown {
                    map: r.attribution.display(),
                    params: format!("{} steps, Gauss-Legendre, zero baseline", settings.ig_steps),
                    note: Some(format!(
                        "convergence δ {:.3} of score difference {:.3}",
                        r.convergence_delta, r.score_difference
                    )),
                })
            }),
        ),
        (
            "Guided backprop",
            Box::new(|| {
                shown(
                    pixel(GradRule::Guided, false)?,
                    "logit, max |·| over channels",
                )
            }),
        ),
        (
            "Guided Grad-CAM",
            Box::new(|| {
                let (m, ggc) =
                    guided_gradcam(b, model, x, &classes, &GradCam::default())?.remove(0);
                let a = crate::methods::PixelAttribution {
                    class,
                    score: m.score,
                    map: ggc,
                };
                shown(
                    a.display(),
                    format!("guided backprop × Grad-CAM on {}", m.layer),
                )
            }),
        ),
    ];

    let (h, w) = (x.shape[2], x.shape[3]);
    let backend = b.name();
    progress.start("explain", steps.len() as u64);
    let mut panels = Vec::with_capacity(steps.len());
    for (title, run) in &steps {
        progress.message(title);
        let started = Instant::now();
        let result = run();
        let seconds = started.elapsed().as_secs_f64();
        let panel = match result {
            Ok(s) => Panel {
                title: title.to_string(),
                params: s.params,
                seconds,
                backend: backend.clone(),
                png: Some(png_bytes(w, h, crate::viz::overlay(image_rgb, &s.map))?),
                note: s.note,
            },
            Err(e) if e.kind == ErrorKind::BadInput => Panel {
                title: title.to_string(),
                params: String::new(),
                seconds,
                backend: backend.clone(),
                png: None,
                note: Some(format!("not available for this model: {e}")),
            },
            Err(e) => {
                progress.finish();
                return Err(e.context(title));
            }
        };
        panels.push(panel);
        progress.advance(1);
    }
    progress.finish();
    Ok(panels)
}
