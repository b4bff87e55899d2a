//! The method subcommands, one per entry of the method registry (saliency, gradcam, occlusion,
//! lime, ...): each takes the shared input/output options and its own, and writes PNG overlays,
//! raw .npy maps and its summary to -o DIR: `summary_<method>_<classes>.json`, which runs of other
//! methods or classes into the same folder leave alone, and a copy as `summary.json` (the latest
//! run's).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{ArgMatches, Args, FromArgMatches};
use netlens::cpu::CpuBackend;
use netlens::engine::{top_k, Engine};
use netlens::error::{Error, Result};
use netlens::input::{self, Preprocess};
use netlens::methods::attribution::{HostAttribution, Target};
use netlens::methods::finite::NonFinite;
use netlens::methods::lime::highlight_segments;
use netlens::methods::objective::{layer_gradients, LayerObjective, Region};
use netlens::methods::registry::{self, Configured, Context, ObjectiveRequest};
use netlens::methods::{PixelAttribution, Score};
use netlens::model::import::load_model;
use netlens::{Backend, HostTensor, Model};
use serde_json::json;

/// What every method subcommand takes: the model, the image, the classes, the score and the
/// output folder.
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
    #[arg(long, value_parser = crate::at_least_one(), default_value_t = 1)]
    pub top: usize,
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
            (Some(img), None) => crate::image_input(img, &pre, model.input_shape())?,
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

/// Every registry method as a subcommand, with the shared options and its own.
pub fn subcommands() -> Vec<clap::Command> {
    registry::methods::<CpuBackend>()
        .iter()
        .map(|e| {
            // The input and class options, the method's own, then the backend and output
            // switches; `about` last, since clap's derive sets it from each struct's doc.
            let input = InputArgs::augment_args(clap::Command::new(e.name));
            crate::Common::augment_args((e.augment)(input))
                .about(e.about)
                .long_about(None)
        })
        .collect()
}

/// Whether `name` is a registry method's subcommand.
pub fn is_method(name: &str) -> bool {
    registry::find::<CpuBackend>(name).is_some()
}

/// Runs the registry method `name` with the subcommand's parsed arguments.
pub fn run(name: &str, matches: &ArgMatches) -> Result<()> {
    let bad = |e: clap::Error| Error::bad_input(e.to_string());
    let input = InputArgs::from_arg_matches(matches).map_err(bad)?;
    let common = crate::Common::from_arg_matches(matches).map_err(bad)?;
    let engine = crate::engine(&common)?;
    let model = load_model(&input.model)?;
    let (x, pre) = input.load(&model, common.preprocess.as_deref())?;
    if x.shape.len() != 4 {
        return Err(Error::bad_input(format!(
            "explain one image [1, C, H, W] at a time; the input is {:?}",
            x.shape
        )));
    }
    let call = Call {
        name,
        matches,
        input: &input,
        common: &common,
        model: &model,
        x: &x,
        pre: &pre,
        backend: engine.name(),
    };
    match &engine {
        Engine::Gpu(g) => call.on(g.as_ref()),
        Engine::Cpu(c) => call.on(c),
    }
}

/// One method subcommand, loaded and ready to run on a backend.
struct Call<'a> {
    name: &'a str,
    matches: &'a ArgMatches,
    input: &'a InputArgs,
    common: &'a crate::Common,
    model: &'a Model,
    x: &'a HostTensor,
    pre: &'a Preprocess,
    backend: String,
}

