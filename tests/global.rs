//! Data sets, layer activations and maximal/minimal activating images, on both backends and
//! through the command line, on good and bad input.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Output;

use netlens::input::{self, Dataset, Preprocess, Sidecar};
use netlens::methods::activations::activations;
use netlens::methods::dataset_features::{features, Reduce};
use netlens::methods::extremes::{Extremes, ExtremesResult, Objective};
use netlens::methods::Score;
use netlens::model::import::load_model;
use netlens::progress::Silent;
use netlens::viz::montage::Colormap;
use netlens::Backend;

const DIGITS_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/models/tiny_digits.onnx"
);
const DIGITS_ALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/digits_all");
const MOBILENET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/models/mobilenetv2_imagenet.onnx"
);
const CAT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/images/chelsea.png");
const FIRST_CONV: &str = "/features/features.0/features.0.0/Conv_output_0";

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("global")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_exit(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "stderr lacks '{needle}': {err}"
    );
}

fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary is JSON")
}

fn digits() -> (netlens::Model, Dataset, Preprocess, Option<Vec<String>>) {
    let model = load_model(DIGITS_MODEL).unwrap();
    let side = Sidecar::for_model(DIGITS_MODEL).unwrap().expect("sidecar");
    let pre = side.preprocess.clone().expect("sidecar preprocessing");
    (
        model,
        Dataset::open(DIGITS_ALL).unwrap(),
        pre,
        side.labels().unwrap(),
    )
}

fn extremes_on<B: Backend>(b: &B) -> ExtremesResult {
    let (model, ds, pre, names) = digits();
    let ex = Extremes {
        k: 5,
        objective: Objective::Class(Score::Logit),
        batch: 256,
        classes: None,
    };
    ex.run(b, &model, &ds, &pre, names.as_deref(), &Silent)
        .unwrap()
}

#[test]
fn digits_all_opens_with_every_label() {
    let (model, ds, _, names) = digits();
    assert_eq!(ds.len(), 1797);
    assert!(ds.skipped.is_empty());
    assert_eq!(
        ds.classes,
        (0..10).map(|d| d.to_string()).collect::<Vec<_>>()
    );
    let targets = ds.targets(names.as_deref(), model.num_classes());
    assert!(targets.iter().all(Option::is_some));
    // The file names end in their digit: labels.csv and the names agree.
    for (i, t) in targets.iter().enumerate() {
        let stem = ds.items[i]
            .path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            stem.rsplit('_').next(),
            Some(t.unwrap().to_string().as_str())
        );
    }
}

