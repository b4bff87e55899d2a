//! netlens' own graph IR: a small set of ops with static per-sample shapes and a dynamic batch.
//!
//! Every value's `shape` excludes the batch axis; at run time a value has the full shape
//! `[batch] + shape`. Axes stored in ops (`axis`, `axes`, `perm`, pads per dim) are indices into the
//! *full* shape, so axis 0 is the batch axis and ops never move or reduce it (the importer rejects
//! graphs that would).

use std::sync::Arc;

/// Index of a value (tensor) in [`Graph::values`].
pub type ValueId = usize;

/// A constant tensor (weights, biases, broadcast operands).
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    pub shape: Vec<usize>,
    pub data: Arc<Vec<f32>>,
}

impl Const {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Const {
            shape,
            data: Arc::new(data),
        }
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A tensor of the graph, named as in the ONNX file (the name Netron shows).
#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    /// Per-sample shape (without the batch axis).
    pub shape: Vec<usize>,
}

impl Value {
    /// Number of f32 elements per sample.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Full shape for a given batch size.
    pub fn full_shape(&self, batch: usize) -> Vec<usize> {
        let mut s = Vec::with_capacity(self.shape.len() + 1);
        s.push(batch);
        s.extend_from_slice(&self.shape);
        s
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    /// ONNX node name (may be empty in the file; the importer fills in `op_type_index`).
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

/// 2-D convolution, NCHW. `weight` is `[oc, ic / groups, kh, kw]`.
#[derive(Clone, Debug)]
pub struct Conv {
    pub weight: Const,
    pub bias: Option<Const>,
    pub groups: usize,
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

impl Conv {
    pub fn out_channels(&self) -> usize {
        self.weight.shape[0]
    }
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.shape[2], self.weight.shape[3]]
    }
}

/// `y[..., o] = sum_k x[..., k] * weight[o, k] + bias[o]` over the last axis.
/// Gemm (alpha, beta, transB folded in) and MatMul with a constant right operand both become this.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Const,
    pub bias: Option<Const>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Clip {
        min: f32,
        max: f32,
    },
    Sigmoid,
    Tanh,
    /// `max(0, min(1, alpha * x + beta))`
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 0.5))`
    HardSwish,
}

impl Unary {
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Relu => x.max(0.0),
            Unary::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Unary::Clip { min, max } => x.max(min).min(max),
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::Tanh => x.tanh(),
            Unary::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Unary::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }
    /// True for the ReLU-like ops that guided backprop and deconvnet rules apply to.
    pub fn is_relu_like(self) -> bool {
        matches!(
            self,
            Unary::Relu | Unary::Clip { .. } | Unary::LeakyRelu { .. }
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryKind {
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryKind::Add => a + b,
            BinaryKind::Sub => a - b,
            BinaryKind::Mul => a * b,
            BinaryKind::Div => a / b,
        }
    }
}

/// A binary op with ONNX (numpy) broadcasting. Either both operands are values (equal rank, so
/// the batch axes line up), or one is a constant that is right-aligned against the full shape.
#[derive(Clone, Debug)]
pub struct Binary {
    pub kind: BinaryKind,
    /// The constant operand, if any. `None`: `inputs = [a, b]`. `Some`: `inputs = [x]`.
    pub konst: Option<Const>,
    /// With a constant: `true` computes `konst ∘ x`, `false` computes `x ∘ konst`.
    pub konst_is_lhs: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// Average; `count_include_pad` divides by the window clipped to the padded extent.
    Avg {
        count_include_pad: bool,
    },
}

/// 2-D pooling over the last two axes of `[N, C, H, W]`. The output size (ceil_mode included) is
/// the output value's shape; windows are clipped to the input (and to the pads for the divisor).
#[derive(Clone, Debug)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
}

#[derive(Clone, Debug)]
pub enum Op {
    Conv(Conv),
    Linear(Linear),
    Unary(Unary),
    Binary(Binary),
    /// Per-channel `x * scale[c] + shift[c]` over full axis 1: an unfolded BatchNormalization.
    ChannelAffine {
        scale: Const,
        shift: Const,
    },
    Pool(Pool),
    /// Mean or max over H and W of `[N, C, H, W]`, giving `[N, C, 1, 1]`.
    GlobalPool {
        max: bool,
    },
    /// Reduction over full-shape `axes` (never 0), sorted ascending. `keepdims` decides whether the
    /// output keeps them as size 1; the output value's shape says which.
    Reduce {
        kind: ReduceKind,
        axes: Vec<usize>,
        keepdims: bool,
    },
    /// Same data, new per-sample shape (Reshape, Flatten, Squeeze, Unsqueeze).
    Reshape,
    /// Full-shape permutation, `perm[0] == 0`.
    Transpose {
        perm: Vec<usize>,
    },
    /// Concatenation along full `axis` (>= 1) of all inputs.
    Concat {
        axis: usize,
    },
    /// `out[i_0.., i_d, ..] = in[.., start[d] + i_d * step[d], ..]` for every full axis `d`
    /// (`start[0] = 0`, `step[0] = 1`). Covers Slice and each output of Split.
    Slice {
        starts: Vec<i64>,
        steps: Vec<i64>,
    },
    /// Constant padding: `pads[d] = (before, after)` for every full axis (batch axis `(0, 0)`).
    Pad {
        pads: Vec<(usize, usize)>,
        value: f32,
    },
    /// Softmax over full `axis`.
    Softmax {
        axis: usize,
    },
    /// Local response normalisation across channels (ONNX LRN).
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
}

impl Op {
    /// A short name for listings and errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Conv(c) if c.groups > 1 && c.groups == c.weight.shape[0] => "DepthwiseConv",
            Op::Conv(_) => "Conv",
            Op::Linear(_) => "Linear",
            Op::Unary(u) => match u {
                Unary::Relu => "Relu",
                Unary::LeakyRelu { .. } => "LeakyRelu",
                Unary::Clip { .. } => "Clip",
                Unary::Sigmoid => "Sigmoid",
                Unary::Tanh => "Tanh",
                Unary::HardSigmoid { .. } => "HardSigmoid",
                Unary::HardSwish => "HardSwish",
            },
            Op::Binary(b) => match b.kind {
                BinaryKind::Add => "Add",
                BinaryKind::Sub => "Sub",
                BinaryKind::Mul => "Mul",
                BinaryKind::Div => "Div",
            },
            Op::ChannelAffine { .. } => "ChannelAffine",
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "MaxPool",
                PoolKind::Avg { .. } => "AveragePool",
            },
            Op::GlobalPool { max: false } => "GlobalAveragePool",
            Op::GlobalPool { max: true } => "GlobalMaxPool",
            Op::Reduce { kind, .. } => match kind {
                ReduceKind::Sum => "ReduceSum",
                ReduceKind::Mean => "ReduceMean",
                ReduceKind::Max => "ReduceMax",
            },
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Slice { .. } => "Slice",
            Op::Pad { .. } => "Pad",
            Op::Softmax { .. } => "Softmax",
            Op::Lrn { .. } => "LRN",
        }
    }

    /// Number of weights the op carries.
    pub fn param_count(&self) -> usize {
        match self {
            Op::Conv(c) => c.weight.len() + c.bias.as_ref().map_or(0, Const::len),
            Op::Linear(l) => l.weight.len() + l.bias.as_ref().map_or(0, Const::len),
            Op::ChannelAffine { scale, shift } => scale.len() + shift.len(),
            Op::Binary(b) => b.konst.as_ref().map_or(0, Const::len),
            _ => 0,
        }
    }
}

/// The imported graph. `nodes` are in topological order; each node writes one value.
#[derive(Clone, Debug)]
pub struct Graph {
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    /// The image input, `[N, C, H, W]`.
    pub input: ValueId,
    /// The classifier output (logits), `[N, classes]`.
    pub output: ValueId,
}

impl Graph {
    /// Finds a value by its ONNX tensor name.
    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }

    /// The node that produces `value`, if it is not the input.
    pub fn producer(&self, value: ValueId) -> Option<usize> {
        self.nodes.iter().position(|n| n.output == value)
    }

    /// For each value, the index of the last node that reads it (`None` if never read).
    /// Backends use it to release intermediate buffers as soon as possible.
    pub fn last_uses(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &v in &n.inputs {
                last[v] = Some(i);
            }
        }
        last
    }

    pub fn param_count(&self) -> usize {
        self.nodes.iter().map(|n| n.op.param_count()).sum()
    }

    /// The layer classic CAM and Grad-CAM use by default: the input of the last global pooling
    /// (GlobalAveragePool, or a mean over H and W) that leads to the output.
    pub fn cam_layer(&self) -> Option<ValueId> {
        self.nodes.iter().rev().find_map(|n| match &n.op {
            Op::GlobalPool { max: false } => Some(n.inputs[0]),
            Op::Reduce {
                kind: ReduceKind::Mean,
                axes,
                ..
            } if axes == &[2, 3] => Some(n.inputs[0]),
            _ => None,
        })
    }
}

/// Row-major strides of a shape.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Strides that read an operand of shape `operand` (right-aligned, numpy style) while walking a
/// tensor of shape `out`: broadcast axes get stride 0. The result has `out.len()` entries.
pub fn broadcast_strides(out: &[usize], operand: &[usize]) -> Vec<usize> {
    let own = strides_of(operand);
    let offset = out.len() - operand.len();
    (0..out.len())
        .map(|d| {
            if d < offset || operand[d - offset] == 1 {
                0
            } else {
                own[d - offset]
            }
        })
        .collect()
}

/// Output size of a pooling/conv window along one axis: `ceil_mode` lets the last window start
/// inside the input even if it runs past the end (never starting inside the right pad only).
pub fn window_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_before: usize,
    pad_after: usize,
    ceil_mode: bool,
) -> Option<usize> {
    let eff = dilation * (kernel - 1) + 1;
    let padded = input + pad_before + pad_after;
    if padded < eff {
        return None;
    }
    let span = padded - eff;
    let mut out = if ceil_mode {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    if ceil_mode && (out - 1) * stride >= input + pad_before {
        out -= 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_strides_right_align() {
        assert_eq!(
            broadcast_strides(&[2, 3, 4, 5], &[3, 1, 1]),
            vec![0, 1, 0, 0]
        );
        assert_eq!(
            broadcast_strides(&[2, 3, 4, 5], &[2, 3, 4, 5]),
            vec![60, 20, 5, 1]
        );
        assert_eq!(broadcast_strides(&[2, 3], &[]), vec![0, 0]);
    }

    #[test]
    fn ceil_mode_drops_window_starting_in_pad() {
        // PyTorch: MaxPool2d(3, 2, ceil_mode=True) on 6 -> 3; on 5 -> 2.
        assert_eq!(window_out_len(6, 3, 2, 1, 0, 0, true), Some(3));
        assert_eq!(window_out_len(5, 3, 2, 1, 0, 0, true), Some(2));
        assert_eq!(window_out_len(6, 3, 2, 1, 0, 0, false), Some(2));
        assert_eq!(window_out_len(2, 3, 1, 1, 0, 0, false), None);
    }
}
