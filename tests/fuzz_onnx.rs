//! In-process fuzzing of the model path: ONNX import, then a CPU forward and a CPU backward
//! (the gradient of one class score w.r.t. the input) on whatever the importer accepted. Every
//! input must give `Ok` or an error, never a panic, never an abort and never a hang.
//!
//! Mutants are mostly structure-aware: the seed is decoded with tract-onnx's protobuf types and
//! its attributes (boundary integers, lists lengthened or cut, NaN/Inf floats), input and
//! initializer dims, data types, initializer payloads, node wiring, node lists, op types and
//! opsets are changed before it is encoded again; a quarter also get byte mutations of the encoded
//! file. Seeds are tiny_digits.onnx and a few graphs of a handful of nodes on 1x3x8x8 inputs built
//! here, so that one execution takes well under a millisecond.
//!
//! An abort cannot be caught, so the test binary guards it: its allocator writes the current input
//! to target/tmp/fuzz-crashes/ before a single allocation over `NETLENS_FUZZ_ALLOC_LIMIT` bytes
//! (default 1 GiB) aborts the run, and a watchdog does the same for an execution that runs past
//! `NETLENS_FUZZ_HANG_SECS` (default 60). A model the importer accepts with a value over its
//! per-sample limit (`MAX_SAMPLE_ELEMS`) is a finding too: the importer promises to refuse it.
//!
//! As a test it runs a few thousand mutants (seeded) plus every saved input in
//! assets/fuzz/crashes-onnx/; `scripts/fuzz` runs it for `NETLENS_FUZZ_SECS` instead.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::fuzz::{byte_mutation, crc32, fuzz, Rng, Target};
use common::onnx_mutate::mutate_model;
use common::{a_int, a_ints, OnnxBuilder};
use netlens::cpu::CpuBackend;
use netlens::model::import::import_bytes;
use netlens::{Backend, GradRule, HostTensor, Seed};
use prost::Message;
use tract_onnx::pb;

const ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");

const IMPOSSIBLE_SHAPE: &str = "import accepted a shape over netlens' per-sample limit";
/// Elements per sample of one value that the importer promises never to accept.
const IMPOSSIBLE_ELEMS: u128 = netlens::model::MAX_SAMPLE_ELEMS as u128;
/// Models whose activations need more than this are imported but not run: a slow run is not a
/// wrong one, and running them would cost the fuzzer most of its executions.
const RUN_BYTES: u128 = 64 << 20;

// ---------------------------------------------------------------------------------------------
// Abort and hang guards

/// The input being executed, for the allocation guard and the watchdog to save.
struct Current {
    data: Vec<u8>,
    started: Option<Instant>,
}

static CURRENT: Mutex<Current> = Mutex::new(Current {
    data: Vec::new(),
    started: None,
});

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Saves the current input and aborts: what an uncaught abort would have done, plus the input.
fn die(why: &str, data: &[u8]) -> ! {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("onnx-abort-{:08x}.bin", crc32(data)));
    let _ = std::fs::write(&path, data);
    eprintln!(
        "onnx fuzz target: {why} on {}\n{}",
        path.display(),
        std::backtrace::Backtrace::force_capture()
    );
    std::process::abort()
}

struct Guard;

static ALLOC_LIMIT: OnceLock<usize> = OnceLock::new();

impl Guard {
    fn check(size: usize) {
        // `get` only: reading the environment allocates, so the limit is set before fuzzing.
        if let Some(&limit) = ALLOC_LIMIT.get() {
            if size > limit {
                let why = format!("an allocation of {size} bytes");
                // Not `lock`: the caller may be the fuzz thread, copying the input under it.
                match CURRENT.try_lock() {
                    Ok(cur) if cur.started.is_some() => die(&why, &cur.data),
                    Ok(_) => {}
                    Err(_) => die(&why, b""),
                }
            }
        }
    }
}

// SAFETY: every call goes to the system allocator unchanged; the guard only looks at the size.
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Guard::check(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Guard::check(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Guard::check(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Guard = Guard;

fn start_guards() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        ALLOC_LIMIT.get_or_init(|| env_u64("NETLENS_FUZZ_ALLOC_LIMIT", 1 << 30) as usize);
        let hang = Duration::from_secs(env_u64("NETLENS_FUZZ_HANG_SECS", 60));
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
            if cur.started.is_some_and(|t| t.elapsed() > hang) {
                die(&format!("an execution over {hang:?}"), &cur.data);
            }
        });
    });
}

// ---------------------------------------------------------------------------------------------
// The target

