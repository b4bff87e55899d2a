//! Runs every local method on one image and class and turns each map into a report panel.

use std::time::Instant;

use super::{png_bytes, Panel};
use crate::backend::{Backend, HostTensor};
use crate::error::{Error, ErrorKind, Result};
use crate::methods::attribution::Target;
use crate::methods::finite::{scan_tensor, NonFinite};
use crate::methods::integrated_gradients::IntegratedGradients;
use crate::methods::lime::Lime;
use crate::methods::occlusion::Occlusion;
use crate::methods::registry::{self, Context, MethodEntry, Preset};
use crate::methods::smoothgrad::SmoothGrad;
use crate::methods::{check_single_image, upsample_bilinear, Score};
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

    /// These settings as command-line options of the registry's method (or preset) `name`:
    /// how the report and the bench configure each method; empty for a method the settings do
    /// not cover (it runs with its defaults).
    pub fn overrides(&self, name: &str) -> Vec<String> {
        let pairs: Vec<(&str, String)> = match name {
            "ig" => vec![("--steps", self.ig_steps.to_string())],
            "smoothgrad" => vec![
                ("--samples", self.smoothgrad_samples.to_string()),
                ("--noise", self.noise.to_string()),
                ("--seed", self.seed.to_string()),
            ],
            "occlusion" => vec![
                ("--mask-size", self.occlusion_mask.to_string()),
                ("--stride", self.occlusion_stride.to_string()),
            ],
            "lime" => vec![
                ("--num-samples", self.lime_samples.to_string()),
                ("--seed", self.seed.to_string()),
            ],
            _ => Vec::new(),
        };
        pairs
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_string(), value])
            .collect()
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
    non_finite: Vec<NonFinite>,
}

type Step<'a> = (String, Box<dyn Fn() -> Result<Shown> + 'a>);

/// One preset of a registry method, run on `x` for `class` with the report's settings.
fn method_panel<B: Backend>(
    b: &B,
    model: &Model,
    x: &HostTensor,
    class: usize,
    entry: &MethodEntry<B>,
    preset: &Preset,
    settings: &Settings,
) -> Result<Shown> {
    let mut args: Vec<String> = preset.args.iter().map(|a| a.to_string()).collect();
    args.extend(settings.overrides(entry.name));
    let options = entry.options_from(&args)?;
    let ctx = Context {
        image: x,
        preprocess: None,
        score: Score::Logit,
    };
    let method = options.build(&ctx)?;
    let a = method
        .attribute_batch(b, model, x, &Target::Class(class))?
        .read(b)?;
    let note = a.extras.first().and_then(|e| {
        let (delta, difference) = (e.convergence_delta?, e.score_difference?);
        Some(format!(
            "convergence δ {delta:.3} of score difference {difference:.3}"
        ))
    });
    Ok(Shown {
        map: a.display(0),
        params: options.describe(&a),
        note,
        non_finite: a.non_finite(),
    })
}

/// The strongest channel, then every registry method the report shows (each preset of it, in
/// the registry's order), of `class` on `x` (`[1, C, H, W]`), overlaid on `image_rgb` (the
/// input in display space, interleaved RGB in [0, 1], [`crate::viz::display_image`]).
/// `progress` gets one step per panel. A method that does not apply to the model (bad input,
/// e.g. CAM without global average pooling) gives a panel with a note; device and internal
/// errors end the report.
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
    let entries: Vec<MethodEntry<B>> = registry::methods::<B>()
        .into_iter()
        .filter(|e| e.in_report)
        .collect();
    let mut steps: Vec<Step> = vec![(
        "Strongest activation channel".to_string(),
        Box::new(|| {
            let s = strongest_channel(b, model, x)?;
            let non_finite = scan_tensor("map", &s.upsampled).into_iter().collect();
            Ok(Shown {
                map: s.upsampled,
                params: format!(
                    "layer {}, channel {} of {} (mean activation {:.3})",
                    s.layer, s.channel, s.channels, s.mean
                ),
                note: None,
                non_finite,
            })
        }),
    )];
    for entry in &entries {
        for preset in &entry.presets {
            steps.push((
                preset.title.to_string(),
                Box::new(move || method_panel(b, model, x, class, entry, preset, settings)),
            ));
        }
    }

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
                title: title.clone(),
                params: s.params,
                seconds,
                backend: backend.clone(),
                png: Some(png_bytes(w, h, crate::viz::overlay(image_rgb, &s.map))?),
                note: s.note,
                non_finite: s.non_finite,
            },
            Err(e) if e.kind == ErrorKind::BadInput => Panel {
                title: title.clone(),
                params: String::new(),
                seconds,
                backend: backend.clone(),
                png: None,
                note: Some(format!("not available for this model: {e}")),
                non_finite: Vec::new(),
            },
            Err(e) => {
                progress.finish();
                return Err(e.context(title.as_str()));
            }
        };
        panels.push(panel);
        progress.advance(1);
    }
    progress.finish();
    Ok(panels)
}
