//! Element-wise activations (`Op::Unary`): their ONNX lowerings, CPU VJP and GPU recording.
//! The forward formula of each is `Unary::apply` (the CPU oracle) and its GPU op code
//! `Unary::code`, both in `model/ir.rs`; the WGSL is `unary_op` / `unary_grad` in
//! `eltwise.wgsl` (kernels `unary`, `unary_bwd`). A new activation: its IR variant (name,
//! formula, `code` with a new `UnaryCode` variant, listed in `UnaryCode::ALL`), one line in
//! [`ONNX`], its derivative arm in [`vjp_inplace`], and in `eltwise.wgsl` its `UNARY_CODE_*`
//! constant and its case in the two switches.

use super::{CpuGrads, GpuGrads, OpKernel};
use crate::backend::GradRule;
use crate::cpu::eltwise;
use crate::cpu::node::{CpuFwd, CpuVjp};
use crate::cpu::simd::avx2_dispatch;
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, TypedParams};
use crate::gpu::node::{GpuFwd, GpuTensor, GpuVjp};
use crate::gpu::ops::unary;
use crate::gpu::params::word;
use crate::model::import::attrs::NodeCtx;
use crate::model::import::lower::{act, const_f32, emit_same_shape, Importer, Lower};
use crate::model::{Node, Op, Unary, UnaryCode, ValueId};

/// The gradient rule `unary_bwd` applies to the ReLU-like ops (WGSL `RELU_RULE_*`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::NoUninit)]
pub(crate) enum ReluRule {
    Standard = 0,
    Guided = 1,
    Deconvnet = 2,
}

impl ReluRule {
    #[cfg(test)]
    pub(crate) const ALL: [ReluRule; 3] =
        [ReluRule::Standard, ReluRule::Guided, ReluRule::Deconvnet];
}

impl From<GradRule> for ReluRule {
    fn from(rule: GradRule) -> ReluRule {
        match rule {
            GradRule::Standard => ReluRule::Standard,
            GradRule::Guided => ReluRule::Guided,
            GradRule::Deconvnet => ReluRule::Deconvnet,
        }
    }
}

/// `unary_bwd`'s parameters (WGSL `UnaryBwdParams`): the forward op as `unary` gets it, plus the
/// rule.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::NoUninit)]
pub(crate) struct UnaryBwdParams {
    pub(crate) total: u32,
    pub(crate) op: UnaryCode,
    pub(crate) a: f32,
    pub(crate) b: f32,
    pub(crate) rule: ReluRule,
}
impl TypedParams for UnaryBwdParams {
    const KERNELS: &'static [Kernel] = &[Kernel::UnaryBwd];
}

pub(crate) const ONNX: &[(&str, Lower)] = &[
    ("Relu", |imp, ctx| lower(imp, ctx, Unary::Relu)),
    ("LeakyRelu", |imp, ctx| {
        let alpha = ctx.float("alpha", 0.01);
        lower(imp, ctx, Unary::LeakyRelu { alpha })
    }),
    ("Clip", clip),
    ("Sigmoid", |imp, ctx| lower(imp, ctx, Unary::Sigmoid)),
    ("Tanh", |imp, ctx| lower(imp, ctx, Unary::Tanh)),
    ("HardSigmoid", |imp, ctx| {
        let (alpha, beta) = (ctx.float("alpha", 0.2), ctx.float("beta", 0.5));
        lower(imp, ctx, Unary::HardSigmoid { alpha, beta })
    }),
    ("HardSwish", |imp, ctx| lower(imp, ctx, Unary::HardSwish)),
    ("Erf", |imp, ctx| lower(imp, ctx, Unary::Erf)),
    ("Exp", |imp, ctx| lower(imp, ctx, Unary::Exp)),
    ("Neg", |imp, ctx| lower(imp, ctx, Unary::Neg)),
    ("Sqrt", |imp, ctx| lower(imp, ctx, Unary::Sqrt)),
    ("Reciprocal", |imp, ctx| lower(imp, ctx, Unary::Reciprocal)),
    ("Gelu", gelu),
    ("Pow", pow),
];

fn lower(imp: &mut Importer, ctx: &NodeCtx, u: Unary) -> Result<()> {
    let x = act(imp, ctx, 0)?;
    emit_same_shape(imp, ctx, Op::Unary(u), x);
    Ok(())
}

/// ONNX Gelu (opset 20): `approximate` is "none" (the default, erf) or "tanh".
fn gelu(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let tanh = match ctx.string("approximate").as_deref() {
        None | Some("none") => false,
        Some("tanh") => true,
        Some(other) => {
            return Err(ctx.err(format!(
                "approximate = \"{other}\" is not one of \"none\", \"tanh\""
            )))
        }
    };
    lower(imp, ctx, Unary::Gelu { tanh })
}

