//! The importer's state and the helpers every ONNX lowering uses (operand access, attribute
//! checks, axis normalisation, emitting IR nodes). The lowerings themselves live with their op
//! in `crate::ops`; this file imports none of them, so the import driver (`mod.rs`) can look the
//! lowerings up without an import circle.

use std::collections::HashMap;

use super::attrs::NodeCtx;
use super::consts::Sym;
use crate::error::Result;
use crate::model::ir::{Node, Op, Value, ValueId};
use crate::model::MAX_SAMPLE_ELEMS;

/// Lowers one ONNX node onto the IR (emitting nodes or binding folded constants).
pub(crate) type Lower = fn(&mut Importer, &NodeCtx) -> Result<()>;

pub(crate) struct Importer {
    pub opset: i64,
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    /// What each ONNX tensor name currently stands for.
    pub env: HashMap<String, Sym>,
    /// How many nodes (and graph outputs) read each tensor name; BatchNorm folding needs it.
    pub readers: HashMap<String, usize>,
}

impl Importer {
    pub fn add_value(&mut self, name: &str, shape: Vec<usize>) -> ValueId {
        self.values.push(Value {
            name: name.to_string(),
            shape,
        });
        self.values.len() - 1
    }

    /// Appends a node writing a new value named `out_name`, and binds the name to it.
    pub fn emit(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<ValueId>,
        out_name: &str,
        shape: Vec<usize>,
    ) -> ValueId {
        let out = self.add_value(out_name, shape);
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs,
            output: out,
        });
        self.env.insert(out_name.to_string(), Sym::Act(out));
        out
    }

    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.values[v].shape
    }

    /// Whether any node or graph output reads output `i` of the node under translation.
    pub fn output_read(&self, ctx: &NodeCtx, i: usize) -> bool {
        self.readers.get(ctx.out_name(i)).copied().unwrap_or(0) > 0
    }
}

pub(crate) fn get(imp: &Importer, ctx: &NodeCtx, i: usize) -> Result<Sym> {
    let name = ctx
        .input(i)
        .ok_or_else(|| ctx.err(format!("input #{i} is missing")))?;
    imp.env
        .get(name)
        .cloned()
        .ok_or_else(|| ctx.err(format!("input '{name}' is produced by no earlier node")))
}

pub(crate) fn act(imp: &Importer, ctx: &NodeCtx, i: usize) -> Result<ValueId> {
    match get(imp, ctx, i)? {
        Sym::Act(v) => Ok(v),
        _ => Err(ctx.err(format!(
            "input #{i} is a constant where netlens expects an activation"
        ))),
    }
}

/// The data input, which must be an `[N, C, H, W]` activation.
pub(crate) fn act4(imp: &Importer, ctx: &NodeCtx) -> Result<ValueId> {
    let x = act(imp, ctx, 0)?;
    if imp.shape(x).len() != 3 {
        return Err(ctx.err(format!(
            "expects a 4-D [N, C, H, W] input, got [N, {}]",
            dims(imp.shape(x))
        )));
    }
    Ok(x)
}

pub(crate) fn const_f32(
    imp: &Importer,
    ctx: &NodeCtx,
    i: usize,
) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
    if ctx.input(i).is_none() {
        return Ok(None);
    }
    match get(imp, ctx, i)?.as_f32() {
        Some(c) => Ok(Some(c)),
        None => Err(ctx.err(format!(
            "input #{i} must be a constant (weights), but it is computed at run time"
        ))),
    }
}

pub(crate) fn const_ints(imp: &Importer, ctx: &NodeCtx, i: usize) -> Result<Option<Vec<i64>>> {
    if ctx.input(i).is_none() {
        return Ok(None);
    }
    get(imp, ctx, i)?
        .as_ints()
        .map(Some)
        .ok_or_else(|| ctx.err(format!("input #{i} must be a constant integer tensor")))
}

