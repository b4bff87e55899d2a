//! The options of the perturbation methods: occlusion and LIME (MATLAB's names).

use std::path::Path;

use clap::Args;
use serde_json::json;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::methods::attribution::{Attribute, HostAttribution};
use crate::methods::lime::{segment, Lime, Segmentation, Surrogate};
use crate::methods::occlusion::{MaskValue, Occlusion, Upsampling};
use crate::methods::options::{Context, MethodOptions};

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

/// `occlusion`'s own options.
#[derive(Args, Clone, Debug)]
pub struct OcclusionOptions {
    /// Mask size, `auto`, `S` or `HxW` (MATLAB MaskSize).
    #[arg(long, default_value = "auto")]
    pub mask_size: String,
    /// Stride, `auto`, `S` or `HxW` (MATLAB Stride).
    #[arg(long, default_value = "auto")]
    pub stride: String,
    /// `auto` (per-channel image mean), a scalar, or comma-separated per-channel values.
    #[arg(long, default_value = "auto")]
    pub mask_value: String,
    /// MATLAB MaskClipping, on (windows may overrun the border, clipped) or off.
    #[arg(long, default_value = "on")]
    pub clipping: String,
    /// Samples per forward (MATLAB MiniBatchSize); default from the adapter's limits.
    #[arg(long)]
    pub mini_batch: Option<usize>,
    /// none, nearest or bicubic (MATLAB OutputUpsampling).
    #[arg(long, default_value = "bicubic")]
    pub upsampling: String,
}

impl MethodOptions for OcclusionOptions {
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        let clipping = match self.clipping.as_str() {
            "on" | "true" => true,
            "off" | "false" => false,
            other => {
                return Err(Error::bad_input(format!(
                    "--clipping '{other}': use on or off"
                )))
            }
        };
        let upsampling = match self.upsampling.as_str() {
            "none" => Upsampling::None,
            "nearest" => Upsampling::Nearest,
            "bicubic" => Upsampling::Bicubic,
            other => {
                return Err(Error::bad_input(format!(
                    "--upsampling '{other}': use none, nearest or bicubic"
                )))
            }
        };
        Ok(Box::new(Occlusion {
            mask_size: size_pair("mask-size", &self.mask_size)?,
            stride: size_pair("stride", &self.stride)?,
            mask_value: parse_mask_value(&self.mask_value)?,
            clipping,
            mini_batch: self.mini_batch,
            score: ctx.score,
            upsampling,
        }))
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"mask_size": self.mask_size, "stride": self.stride,
            "mask_value": self.mask_value, "clipping": self.clipping, "mini_batch": self.mini_batch,
            "upsampling": self.upsampling})
    }
    fn summary(&self) -> String {
        format!("window {}, stride {}", self.mask_size, self.stride)
    }
    fn describe(&self, result: &HostAttribution) -> String {
        let window = match size_pair("mask-size", &self.mask_size) {
            Ok(Some([h, w])) => format!("{h}×{w}"),
            _ => self.mask_size.clone(),
        };
        let positions = match result.lowres.as_ref().map(|g| &g.shape[2..]) {
            Some([rows, cols]) => format!(" ({rows}×{cols} positions)"),
            _ => String::new(),
        };
        let fill = match self.mask_value.as_str() {
            "auto" => "image-mean".to_string(),
            v => v.to_string(),
        };
        format!(
            "window {window}, stride {}{positions}, {fill} fill, {} upsampling",
            self.stride, self.upsampling
        )
    }
    fn lowres_name(&self) -> &'static str {
        "grid"
    }
}

