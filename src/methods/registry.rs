//! The registry of local attribution methods: what the CLI's method subcommands, `netlens
//! explain`'s report and the bench iterate. Each entry gives the method's name (its CLI
//! subcommand), its title in the report, a one-line description (its `--help` line), its own
//! options (a clap `Args` struct implementing [`MethodOptions`]) and, through them, a
//! constructor of the method object (`Box<dyn Attribute<B>>`).
//!
//! # Adding a method
//!
//! 1. Write the method in one file, `src/methods/rise.rs`: the method struct, `impl Named` (its name) and
//!    `impl<B: Backend> Attribute<B>` (returning an [`Attribution`](super::attribution::Attribution)
//!    whose typed [`Extras`](super::attribution::Extras) carry anything beyond the map), and
//!    beside it its options as the subcommand takes them:
//!
//!    ```text
//!    // The trait from `options`, not from here: the registry imports this file.
//!    use super::options::{Context, MethodOptions};
//!
//!    /// RISE's own options (`netlens rise --help` lists these and the shared ones).
//!    #[derive(clap::Args, Clone, Debug)]
//!    pub struct RiseOptions {
//!        /// Random masks.
//!        #[arg(long, default_value_t = 4000)]
//!        pub masks: usize,
//!    }
//!
//!    impl MethodOptions for RiseOptions {
//!        fn build<B: Backend>(&self, ctx: &Context) -> Result<Box<dyn Attribute<B>>> {
//!            Ok(Box::new(Rise { masks: self.masks, score: ctx.score }))
//!        }
//!        fn parameters(&self) -> serde_json::Value {
//!            serde_json::json!({"masks": self.masks})
//!        }
//!        fn summary(&self) -> String {
//!            format!("{} masks", self.masks)
//!        }
//!    }
//!    ```
//!
//! 2. In `methods/mod.rs`, declare it (`pub mod rise;`) and add one line to
//!    [`registered`](super::registered), in the place the report and the bench should show it:
//!
//!    ```text
//!    entry::<B, rise::RiseOptions>("rise", "RISE", "RISE (Petsiuk et al.): masks weighted by their scores."),
//!    ```
//!
//! A Grad-CAM variant is a [`CamWeights`](super::gradcam::CamWeights) formula (see
//! `hirescam.rs`); the variants built into `gradcam.rs` use
//! `gradcam_entry::<B>("layercam", "LayerCAM", "LayerCAM.", CamVariant::LayerCam)`.
//!
//! That is all: `netlens rise MODEL IMAGE` exists with its own `--help`, writes
//! `rise_<class>.png`, `.npy` and `summary.json` like every method (and the extra files its
//! [`Extras`](super::attribution::Extras) call for), `netlens explain` shows it as a panel
//! titled "RISE" (unless [`MethodOptions::IN_REPORT`] is false), and `netlens bench` times it
//! as the row `rise`. [`MethodOptions::presets`] shows one method several ways (saliency also
//! as gradient × input); the report's and the bench's own settings reach a method as
//! command-line overrides ([`Preset::args`] plus `report::Settings::overrides`).

use std::rc::Rc;

use clap::{Args, FromArgMatches};

use super::gradcam::CamVariant;
use super::options::{CamLayerArgs, GradCamOptions};
pub use super::options::{Configured, Context, MethodOptions, ObjectiveRequest, Preset};
use crate::backend::Backend;
use crate::error::{Error, Result};

/// Every registered method, in the order the report shows them and the bench times them: the
/// list lives in `methods/mod.rs`, beside the `pub mod` lines, so a new method touches two files.
pub use super::registered as methods;

/// The registry entry called `name`, if there is one.
pub fn find<B: Backend>(name: &str) -> Option<MethodEntry<B>> {
    methods::<B>().into_iter().find(|e| e.name == name)
}

/// How an entry turns a subcommand's parsed arguments into its options.
pub type ParseFn<B> = dyn Fn(&clap::ArgMatches) -> Result<Box<dyn Configured<B>>>;

/// One registered method, for backend type `B`.
pub struct MethodEntry<B: Backend> {
    /// The CLI subcommand's name, the files' prefix and `summary.json`'s `method`.
    pub name: &'static str,
    /// The report panel's title.
    pub title: &'static str,
    /// One line for `netlens --help` and the subcommand's `--help`.
    pub about: &'static str,
    /// Whether `netlens explain` shows it.
    pub in_report: bool,
    /// Adds the method's own options to a command (clap's `Args::augment_args`).
    pub augment: fn(clap::Command) -> clap::Command,
    /// The options from parsed arguments.
    pub parse: Rc<ParseFn<B>>,
    /// The report's and the bench's ways to show it (never empty).
    pub presets: Vec<Preset>,
}

// By hand: a derive would ask `B: Clone`, which the entry does not hold.
impl<B: Backend> Clone for MethodEntry<B> {
    fn clone(&self) -> Self {
        MethodEntry {
            name: self.name,
            title: self.title,
            about: self.about,
            in_report: self.in_report,
            augment: self.augment,
            parse: self.parse.clone(),
            presets: self.presets.clone(),
        }
    }
}

/// The entry of the method whose options are `O`.
pub fn entry<B: Backend, O: MethodOptions>(
    name: &'static str,
    title: &'static str,
    about: &'static str,
) -> MethodEntry<B> {
    let mut presets = O::presets();
    if presets.is_empty() {
        presets.push(Preset {
            name,
            title,
            args: &[],
        });
    }
    MethodEntry {
        name,
        title,
        about,
        in_report: O::IN_REPORT,
        augment: O::augment_args,
        parse: Rc::new(|m| {
            O::from_arg_matches(m)
                .map(|o| Box::new(o) as Box<dyn Configured<B>>)
                .map_err(|e| Error::bad_input(e.to_string()))
        }),
        presets,
    }
}

/// The entry of a Grad-CAM variant: `--layer` and `--no-relu`, and the variant's channel
/// weighting. A new variant is its [`CamVariant`] and this one registry line.
pub fn gradcam_entry<B: Backend>(
    name: &'static str,
    title: &'static str,
    about: &'static str,
    variant: CamVariant,
) -> MethodEntry<B> {
    MethodEntry {
        name,
        title,
        about,
        in_report: true,
        augment: CamLayerArgs::augment_args,
        parse: Rc::new(move |m| {
            let cam =
                CamLayerArgs::from_arg_matches(m).map_err(|e| Error::bad_input(e.to_string()))?;
            Ok(Box::new(GradCamOptions { cam, variant }) as Box<dyn Configured<B>>)
        }),
        presets: vec![Preset {
            name,
            title,
            args: &[],
        }],
    }
}

impl<B: Backend> MethodEntry<B> {
    /// The method's subcommand with its own options only (the CLI adds the shared ones).
    pub fn command(&self) -> clap::Command {
        // After the options: clap's derive sets `about` from the struct's doc comment.
        (self.augment)(clap::Command::new(self.name))
            .about(self.about)
            .long_about(None)
    }

    /// The options given as command-line arguments (without the subcommand's name), on top of
    /// the defaults: how the report and the bench configure a method.
    pub fn options_from<S: AsRef<str>>(&self, args: &[S]) -> Result<Box<dyn Configured<B>>> {
        let argv = std::iter::once(self.name).chain(args.iter().map(|a| a.as_ref()));
        let matches = self
            .command()
            .try_get_matches_from(argv)
            .map_err(|e| Error::bad_input(format!("{}: {e}", self.name)))?;
        (*self.parse)(&matches)
    }
}
