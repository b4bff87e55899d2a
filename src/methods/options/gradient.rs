//! The options of the gradient methods: saliency, guided backprop, SmoothGrad, Integrated
//! Gradients.

use clap::Args;
use serde_json::json;

use super::score_name;
use crate::backend::{Backend, GradRule, HostTensor};
use crate::error::{Error, Result};
use crate::input::Preprocess;
use crate::methods::attribution::{Attribute, HostAttribution};
use crate::methods::integrated_gradients::{Baseline, IntegratedGradients, Quadrature};
use crate::methods::options::{Context, MethodOptions, ObjectiveRequest, Preset};
use crate::methods::saliency::Saliency;
use crate::methods::smoothgrad::{SmoothGrad, Variant};

/// What saliency and guided backprop share: gradient × input and layer objectives.
#[derive(Args, Clone, Debug)]
pub struct GradientArgs {
    /// Multiply the gradient by the input.
    #[arg(long)]
    pub times_input: bool,
    /// Explain the mean of this layer's activation instead of a class score.
    #[arg(long)]
    pub objective_layer: Option<String>,
    /// With --objective-layer: the channel whose mean is explained (repeatable); default: all
    /// channels together.
    #[arg(long = "channel")]
    pub channels: Vec<usize>,
    /// With --objective-layer: only this region of the layer's grid, `top,left,height,width`.
    #[arg(long)]
    pub region: Option<String>,
}

impl GradientArgs {
    fn build<B: Backend>(&self, rule: GradRule, ctx: &Context) -> Box<dyn Attribute<B>> {
        Box::new(Saliency {
            score: ctx.score,
            times_input: self.times_input,
            rule,
        })
    }

    fn objective(&self, rule: GradRule) -> Result<Option<ObjectiveRequest>> {
        match &self.objective_layer {
            None if !self.channels.is_empty() || self.region.is_some() => Err(Error::bad_input(
                "--channel and --region need --objective-layer NAME",
            )),
            None => Ok(None),
            Some(layer) => Ok(Some(ObjectiveRequest {
                layer: layer.clone(),
                channels: self.channels.clone(),
                region: self.region.clone(),
                rule,
                times_input: self.times_input,
            })),
        }
    }

    fn describe(&self, result: &HostAttribution, vanilla: bool) -> String {
        let what = if vanilla { "|∂/∂x|" } else { "|·|" };
        format!("{}, max {what} over channels", score_name(result.score))
    }
}

/// `saliency`'s own options.
#[derive(Args, Clone, Debug)]
pub struct SaliencyOptions {
    #[command(flatten)]
    gradient: GradientArgs,
}

impl MethodOptions for SaliencyOptions {
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        Ok(self.gradient.build(GradRule::Standard, ctx))
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"times_input": self.gradient.times_input})
    }
    fn summary(&self) -> String {
        if self.gradient.times_input {
            "gradient × input".into()
        } else {
            "vanilla gradient".into()
        }
    }
    fn describe(&self, result: &HostAttribution) -> String {
        self.gradient.describe(result, !self.gradient.times_input)
    }
    fn objective(&self) -> Result<Option<ObjectiveRequest>> {
        self.gradient.objective(GradRule::Standard)
    }
    fn presets() -> Vec<Preset> {
        vec![
            Preset {
                name: "saliency",
                title: "Vanilla gradient",
                args: &[],
            },
            Preset {
                name: "gradient-x-input",
                title: "Gradient × input",
                args: &["--times-input"],
            },
        ]
    }
}

/// `guided`'s own options.
#[derive(Args, Clone, Debug)]
pub struct GuidedOptions {
    #[command(flatten)]
    gradient: GradientArgs,
}

impl MethodOptions for GuidedOptions {
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        Ok(self.gradient.build(GradRule::Guided, ctx))
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"times_input": self.gradient.times_input})
    }
    fn summary(&self) -> String {
        "guided backprop".into()
    }
    fn describe(&self, result: &HostAttribution) -> String {
        self.gradient.describe(result, false)
    }
    fn objective(&self) -> Result<Option<ObjectiveRequest>> {
        self.gradient.objective(GradRule::Guided)
    }
}

/// `smoothgrad`'s own options.
#[derive(Args, Clone, Debug)]
pub struct SmoothGradOptions {
    /// Number of noisy samples.
    #[arg(long, default_value_t = 25)]
    pub samples: usize,
    /// Noise σ as a fraction of the input range.
    #[arg(long, default_value_t = 0.15)]
    pub noise: f32,
    /// smoothgrad, smoothgrad_sq or vargrad.
    #[arg(long, default_value = "smoothgrad")]
    pub variant: String,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl MethodOptions for SmoothGradOptions {
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        Ok(Box::new(SmoothGrad {
            samples: self.samples,
            noise: self.noise,
            variant: Variant::parse(&self.variant)?,
            score: ctx.score,
            seed: self.seed,
        }))
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"samples": self.samples, "noise": self.noise, "variant": self.variant, "seed": self.seed})
    }
    fn summary(&self) -> String {
        format!("{} samples", self.samples)
    }
    fn describe(&self, _: &HostAttribution) -> String {
        format!(
            "{} samples, σ = {} × input range, seed {}",
            self.samples, self.noise, self.seed
        )
    }
}

/// `ig`'s own options.
#[derive(Args, Clone, Debug)]
pub struct IgOptions {
    /// Number of steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// riemann_left, riemann_right, riemann_middle, riemann_trapezoid, gausslegendre.
    #[arg(long, default_value = "gausslegendre")]
    pub method: String,
    /// Baseline: zeros, black, blur, or a .npy file.
    #[arg(long, default_value = "zeros")]
    pub baseline: String,
}

impl IgOptions {
    fn quadrature_name(&self) -> &str {
        match self.method.as_str() {
            "gausslegendre" => "Gauss-Legendre",
            other => other,
        }
    }
}

impl MethodOptions for IgOptions {
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        Ok(Box::new(IntegratedGradients {
            steps: self.steps,
            quadrature: Quadrature::parse(&self.method)?,
            baseline: baseline(&self.baseline, ctx.image, ctx.preprocess)?,
            score: ctx.score,
        }))
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"steps": self.steps, "method": self.method, "baseline": self.baseline})
    }
    fn summary(&self) -> String {
        format!("{} steps, {}", self.steps, self.quadrature_name())
    }
    fn describe(&self, _: &HostAttribution) -> String {
        let baseline = match self.baseline.as_str() {
            "zeros" | "zero" => "zero",
            other => other,
        };
        format!(
            "{} steps, {}, {baseline} baseline",
            self.steps,
            self.quadrature_name()
        )
    }
}

/// IG's `--baseline`: zeros, a black image after the model's normalisation, a strong blur of
/// the image, or a .npy file.
fn baseline(spec: &str, x: &HostTensor, pre: Option<&Preprocess>) -> Result<Baseline> {
    Ok(match spec {
        "zeros" | "zero" => Baseline::Zeros,
        "black" => {
            let pre = pre.ok_or_else(|| {
                Error::bad_input("a black IG baseline needs the model's preprocessing")
            })?;
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
        path => Baseline::Tensor(crate::input::load_npy(path)?),
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
