//! `netlens deepdream`: images that maximise layer channels or class logits. Writes
//! dream_<channel>.png (or dream_class<k>.png), montage.png, dream.npy and summary.json to -o DIR.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use netlens::engine::Engine;
use netlens::error::{Error, Result};
use netlens::input::{self, Preprocess};
use netlens::methods::deepdream::{DeepDream, DreamResult, InputSpace, Start, Target};
use netlens::model::import::import_bytes_with_input;
use netlens::{Backend, HostTensor, Model};
use serde_json::json;

#[derive(Args)]
pub struct DreamArgs {
    pub model: PathBuf,
    /// Layer (ONNX tensor name) whose channels to maximise; needs --channels.
    #[arg(long)]
    pub layer: Option<String>,
    /// Channels of --layer, comma-separated; all are dreamed as one batch.
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<usize>,
    /// Classes whose logits to maximise instead of a layer; repeatable or comma-separated.
    #[arg(long = "class", value_delimiter = ',')]
    pub classes: Vec<usize>,
    /// Pyramid levels (MATLAB PyramidLevels).
    #[arg(long, default_value_t = 3)]
    pub levels: usize,
    /// Size ratio between levels (MATLAB PyramidScale).
    #[arg(long, default_value_t = 1.4)]
    pub scale: f32,
    /// Iterations per level (MATLAB NumIterations).
    #[arg(long, default_value_t = 10)]
    pub iterations: usize,
    /// Step length in pixel levels (0..255) per iteration, on the normalised gradient.
    #[arg(long)]
    pub step: Option<f32>,
    /// Largest random shift in pixels before each gradient.
    #[arg(long)]
    pub jitter: Option<usize>,
    /// Gaussian blur sigma in pixels after each step (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub blur: f32,
    /// Start image: gray, random, or an image file.
    #[arg(long, default_value = "random")]
    pub start: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Dream at SxS instead of the model's own input size (fully convolutional models only).
    #[arg(long)]
    pub size: Option<usize>,
    #[arg(short = 'o', long, default_value = "netlens-out")]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: crate::Common,
}

pub fn run(args: &DreamArgs, engine: &Engine) -> Result<()> {
    let target = match (
        &args.layer,
        args.channels.is_empty(),
        args.classes.is_empty(),
    ) {
        (Some(layer), false, true) => Target::Channels {
            layer: layer.clone(),
            channels: args.channels.clone(),
        },
        (None, true, false) => Target::Classes(args.classes.clone()),
        _ => {
            return Err(Error::bad_input(
                "give either --layer NAME --channels C1,C2,... or --class K",
            ))
        }
    };
    let bytes = std::fs::read(&args.model).map_err(|e| {
        Error::bad_input(format!("cannot read model '{}': {e}", args.model.display()))
    })?;
    let name = args
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let native = netlens::model::import::import_bytes(&bytes, &name)
        .map_err(|e| e.context(format!("model '{}'", args.model.display())))?;
    let c = native.input_shape()[0];
    let model = match args.size {
        Some(s) => import_bytes_with_input(&bytes, &name, [c, s, s])?,
        None => native,
    };
    let (pre, _) = crate::preprocessing(&args.model, &model, args.common.preprocess.as_deref())?;
    // Only the geometry differs between levels: the preprocessing's crop would refuse them.
    let pre = Preprocess {
        resize: None,
        crop: None,
        ..pre
    };
    let start = match args.start.as_str() {
        "gray" | "grey" => Start::Gray,
        "random" => Start::Random,
        path => Start::Image(crate::image_input(
            Path::new(path),
            &pre,
            model.input_shape(),
        )?),
    };
    let defaults = DeepDream::default();
    let dream = DeepDream {
        levels: args.levels,
        scale: args.scale,
        iterations: args.iterations,
        step: args.step.unwrap_or(defaults.step),
        jitter: args.jitter.unwrap_or(defaults.jitter),
        blur: args.blur,
        start,
        seed: args.seed,
        space: Some(InputSpace::from_preprocess(&pre, c)?),
        ..defaults
    };
    let at_size = |h: usize, w: usize| import_bytes_with_input(&bytes, &name, [c, h, w]);
    let started = Instant::now();
    let result = match engine {
        Engine::Gpu(g) => dream_on(g.as_ref(), &dream, &model, &at_size, &target, args),
        Engine::Cpu(cpu) => dream_on(cpu, &dream, &model, &at_size, &target, args),
    }?;
    let seconds = started.elapsed().as_secs_f64();
    write(
        args,
        &pre,
        &model,
        &target,
        &dream,
        &result,
        &engine.name(),
        seconds,
    )
}