#[test]
fn extremes_top5_carry_their_label_and_bottoms_hold_the_mistakes() {
    let started = std::time::Instant::now();
    let g = extremes_on(gpu());
    let gpu_s = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let c = extremes_on(&cpu());
    let cpu_s = started.elapsed().as_secs_f64();
    assert_eq!(g.groups.len(), 10);
    let wrong = g.misclassified();
    let accuracy = g.accuracy().unwrap();
    eprintln!(
        "digits_all: accuracy {accuracy:.4}, {} misclassified, gpu {gpu_s:.2} s, cpu {cpu_s:.2} s",
        wrong.len()
    );
    for group in &g.groups {
        let class = group.class.unwrap();
        assert_eq!(group.top.len(), 5);
        for r in &group.top {
            assert_eq!(
                r.label,
                Some(class),
                "class {class} top list: {:?}",
                group.top
            );
        }
        assert!(group.top.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(group.bottom.windows(2).all(|w| w[0].score <= w[1].score));
        assert!(group.bottom.iter().all(|r| r.label == Some(class)));
        let members_wrong: Vec<usize> = wrong
            .iter()
            .copied()
            .filter(|&i| g.targets[i] == Some(class))
            .collect();
        let listed_wrong = group.bottom.iter().filter(|r| r.misclassified()).count();
        eprintln!(
            "class {class}: {} misclassified members, {listed_wrong} in bottom-5",
            members_wrong.len()
        );
        if !members_wrong.is_empty() {
            assert!(
                listed_wrong > 0,
                "class {class}: misclassified {members_wrong:?} but bottom {:?}",
                group.bottom
            );
        }
    }
    // The CPU oracle ranks the same images and agrees on the logits.
    assert!(rel_err(&g.logits.data, &c.logits.data, 1.0) < 1e-4);
    assert_eq!(g.predictions, c.predictions);
    for (a, b) in g.groups.iter().zip(&c.groups) {
        let idx = |v: &[netlens::methods::extremes::Ranked]| {
            v.iter().map(|r| r.index).collect::<Vec<_>>()
        };
        assert_eq!(idx(&a.top), idx(&b.top), "class {:?}", a.class);
        assert_eq!(idx(&a.bottom), idx(&b.bottom), "class {:?}", a.class);
    }
}

/// Copies `per_class` images of each digit into `dir` and writes a labels.csv that relabels the
/// first `relabel` zeros as ones; returns the relabelled files.
fn relabelled_subset(dir: &Path, per_class: usize, relabel: usize) -> Vec<String> {
    let mut count = [0usize; 10];
    let mut csv = String::from("file,label\n");
    let mut moved = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(DIGITS_ALL)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let digit: usize = name[5..6].parse().unwrap();
        if count[digit] == per_class {
            continue;
        }
        count[digit] += 1;
        std::fs::copy(&f, dir.join(&name)).unwrap();
        let label = if digit == 0 && moved.len() < relabel {
            moved.push(name.clone());
            1
        } else {
            digit
        };
        csv.push_str(&format!("{name},{label}\n"));
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    moved
}

#[test]
fn mislabelled_images_are_the_minimal_ones_of_their_label() {
    // The model gets every shipped digit right, so mistakes are made by relabelling two zeros
    // as ones: they are then "misclassified ones", and must head class 1's bottom list.
    let dir = scratch("relabelled");
    let moved = relabelled_subset(&dir, 12, 2);
    let (model, _, pre, names) = digits();
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.len(), 120);
    let ex = Extremes {
        k: 5,
        batch: 50,
        ..Extremes::default()
    };
    for r in [
        ex.run(gpu(), &model, &ds, &pre, names.as_deref(), &Silent)
            .unwrap(),
        ex.run(&cpu(), &model, &ds, &pre, names.as_deref(), &Silent)
            .unwrap(),
    ] {
        let wrong: Vec<String> = r.misclassified().iter().map(|&i| ds.relative(i)).collect();
        assert_eq!(wrong, moved);
        let ones = r.groups.iter().find(|g| g.class == Some(1)).unwrap();
        let bottom: Vec<String> = ones.bottom.iter().map(|x| ds.relative(x.index)).collect();
        let mut lowest = bottom[..2].to_vec();
        lowest.sort();
        assert_eq!(lowest, moved, "bottom of class 1: {bottom:?}");
        assert!(ones.bottom[..2]
            .iter()
            .all(|x| x.misclassified() && x.predicted == 0));
        assert!(ones.top.iter().all(|x| !x.misclassified()));
        let zeros = r.groups.iter().find(|g| g.class == Some(0)).unwrap();
        assert!(zeros.bottom.iter().all(|x| x.label == Some(0)));
    }
}

