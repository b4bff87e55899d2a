//! The bench harness: every method, timed on the GPU backend and the CPU backend after a warm-up,
//! with GPU submission counts and, where one exists, a peer implementation (tract's optimized
//! plan for the forward). `netlens bench` and `cargo bench` both call [`run`].
//!
//! A method is one [`Entry`] in [`entries`]: a name, its parameters, and one body per backend.
//! Every preset of every method of the [`registry`] is an entry, with
//! the report's [`Settings`] as its options; the entries beside them (the forward, the strongest
//! channel, deep dream, t-SNE) are written with the `entry!` macro, which compiles one body once
//! per backend.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use crate::backend::{Backend, HostTensor};
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::gpu::{GpuBackend, GpuOptions};
use crate::methods::attribution::Target as Classes;
use crate::methods::deepdream::{DeepDream, Target};
use crate::methods::registry::{self, Context, MethodEntry, Preset};
use crate::methods::tsne::{gaussian_clusters, tsne, Algorithm, Tsne, TsneExact};
use crate::methods::{repeat, Score};
use crate::model::import::{load_model, load_model_with_input};
use crate::model::Model;
use crate::progress::Silent;
use crate::report::Settings;

/// What every entry gets to run on.
pub struct Ctx<'a> {
    /// The imported model every entry runs.
    pub model: &'a Model,
    /// The ONNX file it came from, for entries that re-import it (other input sizes, tract peers).
    pub model_path: &'a Path,
    /// One preprocessed image `[1, C, H, W]`.
    pub image: &'a HostTensor,
    /// The image repeated to the forward batch, `[batch, C, H, W]`.
    pub batch: &'a HostTensor,
    /// The explained class.
    pub class: usize,
    /// Method parameters, the same as `netlens explain` uses.
    pub settings: &'a Settings,
}

