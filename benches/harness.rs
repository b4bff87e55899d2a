//! `cargo bench`: the same harness as `netlens bench` (every method on the GPU and the CPU
//! backend, tract as the forward's peer), MobileNetV2 on the cat photo. Environment:
//! NETLENS_BENCH_METHODS (comma-separated subset), NETLENS_BENCH_REPEAT (default 3),
//! NETLENS_BENCH_NO_GPU=1 on a machine without an adapter, NETLENS_BENCH_JSON=FILE to keep the
//! results.

use std::path::Path;

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let model = format!("{root}/assets/models/mobilenetv2_imagenet.onnx");
    let image = format!("{root}/assets/images/chelsea.png");
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let options = netlens::bench::Options {
        methods: env("NETLENS_BENCH_METHODS")
            .map(|v| v.split(',').map(|m| m.trim().to_string()).collect())
            .unwrap_or_default(),
        repeat: env("NETLENS_BENCH_REPEAT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(3),
        gpu: env("NETLENS_BENCH_NO_GPU").is_none(),
        ..Default::default()
    };
    let result = netlens::bench::run(Path::new(&model), Path::new(&image), &options, &mut |r| {
        eprintln!("  {:<18} done", r.method)
    });
    match result {
        Ok(report) => {
            println!("{}", netlens::bench::markdown(&report));
            if let Some(path) = env("NETLENS_BENCH_JSON") {
                let text = serde_json::to_string_pretty(&report).expect("report serialises");
                std::fs::write(&path, text).expect("writes NETLENS_BENCH_JSON");
            }
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
