//! Integrated Gradients (Sundararajan et al.) with Captum's quadrature rules. All steps, plus the
//! image and the baseline themselves (for the convergence delta), run as one batch.

use super::attribution::{Attribute, Attribution, MapKind, Named, Target};
use super::{
    check_class, check_single_image, grouped_batch, pick_rows, repeat_each, score_seed,
    PixelAttribution, Score,
};
use crate::backend::{Backend, GradRule, HostTensor};
use crate::error::{Error, Result};
use crate::model::{BinaryKind, Model};

/// Quadrature of the path integral, as Captum names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Quadrature {
    /// `riemann_left`: `n` equal steps from 0 to `1 - 1/n`, weight `1/n` each.
    RiemannLeft,
    /// `riemann_right`: `n` equal steps from `1/n` to 1, weight `1/n` each.
    RiemannRight,
    /// `riemann_middle`: the midpoints of `n` equal intervals, weight `1/n` each.
    RiemannMiddle,
    /// `riemann_trapezoid`: `n` points from 0 to 1, end weights halved.
    RiemannTrapezoid,
    /// `gausslegendre` (Captum's default): `n`-point Gauss-Legendre nodes mapped to [0, 1].
    #[default]
    GaussLegendre,
}

impl Quadrature {
    /// Parses a Captum method name (`riemann_left`, `gausslegendre`, ...) or its short form
    /// (`left`, `trapezoid`, ...).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "riemann_left" | "left" => Quadrature::RiemannLeft,
            "riemann_right" | "right" => Quadrature::RiemannRight,
            "riemann_middle" | "middle" => Quadrature::RiemannMiddle,
            "riemann_trapezoid" | "trapezoid" => Quadrature::RiemannTrapezoid,
            "gausslegendre" | "gauss_legendre" | "gauss-legendre" => Quadrature::GaussLegendre,
            other => return Err(Error::bad_input(format!("unknown IG method '{other}'"))),
        })
    }

    /// Path positions `alpha_i` and weights `w_i`, exactly as Captum computes them.
    pub fn nodes(self, n: usize) -> (Vec<f64>, Vec<f64>) {
        let nf = n as f64;
        let linspace = |a: f64, b: f64| -> Vec<f64> {
            if n == 1 {
                return vec![a];
            }
            (0..n)
                .map(|i| a + (b - a) * i as f64 / (nf - 1.0))
                .collect()
        };
        let mut w = vec![1.0 / nf; n];
        let alphas = match self {
            Quadrature::RiemannLeft => linspace(0.0, 1.0 - 1.0 / nf),
            Quadrature::RiemannRight => linspace(1.0 / nf, 1.0),
            Quadrature::RiemannMiddle => linspace(0.5 / nf, 1.0 - 0.5 / nf),
            Quadrature::RiemannTrapezoid => {
                w[0] /= 2.0;
                w[n - 1] /= 2.0;
                linspace(0.0, 1.0)
            }
            Quadrature::GaussLegendre => {
                let (x, gw) = gauss_legendre(n);
                w = gw.iter().map(|v| 0.5 * v).collect();
                x.iter().map(|v| 0.5 * (1.0 + v)).collect()
            }
        };
        (alphas, w)
    }
}

/// Nodes and weights of n-point Gauss-Legendre quadrature on [-1, 1], ascending (numpy's
/// `leggauss`), by Newton iteration on the Legendre polynomial.
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    for i in 0..n {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, z);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            // p1 = P_n(z), p0 = P_{n-1}(z).
            dp = n as f64 * (z * p1 - p0) / (z * z - 1.0);
            let dz = p1 / dp;
            z -= dz;
            if dz.abs() < 1e-15 {
                break;
            }
        }
        x[n - 1 - i] = z;
        w[n - 1 - i] = 2.0 / ((1.0 - z * z) * dp * dp);
    }
    (x, w)
}

/// The path's start.
#[derive(Clone, Debug, Default)]
pub enum Baseline {
    /// All zeros in model-input space (Captum's default).
    #[default]
    Zeros,
    /// A given tensor `[1, C, H, W]` (a black image after normalisation, a blurred image, a .npy).
    Tensor(HostTensor),
}

/// Integrated Gradients options, Captum's `IntegratedGradients` defaults.
#[derive(Clone, Debug)]
pub struct IntegratedGradients {
    /// Path points (Captum `n_steps`, default 50); the batch holds two more (the image and the
    /// baseline).
    pub steps: usize,
    /// How the path points and their weights are placed (Captum `method`, default Gauss-Legendre).
    pub quadrature: Quadrature,
    /// Where the path starts (Captum `baselines`, default zeros).
    pub baseline: Baseline,
    /// Which score the gradient is taken of (default the logit).
    pub score: Score,
}

impl Default for IntegratedGradients {
    fn default() -> Self {
        IntegratedGradients {
            steps: 50,
            quadrature: Quadrature::default(),
            baseline: Baseline::Zeros,
            score: Score::Logit,
        }
    }
}

