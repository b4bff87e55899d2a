//! ONNX → netlens IR.
//!
//! tract-onnx parses the protobuf and decodes the weight tensors; the translation works on the
//! ONNX nodes themselves rather than on tract's decluttered graph. Declutter rewrites ops into
//! forms (ReLU as `Max(x, 0)`, Gemm as EinSum, HardSigmoid as four binary ops) that would erase
//! what the attribution methods need to see: which op is a ReLU for guided backprop, where the
//! Gemm after global pooling is for CAM, and every ONNX tensor name for tapping.
//!
//! Constant sub-graphs, including the Shape → Gather → Unsqueeze → Concat chains that PyTorch
//! exports for a dynamic batch, are evaluated here with the batch kept symbolic.

pub(crate) mod attrs;
pub(crate) mod consts;
mod fold;
pub(crate) mod lower;

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::ir::{Graph, ValueId};
use crate::model::Model;
use attrs::NodeCtx;
pub(crate) use consts::Sym;
use lower::{get, Importer};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

/// ONNX op types the importer handles itself: constants, aliases and shape arithmetic. Every
/// other op type is lowered by its op module (`crate::ops`).
const IMPORTER_OPS: &[&str] = &["Dropout", "Identity", "Cast", "Shape", "Gather", "Constant"];

/// Every ONNX op type the importer accepts (activation ops; constant folding takes more).
pub fn supported_ops() -> Vec<&'static str> {
    crate::ops::onnx_ops()
        .chain(IMPORTER_OPS.iter().copied())
        .collect()
}

/// Loads and imports an ONNX classifier from a file.
pub fn load_model(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::bad_input(format!("cannot read model '{}': {e}", path.display())))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    import_bytes(&bytes, &name).map_err(|e| e.context(format!("model '{}'", path.display())))
}

/// Imports an ONNX classifier from its serialized bytes.
pub fn import_bytes(bytes: &[u8], name: &str) -> Result<Model> {
    import_bytes_sized(bytes, name, None)
}

/// Loads an ONNX classifier instantiated at another input size `[C, H, W]` than the one its file
/// declares (C must match). Every shape is re-derived from the input, so this works for fully
/// convolutional models (up to a global pooling); a model whose later ops need the declared size
/// fails with an error naming the op. Deep dream's image pyramid uses it.
pub fn load_model_with_input(path: impl AsRef<Path>, input: [usize; 3]) -> Result<Model> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::bad_input(format!("cannot read model '{}': {e}", path.display())))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    import_bytes_with_input(&bytes, &name, input)
        .map_err(|e| e.context(format!("model '{}'", path.display())))
}

/// [`import_bytes`] at another input size `[C, H, W]`; see [`load_model_with_input`].
pub fn import_bytes_with_input(bytes: &[u8], name: &str, input: [usize; 3]) -> Result<Model> {
    import_bytes_sized(bytes, name, Some(input)).map_err(|e| {
        e.context(format!(
            "instantiating the model at input {}x{}x{}",
            input[0], input[1], input[2]
        ))
    })
}

fn import_bytes_sized(bytes: &[u8], name: &str, input: Option<[usize; 3]>) -> Result<Model> {
    if bytes.is_empty() {
        return Err(Error::bad_input("the file is empty, not an ONNX model"));
    }
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| {
            Error::bad_input(format!(
                "not a valid ONNX model (protobuf decoding failed: {e})"
            ))
        })?;
    let graph = import_proto(&proto, input)?;
    Ok(Model {
        graph,
        name: name.to_string(),
    })
}

/// The default opset domain's version.
fn opset_version(proto: &pb::ModelProto) -> Result<i64> {
    proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| Error::bad_input("not a valid ONNX model: it declares no ai.onnx opset"))
}