fn dream_on<B: Backend>(
    b: &B,
    dream: &DeepDream,
    model: &Model,
    at_size: &dyn Fn(usize, usize) -> Result<Model>,
    target: &Target,
    args: &DreamArgs,
) -> Result<DreamResult> {
    let bar = args.common.progress();
    dream.attribute_with_progress(b, model, at_size, target, &bar)
}

/// The file stem and JSON label of sample `i`.
fn label(target: &Target, i: usize) -> (String, serde_json::Value) {
    match target {
        Target::Channels { channels, .. } => (
            format!("dream_{}", channels[i]),
            json!({"channel": channels[i]}),
        ),
        Target::Classes(k) => (format!("dream_class{}", k[i]), json!({"class": k[i]})),
    }
}

#[allow(clippy::too_many_arguments)]
fn write(
    args: &DreamArgs,
    pre: &Preprocess,
    model: &Model,
    target: &Target,
    dream: &DeepDream,
    r: &DreamResult,
    backend: &str,
    seconds: f64,
) -> Result<()> {
    let dir = &args.output;
    crate::create_out_dir(dir)?;
    let npy = dir.join("dream.npy");
    input::write_npy(&npy, &r.images.shape, &r.images.data)?;
    let mut tiles = Vec::new();
    let mut results = Vec::new();
    // The text output, printed at the end unless --json asks for the summary instead.
    let mut lines = Vec::new();
    for i in 0..r.images.batch() {
        let one = HostTensor::new(r.images.shape[1..].to_vec(), r.images.sample(i).to_vec())?;
        let (w, h, rgb) = pre.to_rgb8(&one)?;
        let (stem, mut entry) = label(target, i);
        let png = dir.join(format!("{stem}.png"));
        netlens::viz::save_rgb_png(&png, w, h, rgb.clone())?;
        tiles.push(rgb);
        let (before, after) = (r.objective_before[i], r.objective_after[i]);
        entry["png"] = json!(png);
        entry["objective_before"] = json!(before);
        entry["objective_after"] = json!(after);
        entry["objective_per_level"] = json!(r
            .objective_per_level
            .iter()
            .map(|l| l[i])
            .collect::<Vec<_>>());
        results.push(entry);
        lines.push(format!("{stem}: objective {before:.4} -> {after:.4}"));
    }
    let (w, h) = (r.images.shape[3], r.images.shape[2]);
    let (mw, mh, montage) = grid(&tiles, w, h);
    let montage_path = dir.join("montage.png");
    netlens::viz::save_rgb_png(&montage_path, mw, mh, montage)?;
    let (layer, what) = match target {
        Target::Channels { layer, .. } => (Some(layer.clone()), "channels"),
        Target::Classes(_) => (None, "classes"),
    };
    for (l, (size, obj)) in r.sizes.iter().zip(&r.objective_per_level).enumerate() {
        let mean = obj.iter().sum::<f32>() / obj.len().max(1) as f32;
        lines.push(format!(
            "level {}/{} {}x{}: mean objective {mean:.4}",
            l + 1,
            r.sizes.len(),
            size[0],
            size[1]
        ));
    }
    let summary = json!({
        "method": "deepdream",
        "model": model.name,
        "backend": backend,
        "target": what,
        "layer": layer,
        "parameters": {
            "levels": dream.levels, "scale": dream.scale, "iterations": dream.iterations,
            "step": dream.step, "jitter": dream.jitter, "blur": dream.blur, "start": args.start,
            "seed": dream.seed, "sizes": r.sizes,
        },
        "seconds": seconds,
        "npy": npy,
        "montage": montage_path,
        "results": results,
        "non_finite": crate::warn_non_finite(&netlens::methods::finite::scan_samples("image", &r.images)),
    });
    lines.push(format!(
        "deepdream on {backend} in {seconds:.2} s; wrote {}",
        Path::new(dir).display()
    ));
    crate::finish(dir, &summary, args.common.json, || lines.join("\n"))
}

/// Tiles of `w × h` RGB in a near-square grid with a 2-pixel white gutter.
fn grid(tiles: &[Vec<u8>], w: usize, h: usize) -> (usize, usize, Vec<u8>) {
    let n = tiles.len().max(1);
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (mw, mh) = (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap);
    let mut out = vec![255u8; mw * mh * 3];
    for (i, tile) in tiles.iter().enumerate() {
        let (x0, y0) = ((i % cols) * (w + gap), (i / cols) * (h + gap));
        for y in 0..h {
            let dst = ((y0 + y) * mw + x0) * 3;
            out[dst..dst + w * 3].copy_from_slice(&tile[y * w * 3..(y + 1) * w * 3]);
        }
    }
    (mw, mh, out)
}
