//! The `netlens` command line.

// Every write to stdout goes through `emit` (the `outln!` and `out!` macros): `println!` panics
// when the reader has gone away (`netlens info MODEL | head -1`) or the disk is full.
#![deny(clippy::print_stdout)]

/// `println!` through [`emit`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`emit`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::emit(format_args!($($arg)*))
    };
}

mod bench;
mod deepdream;
mod evaluate;
mod explain;
mod global;
mod method;
mod tsne;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use netlens::engine::{softmax_rows, top_k, BackendChoice, Engine};
use netlens::error::{Error, ErrorKind, Result};
use netlens::input::{self, Preprocess, Sidecar};
use netlens::methods::finite::{self, NonFinite};
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
        #[command(flatten)]
        script: Script,
    },
    /// Top-K labels and probabilities for each image. With no arguments: MobileNetV2 on the cat photo.
    Classify {
        /// The ONNX model (default: the shipped MobileNetV2).
        model: Option<PathBuf>,
        /// Images (PNG or JPEG).
        images: Vec<PathBuf>,
        #[arg(long, value_parser = at_least_one(), default_value_t = 5)]
        top: usize,
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
    /// A layer's activations on one image (MATLAB activations): channel montage, strongest channel, stats.
    Activations(global::ActivationsArgs),
    /// Maximal and minimal activating images of each class over a folder of images.
    Extremes(global::ExtremesArgs),
    /// Deep dream (MATLAB deepDreamImage): images maximising layer channels or class logits.
    Deepdream(deepdream::DreamArgs),

    /// List the GPU adapters wgpu sees.
    Adapters(Script),
    /// Every method on the GPU and the CPU backend after a warm-up: medians, speed-up,
    /// submissions per call; `--json FILE` and `--markdown FILE` for the README table.
    Bench(bench::BenchArgs),
    /// One self-contained HTML report: the top-5 predictions and every local method's map for
    /// the top class. With no arguments: MobileNetV2 on the cat photo. Also what a bare
    /// `netlens` runs.
    Explain(explain::ExplainArgs),
    /// Faithfulness metrics of methods' maps on one image (deletion / insertion AUC, Average
    /// Drop / Increase in Confidence): a method × metric table, summary.json and curve plots.
    Evaluate(evaluate::EvaluateArgs),
    /// t-SNE of a feature matrix (exact on the GPU, or Barnes-Hut on the CPU), with a scatter PNG.
    Tsne(tsne::TsneArgs),
}

/// Output switches of the commands that take no backend.
#[derive(Args)]
pub(crate) struct Script {
    /// Print JSON on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Print only the result.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct Common {
    /// gpu, cpu or auto (default: $NETLENS_BACKEND, else auto).
    #[arg(long)]
    backend: Option<String>,
    /// Preprocessing preset overriding the model's sidecar: imagenet, tf, unit.
    #[arg(long)]
    preprocess: Option<String>,
    /// No progress bars and no notes on stderr; errors are still reported (bars are also
    /// hidden when stdout is not a terminal).
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    /// Print the result as one JSON document on stdout instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Memory the run may use, e.g. 4G or 512M (default: half of MemAvailable); larger work is
    /// chunked to fit, and what cannot be chunked is refused with exit 2.
    #[arg(long, value_name = "SIZE")]
    pub(crate) max_memory: Option<String>,
}

impl Common {
    /// The progress bar for this command: hidden with --quiet or when stdout is not a terminal.
    pub(crate) fn progress(&self) -> netlens::progress::Bar {
        netlens::progress::Bar::new(self.quiet)
    }
}

/// Counts such as `--top` that mean nothing at 0 (`--top 0` was silently 1): clap refuses 0 with
/// exit 2 and says the range.
pub(crate) fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

