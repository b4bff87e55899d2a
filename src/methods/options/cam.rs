//! The options of the CAM methods: classic CAM, the Grad-CAM family, guided Grad-CAM and
//! Score-CAM.

use clap::Args;
use serde_json::json;

use crate::backend::Backend;
use crate::error::Result;
use crate::methods::attribution::{Attribute, HostAttribution};
use crate::methods::cam::Cam;
use crate::methods::gradcam::{CamVariant, GradCam};
use crate::methods::guided_gradcam::GuidedGradCam;
use crate::methods::options::{Configured, Context, MethodOptions, ObjectiveRequest};
use crate::methods::scorecam::ScoreCam;

/// The feature layer and the ReLU of a Grad-CAM.
#[derive(Args, Clone, Debug)]
pub struct CamLayerArgs {
    /// Feature layer (ONNX tensor name); default: the input of the global pooling.
    #[arg(long)]
    pub layer: Option<String>,
    /// Keep negative values of the map (no ReLU).
    #[arg(long)]
    pub no_relu: bool,
}

impl CamLayerArgs {
    fn gradcam(&self, variant: CamVariant, ctx: &Context) -> GradCam {
        GradCam {
            variant,
            layer: self.layer.clone(),
            score: ctx.score,
            relu: !self.no_relu,
        }
    }
}

fn layer_of(result: &HostAttribution) -> &str {
    result.layer.as_deref().unwrap_or("?")
}

/// `cam`'s options: none of its own (the layer is the one before global pooling).
#[derive(Args, Clone, Debug)]
pub struct CamOptions {}

impl MethodOptions for CamOptions {
    fn build<B: Backend>(&self, _: &Context) -> Result<Box<dyn Attribute<B>>> {
        Ok(Box::new(Cam))
    }
    fn parameters(&self) -> serde_json::Value {
        json!({})
    }
    fn summary(&self) -> String {
        "CAM layer".into()
    }
    fn describe(&self, result: &HostAttribution) -> String {
        format!("layer {}", layer_of(result))
    }
}

/// A Grad-CAM variant's options: its subcommand's (`--layer`, `--no-relu`) and the variant its
/// registry line names (see [`gradcam_entry`](crate::methods::registry::gradcam_entry)).
#[derive(Clone, Debug)]
pub struct GradCamOptions {
    /// `--layer` and `--no-relu`.
    pub cam: CamLayerArgs,
    /// Which channel weighting.
    pub variant: CamVariant,
}

impl<B: Backend> Configured<B> for GradCamOptions {
    fn build(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        Ok(Box::new(self.cam.gradcam(self.variant, ctx)))
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"relu": !self.cam.no_relu})
    }
    fn summary(&self) -> String {
        "CAM layer".into()
    }
    fn describe(&self, result: &HostAttribution) -> String {
        let relu = if self.cam.no_relu { "no ReLU" } else { "ReLU" };
        format!("layer {}, {relu}", layer_of(result))
    }
    fn lowres_name(&self) -> &'static str {
        "lowres"
    }
    fn objective(&self) -> Result<Option<ObjectiveRequest>> {
        Ok(None)
    }
}

/// `guided-gradcam`'s own options.
#[derive(Args, Clone, Debug)]
pub struct GuidedGradCamOptions {
    #[command(flatten)]
    cam: CamLayerArgs,
}

impl MethodOptions for GuidedGradCamOptions {
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        Ok(Box::new(GuidedGradCam {
            cam: self.cam.gradcam(CamVariant::GradCam, ctx),
        }))
    }
    fn parameters(&self) -> serde_json::Value {
        json!({})
    }
    fn summary(&self) -> String {
        "guided backprop × Grad-CAM".into()
    }
    fn describe(&self, result: &HostAttribution) -> String {
        format!("guided backprop × Grad-CAM on {}", layer_of(result))
    }
}

/// `scorecam`'s own options.
#[derive(Args, Clone, Debug)]
pub struct ScoreCamOptions {
    /// Feature layer (ONNX tensor name); default: the input of the global pooling.
    #[arg(long)]
    pub layer: Option<String>,
    /// Masked images per forward (MATLAB MiniBatchSize); default from the adapter's limits.
    #[arg(long)]
    pub mini_batch: Option<usize>,
}

impl MethodOptions for ScoreCamOptions {
    /// One forward per channel of the layer: too slow for a quick report.
    const IN_REPORT: bool = false;

    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        Ok(Box::new(ScoreCam {
            layer: self.layer.clone(),
            score: ctx.score,
            mini_batch: self.mini_batch,
            relu: true,
        }))
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"layer": self.layer, "mini_batch": self.mini_batch})
    }
    fn summary(&self) -> String {
        match &self.layer {
            Some(l) => format!("layer {l}, every channel"),
            None => "CAM layer, every channel".into(),
        }
    }
}