/// One thread, as for the other targets, so that the rate is per core.
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
    })
}

fn onnx_target(bytes: &[u8], variant: usize) -> bool {
    {
        let mut cur = CURRENT.lock().unwrap();
        cur.data.clear();
        cur.data.extend_from_slice(bytes);
        cur.started = Some(Instant::now());
    }
    let accepted = pool().install(|| import_and_run(bytes, variant));
    CURRENT.lock().unwrap().started = None;
    accepted
}

/// How deep mutants get: how many reached the backward pass, and how many came out of it `Ok`.
static RAN: AtomicU64 = AtomicU64::new(0);
static GRADIENTS: AtomicU64 = AtomicU64::new(0);

fn import_and_run(bytes: &[u8], variant: usize) -> bool {
    let Ok(model) = import_bytes(bytes, "fuzz") else {
        return false;
    };
    let g = &model.graph;
    let batch = 1 + variant % 2;
    let mut total = 0u128;
    for v in &g.values {
        let n = v
            .shape
            .iter()
            .fold(1u128, |a, &d| a.saturating_mul(d as u128));
        assert!(
            n <= IMPOSSIBLE_ELEMS,
            "{IMPOSSIBLE_SHAPE}: value '{}' of shape {:?}",
            v.name,
            v.shape
        );
        total += n;
    }
    let k = model.num_classes();
    if total * batch as u128 * 4 > RUN_BYTES || k == 0 {
        return true;
    }
    let cpu = CpuBackend::new();
    let shape = g.values[g.input].full_shape(batch);
    let n: usize = shape.iter().product();
    let scale = [1.0, 0.0, 1e30, -3.0][variant];
    let data = (0..n).map(|i| ((i % 7) as f32 - 3.0) * scale).collect();
    let Ok(x) = cpu.upload(&HostTensor { shape, data }) else {
        return true;
    };
    if let Ok(f) = cpu.forward(&model, &x, &[g.output]) {
        assert_eq!(f.output.shape, g.values[g.output].full_shape(batch));
    }
    let class = variant * 7 % k;
    let seed = if variant == 3 {
        Seed::SoftmaxProb {
            at: g.output,
            targets: vec![class; batch],
        }
    } else {
        let mut grad = HostTensor::zeros(vec![batch, k]);
        for i in 0..batch {
            grad.data[i * k + class] = 1.0;
        }
        let Ok(grad) = cpu.upload(&grad) else {
            return true;
        };
        Seed::Grad { at: g.output, grad }
    };
    let rule = [GradRule::Standard, GradRule::Guided, GradRule::Deconvnet][variant % 3];
    RAN.fetch_add(1, Ordering::Relaxed);
    if let Ok(gr) = cpu.gradients(&model, &x, &seed, rule, &[], &[]) {
        assert_eq!(gr.input_grad.shape, x.shape);
        GRADIENTS.fetch_add(1, Ordering::Relaxed);
    }
    true
}

/// One to four structure-aware mutations of the decoded model, and for a quarter of the mutants
/// byte mutations of the encoded file as well (which mostly test the protobuf decoding).
fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut data = match pb::ModelProto::decode(base) {
        Ok(mut m) => {
            for _ in 0..1 + rng.below(4) {
                mutate_model(rng, &mut m);
            }
            m.encode_to_vec()
        }
        Err(_) => base.to_vec(),
    };
    if rng.below(4) == 0 {
        for _ in 0..1 + rng.below(3) {
            byte_mutation(rng, &mut data);
        }
    }
    data
}

// ---------------------------------------------------------------------------------------------
// Seeds: tiny graphs on 1x3x8x8 inputs

