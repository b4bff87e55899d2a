//! The plumbing every CAM variant that is only a weights formula over the Grad-CAM base
//! ([`gradient_cam`](super::gradcam::gradient_cam)) would otherwise write again: HiResCAM and
//! XGrad-CAM are their struct, their formula and one `formula_cam!` line.

/// The plumbing of a CAM variant that is only a weights formula over [`gradient_cam`]: given a
/// struct with `layer`, `score` and `relu` fields that implements [`CamWeights`], writes its
/// `Default` (pytorch-grad-cam's: the CAM layer, the logit, ReLU on), its `attribute`, its
/// `Named` and `Attribute` impls, and its CLI options `$options` (the CAM layer and `--no-relu`),
/// so that the variant's file holds only its documentation, struct and formula.
macro_rules! formula_cam {
    ($method:ident, $name:literal, $options:ident) => {
        impl Default for $method {
            fn default() -> Self {
                $method {
                    layer: None,
                    score: $crate::methods::Score::Logit,
                    relu: true,
                }
            }
        }

        impl $method {
            /// One map per class in `classes` for the single image `x` `[1, C, H, W]`.
            pub fn attribute<B: $crate::backend::Backend>(
                &self,
                b: &B,
                model: &$crate::model::Model,
                x: &$crate::backend::HostTensor,
                classes: &[usize],
            ) -> $crate::error::Result<Vec<$crate::methods::gradcam::CamMap>> {
                $crate::methods::gradcam::cam_maps(self, b, model, x, classes)
            }
        }

        /// The maps are computed on the backend: nothing is read back before `Attribution::read`.
        impl $crate::methods::attribution::Named for $method {
            fn name(&self) -> &'static str {
                $name
            }
        }

        impl<B: $crate::backend::Backend> $crate::methods::attribution::Attribute<B> for $method {
            fn attribute_batch(
                &self,
                b: &B,
                model: &$crate::model::Model,
                inputs: &$crate::backend::HostTensor,
                target: &$crate::methods::attribution::Target,
            ) -> $crate::error::Result<$crate::methods::attribution::Attribution<B::Tensor>> {
                let targets = target.classes(b, model, inputs)?;
                let cam = $crate::methods::gradcam::CamSettings {
                    name: $name,
                    layer: self.layer.as_deref(),
                    score: self.score,
                    relu: self.relu,
                };
                $crate::methods::gradcam::gradient_cam(self, &cam, b, model, inputs, &targets)
            }
        }

        #[doc = concat!("`", $name, "`'s own options: the layer and the ReLU, as the Grad-CAM family's.")]
        #[derive(clap::Args, Clone, Debug)]
        pub struct $options {
            #[command(flatten)]
            cam: $crate::methods::options::CamLayerArgs,
        }

        impl $crate::methods::options::MethodOptions for $options {
            fn build<B: $crate::backend::Backend>(
                &self,
                ctx: &$crate::methods::options::Context,
            ) -> $crate::error::Result<Box<dyn $crate::methods::attribution::Attribute<B>>> {
                Ok(Box::new($method {
                    layer: self.cam.layer.clone(),
                    score: ctx.score,
                    relu: !self.cam.no_relu,
                }))
            }
            fn parameters(&self) -> serde_json::Value {
                serde_json::json!({"relu": !self.cam.no_relu})
            }
            fn summary(&self) -> String {
                "CAM layer".into()
            }
        }
    };
}
pub(crate) use formula_cam;
