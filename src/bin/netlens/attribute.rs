//! The attribution subcommands: saliency, smoothgrad, ig, guided, guided-gradcam, cam, gradcam,
//! gradcam++ and layercam. Each writes PNG overlays, raw .npy maps and summary.json to -o DIR.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use netlens::engine::{top_k, Engine};
use netlens::error::{Error, Result};
use netlens::input::{self, Preprocess};
use netlens::methods::gradcam::{guided_gradcam, CamMap, CamVariant, GradCam};
use netlens::methods::integrated_gradients::{Baseline, IntegratedGradients, Quadrature};
use netlens::methods::objective::{layer_gradients, LayerObjective, Region};
use netlens::methods::occlusion::{MaskValue, Occlusion, Upsampling};
use netlens::methods::saliency::Saliency;
use netlens::methods::smoothgrad::{SmoothGrad, Variant};
use netlens::methods::{cam, PixelAttribution, Score};
use netlens::model::import::load_model;
use netlens::{Backend, GradRule, HostTensor, Model};
use serde_json::json;

/// What every single-image method subcommand (attribution and perturbation) takes: the model,
/// the image, the classes, the score and the output folder.
#[derive(Args)]
pub struct InputArgs {
    pub model: PathBuf,
    pub image: Option<PathBuf>,
    /// A ready float32 [1, C, H, W] tensor instead of an image.
    #[arg(long)]
    pub input_npy: Option<PathBuf>,
    /// Class to explain; repeatable. Default: the top --top predicted classes.
    #[arg(long = "class")]
    pub classes: Vec<usize>,
    #[arg(long, default_value_t = 1)]
    pub top: usize,
    /// Feature layer for CAM methods and Score-CAM (ONNX tensor name); default: the input of the
    /// global pooling.
    #[arg(long)]
    pub layer: Option<String>,
    /// Explained score: logit or prob.
    #[arg(long, default_value = "logit")]
    pub score: String,
    #[arg(short = 'o', long, default_value = "netlens-out")]
    pub output: PathBuf,
}

impl InputArgs {
    /// The model's preprocessing and the one input sample `[1, ...]` (from the image file or
    /// `--input-npy`).
    pub fn load(&self, model: &Model, preset: Option<&str>) -> Result<(HostTensor, Preprocess)> {
        let (pre, _) = crate::preprocessing(&self.model, model, preset)?;
        let x = match (&self.image, &self.input_npy) {
            (Some(_), Some(_)) => {
                return Err(Error::bad_input(
                    "give either an image or --input-npy, not both",
                ))
            }
            (None, None) => return Err(Error::bad_input("give an image or --input-npy FILE")),
            (Some(img), None) => input::image_tensor(img, &pre, model.input_shape())?,
            (None, Some(npy)) => input::load_input_npy(npy, model.input_shape())?,
        };
        if x.batch() != 1 {
            return Err(Error::bad_input(format!(
                "explain one image at a time; the input has {} samples",
                x.batch()
            )));
        }
        Ok((x, pre))
    }

    /// The `--class` list, or else the top `--top` predictions on `x` (one forward).
    pub fn classes<B: Backend>(&self, b: &B, model: &Model, x: &HostTensor) -> Result<Vec<usize>> {
        if !self.classes.is_empty() {
            return Ok(self.classes.clone());
        }
        let f = b.forward(model, &b.upload(x)?, &[])?;
        let logits = b.read(&f.output)?;
        Ok(top_k(&logits.data, self.top.clamp(1, model.num_classes())))
    }
}

/// `--mask-value`: `auto` (the per-channel image mean), one number, or comma-separated
/// per-channel values.
pub fn parse_mask_value(spec: &str) -> Result<MaskValue> {
    Ok(match spec {
        "auto" => MaskValue::Auto,
        v if v.contains(',') => MaskValue::PerChannel(
            v.split(',')
                .map(|x| {
                    x.trim().parse::<f32>().map_err(|_| {
                        Error::bad_input(format!("--mask-value '{v}' is not a list of numbers"))
                    })
                })
                .collect::<Result<_>>()?,
        ),
        v => MaskValue::Scalar(v.parse().map_err(|_| {
            Error::bad_input(format!("--mask-value '{v}': use auto, a number or a list"))
        })?),
    })
}

