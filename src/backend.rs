//! The tensor-op surface that both backends implement and every method is written against.

use crate::error::{Error, Result};
use crate::model::{Model, ValueId};

/// A dense f32 tensor in host memory, row-major, full shape (batch axis first).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::internal(format!(
                "tensor of shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(HostTensor { shape, data })
    }
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        HostTensor {
            shape,
            data: vec![0.0; n],
        }
    }
    pub fn batch(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
    /// Elements per sample.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
    /// The `i`-th sample's data.
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.data[i * n..(i + 1) * n]
    }
}

/// What a forward pass leaves behind: the output, and each tapped layer's activation, still where
/// the backend keeps them (on the GPU for the GPU backend) until read.
pub struct Forward<T> {
    pub output: T,
    pub taps: Vec<(ValueId, T)>,
}

impl<T> Forward<T> {
    pub fn tap(&self, value: ValueId) -> Option<&T> {
        self.taps.iter().find(|(v, _)| *v == value).map(|(_, t)| t)
    }
}

/// How ReLU-like ops (Relu, Clip, LeakyRelu) pass gradients back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GradRule {
    /// The true gradient.
    #[default]
    Standard,
    /// Guided backprop (Springenberg et al.): pass only positive gradients through units whose
    /// forward input was in the op's active region.
    Guided,
    /// Deconvnet (Zeiler & Fergus): pass only positive gradients, ignoring the forward input.
    Deconvnet,
}

/// Where a backward pass starts: the gradient of the objective w.r.t. one value of the graph.
#[derive(Clone, Debug)]
pub enum Seed<T> {
    /// A given gradient at `at` (full batch shape `[N] + shape(at)`): a one-hot per sample for a
    /// logit objective, `1/(H·W)` on a channel for a channel-mean objective, a mask for a region.
    Grad { at: ValueId, grad: T },
    /// The gradient of softmax probability `targets[i]` of sample `i`, where `at` holds logits
    /// `[N, K]`: `p_k (e_k - p)`, computed by the backend from the forward values.
    SoftmaxProb { at: ValueId, targets: Vec<usize> },
}

impl<T> Seed<T> {
    pub fn at(&self) -> ValueId {
        match self {
            Seed::Grad { at, .. } | Seed::SoftmaxProb { at, .. } => *at,
        }
    }
}

/// What a forward + backward pass leaves behind, all full-batch, all still on the backend.
pub struct Gradients<T> {
    /// The model output of the forward pass.
    pub output: T,
    /// Forward activations of the requested taps.
    pub taps: Vec<(ValueId, T)>,
    /// d objective / d input, shaped like the input.
    pub input_grad: T,
    /// d objective / d value for each requested layer.
    pub layer_grads: Vec<(ValueId, T)>,
}

impl<T> Gradients<T> {
    pub fn tap(&self, value: ValueId) -> Option<&T> {
        self.taps.iter().find(|(v, _)| *v == value).map(|(_, t)| t)
    }
    pub fn layer_grad(&self, value: ValueId) -> Option<&T> {
        self.layer_grads
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, t)| t)
    }
}

/// The surface every method is written against. Tensors are backend handles; `read` is the only
/// way data crosses back to the host.
pub trait Backend {
    type Tensor: Clone;

    /// A human-readable name: the adapter and its API, or the CPU.
    fn name(&self) -> String;

    /// Copies a host tensor into the backend.
    fn upload(&self, tensor: &HostTensor) -> Result<Self::Tensor>;

    /// Copies a backend tensor to the host (for the GPU: one submission and one read-back).
    fn read(&self, tensor: &Self::Tensor) -> Result<HostTensor>;

    /// Copies several tensors to the host; the GPU does it in one submission and one read-back.
    fn read_many(&self, tensors: &[&Self::Tensor]) -> Result<Vec<HostTensor>> {
        tensors.iter().map(|t| self.read(t)).collect()
    }

    /// Full shape of a backend tensor.
    fn shape(&self, tensor: &Self::Tensor) -> Vec<usize>;

    /// Runs the model on a batch `[N, C, H, W]` (any N), keeping the activations of `taps`.
    fn forward(
        &self,
        model: &Model,
        input: &Self::Tensor,
        taps: &[ValueId],
    ) -> Result<Forward<Self::Tensor>>;

    /// Forward then reverse mode in one pass (for the GPU: one submission for the whole batch,
    /// chunked only by binding limits). The objective's gradient enters at `seed.at()`; ops after
    /// that value get zero gradient. Gradients flow to the input and to each of `wrt`, with
    /// ReLU-like ops following `rule`. Only activation gradients are computed, never weight
    /// gradients. Forward activations are released as soon as backward no longer needs them.
    fn gradients(
        &self,
        model: &Model,
        input: &Self::Tensor,
        seed: &Seed<Self::Tensor>,
        rule: GradRule,
        wrt: &[ValueId],
        taps: &[ValueId],
    ) -> Result<Gradients<Self::Tensor>>;
}
