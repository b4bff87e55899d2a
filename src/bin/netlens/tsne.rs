//! `netlens tsne`: t-SNE of a feature matrix, written as embedding.npy, tsne.png and summary.json.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use netlens::engine::{tsne_on, BackendChoice, Engine};
use netlens::error::{Error, Result};
use netlens::methods::tsne::{knn_label_agreement, Algorithm, Distance, Init, Tsne, TsneResult};
use netlens::progress::Progress;
use netlens::viz::scatter::{scatter_png, Scatter, Thumbnail};
use netlens::HostTensor;

use netlens::input::dataset::Dataset;
use netlens::methods::dataset_features::{features, Reduce};
use netlens::model::import::load_model;

use crate::Common;

#[derive(Args)]
pub(crate) struct TsneArgs {
    /// An ONNX model: embed the activations of --layer over the images of DIR (instead of
    /// --features).
    model: Option<PathBuf>,
    /// A folder of images (recursive; labels from labels.csv or sub-folder names).
    dir: Option<PathBuf>,
    /// With MODEL DIR: the layer whose activations (spatial mean per channel) are embedded;
    /// default: the CAM layer (the input of the global pooling).
    #[arg(long)]
    layer: Option<String>,
    /// With MODEL DIR: images per forward.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Feature matrix [N, D] as float32/float64 .npy.
    #[arg(long)]
    features: Option<PathBuf>,
    /// Labels colouring the plot: an integer or float .npy of N values, or a text file of N lines.
    #[arg(long)]
    labels: Option<PathBuf>,
    #[arg(long, default_value_t = 30.0)]
    perplexity: f32,
    /// Embedding dimensions, 2 or 3 (the plot shows the first two).
    #[arg(long, default_value_t = 2)]
    dims: usize,
    /// euclidean or cosine.
    #[arg(long, default_value = "euclidean")]
    distance: String,
    /// Standardise each feature (zero mean, unit variance) first.
    #[arg(long)]
    standardize: bool,
    #[arg(long, default_value_t = 12.0)]
    exaggeration: f32,
    /// A number, or auto = max(N / 12, 50).
    #[arg(long, default_value = "auto")]
    learn_rate: String,
    #[arg(long, default_value_t = 1000)]
    iterations: usize,
    /// exact (GPU when available, else CPU) or barneshut (CPU).
    #[arg(long, default_value = "exact")]
    algorithm: String,
    /// pca or random.
    #[arg(long, default_value = "pca")]
    init: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Barnes-Hut accuracy.
    #[arg(long, default_value_t = 0.5)]
    theta: f32,
    /// A folder of N images (sorted by name, one per row of the features) drawn as thumbnails.
    #[arg(long)]
    thumbnails: Option<PathBuf>,
    /// With MODEL DIR: draw the data set's own images as thumbnails.
    #[arg(long)]
    thumbnails_from_dataset: bool,
    /// Draw each feature row as an HxW gray thumbnail (e.g. 8x8 for the digits).
    #[arg(long)]
    thumbnails_from_features: Option<String>,
    /// Thumbnail side in pixels.
    #[arg(long, default_value_t = 24)]
    thumb_size: usize,
    /// Output folder.
    #[arg(short = 'o', long)]
    output: PathBuf,
    #[command(flatten)]
    pub(crate) common: Common,
}

impl TsneArgs {
    fn options(&self) -> Result<Tsne> {
        let learn_rate = match self.learn_rate.as_str() {
            "auto" => None,
            v => Some(v.parse::<f32>().map_err(|_| {
                Error::bad_input(format!("--learn-rate must be a number or auto, got '{v}'"))
            })?),
        };
        let init = match self.init.as_str() {
            "pca" => Init::Pca,
            "random" => Init::Random,
            other => {
                return Err(Error::bad_input(format!(
                    "unknown --init '{other}': use pca or random"
                )))
            }
        };
        Ok(Tsne {
            perplexity: self.perplexity,
            dims: self.dims,
            distance: Distance::parse(&self.distance)?,
            standardize: self.standardize,
            exaggeration: self.exaggeration,
            learn_rate,
            iterations: self.iterations,
            seed: self.seed,
            init,
            algorithm: Algorithm::parse(&self.algorithm)?,
            theta: self.theta,
            ..Tsne::default()
        })
    }
}