#[derive(Args)]
pub struct AttributeArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Integrated Gradients: number of steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Integrated Gradients: riemann_left, riemann_right, riemann_middle, riemann_trapezoid, gausslegendre.
    #[arg(long, default_value = "gausslegendre")]
    pub method: String,
    /// Integrated Gradients baseline: zeros, black, blur, or a .npy file.
    #[arg(long, default_value = "zeros")]
    pub baseline: String,
    /// SmoothGrad: number of noisy samples.
    #[arg(long, default_value_t = 25)]
    pub samples: usize,
    /// SmoothGrad: noise σ as a fraction of the input range.
    #[arg(long, default_value_t = 0.15)]
    pub noise: f32,
    /// SmoothGrad: smoothgrad, smoothgrad_sq or vargrad.
    #[arg(long, default_value = "smoothgrad")]
    pub variant: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep negative values of CAM maps (no ReLU).
    #[arg(long)]
    pub no_relu: bool,
    /// Saliency: multiply the gradient by the input.
    #[arg(long)]
    pub times_input: bool,
    /// Saliency/guided: explain the mean of this layer's activation instead of a class score.
    #[arg(long)]
    pub objective_layer: Option<String>,
    /// With --objective-layer: the channel whose mean is explained (repeatable); default: all
    /// channels together.
    #[arg(long = "channel")]
    pub channels: Vec<usize>,
    /// With --objective-layer: only this region of the layer's grid, `top,left,height,width`.
    #[arg(long)]
    pub region: Option<String>,
    /// Occlusion: mask size, `auto`, `S` or `HxW` (MATLAB MaskSize).
    #[arg(long, default_value = "auto")]
    pub mask_size: String,
    /// Occlusion: stride, `auto`, `S` or `HxW` (MATLAB Stride).
    #[arg(long, default_value = "auto")]
    pub stride: String,
    /// Occlusion: `auto` (per-channel image mean), a scalar, or comma-separated per-channel values.
    #[arg(long, default_value = "auto")]
    pub mask_value: String,
    /// Occlusion: MATLAB MaskClipping, on (windows may overrun the border, clipped) or off.
    #[arg(long, default_value = "on")]
    pub clipping: String,
    /// Occlusion: samples per forward (MATLAB MiniBatchSize); default from the adapter's limits.
    #[arg(long)]
    pub mini_batch: Option<usize>,
    /// Occlusion: none, nearest or bicubic (MATLAB OutputUpsampling).
    #[arg(long, default_value = "bicubic")]
    pub upsampling: String,
    #[command(flatten)]
    pub common: crate::Common,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Saliency,
    SmoothGrad,
    Ig,
    Guided,
    GuidedGradCam,
    Cam,
    Cams(CamVariant),
    Occlusion,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Saliency => "saliency",
            Method::SmoothGrad => "smoothgrad",
            Method::Ig => "ig",
            Method::Guided => "guided",
            Method::GuidedGradCam => "guided-gradcam",
            Method::Cam => "cam",
            Method::Cams(v) => v.name(),
            Method::Occlusion => "occlusion",
        }
    }
}

pub fn explain(
    method: Method,
    args: &AttributeArgs,
    engine: &Engine,
    preprocess: Option<&str>,
) -> Result<()> {
    let model = load_model(&args.input.model)?;
    let (x, pre) = args.input.load(&model, preprocess)?;
    match engine {
        Engine::Gpu(g) => run(method, args, g.as_ref(), &model, &x, &pre, &engine.name()),
        Engine::Cpu(c) => run(method, args, c, &model, &x, &pre, &engine.name()),
    }
}

