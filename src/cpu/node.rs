//! What one op sees of the CPU graph executors: its operands, its output shape, the buffer pool
//! and, in reverse mode, the forward values its VJP reads. The op modules (`crate::ops`) are
//! written against these types; this file imports none of them, so the executors
//! (`exec.rs`, `grad.rs`) can dispatch to the op modules without an import circle.

use crate::backend::GradRule;
use crate::error::{Error, Result};
use crate::model::{Node, Op, Unary, ValueId};

/// Number of elements of a shape.
pub(crate) fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// [`numel`] with overflow as an error (shapes of buffers about to be allocated).
pub(crate) fn checked_numel(s: &[usize]) -> Result<usize> {
    s.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::bad_input(format!("a buffer of shape {s:?} overflows")))
}

/// Freed activation buffers, handed out again so steady-state passes do not allocate.
#[derive(Default)]
pub(crate) struct BufPool {
    free: Vec<Vec<f32>>,
}

impl BufPool {
    /// A buffer of length `n` with unspecified contents (every op overwrites its output). A
    /// length the allocator cannot provide is an error, not an abort: the importer bounds every
    /// value, and this is the second line behind it.
    pub(crate) fn take(&mut self, n: usize) -> Result<Vec<f32>> {
        // Best fit among buffers already long enough: truncating costs nothing.
        let fit = (0..self.free.len())
            .filter(|&i| self.free[i].len() >= n)
            .min_by_key(|&i| self.free[i].len());
        if let Some(i) = fit {
            let mut v = self.free.swap_remove(i);
            v.truncate(n);
            return Ok(v);
        }
        let grow = (0..self.free.len())
            .filter(|&i| self.free[i].capacity() >= n)
            .max_by_key(|&i| self.free[i].len());
        if let Some(i) = grow {
            let mut v = self.free.swap_remove(i);
            v.resize(n, 0.0);
            return Ok(v);
        }
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|e| {
            Error::bad_input(format!(
                "cannot allocate a buffer of {n} f32 values ({} MiB): {e}",
                n.saturating_mul(4) >> 20
            ))
        })?;
        v.resize(n, 0.0);
        Ok(v)
    }

    /// Returns a buffer for later reuse.
    pub(crate) fn put(&mut self, v: Vec<f32>) {
        if v.capacity() > 0 {
            self.free.push(v);
        }
    }
}

/// The live values of one pass: the caller's input (never owned) and computed values by id.
pub(crate) struct Values<'a> {
    /// The graph's input value id.
    pub(crate) input_id: ValueId,
    /// The caller's input samples for this pass.
    pub(crate) input: &'a [f32],
    /// Computed values; `None` once released (or not computed yet).
    pub(crate) slots: Vec<Option<Vec<f32>>>,
}

impl Values<'_> {
    /// The data of value `v`.
    pub(crate) fn get(&self, v: ValueId) -> Result<&[f32]> {
        if v == self.input_id {
            return Ok(self.input);
        }
        self.slots
            .get(v)
            .and_then(|s| s.as_deref())
            .ok_or_else(|| Error::internal(format!("value {v} read after release")))
    }
}

/// One node's forward on the CPU.
pub(crate) struct CpuFwd<'a, 'v> {
    /// The node being run.
    pub(crate) node: &'a Node,
    /// Full shapes of `node.inputs`, in order.
    pub(crate) in_shapes: Vec<Vec<usize>>,
    /// Full shape of the output (of the fused activation's output when one is fused on).
    pub(crate) out_shape: Vec<usize>,
    /// The activation fused onto this node, if the plan fused one (only for ops that said they
    /// take one).
    pub(crate) act: Option<Unary>,
    /// Whether the op may spread its work over the thread pool.
    pub(crate) par: bool,
    /// Per input: nothing reads it after this node, it is not kept, and the node reads it once.
    pub(crate) ownable: Vec<bool>,
    pub(crate) vals: &'a mut Values<'v>,
    pub(crate) pool: &'a mut BufPool,
}

