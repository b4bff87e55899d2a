//! Linear (Gemm / MatMul with a constant right operand) over the last axis.

use super::eltwise::unary_inplace;
use super::gemm::{gemm, Mat};
use crate::error::{Error, Result};
use crate::model::{Linear, Unary};

/// `y[r, o] = act(sum_k x[r, k] * W[o, k] + b[o])`, rows = everything before the last axis.
pub(crate) fn linear(
    x: &[f32],
    xs: &[usize],
    lin: &Linear,
    act: Option<Unary>,
    par: bool,
    y: &mut [f32],
) -> Result<()> {
    let ws = &lin.weight.shape;
    let k = xs.last().copied().unwrap_or(0);
    if ws.len() != 2 || ws[1] != k || xs.is_empty() {
        return Err(Error::internal(format!(
            "Linear: weight {ws:?} on input {xs:?}"
        )));
    }
    let o = ws[0];
    if lin.bias.as_ref().is_some_and(|b| b.len() != o) {
        return Err(Error::internal("Linear: bias length differs from outputs"));
    }
    let rows: usize = xs[..xs.len() - 1].iter().product();
    if x.len() != rows * k || y.len() != rows * o {
        return Err(Error::internal(format!(
            "Linear: data length does not match {xs:?}"
        )));
    }
    // W is [o, k]; reading it with swapped strides gives W^T without a copy.
    let wt = Mat::new(&lin.weight.data, 0, 1, k);
    gemm(rows, k, o, Mat::rows(x, 0, k), wt, y, o, false, par);
    if o == 0 {
        return Ok(());
    }
    for row in y.chunks_mut(o) {
        if let Some(b) = &lin.bias {
            row.iter_mut().zip(b.data.iter()).for_each(|(v, b)| *v += b);
        }
        if let Some(a) = act {
            unary_inplace(a, row);
        }
    }
    Ok(())
}

/// `dx[r, k] = sum_o dy[r, o] * W[o, k]`, overwriting `dx` (shape `xs`).
pub(crate) fn linear_vjp(
    dy: &[f32],
    lin: &Linear,
    xs: &[usize],
    par: bool,
    dx: &mut [f32],
) -> Result<()> {
    let ws = &lin.weight.shape;
    let k = xs.last().copied().unwrap_or(0);
    if ws.len() != 2 || ws[1] != k || xs.is_empty() {
        return Err(Error::internal(format!(
            "Linear VJP: weight {ws:?} on input {xs:?}"
        )));
    }
    let o = ws[0];
    let rows: usize = xs[..xs.len() - 1].iter().product();
    if dx.len() != rows * k || dy.len() != rows * o {
        return Err(Error::internal(format!(
            "Linear VJP: data length does not match {xs:?}"
        )));
    }
    gemm(
        rows,
        o,
        k,
        Mat::rows(dy, 0, o),
        Mat::rows(&lin.weight.data, 0, k),
        dx,
        k,
        false,
        par,
    );
    Ok(())
}