fn baseline(spec: &str, x: &HostTensor, pre: &Preprocess) -> Result<Baseline> {
    Ok(match spec {
        "zeros" | "zero" => Baseline::Zeros,
        "black" => {
            // A black image after the model's normalisation.
            let hw = x.shape[2] * x.shape[3];
            let data = (0..x.data.len())
                .map(|i| {
                    let c = i / hw;
                    (-(pre.mean.get(c).copied().unwrap_or(0.0))
                        / pre.std.get(c).copied().unwrap_or(1.0)) as f32
                })
                .collect();
            Baseline::Tensor(HostTensor {
                shape: x.shape.clone(),
                data,
            })
        }
        "blur" => Baseline::Tensor(box_blur(x, 10)),
        path => Baseline::Tensor(input::load_npy(path)?),
    })
}

/// A strong blur (three box passes approximate a Gaussian) of each channel.
fn box_blur(x: &HostTensor, radius: usize) -> HostTensor {
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
    let mut data = x.data.clone();
    for _ in 0..3 {
        for ch in 0..c {
            let plane = &mut data[ch * h * w..(ch + 1) * h * w];
            let src = plane.to_vec();
            for y in 0..h {
                for xx in 0..w {
                    let (lo, hi) = (xx.saturating_sub(radius), (xx + radius).min(w - 1));
                    plane[y * w + xx] =
                        src[y * w + lo..=y * w + hi].iter().sum::<f32>() / (hi - lo + 1) as f32;
                }
            }
            let src = plane.to_vec();
            for y in 0..h {
                let (lo, hi) = (y.saturating_sub(radius), (y + radius).min(h - 1));
                for xx in 0..w {
                    plane[y * w + xx] =
                        (lo..=hi).map(|yy| src[yy * w + xx]).sum::<f32>() / (hi - lo + 1) as f32;
                }
            }
        }
    }
    HostTensor {
        shape: x.shape.clone(),
        data,
    }
}

