//! Timing deep dream on both backends, for `netlens bench` (the library API the bench calls).

use std::time::Instant;

use serde::Serialize;

use super::{DeepDream, Target};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::Model;

/// One timed run of [`bench_deepdream`].
#[derive(Clone, Debug, Serialize)]
pub struct DreamBenchRow {
    pub runner: String,
    pub samples: usize,
    /// Median seconds per dream.
    pub seconds: f64,
    /// Queue submissions per dream (GPU only), read-backs included.
    pub submissions: Option<u64>,
    /// Read-backs per dream (GPU only).
    pub readbacks: Option<u64>,
}

/// Times deep dream of `channels` of `layer` (one batch) with the default options on the GPU (if
/// `gpu`) and the CPU backend, `repeat` times after one warm-up, at the model's own size or at
/// `top × top` if given. For `netlens bench`; the tests never assert speed.
pub fn bench_deepdream(
    model_path: &str,
    layer: &str,
    channels: &[usize],
    top: Option<usize>,
    repeat: usize,
    gpu: bool,
) -> Result<Vec<DreamBenchRow>> {
    use crate::model::import::{import_bytes_with_input, load_model};
    let bytes = std::fs::read(model_path)
        .map_err(|e| Error::bad_input(format!("cannot read model '{model_path}': {e}")))?;
    let native = load_model(model_path)?;
    let c = native.input_shape()[0];
    let model = match top {
        Some(s) => import_bytes_with_input(&bytes, &native.name, [c, s, s])?,
        None => native,
    };
    // Level models are imported once and cloned (their weights are shared), so the GPU's
    // weight cache is warm after the first run.
    let dream = DeepDream::default();
    let [h, w] = [model.input_shape()[1], model.input_shape()[2]];
    let mut cache = Vec::new();
    for [lh, lw] in dream.sizes(h, w) {
        cache.push((
            (lh, lw),
            import_bytes_with_input(&bytes, &model.name, [c, lh, lw])?,
        ));
    }
    let at_size = |lh: usize, lw: usize| -> Result<Model> {
        cache
            .iter()
            .find(|(s, _)| *s == (lh, lw))
            .map(|(_, m)| m.clone())
            .ok_or_else(|| Error::internal("pyramid size not prepared"))
    };
    let target = Target::Channels {
        layer: layer.to_string(),
        channels: channels.to_vec(),
    };
    let time = |run: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        run()?;
        let mut v = Vec::new();
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            run()?;
            v.push(t.elapsed().as_secs_f64());
        }
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2])
    };
    let mut rows = Vec::new();
    if gpu {
        let g = crate::gpu::GpuBackend::new(&Default::default())?;
        let mut counts = (0, 0);
        let seconds = time(&mut || {
            let before = g.stats();
            dream.attribute(&g, &model, &at_size, &target)?;
            let after = g.stats();
            counts = (
                after.submissions - before.submissions,
                after.readbacks - before.readbacks,
            );
            Ok(())
        })?;
        rows.push(DreamBenchRow {
            runner: format!("gpu ({})", g.name()),
            samples: channels.len(),
            seconds,
            submissions: Some(counts.0),
            readbacks: Some(counts.1),
        });
    }
    let cpu = crate::cpu::CpuBackend::new();
    let seconds = time(&mut || dream.attribute(&cpu, &model, &at_size, &target).map(drop))?;
    rows.push(DreamBenchRow {
        runner: format!("cpu ({} threads)", rayon::current_num_threads()),
        samples: channels.len(),
        seconds,
        submissions: None,
        readbacks: None,
    });
    Ok(rows)
}
