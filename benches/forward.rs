//! `cargo bench`: the same forward harness as `netlens bench forward` (GPU, CPU, tract), on
//! MobileNetV2 at batch 1 and 32. Set NETLENS_BENCH_NO_GPU=1 on a machine without an adapter.

fn main() {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/models/mobilenetv2_imagenet.onnx"
    );
    let gpu = std::env::var_os("NETLENS_BENCH_NO_GPU").is_none();
    let repeat = std::env::var("NETLENS_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    match netlens::bench::bench_forward(model, &[1, 32], repeat, gpu, |r| {
        eprintln!(
            "  {:<40} batch {:>3}: {:>8.1} ms  {:>8.1} images/s",
            r.runner, r.batch, r.median_ms, r.images_per_s
        )
    }) {
        Ok(report) => println!("{}", netlens::bench::markdown(&report)),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