impl Call<'_> {
    fn on<B: Backend>(&self, b: &B) -> Result<()> {
        let entry = registry::find::<B>(self.name)
            .ok_or_else(|| Error::internal(format!("no registry method '{}'", self.name)))?;
        let options = (*entry.parse)(self.matches)?;
        let score = Score::parse(&self.input.score)?;
        // Options are checked before the classifying forward, so bad input fails fast.
        let objective = options.objective()?;
        let method = match objective {
            Some(_) => None,
            None => Some(options.build(&Context {
                image: self.x,
                preprocess: Some(self.pre),
                score,
            })?),
        };
        let classes = match objective {
            Some(_) => Vec::new(),
            None => self.input.classes(b, self.model, self.x)?,
        };
        let dir = &self.input.output;
        crate::create_out_dir(dir)?;
        let out = Output {
            dir,
            method: self.name,
            image: netlens::viz::display_image(self.x, self.pre),
            h: self.x.shape[2],
            w: self.x.shape[3],
        };
        let started = Instant::now();
        let ran = match (&objective, method) {
            (Some(request), _) => layer_objectives(request, b, self.model, self.x, &out)?,
            (None, Some(method)) => {
                let progress = self.common.progress();
                let a = method
                    .attribute_batch_with_progress(
                        b,
                        self.model,
                        &repeat(self.x, classes.len())?,
                        &Target::PerSample(classes),
                        &progress,
                    )?
                    .read(b)?;
                let mut params = options.parameters();
                params["score"] = json!(self.input.score);
                Ran {
                    results: out.results(&a, options.as_ref())?,
                    params,
                    non_finite: a.non_finite(),
                    tags: a.targets.iter().map(|c| c.to_string()).collect(),
                }
            }
            (None, None) => return Err(Error::internal("no method object")),
        };
        let seconds = started.elapsed().as_secs_f64();
        let summary = json!({
            "method": self.name,
            "model": self.model.name,
            "backend": self.backend,
            "parameters": ran.params,
            "seconds": seconds,
            "results": ran.results,
            "non_finite": crate::warn_non_finite(&ran.non_finite),
        });
        let own = summary_name(self.name, &ran.tags);
        crate::finish_named(dir, Some(&own), &summary, self.common.json, || {
            format!(
                "{} on {} in {seconds:.2} s; wrote {}",
                self.name,
                self.backend,
                dir.display()
            )
        })
    }
}

/// One image `[1, ...]` once per class, stacked into a batch.
fn repeat(x: &HostTensor, n: usize) -> Result<HostTensor> {
    let mut shape = x.shape.clone();
    shape[0] = n;
    HostTensor::new(shape, x.data.repeat(n))
}

/// What a method run wrote and found, for its summary.
struct Ran {
    /// One entry per class (or objective): its files, score and extras.
    results: Vec<serde_json::Value>,
    /// The method's options as the summary's `parameters`.
    params: serde_json::Value,
    /// Where the model or the method produced NaN or ±Inf.
    non_finite: Vec<NonFinite>,
    /// The tags the files carry (classes, or an objective's channels), for the summary's name.
    tags: Vec<String>,
}

/// Saliency or guided backprop of layer objectives (channel means, optionally in a region) rather
/// than class scores.
fn layer_objectives<B: Backend>(
    request: &ObjectiveRequest,
    b: &B,
    model: &Model,
    x: &HostTensor,
    out: &Output,
) -> Result<Ran> {
    let layer_id = model.layer(&request.layer)?;
    let region = request.region.as_deref().map(Region::parse).transpose()?;
    let channels: Vec<Option<usize>> = if request.channels.is_empty() {
        vec![None]
    } else {
        request.channels.iter().map(|&c| Some(c)).collect()
    };
    let objectives: Vec<LayerObjective> = channels
        .iter()
        .map(|&channel| LayerObjective {
            layer: layer_id,
            channel,
            region,
        })
        .collect();
    let attributions =
        layer_gradients(b, model, x, &objectives, request.rule, request.times_input)?;
    let mut results = Vec::new();
    let mut non_finite = Vec::new();
    let mut tags = Vec::new();
    for (a, channel) in attributions.iter().zip(&channels) {
        let tag = channel.map_or("all".to_string(), |c| format!("ch{c}"));
        let mut entry = out.pixel_tagged(a, tag.as_str())?;
        entry["channel"] = json!(channel);
        entry["objective"] = json!(a.score);
        results.push(entry);
        non_finite.extend(a.non_finite().into_iter().map(|mut n| {
            // A layer objective has no class: name the objective's tag instead.
            n.class = None;
            n.what = format!("{} ({tag})", n.what);
            n
        }));
        tags.push(tag);
    }
    let params = json!({"objective_layer": request.layer, "channels": request.channels,
        "region": request.region, "times_input": request.times_input});
    Ok(Ran {
        results,
        params,
        non_finite,
        tags,
    })
}