#[test]
fn dataset_features_match_a_single_batch_forward() {
    // Chunks of 7 over 20 images give the same rows as one batch of 20.
    let (model, ds, pre, _) = digits();
    let sub = Dataset {
        items: ds.items[..20].to_vec(),
        ..ds.clone()
    };
    let layer = model.layer("/features/features.11/Relu_output_0").unwrap();
    let b = gpu();
    let f = features(
        b,
        &model,
        &sub,
        &pre,
        Some(layer),
        Reduce::SpatialMean,
        7,
        &Silent,
    )
    .unwrap();
    let x = sub.load(0..20, &pre, model.input_shape()).unwrap();
    let (logits, taps) = netlens::engine::forward_host(b, &model, &x, &[layer]).unwrap();
    assert_eq!(f.logits.shape, logits.shape);
    assert!(rel_err(&f.logits.data, &logits.data, 1.0) < 1e-5);
    let feats = f.features.unwrap();
    let c = taps[0].shape[1];
    assert_eq!(feats.shape, [20, c]);
    let hw = taps[0].sample_len() / c;
    for i in 0..20 {
        for ch in 0..c {
            let plane = &taps[0].sample(i)[ch * hw..(ch + 1) * hw];
            let mean = plane.iter().sum::<f32>() / hw as f32;
            assert!((feats.sample(i)[ch] - mean).abs() <= 1e-5 * mean.abs().max(1.0));
        }
    }
    let flat = features(
        &cpu(),
        &model,
        &sub,
        &pre,
        Some(layer),
        Reduce::Flatten,
        64,
        &Silent,
    )
    .unwrap()
    .features
    .unwrap();
    assert_eq!(flat.shape, [20, taps[0].sample_len()]);
    assert!(rel_err(&flat.data, &taps[0].data, 1.0) < 1e-4);
}

#[test]
fn mobilenet_first_conv_montage_has_32_tiles() {
    let model = load_model(MOBILENET).unwrap();
    let x = input::image_tensor(CAT, &Preprocess::imagenet(), model.input_shape()).unwrap();
    let g = activations(gpu(), &model, &x, FIRST_CONV).unwrap();
    let c = activations(&cpu(), &model, &x, FIRST_CONV).unwrap();
    assert_eq!(g.tensor.shape, [32, 112, 112]);
    assert!(rel_err(&g.tensor.data, &c.tensor.data, 1.0) < 1e-4);
    let means: Vec<f32> = (0..32)
        .map(|ch| g.channel(ch).data.iter().sum::<f32>() / (112.0 * 112.0))
        .collect();
    assert_eq!(g.strongest, argmax(&means));
    assert_eq!(g.strongest, c.strongest);
    let m = g.montage(Colormap::Gray, 48);
    assert_eq!((m.tiles, m.rows, m.cols), (32, 6, 6));
    assert_eq!((m.width, m.height), (6 * 113 + 1, 6 * 113 + 1));
    assert_eq!(m.rgb.len(), m.width * m.height * 3);
}

