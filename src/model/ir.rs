//! netlens' own graph IR: a small set of ops with static per-sample shapes and a dynamic batch.
//!
//! Every value's `shape` excludes the batch axis; at run time a value has the full shape
//! `[batch] + shape`. Axes stored in ops (`axis`, `axes`, `perm`, pads per dim) are indices into the
//! *full* shape, so axis 0 is the batch axis and ops never move or reduce it (the importer rejects
//! graphs that would).

use std::sync::Arc;

use super::activation::{erf, gelu, UnaryCode};

/// Index of a value (tensor) in [`Graph::values`].
pub type ValueId = usize;

/// A constant tensor (weights, biases, broadcast operands).
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// Full shape of the constant as stored in the ONNX initializer (no batch axis is implied).
    pub shape: Vec<usize>,
    /// Row-major elements; shared so that cloning the graph (or uploading it) never copies weights.
    pub data: Arc<Vec<f32>>,
}

impl Const {
    /// Wraps row-major `data` of the given `shape`; their sizes must agree (checked in debug builds).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Const {
            shape,
            data: Arc::new(data),
        }
    }
    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// True when the constant has no elements (some axis has size 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A tensor of the graph, named as in the ONNX file (the name Netron shows).
#[derive(Clone, Debug)]
pub struct Value {
    /// The ONNX tensor name, which is what `--layer` and other layer arguments match against.
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

/// One operation of the graph: reads `inputs` and writes the single value `output`.
#[derive(Clone, Debug)]
pub struct Node {
    /// ONNX node name (may be empty in the file; the importer fills in `op_type_index`).
    pub name: String,
    /// What the node computes, with its constant operands and attributes folded in.
    pub op: Op,
    /// The non-constant operands, in the order the op expects them.
    pub inputs: Vec<ValueId>,
    /// The value this node writes; no other node writes it.
    pub output: ValueId,
}

/// 2-D convolution, NCHW. `weight` is `[oc, ic / groups, kh, kw]`.
#[derive(Clone, Debug)]
pub struct Conv {
    /// Filters, `[oc, ic / groups, kh, kw]` (ONNX `W`).
    pub weight: Const,
    /// Per-output-channel bias, `[oc]` (ONNX `B`), if the node has one.
    pub bias: Option<Const>,
    /// ONNX `group`: input and output channels split into this many independent convolutions.
    pub groups: usize,
    /// `[stride_h, stride_w]` in input pixels.
    pub strides: [usize; 2],
    /// `[dilation_h, dilation_w]`: spacing between kernel taps in input pixels (1 = dense).
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

impl Conv {
    /// Number of output channels (`oc`, the first weight axis).
    pub fn out_channels(&self) -> usize {
        self.weight.shape[0]
    }
    /// Kernel size `[kh, kw]`, read from the weight shape.
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
    /// `[out]`, added after the product, if the Gemm had a `C` (already scaled by `beta`).
    pub bias: Option<Const>,
}

/// Element-wise activation functions; each maps one f32 to one f32 with no state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `max(0, x)`
    Relu,
    /// `x` for `x >= 0`, else `alpha * x`.
    LeakyRelu {
        /// Slope of the negative part (ONNX default 0.01).
        alpha: f32,
    },
    /// `min(max, max(min, x))`; ReLU6 is `Clip { min: 0, max: 6 }`.
    Clip {
        /// Lower bound (`f32::MIN` when the ONNX node gives none).
        min: f32,
        /// Upper bound (`f32::MAX` when the ONNX node gives none).
        max: f32,
    },
    /// `1 / (1 + exp(-x))`
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `max(0, min(1, alpha * x + beta))`
    HardSigmoid {
        /// Slope (ONNX default 0.2).
        alpha: f32,
        /// Offset (ONNX default 0.5).
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 0.5))`
    HardSwish,
    /// The Gauss error function `erf(x) = 2/√π ∫₀ˣ e^(-t²) dt` (see [`erf`]).
    Erf,
    /// `e^x`
    Exp,
    /// `-x`
    Neg,
    /// `√x` (NaN below 0, as ONNX and IEEE say).
    Sqrt,
    /// `1 / x`
    Reciprocal,
    /// GELU, `x · Φ(x)` (ONNX Gelu, opset 20): with `tanh` false the exact
    /// `x/2 · (1 + erf(x/√2))`, with `tanh` true the approximation
    /// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))` (`approximate = "tanh"`).
    Gelu {
        /// ONNX `approximate = "tanh"`.
        tanh: bool,
    },
    /// `x^p` for a constant exponent (ONNX Pow with a constant scalar exponent): IEEE `pow`, so
    /// a negative base gives NaN unless `p` is an integer.
    Pow {
        /// The exponent.
        p: f32,
    },
}