/// ONNX Pow with a constant one-element exponent (LayerNorm's unfolded `Pow(x - mean, 2)`); a
/// computed exponent is refused.
fn pow(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let p = match const_f32(imp, ctx, 1)? {
        Some((_, v)) if v.len() == 1 => v[0],
        Some((s, _)) => {
            return Err(ctx.err(format!(
                "only a scalar exponent is supported, not one of shape {s:?}"
            )))
        }
        None => return Err(ctx.err("input #1 (the exponent) is missing")),
    };
    lower(imp, ctx, Unary::Pow { p })
}

fn clip(imp: &mut Importer, ctx: &NodeCtx) -> Result<()> {
    let (mut min, mut max) = (f32::MIN, f32::MAX);
    if imp.opset < 11 {
        min = ctx.float("min", min);
        max = ctx.float("max", max);
    } else {
        let scalar = |i: usize| -> Result<Option<f32>> {
            Ok(match const_f32(imp, ctx, i)? {
                Some((_, v)) if v.len() == 1 => Some(v[0]),
                Some(_) => return Err(ctx.err("Clip bounds must be scalars")),
                None => None,
            })
        };
        min = scalar(1)?.unwrap_or(min);
        max = scalar(2)?.unwrap_or(max);
    }
    lower(imp, ctx, Unary::Clip { min, max })
}

/// Element-wise activations.
pub(crate) struct UnaryOp;

fn unary_of(op: &Op) -> Result<Unary> {
    match op {
        Op::Unary(u) => Ok(*u),
        other => Err(super::wrong_op("unary", other)),
    }
}

/// Whether the CPU VJP of `u` reads the op's input; otherwise it reads its output. The output is
/// enough wherever it determines the derivative (ReLU/Clip masks, `y(1-y)`, `1-y²`); LeakyRelu
/// with `alpha <= 0` and HardSwish are not invertible from the output, and Erf's derivative is
/// cheapest from the input. Exp, Sqrt and Reciprocal read their output (`y`, `1/2y`, `-y²`); Neg
/// needs no saved value but is given the output like them.
pub(crate) fn vjp_reads_input(u: Unary) -> bool {
    matches!(
        u,
        Unary::LeakyRelu { .. }
            | Unary::HardSwish
            | Unary::Erf
            | Unary::Gelu { .. }
            | Unary::Pow { .. }
    )
}

avx2_dispatch! {
    /// In place: `g = g * u'(x)` under `rule`, where `saved` is the op's input or output as
    /// [`vjp_reads_input`] says. Rules only change ReLU-like ops:
    /// Guided passes `g * u'(x)` where `g > 0`, Deconvnet passes `max(g, 0)` and never reads `saved`.
    /// Derivatives at breakpoints follow the forward's branches: Relu and Clip pass only strictly
    /// inside the active region (`x > 0`, `min < x < max`), LeakyRelu takes slope 1 at `x = 0`.
    pub(crate) fn vjp_inplace(
        u: Unary,
        rule: GradRule,
        saved: &[f32],
        g: &mut [f32],
    ) -> Result<()> {
        if u.is_relu_like() && rule == GradRule::Deconvnet {
            g.iter_mut().for_each(|v| *v = v.max(0.0));
            return Ok(());
        }
        if saved.len() != g.len() {
            return Err(Error::internal(format!(
                "unary VJP: {} saved values for {} gradients",
                saved.len(),
                g.len()
            )));
        }
        let guided = u.is_relu_like() && rule == GradRule::Guided;
        // `pos` keeps only positive incoming gradients under Guided (a select, so -0/NaN-free).
        let pos = |v: f32| if guided && v <= 0.0 { 0.0 } else { v };
        let it = g.iter_mut().zip(saved);
        match u {
            Unary::Relu => it.for_each(|(v, &y)| *v = if y > 0.0 { pos(*v) } else { 0.0 }),
            Unary::Clip { min, max } => {
                it.for_each(|(v, &y)| *v = if y > min && y < max { pos(*v) } else { 0.0 })
            }
            Unary::LeakyRelu { alpha } => {
                it.for_each(|(v, &x)| *v = if x >= 0.0 { pos(*v) } else { pos(*v) * alpha })
            }
            Unary::Sigmoid => it.for_each(|(v, &y)| *v *= y * (1.0 - y)),
            Unary::Tanh => it.for_each(|(v, &y)| *v *= 1.0 - y * y),
            Unary::HardSigmoid { alpha, .. } => {
                it.for_each(|(v, &y)| *v = if y > 0.0 && y < 1.0 { *v * alpha } else { 0.0 })
            }
            Unary::HardSwish => it.for_each(|(v, &x)| {
                *v = if x <= -3.0 {
                    0.0
                } else if x >= 3.0 {
                    *v
                } else {
                    *v * (x / 3.0 + 0.5)
                }
            }),
            Unary::Erf => {
                it.for_each(|(v, &x)| *v *= std::f32::consts::FRAC_2_SQRT_PI * (-x * x).exp())
            }
            Unary::Exp => it.for_each(|(v, &y)| *v *= y),
            Unary::Neg => it.for_each(|(v, _)| *v = -*v),
            Unary::Sqrt => it.for_each(|(v, &y)| *v *= 0.5 / y),
            Unary::Reciprocal => it.for_each(|(v, &y)| *v *= -(y * y)),
            Unary::Gelu { tanh } => it.for_each(|(v, &x)| *v *= gelu_grad(x, tanh)),
            // `p x^(p-1)`; a zero exponent is a constant, whose derivative is 0 even at x = 0.
            Unary::Pow { p: 0.0 } => it.for_each(|(v, _)| *v = 0.0),
            Unary::Pow { p } => it.for_each(|(v, &x)| *v *= p * x.powf(p - 1.0)),
        }
        Ok(())
    }
}

