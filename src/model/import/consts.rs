//! Constant values met during import: weights, and the integer tensors of shape computations,
//! where the batch size stays a symbol.

use crate::error::{Error, Result};
use crate::model::ir::{strides_of, ValueId};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

/// An integer that is either known or the (dynamic) batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IDim {
    Lit(i64),
    Batch,
}

impl IDim {
    pub fn lit(self) -> Option<i64> {
        match self {
            IDim::Lit(v) => Some(v),
            IDim::Batch => None,
        }
    }
}

/// What an ONNX tensor name stands for during import.
#[derive(Clone, Debug)]
pub(crate) enum Sym {
    /// A value computed from the input at run time.
    Act(ValueId),
    /// A float constant (weights).
    F(Vec<usize>, Vec<f32>),
    /// An integer constant, possibly holding the batch size (shape computations).
    I(Vec<usize>, Vec<IDim>),
}

impl Sym {
    pub fn shape(&self) -> Option<&[usize]> {
        match self {
            Sym::Act(_) => None,
            Sym::F(s, _) | Sym::I(s, _) => Some(s),
        }
    }

    /// The constant as floats (integers converted), if it is a known constant.
    pub fn as_f32(&self) -> Option<(Vec<usize>, Vec<f32>)> {
        match self {
            Sym::F(s, d) => Some((s.clone(), d.clone())),
            Sym::I(s, d) => {
                let v: Option<Vec<f32>> = d.iter().map(|x| x.lit().map(|v| v as f32)).collect();
                v.map(|v| (s.clone(), v))
            }
            Sym::Act(_) => None,
        }
    }

    /// The constant as integers (floats truncated, as ONNX Cast does).
    pub fn as_idims(&self) -> Option<Vec<IDim>> {
        match self {
            Sym::I(_, d) => Some(d.clone()),
            Sym::F(_, d) => Some(d.iter().map(|&x| IDim::Lit(x as i64)).collect()),
            Sym::Act(_) => None,
        }
    }

    pub fn as_ints(&self) -> Option<Vec<i64>> {
        self.as_idims()?.into_iter().map(IDim::lit).collect()
    }
}

/// Decodes an ONNX tensor (initializer or Constant attribute) through tract-onnx.
pub(crate) fn load_initializer(t: &pb::TensorProto) -> Result<Sym> {
    let dt = DataType::try_from(t.data_type).unwrap_or(DataType::Undefined);
    let is_float = matches!(dt, DataType::Float | DataType::Double | DataType::Float16);
    let is_int = matches!(
        dt,
        DataType::Int64
            | DataType::Int32
            | DataType::Int16
            | DataType::Int8
            | DataType::Uint8
            | DataType::Bool
    );
    // tract's loader panics on some exotic types; refuse them before calling it.
    if !is_float && !is_int {
        return Err(Error::bad_input(format!(
            "tensor '{}' has ONNX data type {} ({dt:?}), which netlens does not support",
            t.name, t.data_type
        )));
    }
    let external = tract_onnx::data_resolver::default();
    let tensor = tract_onnx::tensor::load_tensor(&*external, t, None)
        .map_err(|e| Error::bad_input(format!("cannot decode tensor '{}': {e}", t.name)))?;
    let shape = tensor.shape().to_vec();
    let decode_err = |e: tract_onnx::prelude::TractError| {
        Error::bad_input(format!("cannot decode tensor '{}': {e}", t.name))
    };
    if is_float {
        let c = tensor.cast_to::<f32>().map_err(decode_err)?;
        let data: Vec<f32> = c
            .to_plain_array_view::<f32>()
            .map_err(decode_err)?
            .iter()
            .copied()
            .collect();
        Ok(Sym::F(shape, data))
    } else {
        let c = tensor.cast_to::<i64>().map_err(decode_err)?;
        let data = c
            .to_plain_array_view::<i64>()
            .map_err(decode_err)?
            .iter()
            .map(|&v| IDim::Lit(v))
            .collect();
        Ok(Sym::I(shape, data))
    }
}