fn run<B: Backend>(
    method: Method,
    args: &AttributeArgs,
    b: &B,
    model: &Model,
    x: &HostTensor,
    pre: &Preprocess,
    backend: &str,
) -> Result<()> {
    let score = Score::parse(&args.input.score)?;
    let layer_objective = matches!(method, Method::Saliency | Method::Guided);
    if args.objective_layer.is_some() && !layer_objective {
        return Err(Error::bad_input(format!(
            "--objective-layer works with saliency and guided, not {}",
            method.name()
        )));
    }
    if args.objective_layer.is_none() && (!args.channels.is_empty() || args.region.is_some()) {
        return Err(Error::bad_input(
            "--channel and --region need --objective-layer NAME",
        ));
    }
    let classes = args.input.classes(b, model, x)?;
    std::fs::create_dir_all(&args.input.output).map_err(|e| {
        Error::bad_input(format!(
            "cannot create {}: {e}",
            args.input.output.display()
        ))
    })?;
    let image = netlens::viz::display_image(x, pre);
    let out = Output {
        dir: &args.input.output,
        method: method.name(),
        image,
        h: x.shape[2],
        w: x.shape[3],
    };
    let started = Instant::now();
    let mut results = Vec::new();
    let mut params = json!({"score": args.input.score});
    match method {
        Method::Saliency | Method::Guided => {
            let rule = if method == Method::Guided {
                GradRule::Guided
            } else {
                GradRule::Standard
            };
            params["times_input"] = json!(args.times_input);
            if let Some(layer) = &args.objective_layer {
                params = layer_objectives(args, b, model, x, rule, layer, &out, &mut results)?;
            } else {
                let s = Saliency {
                    score,
                    times_input: args.times_input,
                    rule,
                };
                for a in s.attribute(b, model, x, &classes)? {
                    results.push(out.pixel(&a)?);
                }
            }
        }
        Method::SmoothGrad => {
            let s = SmoothGrad {
                samples: args.samples,
                noise: args.noise,
                variant: Variant::parse(&args.variant)?,
                score,
                seed: args.seed,
            };
            for &c in &classes {
                results.push(out.pixel(&s.attribute(b, model, x, c)?)?);
            }
            params = json!({"score": args.input.score, "samples": args.samples, "noise": args.noise, "variant": args.variant, "seed": args.seed});
        }
        Method::Ig => {
            let ig = IntegratedGradients {
                steps: args.steps,
                quadrature: Quadrature::parse(&args.method)?,
                baseline: baseline(&args.baseline, x, pre)?,
                score,
            };
            for &c in &classes {
                let r = ig.attribute(b, model, x, c)?;
                let mut entry = out.pixel(&r.attribution)?;
                entry["convergence_delta"] = json!(r.convergence_delta);
                entry["score_difference"] = json!(r.score_difference);
                results.push(entry);
            }
            params = json!({"score": args.input.score, "steps": args.steps, "method": args.method, "baseline": args.baseline});
        }
        Method::GuidedGradCam => {
            let gc = GradCam {
                variant: CamVariant::GradCam,
                layer: args.input.layer.clone(),
                score,
                relu: !args.no_relu,
            };
            for (m, ggc) in guided_gradcam(b, model, x, &classes, &gc)? {
                let a = PixelAttribution {
                    class: m.class,
                    score: m.score,
                    map: ggc,
                };
                let mut entry = out.pixel(&a)?;
                entry["layer"] = json!(m.layer);
                results.push(entry);
            }
        }
        Method::Cam => {
            for m in cam::cam(b, model, x, &classes)? {
                results.push(out.cam(&m)?);
            }
        }
        Method::Occlusion => {
            let occ = occlusion_options(args, score)?;
            for m in occ.attribute_with_progress(b, model, x, &classes, &args.common.progress())? {
                let shown = m.upsampled.as_ref().unwrap_or(&m.per_pixel);
                let png = out.png(m.class, shown)?;
                let grid = out.file(m.class, "_grid.npy");
                input::write_npy(&grid, &m.grid.shape, &m.grid.data)?;
                let npy = out.file(m.class, ".npy");
                input::write_npy(&npy, &m.per_pixel.shape, &m.per_pixel.data)?;
                results.push(json!({"class": m.class, "score": m.score, "png": png, "npy": npy, "grid_npy": grid}));
            }
            params = json!({"score": args.input.score, "mask_size": args.mask_size, "stride": args.stride,
                "mask_value": args.mask_value, "clipping": args.clipping, "mini_batch": args.mini_batch,
                "upsampling": args.upsampling});
        }
        Method::Cams(variant) => {
            let gc = GradCam {
                variant,
                layer: args.input.layer.clone(),
                score,
                relu: !args.no_relu,
            };
            for m in gc.attribute(b, model, x, &classes)? {
                results.push(out.cam(&m)?);
            }
            params["relu"] = json!(!args.no_relu);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = json!({
        "method": method.name(),
        "model": model.name,
        "backend": backend,
        "parameters": params,
        "seconds": seconds,
        "results": results,
    });
    crate::finish(&args.input.output, &summary, args.common.json, || {
        format!(
            "{} on {} in {seconds:.2} s; wrote {}",
            method.name(),
            backend,
            args.input.output.display()
        )
    })
}

/// `auto` → None, `S` → [S, S], `HxW` → [H, W].
fn size_pair(name: &str, spec: &str) -> Result<Option<[usize; 2]>> {
    if spec == "auto" {
        return Ok(None);
    }
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| Error::bad_input(format!("--{name} '{spec}': use auto, S or HxW")))
    };
    Ok(Some(match spec.split_once(['x', 'X']) {
        Some((h, w)) => [parse(h)?, parse(w)?],
        None => {
            let s = parse(spec)?;
            [s, s]
        }
    }))
}