fn conv_attrs(pad: i64, stride: i64, group: i64) -> Vec<pb::AttributeProto> {
    vec![
        a_ints("pads", &[pad; 4]),
        a_ints("strides", &[stride; 2]),
        a_ints("dilations", &[1, 1]),
        a_ints("kernel_shape", &[3, 3]),
        a_int("group", group),
    ]
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![std::fs::read(format!("{ASSETS}/models/tiny_digits.onnx")).unwrap()];

    let mut b = OnnxBuilder::new(&[3, 8, 8]);
    let (w, bias) = (b.weight("w", &[4, 3, 3, 3]), b.weight("b", &[4]));
    b.node("Conv", &["input", &w, &bias], &["c"], conv_attrs(1, 2, 1));
    b.node("Flatten", &["c"], &["logits"], vec![a_int("axis", 1)]);
    seeds.push(b.build("logits"));

    let mut b = OnnxBuilder::new(&[3, 8, 8]);
    let w = b.weight("w", &[4, 3, 3, 3]);
    b.node("Conv", &["input", &w], &["c"], conv_attrs(1, 1, 1));
    b.node("Relu", &["c"], &["r"], vec![]);
    b.node("GlobalAveragePool", &["r"], &["p"], vec![]);
    b.node("Flatten", &["p"], &["f"], vec![a_int("axis", 1)]);
    let (fw, fb) = (b.weight("fw", &[5, 4]), b.weight("fb", &[5]));
    b.node(
        "Gemm",
        &["f", &fw, &fb],
        &["logits"],
        vec![a_int("transB", 1)],
    );
    seeds.push(b.build("logits"));

    let mut b = OnnxBuilder::new(&[3, 8, 8]);
    let w = b.weight("w", &[3, 1, 3, 3]);
    b.node("Conv", &["input", &w], &["d"], conv_attrs(1, 2, 3));
    b.node("Clip", &["d"], &["r"], vec![]);
    b.node("Flatten", &["r"], &["logits"], vec![a_int("axis", 1)]);
    seeds.push(b.build("logits"));

    let mut b = OnnxBuilder::new(&[3, 8, 8]);
    let pool = |k: i64, s: i64, p: i64| {
        vec![
            a_ints("kernel_shape", &[k, k]),
            a_ints("strides", &[s, s]),
            a_ints("pads", &[p; 4]),
        ]
    };
    b.node("MaxPool", &["input"], &["m"], pool(2, 2, 0));
    b.node("AveragePool", &["m"], &["a"], pool(3, 1, 1));
    b.node("Flatten", &["a"], &["logits"], vec![a_int("axis", 1)]);
    seeds.push(b.build("logits"));

    let mut b = OnnxBuilder::new(&[3, 8, 8]);
    let pads = b.init_i64("pads", &[8], vec![0, 0, 1, 1, 0, 0, 1, 1]);
    b.node("Pad", &["input", &pads], &["p"], vec![]);
    let starts = b.init_i64("starts", &[2], vec![1, 2]);
    let ends = b.init_i64("ends", &[2], vec![9, 10]);
    let axes = b.init_i64("axes", &[2], vec![2, 3]);
    b.node("Slice", &["p", &starts, &ends, &axes], &["s"], vec![]);
    b.node("Concat", &["s", "input"], &["c"], vec![a_int("axis", 1)]);
    b.node(
        "Transpose",
        &["c"],
        &["t"],
        vec![a_ints("perm", &[0, 1, 3, 2])],
    );
    let shape = b.init_i64("shape", &[2], vec![0, -1]);
    b.node("Reshape", &["t", &shape], &["r"], vec![]);
    b.node("Softmax", &["r"], &["logits"], vec![a_int("axis", 1)]);
    seeds.push(b.build("logits"));
    seeds
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn onnx_import_forward_backward_never_panic() {
    start_guards();
    // Informational only: a test running beside this one adds its own executions.
    RAN.store(0, Ordering::Relaxed);
    GRADIENTS.store(0, Ordering::Relaxed);
    fuzz(Target {
        name: "onnx",
        seeds: seeds(),
        replay: vec![PathBuf::from(format!("{ASSETS}/fuzz/crashes-onnx"))],
        default_execs: 3000,
        mutate: &mut mutate,
        run: &onnx_target,
        park: &|_| false,
        park_dir: None,
    });
    println!(
        "fuzz onnx: {} mutants reached the backward pass, {} gave gradients",
        RAN.load(Ordering::Relaxed),
        GRADIENTS.load(Ordering::Relaxed)
    );
}

#[test]
fn every_seed_imports_runs_and_backpropagates() {
    // Mutating models the importer rejects outright would fuzz only its first checks.
    for (i, s) in seeds().iter().enumerate() {
        let model = import_bytes(s, "seed").unwrap_or_else(|e| panic!("seed {i}: {e}"));
        let cpu = CpuBackend::new();
        let x = cpu
            .upload(&common::random(
                &model.graph.values[model.graph.input].full_shape(1),
                i as u64,
            ))
            .unwrap();
        let k = model.num_classes();
        let grad = cpu.upload(&HostTensor::zeros(vec![1, k])).unwrap();
        let seed = Seed::Grad {
            at: model.graph.output,
            grad,
        };
        cpu.gradients(&model, &x, &seed, GradRule::Standard, &[], &[])
            .unwrap_or_else(|e| panic!("seed {i}: {e}"));
        for v in 0..4 {
            assert!(onnx_target(s, v), "seed {i} variant {v}");
        }
    }
}