/// The most elements a constant computed at import may hold (folding can grow a constant past
/// its operands: broadcasting, repeated Gather indices). Weights come from the file and are
/// bounded by its size; a computed one gets the limit of any value.
pub(crate) const MAX_CONST_ELEMS: usize = crate::model::MAX_SAMPLE_ELEMS;

/// Element-wise op on two broadcastable constants.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Maps each output element of a broadcast to the flat indices of its two operands.
pub(crate) fn broadcast_indices(out: &[usize], a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
    let sa = crate::model::ir::broadcast_strides(out, a);
    let sb = crate::model::ir::broadcast_strides(out, b);
    let so = strides_of(out);
    let n: usize = out.iter().product();
    (0..n)
        .map(|flat| {
            let (mut ia, mut ib) = (0, 0);
            for d in 0..out.len() {
                let i = (flat / so[d]) % out[d].max(1);
                ia += i * sa[d];
                ib += i * sb[d];
            }
            (ia, ib)
        })
        .collect()
}

/// Gathers elements of a constant along `axis` (ONNX Gather on constants).
pub(crate) fn gather<T: Copy>(
    shape: &[usize],
    data: &[T],
    axis: usize,
    idx: &[i64],
    idx_shape: &[usize],
) -> Option<(Vec<usize>, Vec<T>)> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let len = shape[axis] as i64;
    // The result may be far larger than the operands (indices repeat): bound it first.
    let total = outer.checked_mul(idx.len())?.checked_mul(inner)?;
    if total > MAX_CONST_ELEMS || data.len() != outer * shape[axis] * inner {
        return None;
    }
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for &i in idx {
            let i = if i < 0 { i + len } else { i };
            if i < 0 || i >= len {
                return None;
            }
            let base = (o * shape[axis] + i as usize) * inner;
            out.extend_from_slice(&data[base..base + inner]);
        }
    }
    let mut s = shape[..axis].to_vec();
    s.extend_from_slice(idx_shape);
    s.extend_from_slice(&shape[axis + 1..]);
    Some((s, out))
}

/// Transposes a constant; `None` when `perm` is not a permutation of its axes.
pub(crate) fn transpose<T: Copy>(
    shape: &[usize],
    data: &[T],
    perm: &[usize],
) -> Option<(Vec<usize>, Vec<T>)> {
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if !sorted.iter().copied().eq(0..shape.len()) {
        return None;
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let in_strides = strides_of(shape);
    let out_strides = strides_of(&out_shape);
    let n = data.len();
    let out = (0..n)
        .map(|flat| {
            let mut src = 0;
            for d in 0..out_shape.len() {
                let i = (flat / out_strides[d]) % out_shape[d];
                src += i * in_strides[perm[d]];
            }
            data[src]
        })
        .collect();
    Some((out_shape, out))
}

/// Concatenates constants along `axis`.
pub(crate) fn concat<T: Copy>(
    parts: &[(Vec<usize>, Vec<T>)],
    axis: usize,
) -> Option<(Vec<usize>, Vec<T>)> {
    let first = &parts.first()?.0;
    // Every part must agree off the axis and hold the data its shape says, or the copies
    // below would read out of range.
    let agree = |(s, d): &(Vec<usize>, Vec<T>)| {
        s.len() == first.len()
            && axis < s.len()
            && (0..s.len()).all(|i| i == axis || s[i] == first[i])
            && s.iter().try_fold(1usize, |a, &v| a.checked_mul(v)) == Some(d.len())
    };
    if !parts.iter().all(agree) {
        return None;
    }
    let outer: usize = first[..axis].iter().product();
    let mut shape = first.clone();
    shape[axis] = parts
        .iter()
        .try_fold(0usize, |a, (s, _)| a.checked_add(s[axis]))?;
    let mut out = Vec::new();
    for o in 0..outer {
        for (s, d) in parts {
            if s.len() != first.len() {
                return None;
            }
            let chunk: usize = s[axis..].iter().product();
            out.extend_from_slice(&d[o * chunk..(o + 1) * chunk]);
        }
    }
    Some((shape, out))
}