pub(crate) fn run(args: &TsneArgs) -> Result<()> {
    let opts = args.options()?;
    let bar = args.common.progress();
    let (features, dataset_labels, dataset_thumbs) = match (&args.features, &args.model, &args.dir)
    {
        (Some(path), None, None) => (netlens::input::load_npy(path)?, None, None),
        (None, Some(model), Some(dir)) => dataset_features(args, model, dir, &bar)?,
        _ => {
            return Err(Error::bad_input(
                "give either --features X.npy, or MODEL DIR (with --layer NAME)",
            ))
        }
    };
    let labels = match (&args.labels, dataset_labels) {
        (Some(path), _) => Some(load_labels(path)?),
        (None, labels) => labels,
    };
    let thumbs = match (
        &args.thumbnails,
        &args.thumbnails_from_features,
        dataset_thumbs,
    ) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            return Err(Error::bad_input(
                "give one of --thumbnails, --thumbnails-from-features and --thumbnails-from-dataset",
            ))
        }
        (Some(dir), None, None) => Some(thumbnails_from_dir(dir, args.thumb_size)?),
        (None, Some(hw), None) => Some(thumbnails_from_rows(&features, hw, args.thumb_size)?),
        (None, None, thumbs) => thumbs,
    };
    // Barnes-Hut runs on the CPU: no device is opened for it.
    let engine = match opts.algorithm {
        Algorithm::Exact => Engine::new(BackendChoice::resolve(args.common.backend.as_deref())?)?,
        Algorithm::BarnesHut => Engine::new(BackendChoice::Cpu)?,
    };
    run_tsne(
        &features,
        labels,
        thumbs,
        &opts,
        &engine,
        &args.output,
        args.common.json,
        &bar,
    )?;
    Ok(())
}

/// The glue every t-SNE input form shares: runs t-SNE on `features` `[N, D]` and writes
/// `embedding.npy`, `tsne.png` (coloured by `labels`, with optional thumbnails) and
/// `summary.json` into `out` (printed with `json`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_tsne(
    features: &HostTensor,
    labels: Option<Vec<String>>,
    thumbnails: Option<Vec<Thumbnail>>,
    opts: &Tsne,
    engine: &Engine,
    out: &Path,
    json: bool,
    progress: &dyn Progress,
) -> Result<TsneResult> {
    let n = features.batch();
    for (what, len) in [
        ("labels", labels.as_ref().map(|l| l.len())),
        ("thumbnails", thumbnails.as_ref().map(|t| t.len())),
    ] {
        if let Some(len) = len {
            if len != n {
                return Err(Error::bad_input(format!(
                    "{len} {what} for {n} feature rows"
                )));
            }
        }
    }
    crate::create_out_dir(out)?;
    let runner = match (opts.algorithm, engine) {
        (Algorithm::BarnesHut, _) => "Barnes-Hut on the CPU".to_string(),
        (Algorithm::Exact, Engine::Cpu(_)) => "exact on the CPU".to_string(),
        (Algorithm::Exact, Engine::Gpu(_)) => format!("exact on {}", engine.name()),
    };
    let t = Instant::now();
    let r = tsne_on(features, opts, engine, progress)?;
    let seconds = t.elapsed().as_secs_f64();
    netlens::input::write_npy(
        out.join("embedding.npy"),
        &r.embedding.shape,
        &r.embedding.data,
    )?;
    let scatter = Scatter {
        title: Some(format!(
            "t-SNE  N={n}  perplexity {}  KL {:.3}",
            opts.perplexity, r.kl
        )),
        thumbnails,
        ..Scatter::default()
    };
    scatter_png(
        &out.join("tsne.png"),
        &r.embedding,
        labels.as_deref(),
        &scatter,
    )?;
    let knn = labels.as_ref().map(|l| {
        let mut ids = std::collections::HashMap::new();
        let classes: Vec<usize> = l
            .iter()
            .map(|s| {
                let next = ids.len();
                *ids.entry(s.clone()).or_insert(next)
            })
            .collect();
        let (frac, vote) = knn_label_agreement(&r.embedding, &classes, 5);
        serde_json::json!({"k": 5, "same_label_fraction": frac, "majority_vote_accuracy": vote})
    });
    let s = opts.schedule(n);
    let summary = serde_json::json!({
        "points": n,
        "features": features.sample_len(),
        "runner": runner,
        "algorithm": format!("{:?}", opts.algorithm),
        "perplexity": opts.perplexity,
        "dims": opts.dims,
        "distance": format!("{:?}", opts.distance),
        "standardize": opts.standardize,
        "exaggeration": opts.exaggeration,
        "exaggeration_iterations": opts.exaggeration_iters,
        "learn_rate": s.learn_rate,
        "iterations": r.iterations,
        "init": format!("{:?}", opts.init),
        "seed": opts.seed,
        "theta": opts.theta,
        "kl": r.kl,
        "kl_history": r.kl_history,
        "seconds": seconds,
        "knn": knn,
    });
    crate::finish(out, &summary, json, || {
        format!(
            "t-SNE of {n} points ({runner}): KL {:.4} after {} iterations in {seconds:.1} s; wrote {}",
            r.kl,
            r.iterations,
            out.display()
        )
    })?;
    Ok(r)
}