impl Unary {
    /// Evaluates the function at `x`; the CPU backend's reference for every GPU shader.
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
            Unary::Erf => erf(x),
            Unary::Exp => x.exp(),
            Unary::Neg => -x,
            Unary::Sqrt => x.sqrt(),
            Unary::Reciprocal => 1.0 / x,
            Unary::Gelu { tanh } => gelu(x, tanh),
            Unary::Pow { p } => x.powf(p),
        }
    }
    /// The op code and two parameters of the GPU's `unary_op` / `unary_grad` (`eltwise.wgsl`).
    pub(crate) fn code(self) -> (UnaryCode, f32, f32) {
        match self {
            Unary::Relu => (UnaryCode::Relu, 0.0, 0.0),
            Unary::LeakyRelu { alpha } => (UnaryCode::LeakyRelu, alpha, 0.0),
            Unary::Clip { min, max } => (UnaryCode::Clip, min, max),
            Unary::Sigmoid => (UnaryCode::Sigmoid, 0.0, 0.0),
            Unary::Tanh => (UnaryCode::Tanh, 0.0, 0.0),
            Unary::HardSigmoid { alpha, beta } => (UnaryCode::HardSigmoid, alpha, beta),
            Unary::HardSwish => (UnaryCode::HardSwish, 0.0, 0.0),
            Unary::Erf => (UnaryCode::Erf, 0.0, 0.0),
            Unary::Exp => (UnaryCode::Exp, 0.0, 0.0),
            Unary::Neg => (UnaryCode::Neg, 0.0, 0.0),
            Unary::Sqrt => (UnaryCode::Sqrt, 0.0, 0.0),
            Unary::Reciprocal => (UnaryCode::Reciprocal, 0.0, 0.0),
            Unary::Gelu { tanh: false } => (UnaryCode::GeluErf, 0.0, 0.0),
            Unary::Gelu { tanh: true } => (UnaryCode::GeluTanh, 0.0, 0.0),
            Unary::Pow { p } => (UnaryCode::Pow, p, 0.0),
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

/// The arithmetic of a [`Binary`] op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b` (IEEE: division by zero gives ±inf or NaN, as in ONNX).
    Div,
}

impl BinaryKind {
    /// Computes `a ∘ b`; operand order matters for `Sub` and `Div`.
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
    /// Which arithmetic op.
    pub kind: BinaryKind,
    /// The constant operand, if any. `None`: `inputs = [a, b]`. `Some`: `inputs = [x]`.
    pub konst: Option<Const>,
    /// With a constant: `true` computes `konst ∘ x`, `false` computes `x ∘ konst`.
    pub konst_is_lhs: bool,
}

/// How a [`Pool`] combines the elements of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window; pads never win.
    Max,
    /// Average; `count_include_pad` divides by the window clipped to the padded extent.
    Avg {
        /// ONNX `count_include_pad`: `false` divides by the in-input elements only.
        count_include_pad: bool,
    },
}

/// 2-D pooling over the last two axes of `[N, C, H, W]`. The output size (ceil_mode included) is
/// the output value's shape; windows are clipped to the input (and to the pads for the divisor).
#[derive(Clone, Debug)]
pub struct Pool {
    /// Max or average.
    pub kind: PoolKind,
    /// Window size `[kh, kw]` (ONNX `kernel_shape`).
    pub kernel: [usize; 2],
    /// `[stride_h, stride_w]` in input pixels.
    pub strides: [usize; 2],
    /// `[dilation_h, dilation_w]`: spacing between window taps in input pixels (1 = dense).
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

/// How [`Op::Reduce`] combines the elements along its axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    /// ONNX ReduceSum.
    Sum,
    /// ONNX ReduceMean.
    Mean,
    /// ONNX ReduceMax.
    Max,
}