/// One call of a method on a backend; the harness times it.
pub type Run<B> = Box<dyn Fn(&B, &Ctx<'_>) -> Result<()>>;

/// Prepares a peer implementation once (untimed) and returns the call to time.
pub type Peer = fn(&Ctx<'_>) -> Result<Box<dyn FnMut() -> Result<()>>>;

/// One benched method.
pub struct Entry {
    /// The name `--methods` selects it by (the CLI subcommand's name where there is one).
    pub name: &'static str,
    /// Its key parameters, for the table.
    pub params: String,
    /// The body compiled for the GPU backend.
    pub gpu: Run<GpuBackend>,
    /// The same body compiled for the CPU backend.
    pub cpu: Run<CpuBackend>,
    /// A peer implementation and its name.
    pub peer: Option<(&'static str, Peer)>,
}

/// `entry!(name, params, |b, c| body)`: `body` is compiled once for each backend, with `b` the
/// backend and `c` the [`Ctx`].
macro_rules! entry {
    ($name:expr, $params:expr, |$b:ident, $c:ident| $body:expr) => {
        Entry {
            name: $name,
            params: $params,
            gpu: {
                fn run($b: &GpuBackend, $c: &Ctx<'_>) -> Result<()> {
                    $body
                }
                Box::new(run)
            },
            cpu: {
                fn run($b: &CpuBackend, $c: &Ctx<'_>) -> Result<()> {
                    $body
                }
                Box::new(run)
            },
            peer: None,
        }
    };
}

/// Every method the bench knows, in table order, with `settings`' parameters: the forward and
/// the strongest channel, every registry method, deep dream and t-SNE.
pub fn entries(settings: &Settings) -> Vec<Entry> {
    let mut all = vec![
        Entry {
            peer: Some(("tract (optimized plan)", tract_peer)),
            ..entry!("forward", "batch from --batch".into(), |b, c| {
                let f = b.forward(c.model, &b.upload(c.batch)?, &[])?;
                b.read(&f.output).map(drop)
            })
        },
        entry!(
            "channel",
            "strongest channel of the CAM layer".into(),
            |b, c| crate::report::strongest_channel(b, c.model, c.image).map(drop)
        ),
    ];
    all.extend(method_entries(settings));
    all.extend(metric_entries());
    all.push(entry!(
        "deepdream",
        "8 channels of the CAM layer, one batch; 3 levels × 10 iterations".into(),
        |b, c| dream_eight_channels(b, c)
    ));
    all.push(entry!(
        "tsne",
        format!(
            "exact, {TSNE_POINTS} Gaussian-cluster points in 50-D, {TSNE_ITERATIONS} iterations"
        ),
        |b, _c| tsne_clusters(b)
    ));
    all
}

/// The options the bench gives preset `preset` of `entry`: the report's settings, except that
/// LIME runs MATLAB's imageLIME defaults with the grid segmentation the peers are timed on.
fn bench_args(entry: &str, preset: &Preset, settings: &Settings) -> Vec<String> {
    let mut args: Vec<String> = preset.args.iter().map(|a| a.to_string()).collect();
    match entry {
        "lime" => args.extend(["--segmentation".to_string(), "grid".to_string()]),
        _ => args.extend(settings.overrides(entry)),
    }
    args
}

/// One timed call of a registry method: options, method object, attribution, read-back.
fn method_call<B: Backend + 'static>(entry: MethodEntry<B>, args: Vec<String>) -> Run<B> {
    Box::new(move |b: &B, c: &Ctx<'_>| {
        let options = entry.options_from(&args)?;
        let ctx = Context {
            image: c.image,
            preprocess: None,
            score: Score::Logit,
        };
        options
            .build(&ctx)?
            .attribute_batch(b, c.model, c.image, &Classes::Class(c.class))?
            .read(b)
            .map(drop)
    })
}

/// Every preset of every registry method, in the registry's order.
fn method_entries(settings: &Settings) -> Vec<Entry> {
    let gpu_entries = registry::methods::<GpuBackend>();
    let cpu_entries = registry::methods::<CpuBackend>();
    let mut entries = Vec::new();
    for (g, c) in gpu_entries.into_iter().zip(cpu_entries) {
        for preset in &g.presets {
            let args = bench_args(g.name, preset, settings);
            let params = match g.options_from(&args) {
                Ok(o) => o.summary(),
                Err(e) => e.to_string(),
            };
            entries.push(Entry {
                name: preset.name,
                params,
                gpu: method_call(g.clone(), args.clone()),
                cpu: method_call(c.clone(), args),
                peer: None,
            });
        }
    }
    entries
}

/// The faithfulness metrics of `netlens evaluate` on one map (the image's own channel sum, so
/// the row is the metric's cost alone, not a method's), with their defaults.
fn metric_entries() -> Vec<Entry> {
    use crate::methods::metrics::causal::{Causal, CurveKind};
    use crate::methods::metrics::confidence::confidence_change;
    use crate::methods::metrics::infidelity::Infidelity;
    vec![
        entry!(
            "deletion-insertion",
            "both curves of one map, 100 steps (2 × 101 perturbed forwards), zero baseline".into(),
            |b, c| {
                let kinds = [CurveKind::Deletion, CurveKind::Insertion];
                Causal::default()
                    .curves(b, c.model, c.image, c.image, Some(c.class), &kinds, &Silent)
                    .map(drop)
            }
        ),
        entry!(
            "average-drop",
            "Average Drop / Increase in Confidence of one map".into(),
            |b, c| {
                let score = Score::Probability;
                confidence_change(b, c.model, c.image, c.image, Some(c.class), score).map(drop)
            }
        ),
        entry!(
            "infidelity",
            "10 Gaussian perturbations of one map, σ = 0.1".into(),
            |b, c| {
                Infidelity::default()
                    .evaluate(b, c.model, c.image, c.image, Some(c.class))
                    .map(drop)
            }
        ),
    ]
}

fn dream_eight_channels<B: Backend>(b: &B, c: &Ctx<'_>) -> Result<()> {
    let layer = c
        .model
        .graph
        .cam_layer()
        .ok_or_else(|| Error::bad_input("deep dream bench: the model has no CAM layer"))?;
    let channels = c.model.graph.values[layer].shape[0].min(8);
    let target = Target::Channels {
        layer: c.model.graph.values[layer].name.clone(),
        channels: (0..channels).collect(),
    };
    let input = c.model.input_shape().to_vec();
    let at_size = |h: usize, w: usize| load_model_with_input(c.model_path, [input[0], h, w]);
    DeepDream::default()
        .attribute(b, c.model, &at_size, &target)
        .map(drop)
}

const TSNE_POINTS: usize = 1000;
const TSNE_ITERATIONS: usize = 250;

/// Exact t-SNE runs on the GPU backend's device, or on the CPU: the same O(N²) algorithm.
fn tsne_clusters<B: Backend + TsneExact>(backend: &B) -> Result<()> {
    let (x, _) = gaussian_clusters(TSNE_POINTS, 50, 10, 0);
    let opts = Tsne {
        iterations: TSNE_ITERATIONS,
        algorithm: Algorithm::Exact,
        ..Tsne::default()
    };
    tsne(&x, &opts, backend, &Silent).map(drop)
}

fn tract_peer(c: &Ctx<'_>) -> Result<Box<dyn FnMut() -> Result<()>>> {
    let err = |e: TractError| Error::internal(format!("tract: {e}"));
    let plan = tract_onnx::onnx()
        .model_for_path(c.model_path)
        .and_then(|m| m.with_input_fact(0, f32::fact(c.batch.shape.clone()).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(err)?;
    let input: TValue = Tensor::from_shape(&c.batch.shape, &c.batch.data)
        .map_err(err)?
        .into();
    Ok(Box::new(move || {
        plan.run(tvec!(input.clone())).map(drop).map_err(err)
    }))
}

/// What to bench.
#[derive(Clone, Debug)]
pub struct Options {
    /// Entry names; empty: all.
    pub methods: Vec<String>,
    /// Timed calls per method and backend; the median is reported.
    pub repeat: usize,
    /// Untimed calls first (pipeline compilation, buffer pools, caches).
    pub warmup: usize,
    /// Time the GPU backend (creating it fails the run if no adapter is found).
    pub gpu: bool,
    /// Time the CPU backend.
    pub cpu: bool,
    /// The forward entry's batch size.
    pub batch: usize,
    /// The explained class; `None`: the top prediction.
    pub class: Option<usize>,
    /// Method parameters, the same as `netlens explain` takes.
    pub settings: Settings,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            methods: Vec::new(),
            repeat: 3,
            warmup: 1,
            gpu: true,
            cpu: true,
            batch: 1,
            class: None,
            settings: Settings::default(),
        }
    }
}

/// The GPU adapter that ran the GPU column.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Adapter {
    /// The adapter's name as the driver reports it.
    pub name: String,
    /// The wgpu backend (Vulkan, Metal, Dx12, Gl) in `Debug` form.
    pub backend: String,
    /// Discrete, integrated, virtual, CPU or other, in `Debug` form.
    pub device_type: String,
    /// Driver name and version info, joined by a space (may be empty).
    pub driver: String,
}