fn import_proto(proto: &pb::ModelProto, input_override: Option<[usize; 3]>) -> Result<Graph> {
    let g = proto
        .graph
        .as_ref()
        .ok_or_else(|| Error::bad_input("not a valid ONNX model: it has no graph"))?;
    if g.node.is_empty() {
        return Err(Error::bad_input(
            "not a valid ONNX model: its graph has no nodes",
        ));
    }
    let opset = opset_version(proto)?;
    let mut imp = Importer {
        opset,
        values: Vec::new(),
        nodes: Vec::new(),
        env: HashMap::new(),
        readers: HashMap::new(),
    };
    for n in &g.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            *imp.readers.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &g.output {
        *imp.readers.entry(o.name.clone()).or_default() += 1;
    }
    for t in &g.initializer {
        let sym = consts::load_initializer(t)?;
        imp.env.insert(t.name.clone(), sym);
    }

    let data_inputs: Vec<&pb::ValueInfoProto> = g
        .input
        .iter()
        .filter(|i| !imp.env.contains_key(&i.name))
        .collect();
    let input_info = match data_inputs.as_slice() {
        [one] => *one,
        [] => return Err(Error::bad_input("the model has no data input")),
        many => {
            let names: Vec<&str> = many.iter().map(|i| i.name.as_str()).collect();
            return Err(Error::bad_input(format!(
                "netlens explains single-input image classifiers; this model has {} inputs: {}",
                many.len(),
                names.join(", ")
            )));
        }
    };
    let mut input_shape = input_sample_shape(input_info)?;
    if let Some([c, h, w]) = input_override {
        if c != input_shape[0] || h == 0 || w == 0 {
            return Err(Error::bad_input(format!(
                "the model takes {} channel(s); cannot instantiate it at [{c}, {h}, {w}]",
                input_shape[0]
            )));
        }
        input_shape = vec![c, h, w];
        crate::model::check_sample_shape(&input_shape).map_err(|why| {
            Error::bad_input(format!(
                "cannot instantiate the model at [{c}, {h}, {w}]: {why}"
            ))
        })?;
    }
    let input = imp.add_value(&input_info.name, input_shape);
    imp.env.insert(input_info.name.clone(), Sym::Act(input));

    for (index, node) in g.node.iter().enumerate() {
        let ctx = NodeCtx { node, index };
        let first_new = imp.values.len();
        translate(&mut imp, &ctx)?;
        check_new_values(&imp, &ctx, first_new)?;
    }

    let out_info = g
        .output
        .first()
        .ok_or_else(|| Error::bad_input("the model declares no output"))?;
    let output = match imp.env.get(&out_info.name) {
        Some(Sym::Act(v)) => *v,
        Some(_) => {
            return Err(Error::bad_input(format!(
                "output '{}' is a constant: it does not depend on the input",
                out_info.name
            )))
        }
        None => {
            return Err(Error::bad_input(format!(
                "output '{}' is produced by no node",
                out_info.name
            )))
        }
    };
    // A graph output that is only an alias of the input (or another value) still needs a name the
    // user knows: keep the ONNX output name on it.
    if imp.values[output].name != out_info.name && imp.producer_count(output) == 1 {
        imp.values[output].name = out_info.name.clone();
    }
    let graph = Graph {
        values: imp.values,
        nodes: imp.nodes,
        input,
        output,
    };
    Ok(prune(graph))
}

/// The backstop behind every lowering's own checks: each value the node produced has dimensions
/// of at least 1 and at most [`crate::model::MAX_SAMPLE_ELEMS`] elements per sample, so no later stage
/// (`info`, the executors' allocations, the GPU's 32-bit indexing) meets an impossible shape.
fn check_new_values(imp: &Importer, ctx: &NodeCtx, first_new: usize) -> Result<()> {
    for v in &imp.values[first_new..] {
        crate::model::check_sample_shape(&v.shape).map_err(|why| {
            ctx.err(format!(
                "output '{}' would have shape [N, {}]: {why}",
                v.name,
                lower::dims(&v.shape)
            ))
        })?;
    }
    Ok(())
}

/// Translates one ONNX node: the importer's own ops, constant folding when every input is a
/// constant, else the op module's lowering.
fn translate(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let node = ctx.node;
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(unsupported(ctx));
    }
    let op = node.op_type.as_str();
    match op {
        "Constant" => return fold::constant(imp, ctx),
        "Identity" | "Dropout" => {
            if op == "Dropout" && imp.output_read(ctx, 1) {
                return Err(ctx.err("Dropout's mask output is used; netlens only runs inference"));
            }
            let x = get(imp, ctx, 0)?;
            imp.env.insert(ctx.out_name(0).to_string(), x);
            return Ok(());
        }
        "Shape" => return fold::shape_of(imp, ctx),
        _ => {}
    }
    let inputs: Vec<Sym> = (0..node.input.len())
        .filter(|&i| ctx.input(i).is_some())
        .map(|i| get(imp, ctx, i))
        .collect::<Result<_>>()?;
    if !inputs.is_empty() && inputs.iter().all(|s| !matches!(s, Sym::Act(_))) {
        return fold::fold(imp, ctx);
    }
    if op == "Cast" {
        // Only float-to-float casts make sense on image activations.
        let to = ctx.int("to", 1);
        if !matches!(to, 1 | 10 | 11) {
            return Err(ctx.err(format!(
                "Cast of an activation to ONNX type {to} is not supported"
            )));
        }
        let x = get(imp, ctx, 0)?;
        imp.env.insert(ctx.out_name(0).to_string(), x);
        return Ok(());
    }
    match crate::ops::lowering(op) {
        Some(lower) => lower(imp, ctx),
        None => Err(unsupported(ctx)),
    }
}