#[test]
fn activations_cli_names_the_channel_with_the_highest_mean() {
    let dir = scratch("activations");
    let out = netlens(&[
        "activations",
        MOBILENET,
        CAT,
        "--layer",
        FIRST_CONV,
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&dir);
    let act = read_npy(dir.join("activations.npy").to_str().unwrap());
    assert_eq!(act.shape, [1, 32, 112, 112]);
    let hw = 112 * 112;
    let means: Vec<f32> = (0..32)
        .map(|ch| act.data[ch * hw..(ch + 1) * hw].iter().sum::<f32>() / hw as f32)
        .collect();
    assert_eq!(
        s["strongest"]["channel"].as_u64(),
        Some(argmax(&means) as u64)
    );
    assert_eq!(s["stats"].as_array().unwrap().len(), 32);
    assert_eq!(s["montage"]["tiles"].as_u64(), Some(32));
    let png = image::open(dir.join("montage.png")).unwrap();
    let cols = s["montage"]["cols"].as_u64().unwrap() as u32;
    assert_eq!(png.width(), cols * 113 + 1);
    let strongest = image::open(dir.join("strongest.png")).unwrap();
    assert_eq!((strongest.width(), strongest.height()), (224, 224));
}

#[test]
fn extremes_cli_writes_montages_and_marks_mistakes() {
    let dir = scratch("extremes");
    let out = netlens(&[
        "extremes",
        DIGITS_MODEL,
        DIGITS_ALL,
        "--k",
        "5",
        // The GPU ranks the same set in the library test; lavapipe is slow on 1797 images.
        "--backend",
        "cpu",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&dir);
    assert_eq!(s["images"].as_u64(), Some(1797));
    let groups = s["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 10);
    for g in groups {
        let class = g["class"].as_u64().unwrap();
        for t in g["top"].as_array().unwrap() {
            assert_eq!(t["label"].as_u64(), Some(class));
        }
        let png = image::open(g["png"].as_str().unwrap()).unwrap();
        assert!(png.width() > png.height(), "two rows of five tiles");
    }
    let logits = read_npy(dir.join("logits.npy").to_str().unwrap());
    assert_eq!(logits.shape, [1797, 10]);
    let wrong = s["misclassified"].as_array().unwrap().len();
    let framed: u64 = groups
        .iter()
        .map(|g| g["bottom_misclassified"].as_u64().unwrap())
        .sum();
    assert!(wrong == 0 || framed > 0);

    // A channel objective: one group over all images.
    let out = netlens(&[
        "extremes",
        DIGITS_MODEL,
        DIGITS_ALL,
        "--layer",
        "/features/features.11/Relu_output_0",
        "--channel",
        "3",
        "--backend",
        "cpu",
        "-o",
        dir.join("channel").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&dir.join("channel"));
    assert_eq!(s["groups"].as_array().unwrap().len(), 1);
    let scores = read_npy(dir.join("channel/channel_scores.npy").to_str().unwrap());
    let top = s["groups"][0]["top"][0]["score"].as_f64().unwrap() as f32;
    assert_eq!(top, scores.data.iter().copied().fold(f32::MIN, f32::max));
}

#[test]
fn bad_data_sets_and_layers() {
    let empty = scratch("empty");
    let o = scratch("bad-out");
    let o = o.to_str().unwrap();
    assert_exit(
        &netlens(&["extremes", DIGITS_MODEL, empty.to_str().unwrap(), "-o", o]),
        2,
        "no images",
    );
    assert_exit(
        &netlens(&["extremes", DIGITS_MODEL, "/nonexistent/folder", "-o", o]),
        2,
        "cannot read data set folder",
    );

    // Non-images mixed in: skipped with one warning, the rest goes on.
    let mixed = scratch("mixed");
    for (i, f) in std::fs::read_dir(DIGITS_ALL)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .take(30)
        .enumerate()
    {
        let label = f
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .rsplit('_')
            .next()
            .unwrap()
            .to_string();
        let sub = mixed.join(&label);
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::copy(&f, sub.join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(mixed.join("README.txt"), "not an image").unwrap();
    std::fs::create_dir_all(mixed.join("3")).unwrap();
    std::fs::write(mixed.join("3").join("broken.png"), "not a png either").unwrap();
    let out_dir = scratch("mixed-out");
    let out = netlens(&[
        "extremes",
        DIGITS_MODEL,
        mixed.to_str().unwrap(),
        "--k",
        "2",
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert_exit(&out, 0, "skipped 2 file(s)");
    let s = summary(&out_dir);
    assert_eq!(s["images"].as_u64(), Some(30));
    assert_eq!(s["skipped"].as_u64(), Some(2));
    assert_eq!(s["labelled"].as_u64(), Some(30), "labels from sub-folders");

    // Unknown layers: exit 2 with suggestions, before any work.
    assert_exit(
        &netlens(&[
            "activations",
            MOBILENET,
            CAT,
            "--layer",
            "features.0.0/Conv",
            "-o",
            o,
        ]),
        2,
        "did you mean",
    );
    assert_exit(
        &netlens(&[
            "extremes",
            DIGITS_MODEL,
            DIGITS_ALL,
            "--layer",
            "nope",
            "--channel",
            "0",
            "-o",
            o,
        ]),
        2,
        "no layer named 'nope'",
    );
    assert_exit(
        &netlens(&[
            "extremes",
            DIGITS_MODEL,
            DIGITS_ALL,
            "--layer",
            "/features/features.11/Relu_output_0",
            "--channel",
            "999",
            "-o",
            o,
        ]),
        2,
        "channel 999 is out of range",
    );
    assert_exit(
        &netlens(&[
            "extremes",
            DIGITS_MODEL,
            DIGITS_ALL,
            "--channel",
            "0",
            "-o",
            o,
        ]),
        2,
        "--channel needs --layer",
    );
}
