//! Integrated Gradients (Sundararajan et al.) with Captum's quadrature rules. All steps, plus the
//! image and the baseline themselves (for the convergence delta), run as one batch when they fit
//! the backend's chunk, else in budget-sized chunks whose weighted gradients are summed where
//! they are (memory is flat in the step count).

use super::attribution::{Attribute, Attribution, MapKind, Named, Target};
use super::path::PathRun;
use super::{check_class, check_single_image, PixelAttribution, Score};
use crate::backend::{Backend, HostTensor};
use crate::error::{Error, Result};
use crate::model::{BinaryKind, Model};
use crate::progress::{Progress, Silent};

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
        match self.node_table(n) {
            Ok(table) => (0..n).map(|i| table.at(i)).unzip(),
            // Only Gauss-Legendre past its limit fails; compute its table anyway, as asked.
            Err(_) => gauss_legendre_nodes(n),
        }
    }

    /// The path's nodes, one at a time: the Riemann rules have closed forms (so `n` does not
    /// matter for memory), Gauss-Legendre a table of at most [`MAX_GAUSS_LEGENDRE_STEPS`].
    fn node_table(self, n: usize) -> Result<Nodes> {
        if self == Quadrature::GaussLegendre {
            if n > MAX_GAUSS_LEGENDRE_STEPS {
                return Err(Error::bad_input(format!(
                    "{n} Gauss-Legendre steps: at most {MAX_GAUSS_LEGENDRE_STEPS} (its nodes \
                     cost n² to compute); use a Riemann rule (--method riemann_trapezoid) for \
                     more steps"
                )));
            }
            let (a, w) = gauss_legendre_nodes(n);
            return Ok(Nodes::Table(a, w));
        }
        Ok(Nodes::Riemann(self, n))
    }
}

/// Past this many steps Gauss-Legendre is refused: its Newton iteration costs `n` per node (n²
/// in all, seconds at this size), and far fewer nodes already integrate a network's smooth
/// path to f32 precision.
pub const MAX_GAUSS_LEGENDRE_STEPS: usize = 1 << 14;

/// The nodes of one rule: a Riemann rule's by formula, Gauss-Legendre's from a table.
enum Nodes {
    Riemann(Quadrature, usize),
    Table(Vec<f64>, Vec<f64>),
}

impl Nodes {
    /// `(alpha_i, w_i)`.
    fn at(&self, i: usize) -> (f64, f64) {
        match self {
            Nodes::Table(a, w) => (a[i], w[i]),
            &Nodes::Riemann(q, n) => {
                let nf = n as f64;
                let linspace = |a: f64, b: f64| -> f64 {
                    if n == 1 {
                        return a;
                    }
                    a + (b - a) * i as f64 / (nf - 1.0)
                };
                let w = 1.0 / nf;
                match q {
                    Quadrature::RiemannLeft => (linspace(0.0, 1.0 - 1.0 / nf), w),
                    Quadrature::RiemannRight => (linspace(1.0 / nf, 1.0), w),
                    Quadrature::RiemannMiddle => (linspace(0.5 / nf, 1.0 - 0.5 / nf), w),
                    Quadrature::RiemannTrapezoid => {
                        let end = i == 0 || i == n - 1;
                        (linspace(0.0, 1.0), if end { w / 2.0 } else { w })
                    }
                    Quadrature::GaussLegendre => unreachable!("Gauss-Legendre nodes are a table"),
                }
            }
        }
    }
}

/// Captum's Gauss-Legendre nodes mapped to [0, 1] and their weights.
fn gauss_legendre_nodes(n: usize) -> (Vec<f64>, Vec<f64>) {
    let (x, gw) = gauss_legendre(n);
    (
        x.iter().map(|v| 0.5 * (1.0 + v)).collect(),
        gw.iter().map(|v| 0.5 * v).collect(),
    )
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
    /// Attributes `class` on the single image `x` `[1, C, H, W]` with `gradients` calls over
    /// `steps + 2` samples (one call when they fit a chunk): [`Attribute::attribute_batch`], read back once together with the
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
        let a = self.explain(b, model, x, &[class], &Silent)?.read(b)?;
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
        progress: &dyn Progress,
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
        let nodes = self.quadrature.node_table(self.steps)?;
        let steps = self.steps;
        // Per image the path points, then the image itself (alpha 1) and the baseline (alpha 0)
        // for the convergence delta, both weighing 0.
        let node = |i: usize| match i {
            i if i < steps => {
                let (a, w) = nodes.at(i);
                (a as f32, w as f32)
            }
            i if i == steps => (1.0, 0.0),
            _ => (0.0, 0.0),
        };
        let base = b.upload(&baseline)?;
        let run = PathRun {
            method: "ig",
            per: steps + 2,
            score: self.score,
            sum: true,
            sum_sq: false,
            rows: &[steps, steps + 1],
            progress,
        };
        let sums = run.run(
            b,
            model,
            inputs,
            targets,
            |i| node(i).1,
            |_, image, first, count| {
                let alphas: Vec<f32> = (first..first + count).map(|i| node(i).0).collect();
                b.path_chunk(image, &base, &alphas, &vec![0.0; count], 0, first as u32)
            },
        )?;
        let missing = || Error::internal("IG summed nothing");
        let mean_grad = sums.sum.ok_or_else(missing)?;
        let mut rows = sums.rows.into_iter();
        let (logits, baseline_logits) = (rows.next(), rows.next());
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
            logits: logits.ok_or_else(missing)?,
            targets: targets.to_vec(),
            score: self.score,
            baseline_logits: Some(baseline_logits.ok_or_else(missing)?),
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
        self.attribute_batch_with_progress(b, model, inputs, target, &Silent)
    }

    fn attribute_batch_with_progress(
        &self,
        b: &B,
        model: &Model,
        inputs: &HostTensor,
        target: &Target,
        progress: &dyn Progress,
    ) -> Result<Attribution<B::Tensor>> {
        let targets = target.classes(b, model, inputs)?;
        self.explain(b, model, inputs, &targets, progress)
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