/// Labels from an integer or float `.npy` (one per row), or a text file of one label per line.
pub(crate) fn load_labels(path: &Path) -> Result<Vec<String>> {
    let shown = path.display();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::bad_input(format!("cannot read labels {shown}: {e}")))?;
    if !bytes.starts_with(b"\x93NUMPY") {
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::bad_input(format!("labels {shown} are neither .npy nor text")))?;
        return Ok(text
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect());
    }
    let file = || {
        npyz::NpyFile::new(&bytes[..])
            .map_err(|e| Error::bad_input(format!("labels {shown}: bad .npy header: {e}")))
    };
    let shape = file()?.shape().to_vec();
    if shape.len() != 1 {
        return Err(Error::bad_input(format!(
            "labels {shown} must be one-dimensional, got shape {shape:?}"
        )));
    }
    macro_rules! try_ints {
        ($($t:ty),*) => {$(
            if let Ok(v) = file()?.into_vec::<$t>() {
                return Ok(v.into_iter().map(|x| x.to_string()).collect());
            }
        )*};
    }
    try_ints!(i64, i32, i16, i8, u64, u32, u16, u8);
    macro_rules! try_floats {
        ($($t:ty),*) => {$(
            if let Ok(v) = file()?.into_vec::<$t>() {
                // Whole-number floats (class ids saved as float) print as integers.
                return Ok(v
                    .into_iter()
                    .map(|x| if x.fract() == 0.0 { format!("{}", x as i64) } else { x.to_string() })
                    .collect());
            }
        )*};
    }
    try_floats!(f32, f64);
    Err(Error::bad_input(format!(
        "labels {shown} have dtype {}; use integers, floats or a text file",
        file()?.dtype().descr()
    )))
}

