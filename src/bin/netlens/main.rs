//! The `netlens` command line.

mod attribute;
mod perturbation;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use netlens::engine::{softmax_rows, top_k, BackendChoice, Engine};
use netlens::error::{Error, ErrorKind, Result};
use netlens::input::{self, Preprocess, Sidecar};
use netlens::methods::gradcam::CamVariant;
use netlens::model::import::load_model;
use netlens::{HostTensor, Model};

const DEFAULT_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/models/mobilenetv2_imagenet.onnx"
);
const DEFAULT_IMAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/images/chelsea.png");

#[derive(Parser)]
#[command(
    name = "netlens",
    version,
    about = "Explains what ONNX image classifiers look at, on the GPU (wgpu) or the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// List the model's ops, layers (ONNX tensor names, shapes), parameter count and CAM layer.
    Info {
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Top-K labels and probabilities for each image. With no arguments: MobileNetV2 on the cat photo.
    Classify {
        /// The ONNX model (default: the shipped MobileNetV2).
        model: Option<PathBuf>,
        /// Images (PNG or JPEG).
        images: Vec<PathBuf>,
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Run the model and write the logits (and tapped layers) as .npy.
    Run {
        model: PathBuf,
        image: Option<PathBuf>,
        /// A ready float32 NCHW tensor instead of an image.
        #[arg(long)]
        input_npy: Option<PathBuf>,
        /// Output .npy for the logits; each tap goes to OUT.<layer>.npy.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Layer (ONNX tensor name) whose activation to save; repeatable.
        #[arg(long = "tap")]
        taps: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Vanilla gradient (or gradient × input with --times-input) per pixel.
    Saliency(attribute::AttributeArgs),
    /// SmoothGrad, SmoothGrad² or VarGrad over noisy copies.
    Smoothgrad(attribute::AttributeArgs),
    /// Integrated Gradients.
    Ig(attribute::AttributeArgs),
    /// Guided backprop.
    Guided(attribute::AttributeArgs),
    /// Guided backprop times the upsampled Grad-CAM.
    GuidedGradcam(attribute::AttributeArgs),
    /// Classic CAM (feature layer → global average pooling → fully connected).
    Cam(attribute::AttributeArgs),
    /// Grad-CAM.
    Gradcam(attribute::AttributeArgs),
    /// Grad-CAM++.
    #[command(name = "gradcam++")]
    GradcamPlusPlus(attribute::AttributeArgs),
    /// LayerCAM.
    Layercam(attribute::AttributeArgs),
    /// Occlusion sensitivity (MATLAB occlusionSensitivity, Captum Occlusion), batched on the device.
    Occlusion(attribute::AttributeArgs),
    /// LIME (MATLAB imageLIME, Captum Lime): a surrogate fitted to scores of segment-masked copies.
    Lime(perturbation::PerturbationArgs),
    /// Score-CAM (pytorch-grad-cam ScoreCAM): channel weights from scores of map-masked copies.
    Scorecam(perturbation::PerturbationArgs),
    /// List the GPU adapters wgpu sees.
    Adapters,
    /// Benchmarks. `netlens bench forward`: images/s on GPU, CPU and tract.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Seconds per image of every attribution method, GPU and CPU (MobileNetV2 on the cat, class 285).
    Methods {
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Skip the GPU backend.
        #[arg(long)]
        no_gpu: bool,
        /// Also write the rows as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    Forward {
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: String,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 32])]
        batch: Vec<usize>,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Skip the GPU backend.
        #[arg(long)]
        no_gpu: bool,
        /// Also write the report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Args)]
pub(crate) struct Common {
    /// gpu, cpu or auto (default: $NETLENS_BACKEND, else auto).
    #[arg(long)]
    backend: Option<String>,
    /// Preprocessing preset overriding the model's sidecar: imagenet, tf, unit.
    #[arg(long)]
    preprocess: Option<String>,
    /// No progress bars (they are also hidden when stdout is not a terminal).
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
}

impl Common {
    /// The progress bar for this command: hidden with --quiet or when stdout is not a terminal.
    pub(crate) fn progress(&self) -> netlens::progress::Bar {
        netlens::progress::Bar::new(self.quiet)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => classify(
            None,
            vec![],
            5,
            false,
            &Common {
                backend: None,
                preprocess: None,
                quiet: false,
            },
        ),
        Some(Command::Info { model, json }) => info(&model, json),
        Some(Command::Classify {
            model,
            images,
            top,
            json,
            common,
        }) => classify(model, images, top, json, &common),
        Some(Command::Run {
            model,
            image,
            input_npy,
            output,
            taps,
            common,
        }) => run(&model, image, input_npy, &output, &taps, &common),
        Some(Command::Adapters) => adapters(),
        Some(Command::Bench {
            what:
                BenchCmd::Methods {
                    repeat,
                    no_gpu,
                    json,
                },
        }) => bench_methods(repeat, !no_gpu, json),
        Some(Command::Saliency(a)) => run_attribute(attribute::Method::Saliency, &a),
        Some(Command::Smoothgrad(a)) => run_attribute(attribute::Method::SmoothGrad, &a),
        Some(Command::Ig(a)) => run_attribute(attribute::Method::Ig, &a),
        Some(Command::Guided(a)) => run_attribute(attribute::Method::Guided, &a),
        Some(Command::GuidedGradcam(a)) => run_attribute(attribute::Method::GuidedGradCam, &a),
        Some(Command::Cam(a)) => run_attribute(attribute::Method::Cam, &a),
        Some(Command::Gradcam(a)) => {
            run_attribute(attribute::Method::Cams(CamVariant::GradCam), &a)
        }
        Some(Command::GradcamPlusPlus(a)) => {
            run_attribute(attribute::Method::Cams(CamVariant::GradCamPlusPlus), &a)
        }
        Some(Command::Occlusion(a)) => run_attribute(attribute::Method::Occlusion, &a),
        Some(Command::Lime(a)) => run_perturbation(perturbation::Method::Lime, &a),
        Some(Command::Scorecam(a)) => run_perturbation(perturbation::Method::ScoreCam, &a),
        Some(Command::Layercam(a)) => {
            run_attribute(attribute::Method::Cams(CamVariant::LayerCam), &a)
        }
        Some(Command::Bench {
            what:
                BenchCmd::Forward {
                    model,
                    batch,
                    repeat,
                    no_gpu,
                    json,
                },
        }) => bench(&model, &batch, repeat, !no_gpu, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netlens: error: {e}");
            ExitCode::from(match e.kind {
                ErrorKind::BadInput => 2,
                ErrorKind::Device | ErrorKind::Internal => 1,
            })
        }
    }
}

fn run_attribute(method: attribute::Method, args: &attribute::AttributeArgs) -> Result<()> {
    let engine = engine(&args.common)?;
    attribute::explain(method, args, &engine, args.common.preprocess.as_deref())
}

fn run_perturbation(
    method: perturbation::Method,
    args: &perturbation::PerturbationArgs,
) -> Result<()> {
    let engine = engine(&args.common)?;
    perturbation::explain(method, args, &engine)
}

fn engine(common: &Common) -> Result<Engine> {
    Engine::new(BackendChoice::resolve(common.backend.as_deref())?)
}

/// The preprocessing for `model`: the `--preprocess` preset, else the sidecar's, else ImageNet's
/// for 3-channel inputs and plain /255 otherwise.
fn preprocessing(
    model_path: &Path,
    model: &Model,
    preset: Option<&str>,
) -> Result<(Preprocess, Option<Vec<String>>)> {
    let sidecar = Sidecar::for_model(model_path)?;
    let labels = match &sidecar {
        Some(s) => s.labels()?,
        None => None,
    };
    let pre = match (preset, &sidecar) {
        (Some(p), _) => Preprocess::from_name(p)?,
        (
            None,
            Some(Sidecar {
                preprocess: Some(p),
                ..
            }),
        ) => p.clone(),
        (None, _) if model.input_shape()[0] == 3 => Preprocess::imagenet(),
        (None, _) => Preprocess::unit(),
    };
    Ok((pre, labels))
}

fn load_images(
    model_path: &Path,
    model: &Model,
    images: &[PathBuf],
    preset: Option<&str>,
) -> Result<(HostTensor, Option<Vec<String>>)> {
    let (pre, labels) = preprocessing(model_path, model, preset)?;
    let tensors = images
        .iter()
        .map(|p| input::image_tensor(p, &pre, model.input_shape()))
        .collect::<Result<Vec<_>>>()?;
    Ok((input::batch(tensors)?, labels))
}

fn label(labels: &Option<Vec<String>>, k: usize) -> String {
    labels
        .as_ref()
        .and_then(|l| l.get(k).cloned())
        .unwrap_or_else(|| format!("class {k}"))
}

fn classify(
    model: Option<PathBuf>,
    mut images: Vec<PathBuf>,
    top: usize,
    json: bool,
    common: &Common,
) -> Result<()> {
    let model_path = model.unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    if images.is_empty() {
        images.push(PathBuf::from(DEFAULT_IMAGE));
    }
    let model = load_model(&model_path)?;
    let (batch, labels) = load_images(&model_path, &model, &images, common.preprocess.as_deref())?;
    let engine = engine(common)?;
    let (logits, _) = engine.forward_host(&model, &batch, &[])?;
    let probs = softmax_rows(&logits);
    let top = top.clamp(1, model.num_classes());
    let mut results = Vec::new();
    for (img, p) in images.iter().zip(&probs) {
        let best: Vec<serde_json::Value> = top_k(p, top)
            .into_iter()
            .map(|k| serde_json::json!({"class": k, "label": label(&labels, k), "probability": p[k]}))
            .collect();
        results.push(serde_json::json!({"image": img.display().to_string(), "top": best}));
    }
    if json {
        let out =
            serde_json::json!({"model": model.name, "backend": engine.name(), "results": results});
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::internal(e.to_string()))?
        );
        return Ok(());
    }
    println!("model {} on {}", model.name, engine.name());
    for r in &results {
        println!("{}", r["image"].as_str().unwrap_or(""));
        for t in r["top"].as_array().into_iter().flatten() {
            println!(
                "  {:>5.1}%  {:>4}  {}",
                t["probability"].as_f64().unwrap_or(0.0) * 100.0,
                t["class"],
                t["label"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn run(
    model_path: &Path,
    image: Option<PathBuf>,
    input_npy: Option<PathBuf>,
    output: &Path,
    taps: &[String],
    common: &Common,
) -> Result<()> {
    let model = load_model(model_path)?;
    let tap_ids = taps
        .iter()
        .map(|t| model.layer(t))
        .collect::<Result<Vec<_>>>()?;
    let batch = match (image, input_npy) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_input(
                "give either an image or --input-npy, not both",
            ))
        }
        (None, None) => return Err(Error::bad_input("give an image or --input-npy FILE")),
        (Some(img), None) => {
            load_images(model_path, &model, &[img], common.preprocess.as_deref())?.0
        }
        (None, Some(npy)) => input::load_input_npy(&npy, model.input_shape())?,
    };
    let engine = engine(common)?;
    let (logits, tapped) = engine.forward_host(&model, &batch, &tap_ids)?;
    input::write_npy(output, &logits.shape, &logits.data)?;
    println!("wrote {} {:?}", output.display(), logits.shape);
    for (name, t) in taps.iter().zip(&tapped) {
        let path = tap_path(output, name);
        input::write_npy(&path, &t.shape, &t.data)?;
        println!("wrote {} {:?}", path.display(), t.shape);
    }
    Ok(())
}

/// `OUT.npy` + layer `/a/b:0` → `OUT._a_b_0.npy`: layer names become safe file names.
fn tap_path(output: &Path, layer: &str) -> PathBuf {
    let safe: String = layer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = output.with_extension("");
    PathBuf::from(format!("{}.{safe}.npy", stem.display()))
}

fn info(model_path: &Path, json: bool) -> Result<()> {
    let model = load_model(model_path)?;
    let g = &model.graph;
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for n in &g.nodes {
        let k = n.op.kind_name();
        match counts.iter_mut().find(|(name, _)| *name == k) {
            Some(c) => c.1 += 1,
            None => counts.push((k, 1)),
        }
    }
    let cam = g.cam_layer().map(|v| g.values[v].name.clone());
    let shape = |v: usize| {
        format!(
            "[N, {}]",
            g.values[v]
                .shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if json {
        let layers: Vec<serde_json::Value> = g
            .nodes
            .iter()
            .map(|n| serde_json::json!({"name": g.values[n.output].name, "op": n.op.kind_name(), "shape": g.values[n.output].shape, "node": n.name}))
            .collect();
        let out = serde_json::json!({
            "model": model.name,
            "input": {"name": g.values[g.input].name, "shape": g.values[g.input].shape},
            "output": {"name": g.values[g.output].name, "shape": g.values[g.output].shape},
            "parameters": g.param_count(),
            "ops": counts.iter().map(|(k, c)| (k.to_string(), *c)).collect::<std::collections::BTreeMap<_, _>>(),
            "cam_layer": cam,
            "layers": layers,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::internal(e.to_string()))?
        );
        return Ok(());
    }
    println!("model       {}", model.name);
    println!("input       {} {}", g.values[g.input].name, shape(g.input));
    println!(
        "output      {} {}",
        g.values[g.output].name,
        shape(g.output)
    );
    println!("parameters  {}", g.param_count());
    println!(
        "ops         {}",
        counts
            .iter()
            .map(|(k, c)| format!("{k} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "cam layer   {}",
        cam.as_deref()
            .unwrap_or("(none: no global average pooling)")
    );
    println!("layers:");
    for n in &g.nodes {
        println!(
            "  {:<18} {:<24} {}",
            n.op.kind_name(),
            shape(n.output),
            g.values[n.output].name
        );
    }
    Ok(())
}

fn adapters() -> Result<()> {
    let list = netlens::gpu::list_adapters();
    if list.is_empty() {
        println!("wgpu sees no adapter. Install a Vulkan driver (Debian/Ubuntu: apt-get install -y mesa-vulkan-drivers) or use --backend cpu.");
    }
    for a in list {
        println!(
            "{} [{}] {} driver: {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    Ok(())
}

fn bench_methods(repeat: usize, gpu: bool, json: Option<PathBuf>) -> Result<()> {
    let model = load_model(DEFAULT_MODEL)?;
    let (x, _) = load_images(
        Path::new(DEFAULT_MODEL),
        &model,
        &[PathBuf::from(DEFAULT_IMAGE)],
        None,
    )?;
    let rows = netlens::bench::bench_methods(DEFAULT_MODEL, &x, 285, repeat, gpu, |r| {
        eprintln!(
            "  {:<18} {:<48} {:>9.3} s/image",
            r.method, r.runner, r.seconds
        )
    })?;
    println!("{}", netlens::bench::methods_markdown(&rows));
    if let Some(path) = json {
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| Error::internal(e.to_string()))?;
        std::fs::write(&path, text)
            .map_err(|e| Error::bad_input(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

fn bench(
    model: &str,
    batches: &[usize],
    repeat: usize,
    gpu: bool,
    json: Option<PathBuf>,
) -> Result<()> {
    if batches.is_empty() || batches.contains(&0) {
        return Err(Error::bad_input("batch sizes must be positive"));
    }
    let report = netlens::bench::bench_forward(model, batches, repeat, gpu, |r| {
        eprintln!(
            "  {:<40} batch {:>3}: {:>8.1} ms  {:>8.1} images/s",
            r.runner, r.batch, r.median_ms, r.images_per_s
        )
    })?;
    println!("{}", netlens::bench::markdown(&report));
    if let Some(path) = json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Error::internal(e.to_string()))?;
        std::fs::write(&path, text)
            .map_err(|e| Error::bad_input(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}
