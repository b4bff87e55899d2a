//! `netlens evaluate`: how faithful each method's map is, by the metrics of
//! `netlens::methods::metrics` (deletion / insertion AUC, Average Drop / Increase in
//! Confidence): a method × metric table on stdout, `summary.json` (every curve's points
//! included) and each curve as a PNG plot in the output folder. Given a folder of images, each
//! image is evaluated in turn and the table shows each method's mean ± std over them; the plots
//! show the mean curves.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use netlens::cpu::CpuBackend;
use netlens::engine::{top_k, Engine};
use netlens::error::{Error, ErrorKind, Result};
use netlens::input::{self, Dataset, Preprocess};
use netlens::methods::attribution::Target;
use netlens::methods::metrics;
use netlens::methods::metrics::causal::{Baseline, Causal, Curve, CurveKind};
use netlens::methods::metrics::confidence::{confidence_change, ConfidenceChange};
use netlens::methods::metrics::infidelity::Infidelity;
use netlens::methods::metrics::pointing::{pointing_game, PixelBox};
use netlens::methods::registry::{self, Context};
use netlens::methods::Score;
use netlens::model::import::load_model;
use netlens::{Backend, HostTensor, Model};
use serde_json::json;

mod table;
use table::{best_rows, table, Row};

#[derive(Args)]
pub struct EvaluateArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// The image (PNG or JPEG), or a folder of images (mean ± std over them).
    pub image: Option<PathBuf>,
    /// A ready float32 [1, C, H, W] tensor instead of an image.
    #[arg(long)]
    pub input_npy: Option<PathBuf>,
    /// Methods to evaluate (registry names, comma-separated), each with its report preset, or
    /// `all` for every method the report shows.
    #[arg(long, default_value = "gradcam,saliency,ig")]
    pub methods: String,
    /// Metrics (comma-separated): deletion, insertion (AUC of the curves, Petsiuk et al. 2018),
    /// average-drop, increase (pytorch-grad-cam's DropInConfidence / IncreaseInConfidence),
    /// infidelity (Yeh et al. 2019, as Captum's), pointing-game (with --box).
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
    /// Pointing game: the object's box in input pixels, T,L,H,W (without it the pointing game is
    /// skipped with a note).
    #[arg(long = "box")]
    pub pointing_box: Option<String>,
    /// Pointing game: pixels the box grows by on every side (the paper's 15 at 224 × 224).
    #[arg(long, default_value_t = 0)]
    pub box_tolerance: usize,
    /// Infidelity: Gaussian perturbations per map (Captum's n_perturb_samples).
    #[arg(long, default_value_t = 10)]
    pub perturbations: usize,
    /// Infidelity: the perturbations' standard deviation, in input units.
    #[arg(long, default_value_t = 0.1)]
    pub noise_sigma: f32,
    /// Infidelity: the perturbations' seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    infidelity: Infidelity,
    pointing_box: Option<PixelBox>,
    score: Score,
    model: Model,
    inputs: Inputs,
    pre: Preprocess,
}

/// What is evaluated: one image `[1, C, H, W]`, or every image of a folder.
enum Inputs {
    One(HostTensor),
    Folder(Dataset),
}