fn main() -> ExitCode {
    // Before any thread exists: it may set an environment variable.
    netlens::gpu::quiet_headless_device_probe();
    // The method subcommands come from the method registry, each with its own options.
    let matches = Cli::command()
        .subcommands(method::subcommands())
        .get_matches();
    if let Some((name, sub)) = matches.subcommand() {
        if method::is_method(name) {
            return exit_code(method::run(name, sub));
        }
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // A bare `netlens` is `netlens explain` with its defaults.
    let command = match cli.command {
        Some(c) => c,
        None => match Cli::parse_from(["netlens", "explain"]).command {
            Some(c) => c,
            None => unreachable!("explain parses to a command"),
        },
    };
    let result = match command {
        Command::Info { model, script } => info(&model, script.json),
        Command::Classify {
            model,
            images,
            top,
            common,
        } => classify(model, images, top, &common),
        Command::Run {
            model,
            image,
            input_npy,
            output,
            taps,
            common,
        } => run(&model, image, input_npy, &output, &taps, &common),
        Command::Adapters(script) => adapters(&script),
        Command::Bench(args) => bench::bench(&args),
        Command::Explain(args) => explain::explain(&args),
        Command::Tsne(a) => tsne::run(&a),
        Command::Evaluate(a) => evaluate::run(&a),
        Command::Activations(a) => global::run_activations(&a),
        Command::Extremes(a) => global::run_extremes(&a),
        Command::Deepdream(a) => engine(&a.common).and_then(|e| deepdream::run(&a, &e)),
    };
    exit_code(result)
}

/// The process's exit status for a command's result: 2 for bad input, 1 for device, output
/// (a full disk, an unwritable folder) and internal errors, reported on stderr.
fn exit_code(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netlens: error: {e}");
            ExitCode::from(match e.kind {
                ErrorKind::BadInput => 2,
                ErrorKind::Device | ErrorKind::Output | ErrorKind::Internal => 1,
            })
        }
    }
}

/// Writes to stdout: the command line's one way to print. A reader that has gone away (a closed
/// pipe, as in `netlens info MODEL | head -1`) ends the program quietly with exit 0, as `head`
/// users expect; any other failure (a full disk) ends it with exit 1 and the reason, never a
/// panic.
pub(crate) fn emit(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("netlens: error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Creates the output folder `dir` (and its parents); a failure is an output error (exit 1)
/// naming the folder and the reason.
pub(crate) fn create_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::output(format!("cannot create {}: {e}", dir.display())))
}

/// Ends a command that writes to `dir`: saves `summary` as `dir/summary.json`, then prints it as
/// the command's one JSON document with --json, or else the human-readable `text`.
pub(crate) fn finish(
    dir: &Path,
    summary: &serde_json::Value,
    json: bool,
    text: impl FnOnce() -> String,
) -> Result<()> {
    finish_named(dir, None, summary, json, text)
}

/// [`finish`] for a run that also keeps its own summary under `dir/<own>`
/// (`summary_<method>_<classes>.json`), so that runs of other methods or classes into the same
/// folder, concurrent ones included, do not overwrite it; `summary.json` is then the latest
/// run's. Both are written atomically: a reader never sees half of one.
pub(crate) fn finish_named(
    dir: &Path,
    own: Option<&str>,
    summary: &serde_json::Value,
    json: bool,
    text: impl FnOnce() -> String,
) -> Result<()> {
    let pretty =
        serde_json::to_string_pretty(summary).map_err(|e| Error::internal(e.to_string()))?;
    if let Some(own) = own {
        netlens::atomic::write_bytes(dir.join(own), pretty.as_bytes())?;
    }
    netlens::atomic::write_bytes(dir.join("summary.json"), pretty.as_bytes())?;
    outln!("{}", if json { pretty } else { text() });
    Ok(())
}

/// Warns on stderr about each non-finite value the model produced (an overflow inside it: the
/// input was checked), and returns them as the summary's `non_finite` list. The results are
/// still written as computed; the warning says they hold NaN or ±Inf.
pub(crate) fn warn_non_finite(found: &[NonFinite]) -> serde_json::Value {
    for n in found {
        eprintln!("netlens: warning: {n} (an overflow inside the model; written as computed)");
    }
    serde_json::json!(found)
}