/// An IG attribution with its completeness check.
#[derive(Clone, Debug)]
pub struct IgAttribution {
    /// `(x - baseline) * weighted mean gradient`, `[C, H, W]`; its `score` is `f(x)`.
    pub attribution: PixelAttribution,
    /// `sum(attr) - (f(x) - f(baseline))`; near 0 when the quadrature is accurate.
    pub convergence_delta: f32,
    /// `f(x) - f(baseline)`.
    pub score_difference: f32,
}

impl IntegratedGradients {
    /// Attributes `class` on the single image `x` `[1, C, H, W]` with one `gradients` call over
    /// `steps + 2` samples: [`Attribute::attribute_batch`], read back once together with the
    /// baseline's score for the convergence delta.
    pub fn attribute<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        x: &HostTensor,
        class: usize,
    ) -> Result<IgAttribution> {
        check_single_image(model, x)?;
        check_class(model, class)?;
        let a = self.explain(b, model, x, &[class])?.read(b)?;
        let missing = || Error::internal("IG returned no map");
        let extras = a.extras.first().cloned().ok_or_else(missing)?;
        let attribution = a.pixel_attributions().pop().ok_or_else(missing)?;
        Ok(IgAttribution {
            attribution,
            convergence_delta: extras.convergence_delta.ok_or_else(missing)?,
            score_difference: extras.score_difference.ok_or_else(missing)?,
        })
    }

    /// Per image, the path points, then the image itself (alpha 1) and the baseline (alpha 0)
    /// for the convergence delta, generated where the image lives; all images in one
    /// `gradients` call, and the weighted mean times `x - baseline` computed there too. The
    /// baseline's rows of the output are kept for the convergence delta.
    fn explain<B: Backend>(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        targets: &[usize],
    ) -> Result<Attribution<B::Tensor>> {
        if self.steps == 0 {
            return Err(Error::bad_input("steps must be at least 1"));
        }
        let one: Vec<usize> = [1].iter().chain(&inputs.shape[1..]).copied().collect();
        let baseline = match &self.baseline {
            Baseline::Zeros => HostTensor::zeros(one),
            Baseline::Tensor(t) if t.shape == one => t.clone(),
            Baseline::Tensor(t) => {
                return Err(Error::bad_input(format!(
                    "baseline shape {:?} differs from the input {one:?}",
                    t.shape
                )))
            }
        };
        let (alphas, weights) = self.quadrature.nodes(self.steps);
        let per = self.steps + 2;
        let path: Vec<f32> = alphas.iter().map(|&a| a as f32).chain([1.0, 0.0]).collect();
        let base = b.upload(&baseline)?;
        let batch = grouped_batch(b, inputs, |_, image| {
            b.path_batch(image, &base, &path, &vec![0.0; per], 0)
        })?;
        let seed = score_seed(b, model, self.score, &repeat_each(targets, per))?;
        let g = b.gradients(model, &batch, &seed, GradRule::Standard, &[], &[])?;
        // The image and the baseline weigh 0: they are there for the scores only.
        let weights: Vec<f32> = weights
            .iter()
            .map(|&w| w as f32)
            .chain([0.0, 0.0])
            .collect::<Vec<_>>()
            .repeat(targets.len());
        let mean_grad = b.weighted_sum(&g.input_grad, &weights, &inputs.shape)?;
        let span: Vec<f32> = (0..inputs.batch())
            .flat_map(|i| {
                inputs
                    .sample(i)
                    .iter()
                    .zip(&baseline.data)
                    .map(|(x, b0)| x - b0)
            })
            .collect();
        let span = b.upload(&HostTensor::new(inputs.shape.clone(), span)?)?;
        Ok(Attribution {
            method: self.name(),
            kind: MapKind::PerElement,
            maps: b.elementwise(&mean_grad, &span, BinaryKind::Mul)?,
            lowres: None,
            layer: None,
            logits: pick_rows(b, &g.output, targets.len(), per, self.steps)?,
            targets: targets.to_vec(),
            score: self.score,
            baseline_logits: Some(pick_rows(b, &g.output, targets.len(), per, self.steps + 1)?),
            extras: Vec::new(),
        })
    }
}

/// The maps are computed on the backend: nothing is read back before [`Attribution::read`]. The
/// baseline is shared by all images.
impl Named for IntegratedGradients {
    fn name(&self) -> &'static str {
        "ig"
    }
}

impl<B: Backend> Attribute<B> for IntegratedGradients {
    fn attribute_batch(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
    ) -> Result<Attribution<B::Tensor>> {
        let targets = target.classes(b, model, inputs)?;
        self.explain(b, model, inputs, &targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_matches_captum_step_sizes() {
        // Captum's 32-step Gauss-Legendre step sizes (from the peer manifest): first and middle.
        let (alphas, w) = Quadrature::GaussLegendre.nodes(32);
        assert!((w[0] - 0.003509305004735253).abs() < 1e-12, "{}", w[0]);
        assert!((w[15] - 0.04827004425736383).abs() < 1e-12, "{}", w[15]);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(alphas.windows(2).all(|p| p[0] < p[1]));
        let (a, w) = Quadrature::RiemannTrapezoid.nodes(32);
        assert_eq!((a[0], a[31], w[0], w[1]), (0.0, 1.0, 0.015625, 0.03125));
    }
}