fn occlusion_options(args: &AttributeArgs, score: Score) -> Result<Occlusion> {
    let mask_value = parse_mask_value(&args.mask_value)?;
    let clipping = match args.clipping.as_str() {
        "on" | "true" => true,
        "off" | "false" => false,
        other => {
            return Err(Error::bad_input(format!(
                "--clipping '{other}': use on or off"
            )))
        }
    };
    let upsampling = match args.upsampling.as_str() {
        "none" => Upsampling::None,
        "nearest" => Upsampling::Nearest,
        "bicubic" => Upsampling::Bicubic,
        other => {
            return Err(Error::bad_input(format!(
                "--upsampling '{other}': use none, nearest or bicubic"
            )))
        }
    };
    Ok(Occlusion {
        mask_size: size_pair("mask-size", &args.mask_size)?,
        stride: size_pair("stride", &args.stride)?,
        mask_value,
        clipping,
        mini_batch: args.mini_batch,
        score,
        upsampling,
    })
}

/// Saliency or guided backprop of layer objectives (channel means, optionally in a region) rather
/// than class scores; returns the summary's parameters.
#[allow(clippy::too_many_arguments)]
fn layer_objectives<B: Backend>(
    args: &AttributeArgs,
    b: &B,
    model: &Model,
    x: &HostTensor,
    rule: GradRule,
    layer: &str,
    out: &Output,
    results: &mut Vec<serde_json::Value>,
) -> Result<serde_json::Value> {
    let layer_id = model.layer(layer)?;
    let region = args.region.as_deref().map(Region::parse).transpose()?;
    let channels: Vec<Option<usize>> = if args.channels.is_empty() {
        vec![None]
    } else {
        args.channels.iter().map(|&c| Some(c)).collect()
    };
    let objectives: Vec<LayerObjective> = channels
        .iter()
        .map(|&channel| LayerObjective {
            layer: layer_id,
            channel,
            region,
        })
        .collect();
    let attributions = layer_gradients(b, model, x, &objectives, rule, args.times_input)?;
    for (a, channel) in attributions.iter().zip(&channels) {
        let tag = channel.map_or("all".to_string(), |c| format!("ch{c}"));
        let mut entry = out.pixel_tagged(a, tag.as_str())?;
        entry["channel"] = json!(channel);
        entry["objective"] = json!(a.score);
        results.push(entry);
    }
    Ok(
        json!({"objective_layer": layer, "channels": args.channels, "region": args.region,
        "times_input": args.times_input}),
    )
}

struct Output<'a> {
    dir: &'a Path,
    method: &'a str,
    image: Vec<f32>,
    h: usize,
    w: usize,
}

impl Output<'_> {
    /// `DIR/<method>_<tag><suffix>`; the tag is the class, or the objective for layer objectives.
    fn file(&self, tag: impl std::fmt::Display, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}_{tag}{suffix}", self.method))
    }

    fn png(&self, tag: impl std::fmt::Display, map: &HostTensor) -> Result<PathBuf> {
        let path = self.file(tag, ".png");
        netlens::viz::save_rgb_png(
            &path,
            self.w,
            self.h,
            netlens::viz::overlay(&self.image, map),
        )?;
        Ok(path)
    }

    fn pixel(&self, a: &PixelAttribution) -> Result<serde_json::Value> {
        self.pixel_tagged(a, a.class)
    }

    fn pixel_tagged(
        &self,
        a: &PixelAttribution,
        tag: impl std::fmt::Display + Copy,
    ) -> Result<serde_json::Value> {
        let npy = self.file(tag, ".npy");
        input::write_npy(&npy, &a.map.shape, &a.map.data)?;
        let png = self.png(tag, &a.display())?;
        Ok(json!({"class": a.class, "score": a.score, "png": png, "npy": npy}))
    }

    fn cam(&self, m: &CamMap) -> Result<serde_json::Value> {
        let low = self.file(m.class, "_lowres.npy");
        input::write_npy(&low, &m.lowres.shape, &m.lowres.data)?;
        let npy = self.file(m.class, ".npy");
        input::write_npy(&npy, &m.upsampled.shape, &m.upsampled.data)?;
        let png = self.png(m.class, &m.upsampled)?;
        Ok(
            json!({"class": m.class, "score": m.score, "layer": m.layer, "png": png, "npy": npy, "lowres_npy": low}),
        )
    }
}
