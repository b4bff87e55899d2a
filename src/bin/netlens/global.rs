//! The subcommands that look at a layer or a data set rather than one attribution:
//! `activations` (MATLAB `activations`) and `extremes` (maximal and minimal activating images).
//! Each writes PNGs, raw .npy and summary.json to -o DIR.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use netlens::engine::Engine;
use netlens::error::{Error, Result};
use netlens::input::{self, Dataset, Preprocess};
use netlens::methods::activations::activations;
use netlens::methods::extremes::{group_montage, Extremes, ExtremesResult, Objective, Ranked};
use netlens::methods::Score;
use netlens::model::import::load_model;
use netlens::viz::montage::{Colormap, Montage};
use netlens::Model;
use serde_json::{json, Value};

#[derive(Args)]
pub struct ActivationsArgs {
    pub model: PathBuf,
    pub image: Option<PathBuf>,
    /// A ready float32 [1, C, H, W] tensor instead of an image.
    #[arg(long)]
    pub input_npy: Option<PathBuf>,
    /// The layer (ONNX tensor name, see `netlens info MODEL`).
    #[arg(long)]
    pub layer: String,
    /// Montage colours: gray or turbo.
    #[arg(long, default_value = "gray")]
    pub colormap: String,
    /// Smallest side of a montage tile in pixels (small maps are upscaled, nearest).
    #[arg(long, default_value_t = 48)]
    pub tile: usize,
    #[arg(short = 'o', long, default_value = "netlens-out")]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: crate::Common,
}

#[derive(Args)]
pub struct ExtremesArgs {
    pub model: PathBuf,
    /// Folder of images, walked recursively; labels from DIR/labels.csv (file,label) or from
    /// sub-folder names.
    pub dir: PathBuf,
    /// Images per list.
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Class score: logit or prob.
    #[arg(long, default_value = "logit")]
    pub score: String,
    /// Rank by the mean of a channel of this layer instead of a class score (needs --channel).
    #[arg(long)]
    pub layer: Option<String>,
    #[arg(long)]
    pub channel: Option<usize>,
    /// Classes to report; repeatable. Default: the classes among the labels.
    #[arg(long = "class")]
    pub classes: Vec<usize>,
    /// Images per forward.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Smallest side of a montage tile in pixels.
    #[arg(long, default_value_t = 64)]
    pub tile: usize,
    #[arg(short = 'o', long, default_value = "netlens-out")]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: crate::Common,
}

pub fn run_activations(args: &ActivationsArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let colormap = Colormap::parse(&args.colormap)?;
    // Checked before any work so that a typo costs nothing.
    model.layer(&args.layer)?;
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
    let engine = crate::engine(&args.common)?;
    let started = Instant::now();
    let a = match &engine {
        Engine::Gpu(g) => activations(g.as_ref(), &model, &x, &args.layer)?,
        Engine::Cpu(c) => activations(c, &model, &x, &args.layer)?,
    };
    let seconds = started.elapsed().as_secs_f64();
    crate::create_out_dir(&args.output)?;

    let montage = a.montage(colormap, args.tile);
    let montage_png = args.output.join("montage.png");
    save(&montage_png, montage.clone())?;
    let (h, w) = (x.shape[2], x.shape[3]);
    let image = netlens::viz::display_image(&x, &pre);
    let strongest_png = args.output.join("strongest.png");
    netlens::viz::save_rgb_png(&strongest_png, w, h, a.strongest_overlay(&image, h, w))?;
    let npy = args.output.join("activations.npy");
    input::write_npy(&npy, &a.raw_shape, &a.tensor.data)?;

    let best = &a.stats[a.strongest];
    let summary = json!({
        "method": "activations",
        "model": model.name,
        "backend": engine.name(),
        "layer": a.layer,
        "shape": a.raw_shape,
        "channels": a.channels(),
        "strongest": {"channel": a.strongest, "mean": best.mean, "max": best.max},
        "montage": {"png": montage_png, "rows": montage.rows, "cols": montage.cols,
            "tiles": montage.tiles, "tile_size": [montage.tile_height, montage.tile_width],
            "colormap": args.colormap},
        "strongest_png": strongest_png,
        "npy": npy,
        "stats": a.stats,
        "seconds": seconds,
        "non_finite": crate::warn_non_finite(
            &netlens::methods::finite::scan("activations", &a.raw_shape, &a.tensor.data)
                .into_iter()
                .collect::<Vec<_>>()
        ),
    });
    crate::finish(&args.output, &summary, args.common.json, || {
        format!(
            "activations of '{}' {:?} on {} in {seconds:.2} s; strongest channel {} (mean {:.4}); wrote {}",
            a.layer,
            a.raw_shape,
            engine.name(),
            a.strongest,
            best.mean,
            args.output.display()
        )
    })?;
    Ok(())
}