/// One method's timings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// The entry's name.
    pub method: String,
    /// Its key parameters (for the forward entry, the batch size).
    pub params: String,
    /// Median seconds per call on the GPU backend; `None` when it was not benched.
    pub gpu_median_s: Option<f64>,
    /// Median seconds per call on the CPU backend; `None` when it was not benched.
    pub cpu_median_s: Option<f64>,
    /// CPU median / GPU median: above 1 the GPU backend is faster.
    pub speedup: Option<f64>,
    /// Queue submissions per call on the GPU, read-backs included.
    pub gpu_submissions_per_call: Option<f64>,
    /// Read-backs to the host per call on the GPU.
    pub gpu_readbacks_per_call: Option<f64>,
    /// Compute dispatches per call on the GPU.
    pub gpu_dispatches_per_call: Option<f64>,
    /// Name of the peer implementation, if the entry has one.
    pub peer: Option<String>,
    /// Median seconds per call of the peer.
    pub peer_median_s: Option<f64>,
    /// Every timed call, in seconds.
    pub gpu_runs_s: Vec<f64>,
    /// Every timed CPU call, in seconds.
    pub cpu_runs_s: Vec<f64>,
    /// Every timed peer call, in seconds.
    pub peer_runs_s: Vec<f64>,
}

/// A whole bench run: the machine, the setting, one row per method.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BenchReport {
    /// The crate version that produced the report, so results stay comparable across releases.
    pub netlens_version: String,
    /// The model's display name (file stem).
    pub model: String,
    /// Path of the benched image, as given.
    pub image: String,
    /// The explained class (given, or the top prediction).
    pub class: usize,
    /// The forward entry's batch size.
    pub batch: usize,
    /// Untimed calls before timing, per method and backend.
    pub warmup: usize,
    /// Timed calls per method and backend.
    pub repeat: usize,
    /// The GPU adapter; `None` when the GPU was not benched.
    pub adapter: Option<Adapter>,
    /// `/proc/cpuinfo`'s "model name", else the architecture.
    pub cpu_model: String,
    /// Threads of the CPU backend (rayon's pool).
    pub threads: usize,
    /// One row per benched method, in entry order.
    pub rows: Vec<Row>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Calls `f` `warmup` times, then `repeat` times timed; returns the timed calls in seconds.