impl<'a> CpuFwd<'a, '_> {
    /// The node's op.
    pub(crate) fn op(&self) -> &'a Op {
        &self.node.op
    }

    /// The data of input `k`.
    pub(crate) fn x(&self, k: usize) -> Result<&[f32]> {
        let v = self.input_id(k)?;
        self.vals.get(v)
    }

    /// Full shape of input `k`.
    pub(crate) fn xs(&self, k: usize) -> &[usize] {
        self.in_shapes.get(k).map_or(&[], Vec::as_slice)
    }

    fn input_id(&self, k: usize) -> Result<ValueId> {
        self.node
            .inputs
            .get(k)
            .copied()
            .ok_or_else(|| Error::internal(format!("input {k} missing")))
    }

    /// Input `k`'s buffer, moved out for in-place reuse, when this node is its last reader.
    pub(crate) fn owned(&mut self, k: usize) -> Result<Option<Vec<f32>>> {
        if !self.ownable.get(k).copied().unwrap_or(false) {
            return Ok(None);
        }
        let v = self.input_id(k)?;
        self.vals.slots[v]
            .take()
            .map(Some)
            .ok_or_else(|| Error::internal(format!("value {v} read after release")))
    }

    /// A pooled buffer the size of the output (contents unspecified).
    pub(crate) fn out(&mut self) -> Result<Vec<f32>> {
        self.pool.take(checked_numel(&self.out_shape)?)
    }
}

/// One node's vector-Jacobian product on the CPU.
pub(crate) struct CpuVjp<'a, 'v> {
    /// The node whose VJP this is.
    pub(crate) node: &'a Node,
    /// The output gradient; an op may move it into a contribution, else the executor pools it.
    pub(crate) gy: Option<Vec<f32>>,
    /// Full shapes of `node.inputs`, in order.
    pub(crate) in_shapes: Vec<Vec<usize>>,
    /// Full shape of the node's output.
    pub(crate) out_shape: Vec<usize>,
    /// Per input: whether its gradient is wanted (it leads back to the input or a `wrt` value).
    pub(crate) wanted: Vec<bool>,
    /// The backward rule (ReLU-like ops change under Guided and Deconvnet).
    pub(crate) rule: GradRule,
    /// Whether the op may spread its work over the thread pool.
    pub(crate) par: bool,
    /// The forward values this VJP reads (what the op's `cpu_saved` asked for).
    pub(crate) saved: &'a [ValueId],
    pub(crate) vals: &'a Values<'v>,
    pub(crate) pool: &'a mut BufPool,
}

impl<'a> CpuVjp<'a, '_> {
    /// The node's op.
    pub(crate) fn op(&self) -> &'a Op {
        &self.node.op
    }

    /// A forward value the op asked to keep.
    pub(crate) fn val(&self, v: ValueId) -> Result<&'a [f32]> {
        self.vals.get(v)
    }

    /// Forward value `v` if it was saved for this VJP, else `None`.
    pub(crate) fn saved(&self, v: ValueId) -> Result<Option<&'a [f32]>> {
        if self.saved.contains(&v) {
            self.vals.get(v).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Full shape of input `k`.
    pub(crate) fn xs(&self, k: usize) -> &[usize] {
        self.in_shapes.get(k).map_or(&[], Vec::as_slice)
    }

    /// Moves the output gradient out (once).
    pub(crate) fn take_gy(&mut self) -> Result<Vec<f32>> {
        self.gy
            .take()
            .ok_or_else(|| Error::internal("output gradient taken twice"))
    }

    /// The output gradient, borrowed.
    pub(crate) fn gy(&self) -> Result<&[f32]> {
        self.gy
            .as_deref()
            .ok_or_else(|| Error::internal("output gradient already moved"))
    }

    /// A pooled buffer of `n` elements (contents unspecified).
    pub(crate) fn buf(&mut self, n: usize) -> Result<Vec<f32>> {
        self.pool.take(n)
    }

    /// A pooled buffer the size of input `k`.
    pub(crate) fn dx(&mut self, k: usize) -> Result<Vec<f32>> {
        let n = checked_numel(self.xs(k))?;
        self.pool.take(n)
    }
}