/// `d GELU / dx` at `x`: exact `Φ(x) + x φ(x)`; tanh form, with `t = tanh(k (x + c x³))`,
/// `(1 + t)/2 + x/2 · (1 - t²) · k (1 + 3c x²)`.
fn gelu_grad(x: f32, tanh: bool) -> f32 {
    if tanh {
        let (k, c) = (crate::model::GELU_TANH_K, crate::model::GELU_TANH_C);
        let t = (k * (x + c * x * x * x)).tanh();
        0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * c * x * x)
    } else {
        let cdf = 0.5 * (1.0 + crate::model::erf(x * std::f32::consts::FRAC_1_SQRT_2));
        // 1/√(2π)
        let pdf = 0.398_942_3 * (-0.5 * x * x).exp();
        cdf + x * pdf
    }
}

impl OpKernel for UnaryOp {
    fn cpu_forward(&self, cx: &mut CpuFwd) -> Result<Vec<f32>> {
        let u = unary_of(cx.op())?;
        if let Some(mut y) = cx.owned(0)? {
            eltwise::unary_inplace(u, &mut y);
            return Ok(y);
        }
        let mut y = cx.out()?;
        eltwise::unary(u, cx.x(0)?, &mut y)?;
        Ok(y)
    }

    fn cpu_saved(&self, node: &Node, rule: GradRule) -> Vec<ValueId> {
        match node.op {
            Op::Unary(u) if u.is_relu_like() && rule == GradRule::Deconvnet => vec![],
            Op::Unary(u) if vjp_reads_input(u) => vec![node.inputs[0]],
            _ => vec![node.output],
        }
    }

    fn cpu_vjp(&self, cx: &mut CpuVjp) -> Result<CpuGrads> {
        let u = unary_of(cx.op())?;
        let mut gy = cx.take_gy()?;
        let saved: &[f32] = match cx.saved.first() {
            Some(&v) => cx.val(v)?,
            None => &[],
        };
        vjp_inplace(u, cx.rule, saved, &mut gy)?;
        Ok(vec![(cx.node.inputs[0], gy)])
    }

    fn shapes_ok(&self, _op: &Op, inputs: &[&[usize]], out: &[usize]) -> bool {
        inputs[0] == out
    }

    fn gpu_forward(&self, cx: &mut GpuFwd) -> Result<GpuTensor> {
        let u = unary_of(cx.op())?;
        let x = cx.x(0)?;
        let out = cx.alloc_out()?;
        unary(cx.rec, x, &out, u)?;
        Ok(out)
    }

    fn gpu_saved(&self, node: &Node, rule: GradRule) -> Vec<ValueId> {
        match node.op {
            Op::Unary(u) if u.is_relu_like() && rule == GradRule::Deconvnet => vec![],
            // The mask of Relu and Clip reads the same on the output, which survives Conv fusion.
            Op::Unary(Unary::Relu | Unary::Clip { .. }) => vec![node.output],
            _ => vec![node.inputs[0]],
        }
    }

    fn gpu_vjp(&self, cx: &mut GpuVjp) -> Result<GpuGrads> {
        let u = unary_of(cx.op())?;
        let gy = cx.gy;
        let fwd = match self.gpu_saved(cx.node, cx.rule).first() {
            Some(&v) => cx.val(v)?,
            // Deconvnet ignores the forward value; any buffer of dy's size will do.
            None => gy,
        };
        let (op, a, b) = u.code();
        let dx = cx.alloc(cx.xs(0)?)?;
        let p = UnaryBwdParams {
            total: word(dx.len()),
            op,
            a,
            b,
            rule: cx.rule.into(),
        };
        cx.rec.dispatch_1d(
            Kernel::UnaryBwd,
            &[fwd.into(), gy.into(), (&dx).into()],
            p,
            dx.len(),
        )?;
        Ok(vec![(cx.node.inputs[0], dx)])
    }
}
