//! Shared test helpers: an ONNX model builder (tract-onnx's protobuf types, encoded with prost),
//! a tract reference runner, both backends, and comparison helpers.
#![allow(dead_code)]

pub mod fuzz;
pub mod onnx_mutate;

use std::sync::OnceLock;

use netlens::cpu::CpuBackend;
use netlens::gpu::{GpuBackend, GpuOptions};
use netlens::{Backend, HostTensor, Model};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

pub fn asset(rel: &str) -> String {
    format!("{}/assets/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// One GPU backend for the whole test binary; a missing adapter fails the test with the way out.
pub fn gpu() -> &'static GpuBackend {
    static GPU: OnceLock<GpuBackend> = OnceLock::new();
    GPU.get_or_init(private_gpu)
}

/// A backend of the test's own, for tests that count submissions: the shared `gpu()` is used by
/// the tests running beside it, whose submissions would land in its counters.
pub fn private_gpu() -> GpuBackend {
    GpuBackend::new(&GpuOptions::default())
        .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"))
}

pub fn cpu() -> CpuBackend {
    CpuBackend::new()
}

/// A deterministic pseudo-random tensor in [-1, 1).
pub fn random(shape: &[usize], seed: u64) -> HostTensor {
    let n = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    HostTensor {
        shape: shape.to_vec(),
        data,
    }
}

pub fn run_backend<B: Backend>(b: &B, model: &Model, x: &HostTensor) -> HostTensor {
    let input = b.upload(x).expect("upload");
    let f = b.forward(model, &input, &[]).expect("forward");
    b.read(&f.output).expect("read")
}

/// Runs the ONNX bytes through tract's optimized plan with a concrete batch.
pub fn run_tract(bytes: &[u8], x: &HostTensor) -> HostTensor {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .expect("tract parses")
        .with_input_fact(0, f32::fact(x.shape.clone()).into())
        .expect("input fact")
        .into_optimized()
        .expect("tract optimizes")
        .into_runnable()
        .expect("runnable");
    let input = Tensor::from_shape(&x.shape, &x.data).expect("tensor");
    let out = model.run(tvec!(input.into())).expect("tract runs");
    let view = out[0].to_plain_array_view::<f32>().expect("f32 output");
    HostTensor {
        shape: view.shape().to_vec(),
        data: view.iter().copied().collect(),
    }
}

/// max |a - b| / max(max |b|, floor).
pub fn rel_err(a: &[f32], b: &[f32], floor: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(floor, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) },
        )
        .0
}

pub fn read_npy(path: &str) -> HostTensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let npy = npyz::NpyFile::new(&bytes[..]).expect("npy header");
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let data: Vec<f32> = npy.into_vec().expect("f32 data");
    HostTensor { shape, data }
}

// ---------------------------------------------------------------------------------------------
// ONNX builder

pub fn a_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 2,
        i: v,
        ..Default::default()
    }
}
pub fn a_float(name: &str, v: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 1,
        f: v,
        ..Default::default()
    }
}
pub fn a_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: v.to_vec(),
        ..Default::default()
    }
}
pub fn a_str(name: &str, v: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 3,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// Builds a single-input ONNX classifier-like graph with a symbolic batch.
pub struct OnnxBuilder {
    pub opset: i64,
    input_shape: Vec<i64>,
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    seed: u64,
}

impl OnnxBuilder {
    /// `input_shape` is the per-sample shape; the input is named `input`.
    pub fn new(input_shape: &[i64]) -> Self {
        OnnxBuilder {
            opset: 13,
            input_shape: input_shape.to_vec(),
            nodes: vec![],
            inits: vec![],
            seed: 7,
        }
    }

    pub fn opset(mut self, v: i64) -> Self {
        self.opset = v;
        self
    }

    pub fn init(&mut self, name: &str, shape: &[i64], data: Vec<f32>) -> String {
        assert_eq!(shape.iter().product::<i64>() as usize, data.len());
        self.inits.push(pb::TensorProto {
            name: name.into(),
            dims: shape.to_vec(),
            data_type: 1,
            float_data: data,
            ..Default::default()
        });
        name.to_string()
    }

    /// A random float initializer.
    pub fn weight(&mut self, name: &str, shape: &[i64]) -> String {
        self.seed += 1;
        let s: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        let data = random(&s, self.seed)
            .data
            .into_iter()
            .map(|v| v * 0.5)
            .collect();
        self.init(name, shape, data)
    }

    pub fn init_i64(&mut self, name: &str, shape: &[i64], data: Vec<i64>) -> String {
        self.inits.push(pb::TensorProto {
            name: name.into(),
            dims: shape.to_vec(),
            data_type: 7,
            int64_data: data,
            ..Default::default()
        });
        name.to_string()
    }

    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
    ) {
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(pb::NodeProto {
            op_type: op.into(),
            name,
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
    }

    pub fn build(&self, output: &str) -> Vec<u8> {
        use pb::tensor_shape_proto::{dimension, Dimension};
        let mut dims = vec![Dimension {
            value: Some(dimension::Value::DimParam("N".into())),
            ..Default::default()
        }];
        dims.extend(self.input_shape.iter().map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d)),
            ..Default::default()
        }));
        let tensor_type = |shape: Option<pb::TensorShapeProto>| pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape,
            })),
            ..Default::default()
        };
        let graph = pb::GraphProto {
            name: "test".into(),
            node: self.nodes.clone(),
            initializer: self.inits.clone(),
            input: vec![pb::ValueInfoProto {
                name: "input".into(),
                r#type: Some(tensor_type(Some(pb::TensorShapeProto { dim: dims }))),
                ..Default::default()
            }],
            output: vec![pb::ValueInfoProto {
                name: output.into(),
                r#type: Some(tensor_type(None)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            producer_name: "netlens-tests".into(),
            graph: Some(graph),
            ..Default::default()
        };
        model.encode_to_vec()
    }
}

/// Runs the `netlens` binary with Mesa's device-select layer silenced and `NETLENS_BACKEND`
/// unset, so `auto` means auto whatever the caller's environment.
pub fn netlens(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_netlens"))
        .args(args)
        .env("NODEVICE_SELECT", "1")
        .env_remove("NETLENS_BACKEND")
        .output()
        .expect("netlens runs")
}

/// `target/tmp/<group>/<name>`, with its folder created.
pub fn scratch_in(group: &str, name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(group);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Asserts exit code 2, a stderr line naming `needle` (case-insensitive), and no panic.
pub fn assert_bad_input(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2, stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "panic: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains(&needle.to_lowercase()),
        "stderr lacks '{needle}': {stderr}"
    );
}
