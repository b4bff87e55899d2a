//! The importer on the shipped models: op counts as documented in assets/PROVENANCE.md, ONNX
//! tensor names kept, shapes per sample, and the CAM layer found.

mod common;
use common::*;
use netlens::model::import::load_model;
use netlens::model::Op;

fn count(model: &netlens::Model, kind: &str) -> usize {
    model
        .graph
        .nodes
        .iter()
        .filter(|n| n.op.kind_name() == kind)
        .count()
}

#[test]
fn mobilenetv2_structure() {
    let m = load_model(asset("models/mobilenetv2_imagenet.onnx")).expect("import");
    assert_eq!(count(&m, "Conv") + count(&m, "DepthwiseConv"), 52);
    assert_eq!(count(&m, "DepthwiseConv"), 17);
    assert_eq!(count(&m, "Clip"), 35);
    assert_eq!(count(&m, "Add"), 10);
    assert_eq!(count(&m, "GlobalAveragePool"), 1);
    assert_eq!(count(&m, "Linear"), 1);
    assert_eq!(m.input_shape(), &[3, 224, 224]);
    assert_eq!(m.num_classes(), 1000);
    let cam = m.graph.cam_layer().expect("cam layer");
    assert_eq!(
        m.graph.values[cam].name,
        "/features/features.18/features.18.2/Clip_output_0"
    );
    assert_eq!(m.graph.values[cam].shape, vec![1280, 7, 7]);
    assert_eq!(m.graph.values[m.graph.output].name, "logits");
    // ~3.5 M parameters in torchvision's MobileNetV2.
    let p = m.graph.param_count();
    assert!((3_400_000..3_600_000).contains(&p), "{p}");
}

#[test]
fn efficientnet_lite0_has_asymmetric_pads() {
    let m = load_model(asset("models/efficientnet_lite0_imagenet.onnx")).expect("import");
    assert_eq!(count(&m, "Conv") + count(&m, "DepthwiseConv"), 49);
    assert_eq!(count(&m, "DepthwiseConv"), 16);
    let asym = m
        .graph
        .nodes
        .iter()
        .filter(
            |n| matches!(&n.op, Op::Conv(c) if c.pads[0] != c.pads[2] || c.pads[1] != c.pads[3]),
        )
        .count();
    assert!(
        asym > 0,
        "EfficientNet-Lite0's TF SAME pads should be asymmetric"
    );
    let cam = m.graph.cam_layer().expect("cam layer");
    assert_eq!(m.graph.values[cam].name, "/_swish_1/Clip_output_0");
}

#[test]
fn layer_lookup_errors_name_close_matches() {
    let m = load_model(asset("models/tiny_digits.onnx")).expect("import");
    assert!(m.layer("/features/features.11/Relu_output_0").is_ok());
    let e = m.layer("Relu_output").unwrap_err();
    assert_eq!(e.kind, netlens::ErrorKind::BadInput);
    assert!(e.message.contains("did you mean"), "{}", e.message);
}
