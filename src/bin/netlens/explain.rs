//! `netlens explain`: one self-contained HTML report with every local method's map for one class.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use netlens::engine::{softmax_rows, top_k, Engine};
use netlens::error::Result;
use netlens::model::import::load_model;
use netlens::progress::Progress;
use netlens::report::{self, Panel, Prediction, Report, Settings};
use netlens::{Backend, HostTensor, Model};
use serde_json::json;

#[derive(Args)]
pub struct ExplainArgs {
    /// The ONNX model (default: the shipped MobileNetV2).
    pub model: Option<PathBuf>,
    /// The image (default: the cat photo).
    pub image: Option<PathBuf>,
    /// Folder for report.html and summary.json.
    #[arg(short = 'o', long, default_value = "netlens-report")]
    pub output: PathBuf,
    /// Class to explain (default: the top prediction).
    #[arg(long)]
    pub class: Option<usize>,
    /// Integrated Gradients: steps.
    #[arg(long, default_value_t = Settings::default().ig_steps)]
    pub steps: usize,
    /// SmoothGrad: noisy samples.
    #[arg(long, default_value_t = Settings::default().smoothgrad_samples)]
    pub samples: usize,
    /// Occlusion: window side in pixels.
    #[arg(long, default_value_t = Settings::default().occlusion_mask)]
    pub mask_size: usize,
    /// Occlusion: stride in pixels.
    #[arg(long, default_value_t = Settings::default().occlusion_stride)]
    pub stride: usize,
    #[command(flatten)]
    pub common: crate::Common,
}

struct Loaded {
    model_path: PathBuf,
    image_path: PathBuf,
    model: Model,
    x: HostTensor,
    image_rgb: Vec<f32>,
    labels: Option<Vec<String>>,
}

pub fn explain(args: &ExplainArgs) -> Result<()> {
    let started = Instant::now();
    let model_path = args
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_MODEL));
    let image_path = args
        .image
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_IMAGE));
    let model = load_model(&model_path)?;
    let (x, pre, labels) = report::model_input(
        &model_path,
        &model,
        &image_path,
        args.common.preprocess.as_deref(),
    )?;
    let loaded = Loaded {
        image_rgb: netlens::viz::display_image(&x, &pre),
        model_path,
        image_path,
        model,
        x,
        labels,
    };
    let settings = Settings {
        ig_steps: args.steps,
        smoothgrad_samples: args.samples,
        occlusion_mask: args.mask_size,
        occlusion_stride: args.stride,
        ..Settings::default()
    };
    crate::create_out_dir(&args.output)?;
    let engine = crate::engine(&args.common)?;
    let progress = args.common.progress();
    match &engine {
        Engine::Gpu(g) => build(args, g.as_ref(), &loaded, &settings, &progress, started),
        Engine::Cpu(c) => build(args, c, &loaded, &settings, &progress, started),
    }
}

fn build<B: Backend>(
    args: &ExplainArgs,
    b: &B,
    l: &Loaded,
    settings: &Settings,
    progress: &dyn Progress,
    started: Instant,
) -> Result<()> {
    let logits = b.read(&b.forward(&l.model, &b.upload(&l.x)?, &[])?.output)?;
    let probs = &softmax_rows(&logits)[0];
    let labels = l.labels.as_deref();
    let predictions: Vec<Prediction> = top_k(probs, 5.min(l.model.num_classes()))
        .into_iter()
        .map(|k| Prediction {
            class: k,
            label: report::label(labels, k),
            probability: probs[k],
        })
        .collect();
    let class = args.class.unwrap_or(predictions[0].class);
    let panels = report::panels(b, &l.model, &l.x, &l.image_rgb, class, settings, progress)?;
    let (h, w) = (l.x.shape[2], l.x.shape[3]);
    let image_rgb8 = l
        .image_rgb
        .iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect();
    let report = Report {
        model: l.model.name.clone(),
        image_name: file_name(&l.image_path),
        image_png: report::png_bytes(w, h, image_rgb8)?,
        predictions,
        class,
        class_label: report::label(labels, class),
        backend: b.name(),
        panels,
        seconds: started.elapsed().as_secs_f64(),
    };
    let path = args.output.join("report.html");
    netlens::atomic::write_bytes(&path, report::html(&report).as_bytes())?;
    let shown = std::fs::canonicalize(&path).unwrap_or(path);
    let mut summary = summary(&report, l, &shown);
    // The logits, then each panel's findings named by the panel.
    let mut found: Vec<_> = netlens::methods::finite::scan_tensor("logits", &logits)
        .into_iter()
        .collect();
    for p in &report.panels {
        found.extend(p.non_finite.iter().filter(|n| n.what != "logits").map(|n| {
            let mut n = n.clone();
            n.what = format!("{}: {}", p.title, n.what);
            n
        }));
    }
    summary["non_finite"] = crate::warn_non_finite(&found);
    crate::finish(&args.output, &summary, args.common.json, || {
        let top = &report.predictions[0];
        let headline = format!(
            "{} on {}: {} ({:.1}%); {} maps of class {} in {:.1} s\n",
            report.model,
            report.backend,
            top.label,
            top.probability * 100.0,
            report.panels.iter().filter(|p| p.png.is_some()).count(),
            report.class,
            report.seconds
        );
        let headline = if args.common.quiet { "" } else { &headline };
        format!("{headline}report: {}", shown.display())
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
}

fn summary(r: &Report, l: &Loaded, html: &Path) -> serde_json::Value {
    let panel = |p: &Panel| {
        json!({"method": p.title, "parameters": p.params, "seconds": p.seconds,
            "backend": p.backend, "available": p.png.is_some(), "note": p.note})
    };
    json!({
        "report": html,
        "model": r.model,
        "model_path": l.model_path,
        "image": l.image_path,
        "backend": r.backend,
        "class": r.class,
        "label": r.class_label,
        "predictions": r.predictions,
        "panels": r.panels.iter().map(panel).collect::<Vec<_>>(),
        "seconds": r.seconds,
    })
}
