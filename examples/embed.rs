//! netlens inside a wgpu application: the host opens its own device, hands netlens clones of it,
//! gets the Grad-CAM of the top class as a Turbo texture that never left the GPU, draws it with
//! its own render pipeline into an offscreen target, and brings the target, the score and the
//! map back through futures its frame loop polls (it never waits on the GPU).
//!
//! ```sh
//! cargo run --release --example embed -- [MODEL IMAGE [OUT.png]]
//! ```
//!
//! Defaults: MobileNetV2 on the cat photo, written to `target/embed.png`. `WGPU_BACKEND` picks
//! the wgpu API.

#[path = "support/host.rs"]
mod host;

use std::path::PathBuf;
use std::time::Instant;

use netlens::input::{Preprocess, Sidecar};

fn main() {
    if let Err(e) = run() {
        eprintln!("embed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("assets/models/mobilenetv2_imagenet.onnx"));
    let image = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("assets/images/chelsea.png"));
    let out = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/embed.png"));
    let preprocess = Sidecar::for_model(&model)?
        .and_then(|s| s.preprocess)
        .unwrap_or_else(Preprocess::imagenet);

    let host = host::open_host()?;
    println!("device: {} ({:?})", host.adapter.name, host.adapter.backend);
    let start = Instant::now();
    let r = host::explain_and_draw(&host, &model, &image, &preprocess, None)?;
    let (w, h) = r.size;
    println!(
        "class {} (logit {:.3}), CAM {:?} drawn at {w}×{h}: {:.2} s in all, of which {:.2} s in \
         netlens and render calls; results came back {:.2} s after them, over {} polled frames",
        r.class,
        r.score,
        r.lowres.shape,
        start.elapsed().as_secs_f64(),
        r.in_calls.as_secs_f64(),
        r.waiting.as_secs_f64(),
        r.frames
    );
    image::RgbaImage::from_raw(w, h, r.rgba)
        .ok_or("target size mismatch")?
        .save(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}
