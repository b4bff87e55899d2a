//! `netlens evaluate`: how faithful each method's map is, by the metrics of
//! `netlens::methods::metrics` (deletion / insertion AUC, Average Drop / Increase in
//! Confidence): a method × metric table on stdout, `summary.json` (every curve's points
//! included) and each curve as a PNG plot in the output folder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use netlens::cpu::CpuBackend;
use netlens::engine::{top_k, Engine};
use netlens::error::{Error, ErrorKind, Result};
use netlens::input::{self, Preprocess};
use netlens::methods::attribution::Target;
use netlens::methods::metrics;
use netlens::methods::metrics::causal::{Baseline, Causal, CurveKind};
use netlens::methods::metrics::confidence::confidence_change;
use netlens::methods::registry::{self, Context};
use netlens::methods::Score;
use netlens::model::import::load_model;
use netlens::{Backend, HostTensor, Model};
use serde_json::json;

#[derive(Args)]
pub struct EvaluateArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// The image (PNG or JPEG).
    pub image: Option<PathBuf>,
    /// A ready float32 [1, C, H, W] tensor instead of an image.
    #[arg(long)]
    pub input_npy: Option<PathBuf>,
    /// Methods to evaluate (registry names, comma-separated), each with its report preset, or
    /// `all` for every method the report shows.
    #[arg(long, default_value = "gradcam,saliency,ig")]
    pub methods: String,
    /// Metrics (comma-separated): deletion, insertion (AUC of the curves, Petsiuk et al. 2018),
    /// average-drop, increase (pytorch-grad-cam's DropInConfidence / IncreaseInConfidence).
    #[arg(long, default_value = "deletion,insertion,average-drop,increase")]
    pub metrics: String,
    /// Class to evaluate (default: the top prediction).
    #[arg(long)]
    pub class: Option<usize>,
    /// Deletion / insertion: steps per curve (a curve has steps + 1 points).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Deletion / insertion: what removed pixels show: zero, mean (the image's channel means),
    /// blur or blur:SIGMA (the image under a Gaussian blur, sigma 1 pixel by default) or a
    /// number.
    #[arg(long, default_value = "zero")]
    pub baseline: String,
    /// The metrics' score of the class: prob (softmax, as RISE) or logit.
    #[arg(long, default_value = "prob")]
    pub score: String,
    /// Perturbed images per forward; default from the adapter's limits.
    #[arg(long)]
    pub mini_batch: Option<usize>,
    /// Folder for summary.json and the curve plots.
    #[arg(short = 'o', long, default_value = "netlens-evaluate")]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: crate::Common,
}

/// The parsed request, checked before anything runs.
struct Plan<'a> {
    args: &'a EvaluateArgs,
    methods: Vec<&'static str>,
    metrics: Vec<&'static str>,
    causal: Causal,
    score: Score,
    model: Model,
    x: HostTensor,
    pre: Preprocess,
}

pub fn run(args: &EvaluateArgs) -> Result<()> {
    let metrics = metrics::parse_names(&args.metrics)?;
    let methods = method_names(&args.methods)?;
    let score = Score::parse(&args.score)?;
    let causal = Causal {
        steps: args.steps,
        baseline: Baseline::parse(&args.baseline)?,
        score,
        mini_batch: args.mini_batch,
    };
    if !(1..=metrics::causal::MAX_STEPS).contains(&args.steps) {
        return Err(Error::bad_input(format!(
            "--steps must be 1 to {}",
            metrics::causal::MAX_STEPS
        )));
    }
    if args.mini_batch == Some(0) {
        return Err(Error::bad_input("--mini-batch must be positive"));
    }
    let engine = crate::engine(&args.common)?;
    let model = load_model(&args.model)?;
    let (pre, _) = crate::preprocessing(&args.model, &model, args.common.preprocess.as_deref())?;
    let x = match (&args.image, &args.input_npy) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_input(
                "give either an image or --input-npy, not both",
            ))
        }
        (None, None) => return Err(Error::bad_input("give an image or --input-npy FILE")),
        (Some(img), None) => crate::image_input(img, &pre, model.input_shape())?,
        (None, Some(npy)) => input::load_input_npy(npy, model.input_shape())?,
    };
    if x.shape.len() != 4 || x.batch() != 1 {
        return Err(Error::bad_input(format!(
            "evaluate takes one image [1, C, H, W]; the input is {:?}",
            x.shape
        )));
    }
    let plan = Plan {
        args,
        methods,
        metrics,
        causal,
        score,
        model,
        x,
        pre,
    };
    match &engine {
        Engine::Gpu(g) => plan.on(g.as_ref(), &engine.name()),
        Engine::Cpu(c) => plan.on(c, &engine.name()),
    }
}