/// The file name of a run's own summary: `summary_<method>_<tags>.json`, the tags (classes, or
/// a layer objective's channels) joined by `-`, as in `summary_gradcam_281-282.json`. Runs of
/// other methods or classes into the same folder keep theirs. Past 8 tags the name lists the
/// first 8 and a hash of the whole list, to stay within file-name limits and still differ.
fn summary_name(method: &str, tags: &[String]) -> String {
    const SHOWN: usize = 8;
    if tags.len() <= SHOWN {
        return format!("summary_{method}_{}.json", tags.join("-"));
    }
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let hash = tags
        .join("-")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
    format!(
        "summary_{method}_{}-and-{}-more-{hash:016x}.json",
        tags[..SHOWN].join("-"),
        tags.len() - SHOWN
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

    fn npy(&self, tag: impl std::fmt::Display, suffix: &str, t: &HostTensor) -> Result<PathBuf> {
        let path = self.file(tag, suffix);
        input::write_npy(&path, &t.shape, &t.data)?;
        Ok(path)
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

    fn pixel_tagged(
        &self,
        a: &PixelAttribution,
        tag: impl std::fmt::Display + Copy,
    ) -> Result<serde_json::Value> {
        let npy = self.npy(tag, ".npy", &a.map)?;
        let png = self.png(tag, &a.display())?;
        Ok(json!({"class": a.class, "score": a.score, "png": png, "npy": npy}))
    }

    /// Each sample's files and summary entry: the overlay and the raw map, then whatever the
    /// method has beyond it (low-res map, IG's convergence, Score-CAM's weights, LIME's fit).
    fn results<B: Backend>(
        &self,
        a: &HostAttribution,
        options: &dyn Configured<B>,
    ) -> Result<Vec<serde_json::Value>> {
        let mut results = Vec::with_capacity(a.len());
        let features = self.dir.join("lime_features.npy");
        for i in 0..a.len() {
            let class = a.targets[i];
            let extras = &a.extras[i];
            let png = self.png(class, &a.display(i))?;
            let raw = extras.per_pixel.clone().unwrap_or_else(|| a.map(i));
            let npy = self.npy(class, ".npy", &raw)?;
            let mut entry = json!({"class": class, "score": a.scores[i], "png": png, "npy": npy});
            if let Some(layer) = &a.layer {
                entry["layer"] = json!(layer);
            }
            if let Some(lowres) = a.lowres_map(i) {
                let name = options.lowres_name();
                let path = self.npy(class, &format!("_{name}.npy"), &lowres)?;
                entry[format!("{name}_npy")] = json!(path);
            }
            if let (Some(delta), Some(difference)) =
                (extras.convergence_delta, extras.score_difference)
            {
                entry["convergence_delta"] = json!(delta);
                entry["score_difference"] = json!(difference);
            }
            if let Some(weights) = &extras.channel_weights {
                let t = HostTensor::new(vec![weights.len()], weights.clone())?;
                entry["weights_npy"] = json!(self.npy(class, "_weights.npy", &t)?);
            }
            if let Some(fit) = &extras.surrogate {
                if i == 0 {
                    input::write_npy(&features, &fit.segments.shape, &fit.segments.data)?;
                }
                let labels: Vec<u32> = fit.segments.data.iter().map(|&v| v as u32).collect();
                let shown = highlight_segments(&self.image, &labels, &fit.top_segments);
                let top = self.file(class, &format!("_top{}.png", fit.top_segments.len()));
                netlens::viz::save_rgb_png(
                    &top,
                    self.w,
                    self.h,
                    shown.iter().map(|v| (v * 255.0).round() as u8).collect(),
                )?;
                let t = HostTensor::new(vec![fit.importance.len()], fit.importance.clone())?;
                let imp = self.npy(class, "_importance.npy", &t)?;
                entry["r2"] = json!(fit.r2);
                entry["top_segments"] = json!(fit.top_segments);
                entry["segments"] = json!(fit.importance.len());
                entry["top_png"] = json!(top);
                entry["importance_npy"] = json!(imp);
                entry["features_npy"] = json!(features);
            }
            results.push(entry);
        }
        Ok(results)
    }
}
