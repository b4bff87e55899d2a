//! The perturbation subcommands with their own options: `lime` (MATLAB `imageLIME` names) and
//! `scorecam`. Each writes PNG overlays, raw .npy maps and summary.json to -o DIR.

use std::path::Path;
use std::time::Instant;

use clap::Args;
use netlens::engine::Engine;
use netlens::error::{Error, Result};
use netlens::input::{self, Preprocess};
use netlens::methods::lime::{highlight_segments, segment, Lime, Segmentation, Surrogate};
use netlens::methods::scorecam::ScoreCam;
use netlens::methods::Score;
use netlens::model::import::load_model;
use netlens::{Backend, HostTensor, Model};
use serde_json::json;

#[derive(Args)]
pub struct PerturbationArgs {
    #[command(flatten)]
    pub input: crate::attribute::InputArgs,
    /// LIME: perturbed samples, the unperturbed image included (MATLAB NumSamples).
    #[arg(long, default_value_t = 2048)]
    pub num_samples: usize,
    /// LIME: target number of segments for grid and slic (MATLAB NumFeatures).
    #[arg(long, default_value_t = 49)]
    pub num_features: usize,
    /// LIME: grid, slic, or a label map file (.npy of whole numbers, or an image whose colours
    /// are the segments) of the model's input size.
    #[arg(long, default_value = "slic")]
    pub segmentation: String,
    /// LIME: SLIC compactness (spatial against colour distance).
    #[arg(long, default_value_t = 10.0)]
    pub compactness: f32,
    /// LIME: surrogate model, tree (MATLAB's default) or linear (weighted ridge).
    #[arg(long, default_value = "tree")]
    pub surrogate: String,
    /// LIME: width of the exp(-d²/width²) kernel on the cosine distance to the all-on sample.
    #[arg(long, default_value_t = 0.25)]
    pub kernel_width: f64,
    /// LIME: what off segments show: auto (per-channel image mean), a scalar, or per-channel values.
    #[arg(long, default_value = "auto")]
    pub mask_value: String,
    /// LIME: segments drawn in the top-k overlay.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Samples (LIME) or masked images (Score-CAM) per forward (MATLAB MiniBatchSize).
    #[arg(long)]
    pub mini_batch: Option<usize>,
    /// LIME: seed of the on/off samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub common: crate::Common,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Lime,
    ScoreCam,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Lime => "lime",
            Method::ScoreCam => "scorecam",
        }
    }
}

pub fn explain(method: Method, args: &PerturbationArgs, engine: &Engine) -> Result<()> {
    let model = load_model(&args.input.model)?;
    let (x, pre) = args.input.load(&model, args.common.preprocess.as_deref())?;
    if x.shape.len() != 4 {
        return Err(Error::bad_input(format!(
            "explain one image [1, C, H, W] at a time; the input is {:?}",
            x.shape
        )));
    }
    match engine {
        Engine::Gpu(g) => run(method, args, g.as_ref(), &model, &x, &pre, &engine.name()),
        Engine::Cpu(c) => run(method, args, c, &model, &x, &pre, &engine.name()),
    }
}

fn lime_options(args: &PerturbationArgs, score: Score) -> Result<Lime> {
    let segmentation = match args.segmentation.as_str() {
        "grid" => Segmentation::Grid,
        "slic" | "superpixels" => Segmentation::Slic {
            compactness: args.compactness,
        },
        path => Segmentation::Labels(segment::load_label_map(Path::new(path))?),
    };
    let surrogate = match args.surrogate.as_str() {
        "tree" => Surrogate::Tree,
        "linear" => Surrogate::Linear,
        other => {
            return Err(Error::bad_input(format!(
                "--surrogate '{other}': use tree or linear"
            )))
        }
    };
    Ok(Lime {
        num_samples: args.num_samples,
        num_features: args.num_features,
        segmentation,
        surrogate,
        kernel_width: args.kernel_width,
        mask_value: crate::attribute::parse_mask_value(&args.mask_value)?,
        mini_batch: args.mini_batch,
        seed: args.seed,
        score,
        top_k: args.top_k,
        ..Lime::default()
    })
}

