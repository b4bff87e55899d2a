//! Hostile and odd models through the command line (issue 11): the fuzz reproducers whose
//! Conv/depthwise attributes once made `netlens` panic or abort, and MobileNetV2 with its 7×7
//! depthwise conv given strides past the input. Each must end with exit 0 or 2, and a refusal
//! names the ONNX node.

mod common;
use common::*;
use prost::Message;
use tract_onnx::pb;

const X_DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fuzz/x_digits.npy");

/// Mutants of tiny_digits.onnx (assets/fuzz/onnx/, from the issue-11 fuzzing session) and the
/// node whose attribute was mutated.
const REPRODUCERS: &[(&str, &str)] = &[
    // pads [i64::MAX, 1, 1, 1]: panicked in cpu/conv.rs (slice index out of range).
    ("m_5458", "/features/features.3/Conv"),
    // pads [1, 2^62, 1, 1]: panicked in cpu/conv.rs.
    ("m_4985", "/features/features.0/Conv"),
    // pads 2^31 with dilations 16: capacity overflow in BufPool::take.
    ("m_21894", "/features/features.9/Conv"),
    // pads [1, 1, 2^32, 1]: aborted asking for 6.6 TB.
    ("m_1231", "/features/features.9/Conv"),
    // pads [1, 1, 2^20, 1]: 9.6 GB in conv2d (an output of 1.5 × 2^28 elements per sample).
    ("m_21816", "/features/features.9/Conv"),
];

fn reproducer(name: &str) -> String {
    asset(&format!("fuzz/onnx/{name}.onnx"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn fuzz_reproducers_are_refused_at_import_naming_the_node() {
    for &(name, node) in REPRODUCERS {
        let model = reproducer(name);
        let out = scratch_in("hostile_models", &format!("{name}.npy"));
        let run = netlens(&[
            "run",
            &model,
            "--input-npy",
            X_DIGITS,
            "-o",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
        ]);
        assert_bad_input(&run, node);
        assert!(!out.exists(), "{name}: wrote an output");
        let info = netlens(&["info", &model]);
        assert_bad_input(&info, node);
        assert!(info.stdout.is_empty(), "{name}: info printed a shape");
    }
}

/// The depthwise conv of MobileNetV2's block 17, a 3×3 on a 7×7 plane (pads 1).
const DW_NODE: &str = "/features/features.17/conv/conv.1/conv.1.0/Conv";

/// MobileNetV2 with `DW_NODE`'s strides replaced, written to a scratch file (the shipped model
/// is 14 MB, so the mutants are made here rather than kept).
fn mnv2_with_dw_strides(tag: &str, strides: [i64; 2]) -> String {
    let bytes = std::fs::read(asset("models/mobilenetv2_imagenet.onnx")).unwrap();
    let mut model = pb::ModelProto::decode(&bytes[..]).expect("decodes");
    let graph = model.graph.as_mut().unwrap();
    let node = graph
        .node
        .iter_mut()
        .find(|n| n.name == DW_NODE)
        .expect("the depthwise node");
    let attr = node
        .attribute
        .iter_mut()
        .find(|a| a.name == "strides")
        .expect("a strides attribute");
    attr.ints = strides.to_vec();
    let path = scratch_in("hostile_models", &format!("dw_stride_{tag}.onnx"));
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn mnv2_depthwise_with_huge_strides_is_refused_naming_the_node() {
    // [2^62, 2] panicked in cpu/depthwise.rs; [1, 2^31] aborted asking 51 GB in Phases::new.
    for (tag, strides) in [("huge", [1i64 << 62, 2]), ("2p31", [1, 1 << 31])] {
        let model = mnv2_with_dw_strides(tag, strides);
        let out = scratch_in("hostile_models", &format!("dw_{tag}.npy"));
        let image = asset("images/chelsea.png");
        let run = netlens(&["classify", &model, &image, "--backend", "cpu", "--json"]);
        assert_bad_input(&run, DW_NODE);
        assert_bad_input(&run, "strides");
        let info = netlens(&["info", &model]);
        assert_bad_input(&info, DW_NODE);
        assert!(!out.exists());
    }
}

/// A stride past the input is legal ONNX (one output column here): the forward ran before, the
/// backward panicked in the depthwise VJP (widths 9, 10, 12, 16, 31). Saliency and Grad-CAM must
/// now work on both backends.
#[test]
fn mnv2_depthwise_with_stride_past_the_input_explains_on_both_backends() {
    let model = mnv2_with_dw_strides("1_9", [1, 9]);
    let image = asset("images/chelsea.png");
    let info = netlens(&["info", &model]);
    assert_eq!(info.status.code(), Some(0), "{}", stderr(&info));
    for backend in ["cpu", "gpu"] {
        for method in ["saliency", "gradcam"] {
            let dir = scratch_in("hostile_models", &format!("dw19_{method}_{backend}"));
            let out = netlens(&[
                method,
                &model,
                &image,
                "-o",
                dir.to_str().unwrap(),
                "--backend",
                backend,
            ]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{method} on {backend}: {}",
                stderr(&out)
            );
            assert!(dir.join("summary.json").exists(), "{method} on {backend}");
        }
    }
}
