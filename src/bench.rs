//! The bench harness: forward throughput of the GPU backend, the CPU backend and tract's own
//! optimized plan (the peer), in one run. `netlens bench forward` and `cargo bench` both call it.

use std::time::Instant;

use serde::Serialize;
use tract_onnx::prelude::*;

use crate::backend::{Backend, HostTensor};
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::gpu::{GpuBackend, GpuOptions};
use crate::model::import::load_model;

#[derive(Clone, Debug, Serialize)]
pub struct ForwardRow {
    pub runner: String,
    pub batch: usize,
    pub median_ms: f64,
    pub images_per_s: f64,
    /// Queue submissions per forward call (GPU only).
    pub submissions_per_call: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ForwardReport {
    pub model: String,
    pub adapter: Option<String>,
    pub cpu_model: String,
    pub threads: usize,
    pub repeat: usize,
    pub rows: Vec<ForwardRow>,
    /// CPU backend throughput / tract throughput, per batch size.
    pub cpu_vs_tract: Vec<(usize, f64)>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `f` once to warm up, then `repeat` times; returns the median in milliseconds.
fn time_ms(repeat: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(times))
}

fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn row(runner: &str, batch: usize, ms: f64, subs: Option<f64>) -> ForwardRow {
    ForwardRow {
        runner: runner.into(),
        batch,
        median_ms: ms,
        images_per_s: batch as f64 * 1e3 / ms,
        submissions_per_call: subs,
    }
}

/// Benchmarks the forward pass of `model_path` at each batch size. `gpu: false` skips the GPU
/// (for machines without an adapter); `log` receives one line per finished measurement.
pub fn bench_forward(
    model_path: &str,
    batches: &[usize],
    repeat: usize,
    gpu: bool,
    mut log: impl FnMut(&ForwardRow),
) -> Result<ForwardReport> {
    let model = load_model(model_path)?;
    let shape = model.input_shape().to_vec();
    let gpu_backend = if gpu {
        Some(GpuBackend::new(&GpuOptions::default())?)
    } else {
        None
    };
    let cpu = CpuBackend::new();
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for &batch in batches {
        let mut full = vec![batch];
        full.extend_from_slice(&shape);
        let n: usize = full.iter().product();
        let x = HostTensor::new(
            full.clone(),
            (0..n).map(|i| ((i % 255) as f32) / 255.0).collect(),
        )?;

        if let Some(g) = &gpu_backend {
            let input = g.upload(&x)?;
            let before = g.stats().submissions;
            let mut calls = 0u64;
            let ms = time_ms(repeat, || {
                let f = g.forward(&model, &input, &[])?;
                g.read(&f.output)?;
                calls += 1;
                Ok(())
            })?;
            // Each call also submits the read-back copy; report forward submissions per call.
            let subs = (g.stats().submissions - before) as f64 / calls as f64;
            rows.push(row(&format!("gpu ({})", g.name()), batch, ms, Some(subs)));
            log(rows.last().expect("pushed"));
        }

        let input = cpu.upload(&x)?;
        let cpu_ms = time_ms(repeat, || cpu.forward(&model, &input, &[]).map(|_| ()))?;
        rows.push(row("cpu (netlens)", batch, cpu_ms, None));
        log(rows.last().expect("pushed"));

        let tract_ms = bench_tract(model_path, &x, repeat)?;
        rows.push(row("tract (optimized plan)", batch, tract_ms, None));
        log(rows.last().expect("pushed"));
        ratios.push((batch, tract_ms / cpu_ms));
    }
    Ok(ForwardReport {
        model: model.name.clone(),
        adapter: gpu_backend.as_ref().map(|g| g.name()),
        cpu_model: cpu_model_name(),
        threads: rayon::current_num_threads(),
        repeat,
        rows,
        cpu_vs_tract: ratios,
    })
}

fn bench_tract(model_path: &str, x: &HostTensor, repeat: usize) -> Result<f64> {
    let err = |e: TractError| Error::internal(format!("tract: {e}"));
    let plan = tract_onnx::onnx()
        .model_for_path(model_path)
        .and_then(|m| m.with_input_fact(0, f32::fact(x.shape.clone()).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(err)?;
    let input: TValue = Tensor::from_shape(&x.shape, &x.data).map_err(err)?.into();
    time_ms(repeat, || {
        plan.run(tvec!(input.clone())).map(|_| ()).map_err(err)
    })
}

/// The report as a Markdown table.
pub fn markdown(report: &ForwardReport) -> String {
    let mut s = String::from(
        "| runner | batch | median ms | images/s | submissions/call |\n|---|---:|---:|---:|---:|\n",
    );
    for r in &report.rows {
        let subs = r
            .submissions_per_call
            .map_or("".into(), |v| format!("{v:.0}"));
        s += &format!(
            "| {} | {} | {:.1} | {:.1} | {} |\n",
            r.runner, r.batch, r.median_ms, r.images_per_s, subs
        );
    }
    for (b, ratio) in &report.cpu_vs_tract {
        s += &format!("\nCPU backend / tract throughput at batch {b}: {ratio:.2}");
    }
    s
}

#[derive(Clone, Debug, Serialize)]
pub struct MethodRow {
    pub method: String,
    pub runner: String,
    /// Median seconds per call (one image).
    pub seconds: f64,
    /// Queue submissions per call (GPU only), read-backs included.
    pub submissions_per_call: Option<f64>,
}

/// Times each attribution method on one image, on the GPU (if `gpu`) and the CPU backend.
pub fn bench_methods(
    model_path: &str,
    image: &HostTensor,
    class: usize,
    repeat: usize,
    gpu: bool,
    mut log: impl FnMut(&MethodRow),
) -> Result<Vec<MethodRow>> {
    let model = load_model(model_path)?;
    let mut rows = Vec::new();
    if gpu {
        let g = GpuBackend::new(&GpuOptions::default())?;
        let name = format!("gpu ({})", g.name());
        for &method in METHODS {
            let before = g.stats().submissions;
            let mut calls = 0u64;
            let ms = time_ms(repeat, || {
                calls += 1;
                run_method(&g, &model, image, class, method)
            })?;
            let subs = (g.stats().submissions - before) as f64 / calls as f64;
            rows.push(MethodRow {
                method: method.into(),
                runner: name.clone(),
                seconds: ms / 1e3,
                submissions_per_call: Some(subs),
            });
            log(rows.last().expect("pushed"));
        }
    }
    let cpu = CpuBackend::new();
    let name = format!("cpu ({} threads)", rayon::current_num_threads());
    for &method in METHODS {
        let ms = time_ms(repeat, || run_method(&cpu, &model, image, class, method))?;
        rows.push(MethodRow {
            method: method.into(),
            runner: name.clone(),
            seconds: ms / 1e3,
            submissions_per_call: None,
        });
        log(rows.last().expect("pushed"));
    }
    Ok(rows)
}

/// The methods the bench covers, with the parameters the README table states.
pub const METHODS: &[&str] = &[
    "saliency",
    "guided",
    "smoothgrad (25)",
    "ig (32 steps)",
    "cam",
    "gradcam",
    "gradcam++",
    "layercam",
    "guided-gradcam",
];

fn run_method<B: Backend>(
    b: &B,
    model: &crate::Model,
    x: &HostTensor,
    class: usize,
    method: &str,
) -> Result<()> {
    use crate::methods::gradcam::{guided_gradcam, CamVariant, GradCam};
    use crate::methods::{cam, integrated_gradients, saliency::Saliency, smoothgrad::SmoothGrad};
    let classes = [class];
    let gradcam = |variant| GradCam {
        variant,
        ..Default::default()
    };
    match method {
        "saliency" => Saliency::default()
            .attribute(b, model, x, &classes)
            .map(drop),
        "guided" => Saliency {
            rule: crate::GradRule::Guided,
            ..Default::default()
        }
        .attribute(b, model, x, &classes)
        .map(drop),
        "smoothgrad (25)" => SmoothGrad::default()
            .attribute(b, model, x, class)
            .map(drop),
        "ig (32 steps)" => integrated_gradients::IntegratedGradients {
            steps: 32,
            ..Default::default()
        }
        .attribute(b, model, x, class)
        .map(drop),
        "cam" => cam::cam(b, model, x, &classes).map(drop),
        "gradcam" => gradcam(CamVariant::GradCam)
            .attribute(b, model, x, &classes)
            .map(drop),
        "gradcam++" => gradcam(CamVariant::GradCamPlusPlus)
            .attribute(b, model, x, &classes)
            .map(drop),
        "layercam" => gradcam(CamVariant::LayerCam)
            .attribute(b, model, x, &classes)
            .map(drop),
        "guided-gradcam" => {
            guided_gradcam(b, model, x, &classes, &gradcam(CamVariant::GradCam)).map(drop)
        }
        other => Err(Error::bad_input(format!("unknown method '{other}'"))),
    }
}

/// Method rows as a Markdown table: one line per method, GPU and CPU side by side.
pub fn methods_markdown(rows: &[MethodRow]) -> String {
    let mut s = String::from(
        "| method | GPU s/image | GPU submissions/call | CPU s/image |\n|---|---:|---:|---:|\n",
    );
    for m in METHODS {
        let find = |gpu: bool| {
            rows.iter()
                .find(|r| r.method == *m && r.runner.starts_with("gpu") == gpu)
        };
        let gpu = find(true).map_or("".into(), |r| format!("{:.3}", r.seconds));
        let subs = find(true)
            .and_then(|r| r.submissions_per_call)
            .map_or("".into(), |v| format!("{v:.0}"));
        let cpu = find(false).map_or("".into(), |r| format!("{:.3}", r.seconds));
        s += &format!("| {m} | {gpu} | {subs} | {cpu} |\n");
    }
    s
}