pub(crate) fn engine(common: &Common) -> Result<Engine> {
    let quiet = common.quiet;
    let budget = netlens::backend::Budget::resolve(common.max_memory.as_deref())?;
    let mut engine = Engine::select(
        BackendChoice::resolve(common.backend.as_deref())?,
        &mut |m| {
            if !quiet {
                eprintln!("netlens: {m}");
            }
        },
    )?;
    engine.set_budget(budget);
    Ok(engine)
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
        .map(|p| image_input(p, &pre, model.input_shape()))
        .collect::<Result<Vec<_>>>()?;
    Ok((input::batch(tensors)?, labels))
}

/// An image as model input, refused (exit 2, naming the first position) when preprocessing made
/// a value non-finite: an 8-bit pixel is always finite, but a sidecar's tiny `std` can divide it
/// past f32's range.
pub(crate) fn image_input(path: &Path, pre: &Preprocess, shape: &[usize]) -> Result<HostTensor> {
    let x = input::image_tensor(path, pre, shape)?;
    input::check_finite(&x)
        .map_err(|e| e.context(format!("{} after preprocessing", path.display())))?;
    Ok(x)
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
    // Sample i is image i.
    let non_finite = warn_non_finite(&finite::scan_samples("logits", &logits));
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
    if common.json {
        let out = serde_json::json!({"model": model.name, "backend": engine.name(),
            "results": results, "non_finite": non_finite});
        outln!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::internal(e.to_string()))?
        );
        return Ok(());
    }
    outln!("model {} on {}", model.name, engine.name());
    for r in &results {
        outln!("{}", r["image"].as_str().unwrap_or(""));
        for t in r["top"].as_array().into_iter().flatten() {
            outln!(
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
    let mut written = vec![serde_json::json!({"path": output, "shape": logits.shape})];
    let mut found: Vec<NonFinite> = finite::scan_tensor("logits", &logits).into_iter().collect();
    for (name, t) in taps.iter().zip(&tapped) {
        let path = tap_path(output, name);
        input::write_npy(&path, &t.shape, &t.data)?;
        written.push(serde_json::json!({"layer": name, "path": path, "shape": t.shape}));
        found.extend(finite::scan_tensor(name, t));
    }
    let non_finite = warn_non_finite(&found);
    if common.json {
        let out = serde_json::json!({"model": model.name, "backend": engine.name(),
            "written": written, "non_finite": non_finite});
        outln!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::internal(e.to_string()))?
        );
    } else {
        for w in &written {
            outln!("wrote {} {}", w["path"].as_str().unwrap_or(""), w["shape"]);
        }
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
        outln!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::internal(e.to_string()))?
        );
        return Ok(());
    }
    outln!("model       {}", model.name);
    outln!("input       {} {}", g.values[g.input].name, shape(g.input));
    outln!(
        "output      {} {}",
        g.values[g.output].name,
        shape(g.output)
    );
    outln!("parameters  {}", g.param_count());
    outln!(
        "ops         {}",
        counts
            .iter()
            .map(|(k, c)| format!("{k} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    outln!(
        "cam layer   {}",
        cam.as_deref()
            .unwrap_or("(none: no global average pooling)")
    );
    outln!("layers:");
    for n in &g.nodes {
        outln!(
            "  {:<18} {:<24} {}",
            n.op.kind_name(),
            shape(n.output),
            g.values[n.output].name
        );
    }
    Ok(())
}

fn adapters(script: &Script) -> Result<()> {
    let list = netlens::gpu::list_adapters();
    if script.json {
        let out: Vec<serde_json::Value> = list
            .iter()
            .map(|a| serde_json::json!({"name": a.name, "backend": a.backend, "device_type": a.device_type, "driver": a.driver}))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::internal(e.to_string()))?
        );
        return Ok(());
    }
    if list.is_empty() && !script.quiet {
        outln!("wgpu sees no adapter. Install a Vulkan driver (Debian/Ubuntu: apt-get install -y mesa-vulkan-drivers) or use --backend cpu.");
    }
    for a in list {
        outln!(
            "{} [{}] {} driver: {}",
            a.name,
            a.backend,
            a.device_type,
            a.driver
        );
    }
    Ok(())
}