/// What a [`Node`] computes. Every supported ONNX op is lowered to one of these (or folded away).
#[derive(Clone, Debug)]
pub enum Op {
    /// 2-D convolution (Conv, with BatchNormalization folded in where possible).
    Conv(Conv),
    /// Fully connected layer (Gemm, or MatMul by a constant).
    Linear(Linear),
    /// Element-wise activation.
    Unary(Unary),
    /// Element-wise arithmetic with broadcasting.
    Binary(Binary),
    /// Per-channel `x * scale[c] + shift[c]` over full axis 1: an unfolded BatchNormalization.
    ChannelAffine {
        /// Per-channel multiplier, `[C]`: `gamma / sqrt(var + epsilon)`.
        scale: Const,
        /// Per-channel offset, `[C]`: `beta - mean * scale`.
        shift: Const,
    },
    /// Windowed max or average pooling (MaxPool, AveragePool).
    Pool(Pool),
    /// Mean or max over H and W of `[N, C, H, W]`, giving `[N, C, 1, 1]`.
    GlobalPool {
        /// `true` for GlobalMaxPool, `false` for GlobalAveragePool.
        max: bool,
    },
    /// Reduction over full-shape `axes` (never 0), sorted ascending. `keepdims` decides whether the
    /// output keeps them as size 1; the output value's shape says which.
    Reduce {
        /// Sum, mean or max.
        kind: ReduceKind,
        /// Full-shape axes to reduce, ascending, never 0.
        axes: Vec<usize>,
        /// ONNX `keepdims`: keep each reduced axis as size 1 instead of dropping it.
        keepdims: bool,
    },
    /// Same data, new per-sample shape (Reshape, Flatten, Squeeze, Unsqueeze).
    Reshape,
    /// Full-shape permutation, `perm[0] == 0`.
    Transpose {
        /// Output axis `i` is input axis `perm[i]` (ONNX `perm`, over the full shape).
        perm: Vec<usize>,
    },
    /// Concatenation along full `axis` (>= 1) of all inputs.
    Concat {
        /// Full-shape axis the inputs are joined along (>= 1).
        axis: usize,
    },
    /// `out[i_0.., i_d, ..] = in[.., start[d] + i_d * step[d], ..]` for every full axis `d`
    /// (`start[0] = 0`, `step[0] = 1`). Covers Slice and each output of Split.
    Slice {
        /// Per full axis, the first input index read, already normalised into the axis.
        starts: Vec<i64>,
        /// Per full axis, the (non-zero, possibly negative) index step between output elements.
        steps: Vec<i64>,
    },
    /// Constant padding: `pads[d] = (before, after)` for every full axis (batch axis `(0, 0)`).
    Pad {
        /// Per full axis, `(before, after)` elements added; the batch axis is `(0, 0)`.
        pads: Vec<(usize, usize)>,
        /// The fill value (ONNX `constant_value`, default 0).
        value: f32,
    },
    /// Softmax over full `axis`.
    Softmax {
        /// Full-shape axis the probabilities sum to 1 along (>= 1).
        axis: usize,
    },
    /// Local response normalisation across channels (ONNX LRN).
    Lrn {
        /// Number of channels in the window, centred on each channel and clipped to the range.
        size: usize,
        /// Scale of the squared sum (ONNX default 1e-4; divided by `size` as ONNX specifies).
        alpha: f32,
        /// Exponent of the denominator (ONNX default 0.75).
        beta: f32,
        /// Constant added before the power (ONNX default 1.0).
        bias: f32,
    },
    /// Log-softmax over full `axis`: `x - max - log Σ exp(x - max)` (ONNX LogSoftmax).
    LogSoftmax {
        /// Full-shape axis the log-probabilities are normalised along (>= 1).
        axis: usize,
    },
    /// Layer normalisation (ONNX LayerNormalization): each row of the trailing full axes from
    /// `axis` on becomes `(x - mean) / sqrt(var + epsilon) * scale + bias`.
    LayerNorm {
        /// First normalised full axis (>= 1); every later axis is normalised with it.
        axis: usize,
        /// Added to the variance before the square root (ONNX default 1e-5).
        epsilon: f32,
        /// Per-element scale over a row, broadcast at import to the row's length.
        scale: Const,
        /// Per-element offset like `scale`, if the node has one.
        bias: Option<Const>,
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
                Unary::Erf => "Erf",
                Unary::Exp => "Exp",
                Unary::Neg => "Neg",
                Unary::Sqrt => "Sqrt",
                Unary::Reciprocal => "Reciprocal",
                Unary::Gelu { .. } => "Gelu",
                Unary::Pow { .. } => "Pow",
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
            Op::LayerNorm { .. } => "LayerNormalization",
            Op::LogSoftmax { .. } => "LogSoftmax",
        }
    }

    /// Number of weights the op carries.
    pub fn param_count(&self) -> usize {
        match self {
            Op::Conv(c) => c.weight.len() + c.bias.as_ref().map_or(0, Const::len),
            Op::Linear(l) => l.weight.len() + l.bias.as_ref().map_or(0, Const::len),
            Op::ChannelAffine { scale, shift } => scale.len() + shift.len(),
            Op::Binary(b) => b.konst.as_ref().map_or(0, Const::len),
            Op::LayerNorm { scale, bias, .. } => scale.len() + bias.as_ref().map_or(0, Const::len),
            _ => 0,
        }
    }
}

/// The imported graph. `nodes` are in topological order; each node writes one value.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Every tensor of the graph, indexed by [`ValueId`].
    pub values: Vec<Value>,
    /// The operations, in topological order, so a single pass computes everything.
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

    /// Total number of weights in the graph's constants (for model summaries).
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
}