pub fn run_extremes(args: &ExtremesArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let objective = match (&args.layer, args.channel) {
        (Some(layer), Some(channel)) => {
            model.layer(layer)?;
            Objective::Channel {
                layer: layer.clone(),
                channel,
            }
        }
        (None, None) => Objective::Class(Score::parse(&args.score)?),
        (Some(_), None) => return Err(Error::bad_input("--layer needs --channel C")),
        (None, Some(_)) => return Err(Error::bad_input("--channel needs --layer NAME")),
    };
    if args.batch == 0 || args.k == 0 {
        return Err(Error::bad_input("--k and --batch must be positive"));
    }
    let ds = Dataset::open(&args.dir)?;
    let (pre, names) =
        crate::preprocessing(&args.model, &model, args.common.preprocess.as_deref())?;
    let ex = Extremes {
        k: args.k,
        objective,
        batch: args.batch,
        classes: (!args.classes.is_empty()).then(|| args.classes.clone()),
    };
    let engine = crate::engine(&args.common)?;
    let started = Instant::now();
    let bar = args.common.progress();
    let r = match &engine {
        Engine::Gpu(g) => ex.run(g.as_ref(), &model, &ds, &pre, names.as_deref(), &bar)?,
        Engine::Cpu(c) => ex.run(c, &model, &ds, &pre, names.as_deref(), &bar)?,
    };
    let seconds = started.elapsed().as_secs_f64();
    if r.targets.iter().all(Option::is_none) {
        eprintln!(
            "netlens: warning: no image of {} has a label that matches a class of the model; \
             misclassified images cannot be marked",
            ds.root.display()
        );
    }
    crate::create_out_dir(&args.output)?;
    let logits_npy = args.output.join("logits.npy");
    input::write_npy(&logits_npy, &r.logits.shape, &r.logits.data)?;
    let mut files = json!({"logits_npy": logits_npy});
    if let Some(s) = &r.channel_scores {
        let p = args.output.join("channel_scores.npy");
        input::write_npy(&p, &[s.len()], s)?;
        files["channel_scores_npy"] = json!(p);
    }
    let groups = write_groups(args, &ds, &pre, &model, &names, &r)?;
    let misclassified: Vec<Value> = r
        .misclassified()
        .into_iter()
        .map(|i| {
            json!({"file": ds.relative(i), "label": r.targets[i], "predicted": r.predictions[i]})
        })
        .collect();
    let summary = json!({
        "method": "extremes",
        "model": model.name,
        "backend": engine.name(),
        "dataset": ds.root,
        "images": ds.len(),
        "skipped": ds.skipped.len(),
        "labelled": r.targets.iter().filter(|t| t.is_some()).count(),
        "accuracy": r.accuracy(),
        "objective": objective_json(&ex.objective, &args.score),
        "k": args.k,
        "definition": "top: highest scores among all images; bottom: lowest scores among the \
                       images labelled with the class (all images for a channel or an unlabelled class)",
        "misclassified": misclassified,
        "groups": groups,
        "files": files,
        "seconds": seconds,
        // Sample i is image i of the data set, in `misclassified`'s order.
        "non_finite": crate::warn_non_finite(&netlens::methods::finite::scan_samples("logits", &r.logits)),
    });
    crate::finish(&args.output, &summary, args.common.json, || {
        format!(
            "extremes over {} images on {} in {seconds:.2} s; {} misclassified; wrote {}",
            ds.len(),
            engine.name(),
            r.misclassified().len(),
            args.output.display()
        )
    })?;
    Ok(())
}

fn objective_json(o: &Objective, score: &str) -> Value {
    match o {
        Objective::Class(_) => json!({"kind": "class", "score": score}),
        Objective::Channel { layer, channel } => {
            json!({"kind": "channel_mean", "layer": layer, "channel": channel})
        }
    }
}

fn write_groups(
    args: &ExtremesArgs,
    ds: &Dataset,
    pre: &Preprocess,
    model: &Model,
    names: &Option<Vec<String>>,
    r: &ExtremesResult,
) -> Result<Vec<Value>> {
    let entry = |x: &Ranked| {
        json!({
            "file": ds.relative(x.index),
            "score": x.score,
            "label": x.label,
            "predicted": x.predicted,
            "predicted_name": crate::label(names, x.predicted),
            "misclassified": x.misclassified(),
        })
    };
    let mut out = Vec::new();
    for g in &r.groups {
        let stem = match (g.class, &args.channel) {
            (Some(c), _) => format!("extremes_class{c}"),
            (None, Some(ch)) => format!("extremes_channel{ch}"),
            (None, None) => "extremes".to_string(),
        };
        let png = args.output.join(format!("{stem}.png"));
        save(&png, group_montage(ds, pre, model, g, args.tile)?)?;
        out.push(json!({
            "class": g.class,
            "name": g.class.map(|c| crate::label(names, c)),
            "png": png,
            "top": g.top.iter().map(entry).collect::<Vec<_>>(),
            "bottom": g.bottom.iter().map(entry).collect::<Vec<_>>(),
            "top_misclassified": g.top.iter().filter(|x| x.misclassified()).count(),
            "bottom_misclassified": g.bottom.iter().filter(|x| x.misclassified()).count(),
        }));
    }
    Ok(out)
}

fn save(path: &Path, m: Montage) -> Result<()> {
    netlens::viz::save_rgb_png(path, m.width, m.height, m.rgb)
}
