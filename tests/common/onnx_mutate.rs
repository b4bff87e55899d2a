//! Structure-aware mutations of an ONNX model decoded with tract-onnx's protobuf types: the
//! fields the importer has to validate (attributes, dims, data types, initializer payloads, node
//! wiring, op types, opsets), set to values at the edges of what it must refuse.

use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};

use super::fuzz::Rng;

/// Integers at the boundaries: overflow bait for every checked-arithmetic path.
const BOUNDARY: &[i64] = &[
    0,
    -1,
    1,
    2,
    1 << 31,
    (1 << 31) - 1,
    1 << 32,
    1 << 62,
    i64::MAX,
    i64::MIN,
];

const FLOATS: &[f32] = &[
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    0.0,
    -1.0,
    1e-45,
    3.4e38,
];

/// Attribute names the lowerings read, for attributes that appear where they were not.
const ATTR_NAMES: &[&str] = &[
    "pads",
    "strides",
    "dilations",
    "kernel_shape",
    "group",
    "axis",
    "axes",
    "perm",
    "keepdims",
    "transA",
    "transB",
    "alpha",
    "beta",
    "epsilon",
    "auto_pad",
    "ceil_mode",
    "count_include_pad",
    "mode",
    "split",
    "allowzero",
    "min",
    "max",
    "size",
    "bias",
    "value",
    "starts",
    "ends",
    "storage_order",
];

const STRINGS: &[&str] = &[
    "SAME_UPPER",
    "SAME_LOWER",
    "VALID",
    "NOTSET",
    "",
    "constant",
    "reflect",
    "edge",
    "\u{0}",
];

/// Op types to swap in besides every op the importer lowers (`supported_ops`, so a new op is
/// fuzzed without touching this list): the folded-only, removed and unsupported ones.
const OTHER_OP_TYPES: &[&str] = &[
    "Cast",
    "Shape",
    "Gather",
    "Constant",
    "ConstantOfShape",
    "Where",
    "Resize",
    "ConvTranspose",
    "Loop",
    "",
];

/// A small integer most of the time (so that mutants still import and reach the kernels), a
/// boundary value otherwise.
fn int(rng: &mut Rng) -> i64 {
    if rng.below(2) == 0 {
        rng.below(12) as i64 - 3
    } else {
        *rng.pick(BOUNDARY)
    }
}

fn float(rng: &mut Rng) -> f32 {
    if rng.below(3) == 0 {
        rng.below(9) as f32 * 0.5 - 2.0
    } else {
        *rng.pick(FLOATS)
    }
}

/// A list changed in place: one element, a longer or shorter list, or an empty one.
fn list<T: Clone>(rng: &mut Rng, v: &mut Vec<T>, value: impl Fn(&mut Rng) -> T) {
    match rng.below(6) {
        0 | 1 if !v.is_empty() => {
            let i = rng.below(v.len());
            v[i] = value(rng);
        }
        2 => {
            let x = value(rng);
            v.insert(rng.below(v.len() + 1), x);
        }
        3 if !v.is_empty() => {
            v.remove(rng.below(v.len()));
        }
        4 => v.clear(),
        _ => {
            let copy = v.clone();
            v.extend(copy);
        }
    }
}

fn attribute(rng: &mut Rng, a: &mut pb::AttributeProto) {
    match a.r#type {
        2 => a.i = int(rng),
        7 => list(rng, &mut a.ints, int),
        1 => a.f = float(rng),
        6 => list(rng, &mut a.floats, float),
        3 => a.s = rng.pick(STRINGS).as_bytes().to_vec(),
        4 => {
            if let Some(t) = a.t.as_mut() {
                tensor(rng, t);
            }
        }
        _ => {}
    }
    match rng.below(12) {
        // The wrong type tag for the payload, or another attribute's name.
        0 => a.r#type = rng.below(15) as i32,
        1 => a.name = rng.pick(ATTR_NAMES).to_string(),
        _ => {}
    }
}

fn new_attribute(rng: &mut Rng) -> pb::AttributeProto {
    let mut a = pb::AttributeProto {
        name: rng.pick(ATTR_NAMES).to_string(),
        ..Default::default()
    };
    match rng.below(4) {
        0 => {
            a.r#type = 2;
            a.i = int(rng);
        }
        1 => {
            a.r#type = 1;
            a.f = float(rng);
        }
        2 => {
            a.r#type = 3;
            a.s = rng.pick(STRINGS).as_bytes().to_vec();
        }
        _ => {
            a.r#type = 7;
            a.ints = (0..rng.below(9)).map(|_| int(rng)).collect();
        }
    }
    a
}

fn data_type(rng: &mut Rng) -> i32 {
    *rng.pick(&[0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 16, 17, 100, -1])
}

/// Dims, data type, or payload (raw or typed, cut short or grown) of a tensor.
fn tensor(rng: &mut Rng, t: &mut pb::TensorProto) {
    match rng.below(7) {
        0 | 1 => list(rng, &mut t.dims, int),
        2 => t.data_type = data_type(rng),
        3 => {
            let n = rng.below(t.raw_data.len() + 1);
            match rng.below(3) {
                0 => t.raw_data.truncate(n),
                1 => t.raw_data.extend((0..1 + rng.below(64)).map(|i| i as u8)),
                _ => t.raw_data.extend_from_slice(
                    &FLOATS
                        .iter()
                        .flat_map(|f| f.to_le_bytes())
                        .collect::<Vec<_>>(),
                ),
            }
        }
        4 => list(rng, &mut t.float_data, float),
        // Shape, starts/ends, pads and axes operands are int64 initializers.
        _ => list(rng, &mut t.int64_data, int),
    }
}