/// What the metrics found on one map.
struct MapResult {
    /// The value of each requested metric, in `Plan::metrics` order.
    values: Vec<Option<f64>>,
    curves: Vec<Curve>,
    confidence: Option<ConfidenceChange>,
    infidelity: Option<f64>,
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
    let infidelity = Infidelity {
        samples: args.perturbations,
        sigma: args.noise_sigma,
        seed: args.seed,
        score,
    };
    if !(1..=metrics::infidelity::MAX_SAMPLES).contains(&args.perturbations) {
        return Err(Error::bad_input(format!(
            "--perturbations must be 1 to {}",
            metrics::infidelity::MAX_SAMPLES
        )));
    }
    if !(args.noise_sigma.is_finite() && args.noise_sigma > 0.0) {
        return Err(Error::bad_input(
            "--noise-sigma must be finite and positive",
        ));
    }
    let pointing_box = args
        .pointing_box
        .as_deref()
        .map(PixelBox::parse)
        .transpose()?;
    if args.mini_batch == Some(0) {
        return Err(Error::bad_input("--mini-batch must be positive"));
    }
    let engine = crate::engine(&args.common)?;
    let model = load_model(&args.model)?;
    let (pre, _) = crate::preprocessing(&args.model, &model, args.common.preprocess.as_deref())?;
    let inputs = match (&args.image, &args.input_npy) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_input(
                "give either an image or --input-npy, not both",
            ))
        }
        (None, None) => return Err(Error::bad_input("give an image or --input-npy FILE")),
        (Some(dir), None) if dir.is_dir() => Inputs::Folder(Dataset::open(dir)?),
        (Some(img), None) => Inputs::One(crate::image_input(img, &pre, model.input_shape())?),
        (None, Some(npy)) => Inputs::One(input::load_input_npy(npy, model.input_shape())?),
    };
    let image_dims = match &inputs {
        Inputs::One(x) => x.shape.clone(),
        Inputs::Folder(_) => std::iter::once(1)
            .chain(model.input_shape().iter().copied())
            .collect(),
    };
    if image_dims.len() != 4 || image_dims[0] != 1 {
        return Err(Error::bad_input(format!(
            "evaluate takes images [1, C, H, W]; the input is {image_dims:?}"
        )));
    }
    if let Some(bx) = pointing_box {
        let (h, w) = (image_dims[2], image_dims[3]);
        if bx.top >= h || bx.left >= w {
            return Err(Error::bad_input(format!(
                "the box starts outside the {h}×{w} image: top {} left {}",
                bx.top, bx.left
            )));
        }
    }
    let plan = Plan {
        args,
        methods,
        metrics,
        causal,
        infidelity,
        pointing_box,
        score,
        model,
        inputs,
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

impl Plan<'_> {
    fn on<B: Backend>(&self, b: &B, backend: &str) -> Result<()> {
        let started = Instant::now();
        let dir = &self.args.output;
        crate::create_out_dir(dir)?;
        if let Some(class) = self.args.class {
            let k = self.model.num_classes();
            if class >= k {
                return Err(Error::bad_input(format!(
                    "class {class} is out of range: the model has {k} classes (0..{})",
                    k - 1
                )));
            }
        }
        let mut notes = Vec::new();
        if self.metrics.contains(&"pointing-game") && self.pointing_box.is_none() {
            notes.push("pointing-game skipped: it needs the object's box (--box T,L,H,W)");
        }
        for n in &notes {
            if !self.args.common.quiet {
                eprintln!("netlens: note: {n}");
            }
        }
        let (rows, classes) = match &self.inputs {
            Inputs::One(x) => {
                let class = self.class_of(b, x)?;
                (
                    self.rows(|name| self.single_row(b, name, x, class, dir))?,
                    json!(class),
                )
            }
            Inputs::Folder(ds) => self.folder_rows(b, ds, dir)?,
        };
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
            "class": classes,
            "parameters": {
                "metrics": self.metrics,
                "steps": self.causal.steps,
                "baseline": self.args.baseline,
                "score": self.args.score,
                "mini_batch": self.args.mini_batch,
                "infidelity": {"perturbations": self.infidelity.samples,
                    "noise_sigma": self.infidelity.sigma, "seed": self.infidelity.seed},
            },
            "seconds": seconds,
            "results": rows.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
            "best": best,
            "notes": notes,
        });
        let what = match &classes {
            serde_json::Value::Number(k) => format!("class {k}"),
            _ => format!("{} images (mean ± std)", self.image_count()),
        };
        crate::finish(dir, &summary, self.args.common.json, || {
            table(&self.metrics, &rows, &what, backend, seconds, dir)
        })
    }

    fn image_count(&self) -> usize {
        match &self.inputs {
            Inputs::One(_) => 1,
            Inputs::Folder(ds) => ds.len(),
        }
    }

    /// `--class`, or the top prediction on `x` (one forward).
    fn class_of<B: Backend>(&self, b: &B, x: &HostTensor) -> Result<usize> {
        match self.args.class {
            Some(c) => Ok(c),
            None => {
                let out = b.forward(&self.model, &b.upload(x)?, &[])?.output;
                Ok(top_k(&b.read(&out)?.data, 1)[0])
            }
        }
    }

    /// One row per method from `row`. A method that cannot run on this model (no CAM layer,
    /// ...) is skipped with a note, so `--methods all` evaluates the rest; only when none runs
    /// is it the command's error.
    fn rows(&self, mut row: impl FnMut(&'static str) -> Result<Row>) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        let mut first_error = None;
        for &name in &self.methods {
            match row(name) {
                Ok(r) => rows.push(r),
                Err(e) if e.kind == ErrorKind::BadInput => {
                    if !self.args.common.quiet {
                        eprintln!("netlens: note: skipping {name}: {e}");
                    }
                    rows.push(Row {
                        method: name,
                        values: vec![None; self.metrics.len()],
                        stds: None,
                        json: json!({"method": name, "skipped": e.message}),
                    });
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        let none_ran = rows.iter().all(|r| r.values.iter().all(Option::is_none));
        match (none_ran, first_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(rows),
        }
    }

    /// Runs one registry method (its report preset) on `x` for `class` and every requested
    /// metric on its map.
    fn evaluate_map<B: Backend>(
        &self,
        b: &B,
        name: &'static str,
        x: &HostTensor,
        class: usize,
    ) -> Result<MapResult> {
        let entry = registry::find::<B>(name)
            .ok_or_else(|| Error::internal(format!("no registry method '{name}'")))?;
        let options = entry.options_from(entry.presets[0].args)?;
        let ctx = Context {
            image: x,
            preprocess: Some(&self.pre),
            score: Score::Logit,
        };
        let a = options
            .build(&ctx)?
            .attribute_batch(b, &self.model, x, &Target::Class(class))?
            .read(b)?;
        let map = HostTensor::new(a.maps.shape[1..].to_vec(), a.maps.sample(0).to_vec())?;
        let kinds: Vec<CurveKind> = [CurveKind::Deletion, CurveKind::Insertion]
            .into_iter()
            .filter(|k| self.metrics.contains(&k.name()))
            .collect();
        let progress = self.args.common.progress();
        let curves = self
            .causal
            .curves(b, &self.model, x, &map, Some(class), &kinds, &progress)?;
        let confidence = if self
            .metrics
            .iter()
            .any(|m| *m == "average-drop" || *m == "increase")
        {
            Some(confidence_change(
                b,
                &self.model,
                x,
                &map,
                Some(class),
                self.score,
            )?)
        } else {
            None
        };
        let (h, w) = (x.shape[2], x.shape[3]);
        let pointing = match (self.metrics.contains(&"pointing-game"), self.pointing_box) {
            (true, Some(bx)) => Some(pointing_game(&map, (h, w), bx, self.args.box_tolerance)?),
            _ => None,
        };
        let infidelity = match self.metrics.contains(&"infidelity") {
            true => Some(
                self.infidelity
                    .evaluate(b, &self.model, x, &map, Some(class))?,
            ),
            false => None,
        };
        let values = self
            .metrics
            .iter()
            .map(|&m| match m {
                "infidelity" => infidelity,
                "pointing-game" => pointing,
                "average-drop" => confidence.as_ref().map(|c| c.drop as f64),
                "increase" => confidence.as_ref().map(|c| c.increase as f64),
                _ => curves.iter().find(|c| c.kind.name() == m).map(|c| c.auc),
            })
            .collect();
        Ok(MapResult {
            values,
            curves,
            confidence,
            infidelity,
        })
    }

    /// One method on one image: its values, curve plots and JSON.
    fn single_row<B: Backend>(
        &self,
        b: &B,
        name: &'static str,
        x: &HostTensor,
        class: usize,
        dir: &Path,
    ) -> Result<Row> {
        let started = Instant::now();
        let r = self.evaluate_map(b, name, x, class)?;
        let mut metrics = serde_json::Map::new();
        for c in &r.curves {
            let file = format!("{name}_{}.png", c.kind.name());
            let title = format!("{} {} AUC {:.3}", name, c.kind.name(), c.auc);
            netlens::viz::curve::curve_png(&dir.join(&file), &c.fractions, &c.scores, &title)?;
            metrics.insert(
                c.kind.name().to_string(),
                json!({"auc": c.auc, "plot": file, "fractions": c.fractions, "scores": c.scores}),
            );
        }
        if let Some(c) = &r.confidence {
            for (m, v) in [("average-drop", c.drop), ("increase", c.increase)] {
                if self.metrics.contains(&m) {
                    metrics.insert(
                        m.to_string(),
                        json!({"value": v, "before": c.before, "after": c.after}),
                    );
                }
            }
        }
        if let Some(v) = r.infidelity {
            metrics.insert("infidelity".to_string(), json!({"value": v}));
        }
        if let Some(j) = self.metrics.iter().position(|m| *m == "pointing-game") {
            if let Some(v) = r.values[j] {
                metrics.insert("pointing-game".to_string(), json!({"value": v}));
            }
        }
        Ok(Row {
            method: name,
            values: r.values,
            stds: None,
            json: json!({
                "method": name,
                "title": registry::find::<B>(name).map(|e| e.presets[0].title),
                "seconds": started.elapsed().as_secs_f64(),
                "metrics": metrics,
            }),
        })
    }

    /// Every method on every image of `ds`, one image at a time: each metric's mean and
    /// (population) standard deviation, and the mean curves, plotted. Returns the rows and the
    /// per-image classes.
    fn folder_rows<B: Backend>(
        &self,
        b: &B,
        ds: &Dataset,
        dir: &Path,
    ) -> Result<(Vec<Row>, serde_json::Value)> {
        let mut images = Vec::with_capacity(ds.len());
        for i in 0..ds.len() {
            let x = ds.load(i..i + 1, &self.pre, self.model.input_shape())?;
            let class = self.class_of(b, &x)?;
            images.push((ds.relative(i), x, class));
        }
        let rows = self.rows(|name| {
            let started = Instant::now();
            let results = images
                .iter()
                .map(|(_, x, class)| self.evaluate_map(b, name, x, *class))
                .collect::<Result<Vec<_>>>()?;
            let mut metrics = serde_json::Map::new();
            let (mut means, mut stds) = (Vec::new(), Vec::new());
            for (j, m) in self.metrics.iter().enumerate() {
                let v: Vec<f64> = results.iter().filter_map(|r| r.values[j]).collect();
                let (mean, std) = mean_std(&v);
                means.push(mean);
                stds.push(std);
                let mut entry = json!({"mean": mean, "std": std, "values": v});
                if let Some(k) = results[0].curves.iter().position(|c| c.kind.name() == *m) {
                    let n = results.len() as f64;
                    let first = &results[0].curves[k];
                    let curve: Vec<f32> = (0..first.scores.len())
                        .map(|p| {
                            (results
                                .iter()
                                .map(|r| r.curves[k].scores[p] as f64)
                                .sum::<f64>()
                                / n) as f32
                        })
                        .collect();
                    let file = format!("{name}_{m}.png");
                    let title = format!("{name} {m} mean AUC {:.3}", mean.unwrap_or(f64::NAN));
                    netlens::viz::curve::curve_png(
                        &dir.join(&file),
                        &first.fractions,
                        &curve,
                        &title,
                    )?;
                    entry["plot"] = json!(file);
                    entry["fractions"] = json!(first.fractions);
                    entry["mean_scores"] = json!(curve);
                }
                metrics.insert(m.to_string(), entry);
            }
            Ok(Row {
                method: name,
                values: means,
                stds: Some(stds),
                json: json!({
                    "method": name,
                    "seconds": started.elapsed().as_secs_f64(),
                    "metrics": metrics,
                }),
            })
        })?;
        let classes = images
            .iter()
            .map(|(file, _, class)| json!({"image": file, "class": class}))
            .collect();
        Ok((rows, serde_json::Value::Array(classes)))
    }
}

/// The mean and population standard deviation of `v`, `None` when empty.
fn mean_std(v: &[f64]) -> (Option<f64>, Option<f64>) {
    if v.is_empty() {
        return (None, None);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (Some(mean), Some(var.sqrt()))
}