fn measure(warmup: usize, repeat: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    (0..repeat.max(1))
        .map(|_| {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

/// The CPU's model name from `/proc/cpuinfo`, else the architecture.
pub fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn adapter_of(g: &GpuBackend) -> Adapter {
    let info = g.adapter_info();
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    Adapter {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver,
    }
}

/// Benches the selected methods of `model_path` on `image_path`; `log` gets each row as soon as
/// it is measured.
pub fn run(
    model_path: &Path,
    image_path: &Path,
    options: &Options,
    log: &mut dyn FnMut(&Row),
) -> Result<BenchReport> {
    if options.batch == 0 {
        return Err(Error::bad_input("the batch size must be positive"));
    }
    if !options.gpu && !options.cpu {
        return Err(Error::bad_input(
            "nothing to bench: both backends are switched off",
        ));
    }
    let all = entries(&options.settings);
    for m in &options.methods {
        if !all.iter().any(|e| e.name == m) {
            return Err(Error::bad_input(format!(
                "unknown bench method '{m}'; known: {}",
                all.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let selected: Vec<&Entry> = all
        .iter()
        .filter(|e| options.methods.is_empty() || options.methods.iter().any(|m| m == e.name))
        .collect();

    let model = load_model(model_path)?;
    let (image, _, _) = crate::report::model_input(model_path, &model, image_path, None)?;
    let cpu = CpuBackend::new();
    let class = match options.class {
        Some(c) => {
            crate::methods::check_class(&model, c)?;
            c
        }
        None => {
            let (logits, _) = crate::engine::forward_host(&cpu, &model, &image, &[])?;
            crate::engine::top_k(&logits.data, 1)[0]
        }
    };
    let batch = repeat(&image, options.batch);
    let ctx = Ctx {
        model: &model,
        model_path,
        image: &image,
        batch: &batch,
        class,
        settings: &options.settings,
    };
    let gpu = if options.gpu {
        Some(GpuBackend::new(&GpuOptions::default())?)
    } else {
        None
    };

    let mut rows = Vec::new();
    for e in selected {
        let ctx_for = |name: &str| format!("{} on {name}", e.name);
        let mut row = Row {
            method: e.name.to_string(),
            params: if e.name == "forward" {
                format!("batch {}", options.batch)
            } else {
                e.params.clone()
            },
            gpu_median_s: None,
            cpu_median_s: None,
            speedup: None,
            gpu_submissions_per_call: None,
            gpu_readbacks_per_call: None,
            gpu_dispatches_per_call: None,
            peer: None,
            peer_median_s: None,
            gpu_runs_s: Vec::new(),
            cpu_runs_s: Vec::new(),
            peer_runs_s: Vec::new(),
        };
        if let Some(g) = &gpu {
            // Counted over the warm-up and the timed calls alike: the counts do not change once
            // pipelines exist, and every call records and submits the same work.
            let before = g.stats();
            let runs = measure(options.warmup, options.repeat, || (e.gpu)(g, &ctx))
                .map_err(|err| err.context(ctx_for("the GPU")))?;
            let after = g.stats();
            let calls = (options.warmup + runs.len()) as f64;
            row.gpu_submissions_per_call =
                Some((after.submissions - before.submissions) as f64 / calls);
            row.gpu_readbacks_per_call = Some((after.readbacks - before.readbacks) as f64 / calls);
            row.gpu_dispatches_per_call =
                Some((after.dispatches - before.dispatches) as f64 / calls);
            row.gpu_median_s = Some(median(&runs));
            row.gpu_runs_s = runs;
        }
        if options.cpu {
            let runs = measure(options.warmup, options.repeat, || (e.cpu)(&cpu, &ctx))
                .map_err(|err| err.context(ctx_for("the CPU")))?;
            row.cpu_median_s = Some(median(&runs));
            row.cpu_runs_s = runs;
        }
        if let Some((name, prepare)) = e.peer {
            let mut call = prepare(&ctx)?;
            let runs = measure(options.warmup, options.repeat, &mut call)?;
            row.peer = Some(name.to_string());
            row.peer_median_s = Some(median(&runs));
            row.peer_runs_s = runs;
        }
        if let (Some(g), Some(c)) = (row.gpu_median_s, row.cpu_median_s) {
            row.speedup = Some(c / g);
        }
        log(&row);
        rows.push(row);
    }
    Ok(BenchReport {
        netlens_version: env!("CARGO_PKG_VERSION").to_string(),
        model: model.name.clone(),
        image: image_path.display().to_string(),
        class,
        batch: options.batch,
        warmup: options.warmup,
        repeat: options.repeat.max(1),
        adapter: gpu.as_ref().map(adapter_of),
        cpu_model: cpu_model_name(),
        threads: rayon::current_num_threads(),
        rows,
    })
}

/// Seconds in a readable unit.
pub fn format_seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// The report as the README shows it: a line on the machine, then one table row per method.
pub fn markdown(r: &BenchReport) -> String {
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or(String::new(), f);
    let machine = match &r.adapter {
        Some(a) => format!(
            "GPU: {} ({}, {} device, driver {})",
            a.name, a.backend, a.device_type, a.driver
        ),
        None => "GPU: not run".to_string(),
    };
    let image = Path::new(&r.image)
        .file_name()
        .map_or(r.image.clone(), |n| n.to_string_lossy().into_owned());
    let mut s = format!(
        "{machine}; CPU: {}, {} threads. Model {} on {image}, class {}; median of {} calls after {} warm-up.\n\n",
        r.cpu_model, r.threads, r.model, r.class, r.repeat, r.warmup
    );
    s += "| method | parameters | GPU median | CPU median | speed-up (CPU/GPU) | GPU submissions/call | peer |\n";
    s += "|---|---|---:|---:|---:|---:|---|\n";
    for row in &r.rows {
        let peer = match (&row.peer, row.peer_median_s) {
            (Some(name), Some(t)) => format!("{name}: {}", format_seconds(t)),
            _ => String::new(),
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            row.method,
            row.params,
            opt(row.gpu_median_s, &format_seconds),
            opt(row.cpu_median_s, &format_seconds),
            opt(row.speedup, &|v| format!("{v:.2}×")),
            opt(row.gpu_submissions_per_call, &|v| format!("{v:.0}")),
            peer
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_unique() {
        let all = entries(&Settings::default());
        for (i, e) in all.iter().enumerate() {
            assert!(
                all[i + 1..].iter().all(|o| o.name != e.name),
                "{} twice",
                e.name
            );
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 4.0);
        assert!(median(&[]).is_nan());
    }
}