/// A name in the graph: an input, an initializer, a node output, or one that nothing defines.
fn name(rng: &mut Rng, g: &pb::GraphProto) -> String {
    match rng.below(5) {
        0 if !g.input.is_empty() => rng.pick(&g.input).name.clone(),
        1 if !g.initializer.is_empty() => rng.pick(&g.initializer).name.clone(),
        2 | 3 if !g.node.is_empty() => {
            let n = rng.pick(&g.node);
            n.output.first().cloned().unwrap_or_default()
        }
        _ => rng.pick(&["", "dangling", "input", "logits"]).to_string(),
    }
}

fn dims(rng: &mut Rng, info: &mut pb::ValueInfoProto) {
    let Some(pb::type_proto::Value::TensorType(t)) =
        info.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        return;
    };
    if rng.below(6) == 0 {
        t.elem_type = data_type(rng);
        return;
    }
    let shape = t.shape.get_or_insert_with(Default::default);
    list(rng, &mut shape.dim, |rng| Dimension {
        value: Some(if rng.below(6) == 0 {
            dimension::Value::DimParam("N".into())
        } else {
            dimension::Value::DimValue(int(rng))
        }),
        ..Default::default()
    });
}

/// One structure-aware mutation; attributes, the most productive, get the largest share.
pub fn mutate_model(rng: &mut Rng, m: &mut pb::ModelProto) {
    let g = m.graph.get_or_insert_with(Default::default);
    let nodes = g.node.len();
    match rng.below(16) {
        0..=4 if nodes > 0 => {
            let node = &mut g.node[rng.below(nodes)];
            if node.attribute.is_empty() || rng.below(8) == 0 {
                node.attribute.push(new_attribute(rng));
            } else if rng.below(10) == 0 {
                node.attribute.remove(rng.below(node.attribute.len()));
            } else {
                let i = rng.below(node.attribute.len());
                attribute(rng, &mut node.attribute[i]);
            }
        }
        5 if !g.input.is_empty() => {
            let i = rng.below(g.input.len());
            dims(rng, &mut g.input[i]);
        }
        6 | 7 if !g.initializer.is_empty() => {
            let i = rng.below(g.initializer.len());
            tensor(rng, &mut g.initializer[i]);
        }
        8 if nodes > 0 => {
            let n = name(rng, g);
            let node = &mut g.node[rng.below(nodes)];
            list(rng, &mut node.input, |_| n.clone());
        }
        9 if nodes > 0 => {
            let n = name(rng, g);
            let node = &mut g.node[rng.below(nodes)];
            list(rng, &mut node.output, |_| n.clone());
        }
        10 if nodes > 0 => match rng.below(3) {
            0 => {
                g.node.remove(rng.below(nodes));
            }
            1 => {
                let copy = g.node[rng.below(nodes)].clone();
                g.node.insert(rng.below(nodes + 1), copy);
            }
            _ => g.node.swap(rng.below(nodes), rng.below(nodes)),
        },
        11 if nodes > 0 => {
            let supported = netlens::model::import::supported_ops();
            let pick = rng.below(supported.len() + OTHER_OP_TYPES.len());
            g.node[rng.below(nodes)].op_type = supported
                .get(pick)
                .copied()
                .unwrap_or_else(|| OTHER_OP_TYPES[pick - supported.len()])
                .to_string();
        }
        12 => {
            let n = name(rng, g);
            match g.output.first_mut() {
                Some(o) if rng.below(2) == 0 => o.name = n,
                _ => list(rng, &mut g.output, |_| pb::ValueInfoProto {
                    name: n.clone(),
                    ..Default::default()
                }),
            }
        }
        13 => {
            let version =
                *rng.pick(&[1, 6, 7, 9, 10, 11, 12, 13, 17, 18, 21, 100, 0, -1, i64::MAX]);
            match m.opset_import.first_mut() {
                Some(o) => o.version = version,
                None => m.opset_import.push(pb::OperatorSetIdProto {
                    domain: String::new(),
                    version,
                }),
            }
        }
        14 if nodes > 0 => {
            let node = &mut g.node[rng.below(nodes)];
            node.domain = rng.pick(&["", "ai.onnx", "com.microsoft"]).to_string();
        }
        _ => {
            // Conv-family attributes straight to the boundaries: where the known crashes are.
            let convs: Vec<usize> = (0..nodes)
                .filter(|&i| g.node[i].attribute.iter().any(|a| a.r#type == 7))
                .collect();
            if convs.is_empty() {
                return;
            }
            let node = &mut g.node[*rng.pick(&convs)];
            let lists: Vec<usize> = (0..node.attribute.len())
                .filter(|&i| node.attribute[i].r#type == 7)
                .collect();
            let a = &mut node.attribute[*rng.pick(&lists)];
            if !a.ints.is_empty() {
                let i = rng.below(a.ints.len());
                a.ints[i] = *rng.pick(BOUNDARY);
            }
        }
    }
}