pub(crate) fn dims(s: &[usize]) -> String {
    s.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Normalises a possibly negative axis against `rank`.
pub(crate) fn axis_of(ctx: &NodeCtx, axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(ctx.err(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Like [`axis_of`] on a full (batched) rank, refusing the batch axis.
pub(crate) fn feature_axis(ctx: &NodeCtx, axis: i64, full_rank: usize) -> Result<usize> {
    let a = axis_of(ctx, axis, full_rank)?;
    if a == 0 {
        return Err(ctx.err(
            "operating along the batch axis is not supported (netlens keeps samples independent)",
        ));
    }
    Ok(a)
}

pub(crate) fn emit_same_shape(imp: &mut Importer, ctx: &NodeCtx, op: Op, x: ValueId) {
    let s = imp.shape(x).to_vec();
    imp.emit(&ctx.node.name, op, vec![x], ctx.out_name(0), s);
}

/// A 2-D window's attributes (conv or pool) and its output plane.
pub(crate) struct Window {
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Top, left, bottom, right.
    pub pads: [usize; 4],
    /// Output `[oh, ow]`, each at least 1.
    pub out: [usize; 2],
}

/// Reads and checks a 2-D window's strides, dilations and pads (resolving `auto_pad`) against
/// the input plane `[h, w]` and `kernel`. Every attribute is bounded by [`MAX_SAMPLE_ELEMS`] (no
/// window over a sample within the limit can be wider, and the kernels index with 32-bit words),
/// all arithmetic is checked, and a kernel larger than the padded input (output < 1, which ONNX
/// forbids) is refused.
pub(crate) fn window_2d(
    ctx: &NodeCtx,
    input: [usize; 2],
    kernel: [usize; 2],
    ceil: bool,
) -> Result<Window> {
    let strides = pair(ctx, "strides", 1)?;
    let dilations = pair(ctx, "dilations", 1)?;
    for (name, v) in [
        ("kernel", &kernel[..]),
        ("strides", &strides[..]),
        ("dilations", &dilations[..]),
    ] {
        if v.iter().any(|&x| x == 0 || x > MAX_SAMPLE_ELEMS) {
            return Err(ctx.err(format!(
                "{name} {v:?} out of range: each must be between 1 and {MAX_SAMPLE_ELEMS} (2^28)"
            )));
        }
    }
    let pads = pads_2d(ctx, input, kernel, strides, dilations)?;
    if pads.iter().any(|&p| p > MAX_SAMPLE_ELEMS) {
        return Err(ctx.err(format!(
            "pads {pads:?} out of range: each must be at most {MAX_SAMPLE_ELEMS} (2^28)"
        )));
    }
    let mut out = [0; 2];
    for d in 0..2 {
        let o = crate::model::window_out_len(
            input[d],
            kernel[d],
            strides[d],
            dilations[d],
            pads[d],
            pads[d + 2],
            ceil,
        );
        out[d] = o.ok_or_else(|| {
            let axis = ["height", "width"][d];
            ctx.err(format!(
                "the window along the {axis} (kernel {}, dilation {}) is larger than the padded \
                 input ({} + pads {} and {}): the output would be empty, which ONNX forbids",
                kernel[d],
                dilations[d],
                input[d],
                pads[d],
                pads[d + 2]
            ))
        })?;
    }
    Ok(Window {
        strides,
        dilations,
        pads,
        out,
    })
}

/// `[top, left, bottom, right]` from ONNX attributes, resolving `auto_pad` (with checked
/// arithmetic: strides, dilations and kernel are at least 1 but may be huge).
fn pads_2d(
    ctx: &NodeCtx,
    input: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dil: [usize; 2],
) -> Result<[usize; 4]> {
    let auto = ctx.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" | "" => {
            let p = ctx.usizes("pads")?.unwrap_or_else(|| vec![0; 4]);
            if p.len() != 4 {
                return Err(ctx.err(format!("expects 4 pads for a 2-D window, got {}", p.len())));
            }
            Ok([p[0], p[1], p[2], p[3]])
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = [0; 4];
            for d in 0..2 {
                let out = input[d].div_ceil(strides[d]);
                let total = out
                    .saturating_sub(1)
                    .checked_mul(strides[d])
                    .and_then(|v| v.checked_add(dil[d].checked_mul(kernel[d].checked_sub(1)?)?))
                    .and_then(|v| v.checked_add(1))
                    .ok_or_else(|| ctx.err("auto_pad: the padded extent overflows"))?
                    .saturating_sub(input[d]);
                let small = total / 2;
                let (before, after) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[d] = before;
                pads[d + 2] = after;
            }
            Ok(pads)
        }
        other => Err(ctx.err(format!("unknown auto_pad '{other}'"))),
    }
}

pub(crate) fn pair(ctx: &NodeCtx, name: &str, default: usize) -> Result<[usize; 2]> {
    match ctx.usizes(name)? {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0], v[1]]),
        Some(v) => Err(ctx.err(format!(
            "attribute '{name}' must hold 2 positive values for a 2-D op, got {v:?}"
        ))),
    }
}

pub(crate) fn emit_reshape(
    imp: &mut Importer,
    ctx: &NodeCtx,
    x: ValueId,
    shape: Vec<usize>,
) -> Result<()> {
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if n != Some(imp.values[x].sample_len()) {
        return Err(ctx.err(format!(
            "cannot reshape [N, {}] to [N, {}]",
            dims(imp.shape(x)),
            dims(&shape)
        )));
    }
    imp.emit(&ctx.node.name, Op::Reshape, vec![x], ctx.out_name(0), shape);
    Ok(())
}

pub(crate) fn axes_input_or_attr(
    imp: &Importer,
    ctx: &NodeCtx,
    input: usize,
) -> Result<Option<Vec<i64>>> {
    match ctx.ints("axes") {
        Some(a) => Ok(Some(a)),
        None => const_ints(imp, ctx, input),
    }
}

/// Emits a Slice node reading `len` elements from `start` with `step` along `axis`.
pub(crate) fn emit_slice(
    imp: &mut Importer,
    ctx: &NodeCtx,
    x: ValueId,
    out_name: &str,
    spans: &[(usize, i64, i64, usize)],
) -> Result<()> {
    let xs = imp.shape(x).to_vec();
    let rank = xs.len() + 1;
    let mut starts = vec![0i64; rank];
    let mut steps = vec![1i64; rank];
    let mut out = xs;
    for &(axis, start, step, len) in spans {
        if len == 0 {
            return Err(ctx.err(format!("slice along axis {axis} is empty")));
        }
        starts[axis] = start;
        steps[axis] = step;
        out[axis - 1] = len;
    }
    imp.emit(
        &ctx.node.name,
        Op::Slice { starts, steps },
        vec![x],
        out_name,
        out,
    );
    Ok(())
}