fn unsupported(ctx: &NodeCtx) -> crate::Error {
    let domain = if ctx.node.domain.is_empty() {
        String::new()
    } else {
        format!(" in domain '{}'", ctx.node.domain)
    };
    ctx.err(format!(
        "unsupported ONNX op '{}'{domain}. netlens supports: {}",
        ctx.node.op_type,
        supported_ops().join(", ")
    ))
}

impl Importer {
    fn producer_count(&self, v: ValueId) -> usize {
        self.nodes.iter().filter(|n| n.output == v).count()
    }
}

/// Per-sample `[C, H, W]` of the image input; the batch dimension may be symbolic or fixed.
fn input_sample_shape(info: &pb::ValueInfoProto) -> Result<Vec<usize>> {
    use pb::tensor_shape_proto::dimension::Value as D;
    use pb::type_proto::Value as T;
    let tensor = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(T::TensorType(t)) => t,
        _ => {
            return Err(Error::bad_input(format!(
                "input '{}' is not a tensor",
                info.name
            )))
        }
    };
    if tensor.elem_type != pb::tensor_proto::DataType::Float as i32 {
        return Err(Error::bad_input(format!(
            "input '{}' is not float32 (elem_type {})",
            info.name, tensor.elem_type
        )));
    }
    let dims = tensor
        .shape
        .as_ref()
        .map(|s| s.dim.iter().map(|d| d.value.clone()).collect::<Vec<_>>())
        .unwrap_or_default();
    if dims.len() != 4 {
        return Err(Error::bad_input(format!(
            "input '{}' has rank {}; netlens expects an image batch [N, C, H, W]",
            info.name,
            dims.len()
        )));
    }
    let shape = dims[1..]
        .iter()
        .map(|d| match d {
            Some(D::DimValue(v)) if *v > 0 => Ok(*v as usize),
            _ => Err(Error::bad_input(format!(
                "input '{}' must have fixed C, H and W (only the batch may be dynamic)",
                info.name
            ))),
        })
        .collect::<Result<Vec<usize>>>()?;
    crate::model::check_sample_shape(&shape).map_err(|why| {
        Error::bad_input(format!(
            "input '{}' of shape [N, {}]: {why}",
            info.name,
            lower::dims(&shape)
        ))
    })?;
    Ok(shape)
}

/// Drops nodes whose values never reach the output (e.g. a Split branch left unused).
fn prune(graph: Graph) -> Graph {
    let mut live = vec![false; graph.values.len()];
    live[graph.output] = true;
    for n in graph.nodes.iter().rev() {
        if live[n.output] {
            for &i in &n.inputs {
                live[i] = true;
            }
        }
    }
    let Graph {
        values,
        nodes,
        input,
        output,
    } = graph;
    let nodes = nodes.into_iter().filter(|n| live[n.output]).collect();
    Graph {
        values,
        nodes,
        input,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each ONNX op type is lowered by exactly one op module, and the importer's own list does
    /// not shadow a module's: the lookup by name must be unambiguous.
    #[test]
    fn every_onnx_op_has_one_lowering() {
        let names = supported_ops();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "{n} is registered twice");
        }
        for n in crate::ops::onnx_ops() {
            assert!(crate::ops::lowering(n).is_some(), "{n}");
        }
        assert!(crate::ops::lowering("Hardmax").is_none());
    }

    #[test]
    fn empty_and_garbage_bytes_are_bad_input() {
        let e = import_bytes(&[], "x").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::BadInput);
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let e = import_bytes(&garbage, "x").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::BadInput, "{e}");
    }
}