/// The `--methods` list: registry names, or `all` for the report's methods.
fn method_names(list: &str) -> Result<Vec<&'static str>> {
    let all = registry::methods::<CpuBackend>();
    if list.trim() == "all" {
        return Ok(all.iter().filter(|e| e.in_report).map(|e| e.name).collect());
    }
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match all.iter().find(|e| e.name == name) {
            Some(e) if !out.contains(&e.name) => out.push(e.name),
            Some(_) => {}
            None => {
                let known: Vec<&str> = all.iter().map(|e| e.name).collect();
                return Err(Error::bad_input(format!(
                    "unknown method '{name}': use all or {}",
                    known.join(", ")
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::bad_input("no method given"));
    }
    Ok(out)
}

/// One method's row: its metric values (`None` where not asked) and its JSON.
struct Row {
    method: &'static str,
    values: Vec<Option<f64>>,
    json: serde_json::Value,
}

impl Plan<'_> {
    fn on<B: Backend>(&self, b: &B, backend: &str) -> Result<()> {
        let started = Instant::now();
        let dir = &self.args.output;
        crate::create_out_dir(dir)?;
        let class = match self.args.class {
            Some(c) => c,
            None => {
                let out = b.forward(&self.model, &b.upload(&self.x)?, &[])?.output;
                top_k(&b.read(&out)?.data, 1)[0]
            }
        };
        let kinds: Vec<CurveKind> = [CurveKind::Deletion, CurveKind::Insertion]
            .into_iter()
            .filter(|k| self.metrics.contains(&k.name()))
            .collect();
        let k = self.model.num_classes();
        if class >= k {
            return Err(Error::bad_input(format!(
                "class {class} is out of range: the model has {k} classes (0..{})",
                k - 1
            )));
        }
        // A method that cannot run on this model (no CAM layer, ...) is skipped with a note, so
        // `--methods all` evaluates the rest; only when none runs is it the command's error.
        let mut rows = Vec::new();
        let mut first_error = None;
        for &name in &self.methods {
            match self.method_row(b, name, class, &kinds, dir) {
                Ok(row) => rows.push(row),
                Err(e) if e.kind == ErrorKind::BadInput => {
                    if !self.args.common.quiet {
                        eprintln!("netlens: note: skipping {name}: {e}");
                    }
                    rows.push(Row {
                        method: name,
                        values: vec![None; self.metrics.len()],
                        json: json!({"method": name, "skipped": e.message}),
                    });
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        if let (true, Some(e)) = (
            rows.iter().all(|r| r.values.iter().all(Option::is_none)),
            first_error,
        ) {
            return Err(e);
        }
        let seconds = started.elapsed().as_secs_f64();
        let best: serde_json::Map<String, serde_json::Value> = self
            .metrics
            .iter()
            .enumerate()
            .map(|(j, m)| (m.to_string(), json!(best_rows(&rows, j, m))))
            .collect();
        let summary = json!({
            "command": "evaluate",
            "model": self.model.name,
            "backend": backend,
            "class": class,
            "parameters": {
                "metrics": self.metrics,
                "steps": self.causal.steps,
                "baseline": self.args.baseline,
                "score": self.args.score,
                "mini_batch": self.args.mini_batch,
            },
            "seconds": seconds,
            "results": rows.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
            "best": best,
        });
        crate::finish(dir, &summary, self.args.common.json, || {
            table(&self.metrics, &rows, class, backend, seconds, dir)
        })
    }

    /// Runs one registry method (its report preset) and every requested metric on its map.
    fn method_row<B: Backend>(
        &self,
        b: &B,
        name: &'static str,
        class: usize,
        kinds: &[CurveKind],
        dir: &Path,
    ) -> Result<Row> {
        let started = Instant::now();
        let entry = registry::find::<B>(name)
            .ok_or_else(|| Error::internal(format!("no registry method '{name}'")))?;
        let preset = entry.presets[0];
        let options = entry.options_from(preset.args)?;
        let ctx = Context {
            image: &self.x,
            preprocess: Some(&self.pre),
            score: Score::Logit,
        };
        let a = options
            .build(&ctx)?
            .attribute_batch(b, &self.model, &self.x, &Target::Class(class))?
            .read(b)?;
        let map = HostTensor::new(a.maps.shape[1..].to_vec(), a.maps.sample(0).to_vec())?;
        let mut metrics = serde_json::Map::new();
        let mut values = vec![None; self.metrics.len()];
        let mut set = |metric: &str, value: f64, entry: serde_json::Value| {
            if let Some(j) = self.metrics.iter().position(|m| *m == metric) {
                values[j] = Some(value);
                metrics.insert(metric.to_string(), entry);
            }
        };
        let progress = self.args.common.progress();
        let curves =
            self.causal
                .curves(b, &self.model, &self.x, &map, Some(class), kinds, &progress)?;
        for c in &curves {
            let file = format!("{name}_{}.png", c.kind.name());
            let title = format!("{} {} AUC {:.3}", name, c.kind.name(), c.auc);
            netlens::viz::curve::curve_png(&dir.join(&file), &c.fractions, &c.scores, &title)?;
            set(
                c.kind.name(),
                c.auc,
                json!({"auc": c.auc, "plot": file, "fractions": c.fractions, "scores": c.scores}),
            );
        }
        if self
            .metrics
            .iter()
            .any(|m| *m == "average-drop" || *m == "increase")
        {
            let c = confidence_change(b, &self.model, &self.x, &map, Some(class), self.score)?;
            let detail = |v: f32| json!({"value": v, "before": c.before, "after": c.after});
            set("average-drop", c.drop as f64, detail(c.drop));
            set("increase", c.increase as f64, detail(c.increase));
        }
        Ok(Row {
            method: name,
            values,
            json: json!({
                "method": name,
                "title": preset.title,
                "seconds": started.elapsed().as_secs_f64(),
                "metrics": metrics,
            }),
        })
    }
}

/// Whether a higher value is better for `metric`.
fn higher_is_better(metric: &str) -> bool {
    matches!(metric, "insertion" | "increase")
}

/// The best value in column `j`, if any row has one: the rows holding it are marked.
fn best_value(rows: &[Row], j: usize, metric: &str) -> Option<f64> {
    let values = rows
        .iter()
        .filter_map(|r| r.values[j].filter(|v| v.is_finite()));
    if higher_is_better(metric) {
        values.reduce(f64::max)
    } else {
        values.reduce(f64::min)
    }
}

/// The methods holding column `j`'s best value.
fn best_rows(rows: &[Row], j: usize, metric: &str) -> Vec<&'static str> {
    let best = best_value(rows, j, metric);
    rows.iter()
        .filter(|r| best.is_some() && r.values[j] == best)
        .map(|r| r.method)
        .collect()
}

/// The method × metric table, the best of each column marked with `*`.
fn table(
    metrics: &[&str],
    rows: &[Row],
    class: usize,
    backend: &str,
    seconds: f64,
    dir: &Path,
) -> String {
    let width = rows
        .iter()
        .map(|r| r.method.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut s = format!("{:<width$}", "method");
    for m in metrics {
        let arrow = if higher_is_better(m) { "↑" } else { "↓" };
        s += &format!("  {:>14}", format!("{m} {arrow}"));
    }
    s.push('\n');
    let best: Vec<Option<f64>> = metrics
        .iter()
        .enumerate()
        .map(|(j, m)| best_value(rows, j, m))
        .collect();
    for r in rows {
        s += &format!("{:<width$}", r.method);
        for (j, v) in r.values.iter().enumerate() {
            let mark = if v.is_some() && *v == best[j] {
                "*"
            } else {
                " "
            };
            let cell = v.map_or("-".to_string(), |v| format!("{v:.4}{mark}"));
            s += &format!("  {cell:>14}");
        }
        s.push('\n');
    }
    s + &format!(
        "class {class} on {backend} in {seconds:.2} s (* best per column); wrote {}",
        dir.display()
    )
}
