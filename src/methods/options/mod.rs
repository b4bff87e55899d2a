//! A method's options as its subcommand takes them: the [`MethodOptions`] trait (a clap
//! [`Args`] struct that builds the method object) and what it is built against; and the options
//! of the built-in methods, one struct per subcommand, which the [registry](super::registry)
//! lists. A new method keeps its options in its own file and imports the trait from here (not
//! from the registry, which imports the method: that would be an import circle).

mod cam;
mod gradient;
mod perturbation;

pub use cam::{CamLayerArgs, CamOptions, GradCamOptions, GuidedGradCamOptions, ScoreCamOptions};
pub use gradient::{GradientArgs, GuidedOptions, IgOptions, SaliencyOptions, SmoothGradOptions};
pub use perturbation::{parse_mask_value, LimeOptions, OcclusionOptions};

use clap::{Args, FromArgMatches};

use super::attribution::{Attribute, HostAttribution};
use super::Score;
use crate::backend::{Backend, GradRule, HostTensor};
use crate::error::Result;
use crate::input::Preprocess;

/// How a score is named in the report's lines.
pub(crate) fn score_name(score: Score) -> &'static str {
    match score {
        Score::Logit => "logit",
        Score::Probability => "probability",
    }
}

/// What a method's options are built against: the explained image and what the CLI's shared
/// options say.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The image `[1, C, H, W]` (IG's blurred baseline is made from it).
    pub image: &'a HostTensor,
    /// The preprocessing that made `image` (IG's black baseline needs it), where known.
    pub preprocess: Option<&'a Preprocess>,
    /// The explained score (`--score`).
    pub score: Score,
}

/// One way the report and the bench show a method: a bench row name, a report title and the
/// options (as command-line arguments) that make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// The bench row's name (the subcommand's name for the method's plain preset).
    pub name: &'static str,
    /// The report panel's title.
    pub title: &'static str,
    /// Options on top of the method's defaults.
    pub args: &'static [&'static str],
}

/// A layer objective instead of a class score (saliency and guided backprop's
/// `--objective-layer`): the mean of a layer's activation, per channel, in a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectiveRequest {
    /// The layer (ONNX tensor name).
    pub layer: String,
    /// The channels explained one by one; empty: all channels together.
    pub channels: Vec<usize>,
    /// `top,left,height,width` of the layer's grid, as given.
    pub region: Option<String>,
    /// How ReLU-like ops pass gradients back.
    pub rule: GradRule,
    /// Multiply the gradient by the input.
    pub times_input: bool,
}

/// A method's own options, as its subcommand takes them (a clap [`Args`] struct).
pub trait MethodOptions: Args + FromArgMatches + 'static {
    /// Whether `netlens explain` shows the method (false for those too slow for a quick report).
    const IN_REPORT: bool = true;

    /// The method object these options describe. Checks the options (a bad one is a bad-input
    /// error) before anything runs.
    fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>>;

    /// The options as `summary.json`'s `parameters` (the shared `score` is added by the caller).
    fn parameters(&self) -> serde_json::Value;

    /// The key options in a few words, for the bench's table and the report.
    fn summary(&self) -> String;

    /// The report's line under the panel, which may quote the result (LIME's R²).
    fn describe(&self, result: &HostAttribution) -> String {
        let _ = result;
        self.summary()
    }

    /// What the low-resolution map's file is called (`<method>_<class>_<name>.npy`, summary key
    /// `<name>_npy`).
    fn lowres_name(&self) -> &'static str {
        "lowres"
    }

    /// A layer objective instead of class scores, where the method has that mode.
    fn objective(&self) -> Result<Option<ObjectiveRequest>> {
        Ok(None)
    }

    /// The ways the report and the bench show the method; empty: once, with its defaults, under
    /// the entry's name and title.
    fn presets() -> Vec<Preset> {
        Vec::new()
    }
}

/// [`MethodOptions`] once parsed, as an object for one backend type.
pub trait Configured<B: Backend> {
    /// See [`MethodOptions::build`].
    fn build(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>>;
    /// See [`MethodOptions::parameters`].
    fn parameters(&self) -> serde_json::Value;
    /// See [`MethodOptions::summary`].
    fn summary(&self) -> String;
    /// See [`MethodOptions::describe`].
    fn describe(&self, result: &HostAttribution) -> String;
    /// See [`MethodOptions::lowres_name`].
    fn lowres_name(&self) -> &'static str;
    /// See [`MethodOptions::objective`].
    fn objective(&self) -> Result<Option<ObjectiveRequest>>;
}

impl<B: Backend, O: MethodOptions> Configured<B> for O {
    fn build(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
        MethodOptions::build::<B>(self, ctx)
    }
    fn parameters(&self) -> serde_json::Value {
        MethodOptions::parameters(self)
    }
    fn summary(&self) -> String {
        MethodOptions::summary(self)
    }
    fn describe(&self, result: &HostAttribution) -> String {
        MethodOptions::describe(self, result)
    }
    fn lowres_name(&self) -> &'static str {
        MethodOptions::lowres_name(self)
    }
    fn objective(&self) -> Result<Option<ObjectiveRequest>> {
        MethodOptions::objective(self)
    }
}