/// Every image in `dir` (sorted by name) as a thumbnail of at most `size` pixels a side.
/// Features `[N, C]` of `--layer` (spatial mean per channel) over the images of `dir`, their
/// labels, and with `--thumbnails-from-dataset` the images as thumbnails.
#[allow(clippy::type_complexity)]
fn dataset_features(
    args: &TsneArgs,
    model_path: &Path,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<(HostTensor, Option<Vec<String>>, Option<Vec<Thumbnail>>)> {
    let model = load_model(model_path)?;
    let layer = match &args.layer {
        Some(name) => model.layer(name)?,
        None => model.graph.cam_layer().ok_or_else(|| {
            Error::bad_input("the model has no global pooling layer: name one with --layer")
        })?,
    };
    let ds = Dataset::open(dir)?;
    if args.perplexity >= ds.len() as f32 {
        return Err(Error::bad_input(format!(
            "perplexity {} must be below the number of images ({})",
            args.perplexity,
            ds.len()
        )));
    }
    let (pre, _) = crate::preprocessing(model_path, &model, args.common.preprocess.as_deref())?;
    let engine = crate::engine(&args.common)?;
    let pass = match &engine {
        Engine::Gpu(g) => features(
            g.as_ref(),
            &model,
            &ds,
            &pre,
            Some(layer),
            Reduce::SpatialMean,
            args.batch,
            progress,
        )?,
        Engine::Cpu(c) => features(
            c,
            &model,
            &ds,
            &pre,
            Some(layer),
            Reduce::SpatialMean,
            args.batch,
            progress,
        )?,
    };
    let feats = pass
        .features
        .ok_or_else(|| Error::internal("the data-set pass returned no features"))?;
    let labels = ds
        .items
        .iter()
        .all(|i| i.label.is_some())
        .then(|| ds.items.iter().filter_map(|i| i.label.clone()).collect());
    let thumbs = if args.thumbnails_from_dataset {
        let paths: Vec<PathBuf> = ds.items.iter().map(|i| i.path.clone()).collect();
        Some(thumbnails_of(&paths, args.thumb_size)?)
    } else {
        None
    };
    Ok((feats, labels, thumbs))
}

fn thumbnails_from_dir(dir: &Path, size: usize) -> Result<Vec<Thumbnail>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::bad_input(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    paths.sort();
    thumbnails_of(&paths, size)
}

fn thumbnails_of(paths: &[PathBuf], size: usize) -> Result<Vec<Thumbnail>> {
    paths
        .iter()
        .map(|p| {
            let img = image::open(p)
                .map_err(|e| Error::bad_input(format!("cannot read {}: {e}", p.display())))?
                .thumbnail(size as u32, size as u32)
                .to_rgb8();
            Ok(Thumbnail {
                width: img.width() as usize,
                height: img.height() as usize,
                rgb: img.into_raw(),
            })
        })
        .collect()
}

/// Each row of `features` as an `HxW` gray image, min-max scaled over the whole matrix and
/// enlarged by pixel repetition to about `size` pixels.
fn thumbnails_from_rows(features: &HostTensor, hw: &str, size: usize) -> Result<Vec<Thumbnail>> {
    let bad = || Error::bad_input(format!("--thumbnails-from-features takes HxW, got '{hw}'"));
    let (h, w) = hw.split_once(['x', 'X']).ok_or_else(bad)?;
    let (h, w): (usize, usize) = (h.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?);
    if h * w != features.sample_len() || h == 0 {
        return Err(Error::bad_input(format!(
            "--thumbnails-from-features {h}x{w} does not match {} features per row",
            features.sample_len()
        )));
    }
    let lo = features.data.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = features
        .data
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let k = (size / h.max(w)).max(1);
    Ok((0..features.batch())
        .map(|i| {
            let row = features.sample(i);
            let mut rgb = Vec::with_capacity(h * w * k * k * 3);
            for y in 0..h * k {
                for x in 0..w * k {
                    let v = (row[(y / k) * w + x / k] - lo) / (hi - lo).max(1e-12);
                    // Dark ink on white, as the digits are drawn.
                    let g = (255.0 * (1.0 - v)).round() as u8;
                    rgb.extend([g, g, g]);
                }
            }
            Thumbnail {
                width: w * k,
                height: h * k,
                rgb,
            }
        })
        .collect())
}