fn run<B: Backend>(
    method: Method,
    args: &PerturbationArgs,
    b: &B,
    model: &Model,
    x: &HostTensor,
    pre: &Preprocess,
    backend: &str,
) -> Result<()> {
    let score = Score::parse(&args.input.score)?;
    // Options are checked before the classifying forward, so bad input fails fast.
    let lime = match method {
        Method::Lime => Some(lime_options(args, score)?),
        Method::ScoreCam => None,
    };
    if let Some(l) = &lime {
        if l.num_samples == 0 {
            return Err(Error::bad_input("--num-samples must be positive"));
        }
        l.segments(x)?;
    }
    let classes = args.input.classes(b, model, x)?;
    std::fs::create_dir_all(&args.input.output).map_err(|e| {
        Error::bad_input(format!(
            "cannot create {}: {e}",
            args.input.output.display()
        ))
    })?;
    let image = netlens::viz::display_image(x, pre);
    let (h, w) = (x.shape[2], x.shape[3]);
    let file = |class: usize, suffix: &str| {
        args.input
            .output
            .join(format!("{}_{class}{suffix}", method.name()))
    };
    let png = |path: &Path, rgb: Vec<u8>| netlens::viz::save_rgb_png(path, w, h, rgb);
    let progress = args.common.progress();
    let started = Instant::now();
    let mut results = Vec::new();
    let params = match (method, lime) {
        (Method::Lime, Some(lime)) => {
            let maps = lime.attribute_with_progress(b, model, x, &classes, &progress)?;
            let features = args.input.output.join("lime_features.npy");
            if let Some(m) = maps.first() {
                input::write_npy(&features, &m.feature_map.shape, &m.feature_map.data)?;
            }
            for m in &maps {
                let overlay = file(m.class, ".png");
                png(&overlay, netlens::viz::overlay(&image, &m.score_map))?;
                let labels: Vec<u32> = m.feature_map.data.iter().map(|&v| v as u32).collect();
                let shown = highlight_segments(&image, &labels, &m.top_segments);
                let top = file(m.class, &format!("_top{}.png", m.top_segments.len()));
                png(
                    &top,
                    shown.iter().map(|v| (v * 255.0).round() as u8).collect(),
                )?;
                let npy = file(m.class, ".npy");
                input::write_npy(&npy, &m.score_map.shape, &m.score_map.data)?;
                let imp = file(m.class, "_importance.npy");
                input::write_npy(&imp, &[m.feature_importance.len()], &m.feature_importance)?;
                results.push(json!({"class": m.class, "score": m.score, "r2": m.r2,
                    "top_segments": m.top_segments, "segments": m.feature_importance.len(),
                    "png": overlay, "top_png": top, "npy": npy, "importance_npy": imp,
                    "features_npy": features}));
            }
            json!({"score": args.input.score, "num_samples": args.num_samples,
                "num_features": args.num_features, "segmentation": args.segmentation,
                "compactness": args.compactness, "surrogate": args.surrogate,
                "kernel_width": args.kernel_width, "mask_value": args.mask_value,
                "mini_batch": args.mini_batch, "seed": args.seed, "top_k": args.top_k})
        }
        _ => {
            let sc = ScoreCam {
                layer: args.input.layer.clone(),
                score,
                mini_batch: args.mini_batch,
                relu: true,
            };
            for m in sc.attribute_with_progress(b, model, x, &classes, &progress)? {
                let c = &m.cam;
                let overlay = file(c.class, ".png");
                png(&overlay, netlens::viz::overlay(&image, &c.upsampled))?;
                let npy = file(c.class, ".npy");
                input::write_npy(&npy, &c.upsampled.shape, &c.upsampled.data)?;
                let low = file(c.class, "_lowres.npy");
                input::write_npy(&low, &c.lowres.shape, &c.lowres.data)?;
                let wts = file(c.class, "_weights.npy");
                input::write_npy(&wts, &[m.weights.len()], &m.weights)?;
                results.push(json!({"class": c.class, "score": c.score, "layer": c.layer,
                    "png": overlay, "npy": npy, "lowres_npy": low, "weights_npy": wts}));
            }
            json!({"score": args.input.score, "layer": args.input.layer, "mini_batch": args.mini_batch})
        }
    };
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
