//! Batch invariance: each sample's logits in a batch equal its batch-1 logits within 1e-5, on
//! both backends, including a GPU run forced to split the batch into many chunks.

mod common;
use common::*;
use netlens::gpu::{GpuBackend, GpuOptions};
use netlens::model::import::load_model;
use netlens::Backend;

const TOL: f32 = 1e-5;

fn check_invariance<B: Backend>(label: &str, b: &B) {
    let model = load_model(asset("models/tiny_digits.onnx")).expect("import");
    let x = random(&[64, 1, 16, 16], 3);
    let x = netlens::HostTensor {
        data: x.data.iter().map(|v| (v + 1.0) / 2.0).collect(),
        ..x
    };
    let singles: Vec<Vec<f32>> = (0..64)
        .map(|i| {
            let one = netlens::HostTensor::new(vec![1, 1, 16, 16], x.sample(i).to_vec()).unwrap();
            run_backend(b, &model, &one).data
        })
        .collect();
    for n in [1usize, 3, 17, 64] {
        let batch =
            netlens::HostTensor::new(vec![n, 1, 16, 16], x.data[..n * 256].to_vec()).unwrap();
        let out = run_backend(b, &model, &batch);
        assert_eq!(out.shape, vec![n, 10]);
        for (i, single) in singles.iter().enumerate().take(n) {
            let d = out
                .sample(i)
                .iter()
                .zip(single)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(d <= TOL, "{label}: batch {n}, sample {i}: max |Δ| {d}");
        }
    }
}

#[test]
fn cpu_batch_invariance() {
    check_invariance("cpu", &cpu());
}

#[test]
fn gpu_batch_invariance() {
    check_invariance("gpu", gpu());
}

/// A 64 KiB binding limit (above tiny_digits' largest weight, 55 KiB) forces chunks of 4 samples:
/// the largest activation is 16x16x16 floats = 16 KiB per sample. Each chunk records every kernel
/// of the forward once, so 17 samples in chunks of 4 (4, 4, 4, 4, 1) are 5 times the dispatches
/// of the unchunked forward: that is how the test knows chunking happened.
#[test]
fn gpu_chunked_batch_is_correct() {
    let small = GpuBackend::new(&GpuOptions {
        max_binding_bytes: Some(64 * 1024),
    })
    .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"));
    check_invariance("gpu chunked", &small);
    let model = load_model(asset("models/tiny_digits.onnx")).expect("import");
    let x = random(&[17, 1, 16, 16], 9);
    let whole = private_gpu();
    let (full, chunked) = (run_backend(&whole, &model, &x), {
        small.reset_stats();
        run_backend(&small, &model, &x)
    });
    let (one, five) = (whole.stats().dispatches, small.stats().dispatches);
    println!("dispatches: one chunk {one}, chunks of 4 {five}");
    assert!(one > 0);
    assert_eq!(five, 5 * one, "17 samples must run as 5 chunks");
    let d = full
        .data
        .iter()
        .zip(&chunked.data)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(d <= TOL, "chunked vs unchunked: {d}");
}

/// One forward of a whole batch is one queue submission, however many ops the model has.
#[test]
fn gpu_forward_is_one_submission() {
    let g = &private_gpu();
    let model = load_model(asset("models/tiny_digits.onnx")).expect("import");
    let x = g.upload(&random(&[8, 1, 16, 16], 1)).unwrap();
    let before = g.stats().submissions;
    let f = g.forward(&model, &x, &[]).unwrap();
    let after_forward = g.stats().submissions;
    g.read(&f.output).unwrap();
    let after_read = g.stats().submissions;
    assert_eq!(after_forward - before, 1, "a forward is one submission");
    assert_eq!(
        after_read - after_forward,
        1,
        "a read-back is one submission"
    );
}

/// CI runs the GPU tests a second time with `WGPU_BACKEND=gl`; make sure that run really is on GL.
#[test]
fn gpu_honours_wgpu_backend_env() {
    let name = gpu().name();
    println!("GPU backend: {name}");
    match std::env::var("WGPU_BACKEND").map(|v| v.to_ascii_lowercase()) {
        Ok(v) if v == "gl" => assert!(name.contains("[GL]"), "asked for GL, got {name}"),
        Ok(v) if v == "vulkan" => {
            assert!(name.contains("[Vulkan]"), "asked for Vulkan, got {name}")
        }
        _ => {}
    }
}

/// Several threads sharing one GpuBackend: recording hands buffers back to the pool before the
/// encoder is submitted, so without serialisation one thread's later commands could overwrite
/// another's results. Each thread's outputs must equal the single-threaded ones.
#[test]
fn gpu_backend_is_safe_to_share_between_threads() {
    let g = gpu();
    let model = load_model(asset("models/tiny_digits.onnx")).expect("import");
    let inputs: Vec<_> = (0..4).map(|i| random(&[5, 1, 16, 16], 100 + i)).collect();
    let expected: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| run_backend(g, &model, x).data)
        .collect();
    std::thread::scope(|s| {
        for (x, want) in inputs.iter().zip(&expected) {
            let model = &model;
            s.spawn(move || {
                for _ in 0..20 {
                    assert_eq!(
                        &run_backend(g, model, x).data,
                        want,
                        "a thread saw another's data"
                    );
                }
            });
        }
    });
}