/// `lime`'s own options.
#[derive(Args, Clone, Debug)]
pub struct LimeOptions {
    /// Perturbed samples, the unperturbed image included (MATLAB NumSamples).
    #[arg(long, default_value_t = 2048)]
    pub num_samples: usize,
    /// Target number of segments for grid and slic (MATLAB NumFeatures).
    #[arg(long, default_value_t = 49)]
    pub num_features: usize,
    /// grid, slic, or a label map file (.npy of whole numbers, or an image whose colours are the
    /// segments) of the model's input size.
    #[arg(long, default_value = "slic")]
    pub segmentation: String,
    /// SLIC compactness (spatial against colour distance).
    #[arg(long, default_value_t = 10.0)]
    pub compactness: f32,
    /// Surrogate model, tree (MATLAB's default) or linear (weighted ridge).
    #[arg(long, default_value = "tree")]
    pub surrogate: String,
    /// Width of the exp(-d²/width²) kernel on the cosine distance to the all-on sample.
    #[arg(long, default_value_t = 0.25)]
    pub kernel_width: f64,
    /// What off segments show: auto (per-channel image mean), a scalar, or per-channel values.
    #[arg(long, default_value = "auto")]
    pub mask_value: String,
    /// Segments drawn in the top-k overlay.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Samples per forward (MATLAB MiniBatchSize); default from the adapter's limits.
    #[arg(long)]
    pub mini_batch: Option<usize>,
    /// Seed of the on/off samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl LimeOptions {
    fn segments_in_words(&self) -> String {
        match self.segmentation.as_str() {
            "grid" => {
                let side = (self.num_features as f64).sqrt().round() as usize;
                if side * side == self.num_features {
                    format!("{side}×{side} grid")
                } else {
                    format!("{}-cell grid", self.num_features)
                }
            }
            "slic" | "superpixels" => format!("{} superpixels (SLIC)", self.num_features),
            path => format!("segments of {path}"),
        }
    }

    fn surrogate_in_words(&self) -> &str {
        match self.surrogate.as_str() {
            "tree" => "regression tree",
            "linear" => "weighted ridge",
            other => other,
        }
    }
}

impl MethodOptions for LimeOptions {
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        let segmentation = match self.segmentation.as_str() {
            "grid" => Segmentation::Grid,
            "slic" | "superpixels" => Segmentation::Slic {
                compactness: self.compactness,
            },
            path => Segmentation::Labels(segment::load_label_map(Path::new(path))?),
        };
        let surrogate = match self.surrogate.as_str() {
            "tree" => Surrogate::Tree,
            "linear" => Surrogate::Linear,
            other => {
                return Err(Error::bad_input(format!(
                    "--surrogate '{other}': use tree or linear"
                )))
            }
        };
        if self.num_samples == 0 {
            return Err(Error::bad_input("--num-samples must be positive"));
        }
        let lime = Lime {
            num_samples: self.num_samples,
            num_features: self.num_features,
            segmentation,
            surrogate,
            kernel_width: self.kernel_width,
            mask_value: parse_mask_value(&self.mask_value)?,
            mini_batch: self.mini_batch,
            seed: self.seed,
            score: ctx.score,
            top_k: self.top_k,
            ..Lime::default()
        };
        // A label map of the wrong size fails here, before anything runs.
        if let Segmentation::Labels(m) = &lime.segmentation {
            m.check_size(ctx.image.shape[2], ctx.image.shape[3])?;
        }
        Ok(Box::new(lime))
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"num_samples": self.num_samples,
            "num_features": self.num_features, "segmentation": self.segmentation,
            "compactness": self.compactness, "surrogate": self.surrogate,
            "kernel_width": self.kernel_width, "mask_value": self.mask_value,
            "mini_batch": self.mini_batch, "seed": self.seed, "top_k": self.top_k})
    }
    fn summary(&self) -> String {
        format!(
            "{} samples, {}, {}",
            self.num_samples,
            self.segments_in_words(),
            self.surrogate_in_words()
        )
    }
    fn describe(&self, result: &HostAttribution) -> String {
        let fit = result.extras.first().and_then(|e| e.surrogate.as_ref());
        let segments = match (fit, self.segmentation.as_str()) {
            (Some(f), "slic" | "superpixels") => {
                format!("{} superpixels (SLIC)", f.importance.len())
            }
            (Some(f), "grid") => format!("{} grid cells", f.importance.len()),
            _ => self.segments_in_words(),
        };
        let r2 = fit.map_or(String::new(), |f| format!(", weighted R² {:.2}", f.r2));
        format!(
            "{} samples, {segments}, {}{r2}",
            self.num_samples,
            self.surrogate_in_words()
        )
    }
}
