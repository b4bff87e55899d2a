"""Peer references for the local methods peer_cams.py and peer_more.py left without one, on the tiny
digits CNN (cheap enough for the GPU tests on lavapipe), written once into assets/ref/peers/ and
recorded in its manifest.json (key "local_methods"). Same model, input and target as those scripts
(models/tiny_digits.onnx, ref/peers/tiny_digits_digit3_input.npy, class 3).

Every peer runs on the SAME ONNX graph as netlens (onnx2torch of the .onnx file). The developers'
rule: the reference is the float64 evaluation of that graph where the peer library accepts a
float64 model (Captum does), and the float32 run of the same peer is recorded beside it in the
manifest (`f32_vs_f64`: max |f32 - f64| / max |f64|), so a test's tolerance can be read against
PyTorch float32's own distance.

- occlusion: Captum `Occlusion` (window 1x8x8, stride 1x4x4, baseline 0), logit and softmax
  probability; `<stem>_occlusion_{logit,prob}_f64.npy` [1, 1, H, W].
- gradient: Captum `Saliency(abs=False)` of the logit and of the softmax probability;
  `<stem>_saliency_{logit,prob}_f64.npy` [1, 1, H, W].
- gradient x input: Captum `InputXGradient`; `<stem>_input_x_gradient_f64.npy` [1, 1, H, W].
- guided backprop: Captum `GuidedBackprop` (the guided rule on every ReLU);
  `<stem>_guided_backprop_f64.npy` [1, 1, H, W].
- guided Grad-CAM: pytorch-grad-cam's recipe (its README / cam.py `--method gradcam`): its
  `GuidedBackpropReLUModel` output times its Grad-CAM map (ReLU, min-max, cv2 resize, min-max),
  float32 as pgc runs, without the `deprocess_image` display scaling;
  `<stem>_pgc_guided_gradcam.npy` [1, H, W]. Also checked here: pgc's guided backprop against
  Captum's float64 one (`pgc_gb_vs_captum_f64`). Captum's own `GuidedGradCam` is a different map
  (nearest upsampling, no normalisation), so not netlens' definition.
- SmoothGrad (plain mean of gradients): Captum `NoiseTunnel(Saliency)` nt_type="smoothgrad" with
  netlens' own noise (peer_more.py's `FixedNoiseTunnel`, same settings as SmoothGrad² there);
  `<stem>_nt_smoothgrad.npy` [1, 1, H, W].
- LIME (linear surrogate): netlens' samples rebuilt independently in numpy (the grid segmentation
  of src/methods/lime/segment.rs `grid`, the on/off hash of src/backend/perturb.rs `segment_kept`,
  off segments filled with the per-channel image mean), scored by the float64 graph, the kernel
  exp(-d^2/width^2) on the cosine distance to the all-on row, and scikit-learn's `Ridge` (alpha 1,
  intercept unpenalised) fitted with those sample weights. Files: `<stem>_lime_labels.npy` [H, W],
  `<stem>_lime_design.npy` [N, K] (0/1), `<stem>_lime_scores_f64.npy` [N],
  `<stem>_lime_ridge_coef.npy` [K]; the weighted R² (sklearn `r2_score` with the weights) in the
  manifest.
- LIME (tree surrogate, the default): scikit-learn's `DecisionTreeRegressor` with `fitrtree`'s
  default limits (min_samples_split 10, min_samples_leaf 1, grown fully) on the same samples and
  weights; MATLAB's `predictorImportance` = sklearn's unnormalised feature importances divided by
  the number of splits; `<stem>_lime_tree_importance.npy` [K]. Checked here to be independent of
  sklearn's random feature order (no tied splits).
- Integrated Gradients: Captum `IntegratedGradients` (baseline 0, 32 steps, Gauss-Legendre and
  riemann_trapezoid) with its convergence delta; `<stem>_ig_{gausslegendre,trapezoid}_f64.npy`
  [1, 1, H, W] (on MobileNetV2 the GPU test runs one rule only, for lavapipe's time).
- activations: the tapped layer's output of the float64 graph;
  `<stem>_activations_<features.8>_f64.npy` [C, h, w].

Run from the repository root in a venv with torch, onnx, onnx2torch, captum, grad-cam, numpy,
scikit-learn, pillow (versions recorded in the manifest):
    /tmp/venv-peers/bin/python assets/tools/peer_local.py
CI never runs this: the tests read only the committed .npy files.
"""

import json
import os
import sys
from importlib.metadata import version

import numpy as np
import onnx
import onnx2torch
import torch
from captum.attr import (GuidedBackprop, InputXGradient, IntegratedGradients, Occlusion,
                         Saliency)
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeRegressor
from sklearn.metrics import r2_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_cams import CASES, M32, PEERS, ROOT, module_for, pcg, save  # noqa: E402
from peer_more import FixedNoiseTunnel, NT, netlens_normal  # noqa: E402

CASE = next(c for c in CASES if c['stem'].startswith('tiny'))
STEM = CASE['stem']
TARGET = CASE['target']
MODEL = os.path.join(ROOT, CASE['model'])
OCCLUSION = dict(window=[1, 8, 8], strides=[1, 4, 4], baseline=0.0)
LIME = dict(num_samples=256, num_features=16, kernel_width=0.25, ridge=1.0, seed=5,
            fill='per-channel image mean', score='logit')
TAP = '/features/features.8/Relu_output_0'


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def models():
    m32 = onnx2torch.convert(onnx.load(MODEL)).eval()
    m64 = onnx2torch.convert(onnx.load(MODEL)).eval().double()
    return m32, m64


def prob_of(model):
    return lambda x: torch.softmax(model(x), dim=1)


def occlusion(m32, m64, x):
    out = {'params': dict(OCCLUSION, api='captum.attr.Occlusion(f).attribute(x, target=3, '
                                         'sliding_window_shapes, strides, baselines=0)')}
    for score, f32, f64 in (('logit', m32, m64), ('prob', prob_of(m32), prob_of(m64))):
        maps = {}
        for name, f, dt in (('f32', f32, torch.float32), ('f64', f64, torch.float64)):
            maps[name] = Occlusion(f).attribute(
                torch.tensor(x, dtype=dt), target=TARGET,
                sliding_window_shapes=tuple(OCCLUSION['window']),
                strides=tuple(OCCLUSION['strides']), baselines=OCCLUSION['baseline'],
                perturbations_per_eval=16).detach().numpy()
        out[score] = {'map': save(f'{STEM}_occlusion_{score}_f64.npy', maps['f64']),
                      'f32_vs_f64': rel(maps['f32'], maps['f64']),
                      'max_abs': float(np.abs(maps['f64']).max())}
    return out


def captum_pair(cls, m32, m64, x):
    a = {}
    for name, m, dt in (('f32', m32, torch.float32), ('f64', m64, torch.float64)):
        a[name] = cls(m).attribute(torch.tensor(x, dtype=dt), target=TARGET).detach().numpy()
    return a


def saliency(m32, m64, x):
    out = {}
    for score, f32, f64 in (('logit', m32, m64), ('prob', prob_of(m32), prob_of(m64))):
        a = {name: Saliency(f).attribute(torch.tensor(x, dtype=dt), target=TARGET,
                                         abs=False).detach().numpy()
             for name, f, dt in (('f32', f32, torch.float32), ('f64', f64, torch.float64))}
        out[score] = {'api': 'captum.attr.Saliency(f).attribute(x, target=3, abs=False)',
                      'map': save(f'{STEM}_saliency_{score}_f64.npy', a['f64']),
                      'f32_vs_f64': rel(a['f32'], a['f64'])}
    return out


def input_x_gradient(m32, m64, x):
    a = captum_pair(InputXGradient, m32, m64, x)
    # Independent of Captum: x * d logit / dx by autograd on the float64 graph.
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    g = torch.autograd.grad(m64(xt)[0, TARGET], xt)[0].numpy()
    assert rel(x * g, a['f64']) < 1e-12
    return {'api': 'captum.attr.InputXGradient(model).attribute(x, target=3)',
            'map': save(f'{STEM}_input_x_gradient_f64.npy', a['f64']),
            'f32_vs_f64': rel(a['f32'], a['f64'])}


def guided(m32, m64, x):
    relus = [n for n, mod in m64.named_modules() if isinstance(mod, torch.nn.ReLU)]
    a = captum_pair(GuidedBackprop, m32, m64, x)
    return a, {'api': 'captum.attr.GuidedBackprop(model).attribute(x, target=3)',
               'relu_modules': len(relus),
               'map': save(f'{STEM}_guided_backprop_f64.npy', a['f64']),
               'f32_vs_f64': rel(a['f32'], a['f64'])}


def guided_gradcam(x, gb64):
    m32 = onnx2torch.convert(onnx.load(MODEL)).eval()
    xt = torch.tensor(x)
    layer = module_for(MODEL, m32, CASE['layer'])
    cam = GradCAM(model=m32, target_layers=[layer])(
        input_tensor=xt, targets=[ClassifierOutputTarget(TARGET)])[0]
    # pgc's GuidedBackpropReLUModel swaps the ReLU modules in place: give it its own copy.
    gb_model = GuidedBackpropReLUModel(
        model=onnx2torch.convert(onnx.load(MODEL)).eval(), device='cpu')
    gb = gb_model(xt, target_category=TARGET).transpose(2, 0, 1)  # [H, W, C] -> [C, H, W]
    product = gb * cam[None]
    return {'recipe': 'pytorch_grad_cam: GuidedBackpropReLUModel(model)(x, 3) * GradCAM map '
                      '(cam_mask * gb, before deprocess_image)',
            'layer': CASE['layer'],
            'map': save(f'{STEM}_pgc_guided_gradcam.npy', product),
            'pgc_gb_vs_captum_f64': rel(gb, gb64[0]),
            'f32_vs_f64': rel(product, gb64[0] * cam[None])}


def smoothgrad(m32, m64, x):
    n = NT['samples']
    sigma = np.float32(NT['noise']) * (x.max() - x.min())
    elements = np.arange(x.size)
    noise = np.stack([(sigma * netlens_normal(NT['seed'], s, elements)).reshape(x.shape[1:])
                      for s in range(n)])
    stored = np.load(os.path.join(PEERS, f'{STEM}_nt_noisy.npy'))
    assert np.array_equal((x + noise).astype(np.float32), stored), 'noise differs from peer_more'
    maps = {}
    for name, m, dt in (('f32', m32, torch.float32), ('f64', m64, torch.float64)):
        nt = FixedNoiseTunnel(Saliency(m))
        nt.noise = torch.tensor(noise, dtype=dt)
        maps[name] = nt.attribute(torch.tensor(x, dtype=dt), nt_type='smoothgrad', nt_samples=n,
                                  stdevs=float(sigma), target=TARGET,
                                  abs=False).detach().numpy()
    return {'params': dict(NT, sigma=float(sigma), noisy=f'ref/peers/{STEM}_nt_noisy.npy',
                           api='FixedNoiseTunnel(Saliency(model)).attribute(x, '
                               'nt_type="smoothgrad", nt_samples=8, stdevs=sigma, target=3, '
                               'abs=False)'),
            'map': save(f'{STEM}_nt_smoothgrad.npy', maps['f64']),
            'f32_vs_f64': rel(maps['f32'], maps['f64'])}


def integrated_gradients(m32, m64, x):
    out = {}
    for method, key in (('gausslegendre', 'gausslegendre'), ('riemann_trapezoid', 'trapezoid')):
        r = {}
        for name, m, dt in (('f32', m32, torch.float32), ('f64', m64, torch.float64)):
            attr, delta = IntegratedGradients(m).attribute(
                torch.tensor(x, dtype=dt), target=TARGET, n_steps=32, method=method,
                return_convergence_delta=True)
            r[name] = (attr.detach().numpy(), float(delta[0]))
        out[key] = {'api': f'captum.attr.IntegratedGradients(model).attribute(x, target=3, '
                           f'n_steps=32, method="{method}", baselines=0)',
                    'map': save(f'{STEM}_ig_{key}_f64.npy', r['f64'][0]),
                    'convergence_delta_f64': r['f64'][1], 'convergence_delta_f32': r['f32'][1],
                    'attribution_sum_f64': float(r['f64'][0].sum()),
                    'f32_vs_f64': rel(r['f32'][0], r['f64'][0])}
    return out


def lime_hash(seed, sample, k):
    return pcg(k ^ pcg(sample ^ pcg((seed & M32) ^ pcg(seed >> 32))))


def grid_labels(n, h, w):
    rows = min(max(int(round(np.sqrt(n * h / w))), 1), h)
    cols = min(max(int(round(n / rows)), 1), w)
    p = np.arange(h * w)
    return ((p // w * rows // h) * cols + (p % w) * cols // w).reshape(h, w), rows * cols


def lime(m32, m64, x):
    p = LIME
    _, c, h, w = x.shape
    labels, k = grid_labels(p['num_features'], h, w)
    n = p['num_samples']
    z = np.array([[s == 0 or (lime_hash(p['seed'], s, j) >> 31) == 1 for j in range(k)]
                  for s in range(n)], dtype=np.float64)
    fill = x[0].reshape(c, -1).astype(np.float64).mean(1).astype(np.float32)
    kept = z[:, labels]  # [n, h, w]
    images = np.where(kept[:, None] > 0, x, fill[None, :, None, None]).astype(np.float32)
    with torch.no_grad():
        y = m64(torch.tensor(images, dtype=torch.float64))[:, TARGET].numpy()
        y32 = m32(torch.tensor(images))[:, TARGET].numpy().astype(np.float64)
    on = z.sum(1)
    d = np.where(on == 0, 1.0, 1.0 - np.sqrt(on / k))
    weights = np.exp(-d ** 2 / p['kernel_width'] ** 2)
    ridge = Ridge(alpha=p['ridge'], fit_intercept=True).fit(z, y, sample_weight=weights)
    r2 = r2_score(y, ridge.predict(z), sample_weight=weights)
    # Independent of scikit-learn: the same fit by weighted normal equations in numpy.
    zc = z - weights @ z / weights.sum()
    yc = y - weights @ y / weights.sum()
    beta = np.linalg.solve(zc.T @ (weights[:, None] * zc) + p['ridge'] * np.eye(k),
                           zc.T @ (weights * yc))
    assert rel(beta, ridge.coef_) < 1e-9, rel(beta, ridge.coef_)
    # PyTorch float32's own distance: the same fit on the float32 graph's scores.
    coef32 = Ridge(alpha=p['ridge'], fit_intercept=True).fit(z, y32, sample_weight=weights).coef_
    tree = lime_tree(z, y, y32, weights)
    return {'params': dict(p, api='sklearn.linear_model.Ridge(alpha=1).fit(Z, y, sample_weight=w)'),
            'segments': k,
            'labels': save(f'{STEM}_lime_labels.npy', labels),
            'design': save(f'{STEM}_lime_design.npy', z),
            'scores': save(f'{STEM}_lime_scores_f64.npy', y),
            'coef': save(f'{STEM}_lime_ridge_coef.npy', ridge.coef_),
            'intercept': float(ridge.intercept_), 'r2_weighted': float(r2),
            'coef_max_abs': float(np.abs(ridge.coef_).max()),
            'scores_f32_vs_f64': rel(y32, y), 'coef_f32_vs_f64': rel(coef32, ridge.coef_),
            'tree': tree}


def tree_importance(z, y, weights, random_state):
    """MATLAB `predictorImportance` of a `fitrtree`-default tree, by scikit-learn: the summed
    weighted squared-error drop of each feature's splits over the total weight (sklearn's
    unnormalised `compute_feature_importances`), divided by the number of splits."""
    t = DecisionTreeRegressor(min_samples_split=10, min_samples_leaf=1,
                              random_state=random_state).fit(z, y, sample_weight=weights)
    splits = int((t.tree_.children_left >= 0).sum())
    return t, splits, t.tree_.compute_feature_importances(normalize=False) / splits


def lime_tree(z, y, y32, weights):
    t, splits, importance = tree_importance(z, y, weights, 0)
    # sklearn visits the features in a random order and keeps the first of equal splits: where
    # two features split a node alike the importance would depend on it. Not so here.
    spread = max(rel(tree_importance(z, y, weights, rs)[2], importance) for rs in range(1, 20))
    assert spread < 1e-12, spread
    return {'api': 'sklearn.tree.DecisionTreeRegressor(min_samples_split=10, min_samples_leaf=1)'
                   '.fit(Z, y, sample_weight=w); tree_.compute_feature_importances('
                   'normalize=False) / splits',
            'splits': splits,
            'importance': save(f'{STEM}_lime_tree_importance.npy', importance),
            'r2_weighted': float(r2_score(y, t.predict(z), sample_weight=weights)),
            'random_state_spread': spread,
            'importance_f32_vs_f64': rel(tree_importance(z, y32, weights, 0)[2], importance)}


def activations(m32, m64, x):
    out = {}
    for name, m, dt in (('f32', m32, torch.float32), ('f64', m64, torch.float64)):
        layer = module_for(MODEL, m, TAP)
        seen = {}
        hook = layer.register_forward_hook(lambda mod, i, o: seen.__setitem__('a', o.detach()))
        with torch.no_grad():
            m(torch.tensor(x, dtype=dt))
        hook.remove()
        out[name] = seen['a'][0].numpy()
    return {'layer': TAP, 'map': save(f'{STEM}_activations_features8_f64.npy', out['f64']),
            'shape': list(out['f64'].shape), 'f32_vs_f64': rel(out['f32'], out['f64'])}


def main():
    versions = {p: version(p) for p in ('torch', 'onnx', 'onnx2torch', 'captum', 'grad-cam',
                                        'numpy', 'scikit-learn')}
    torch.manual_seed(0)
    x = np.load(os.path.join(PEERS, f'{STEM}_input.npy')).astype(np.float32)
    m32, m64 = models()
    gb, gb_entry = guided(m32, m64, x)
    result = {'script': 'tools/peer_local.py', 'versions': versions, 'model': CASE['model'],
              'input': f'ref/peers/{STEM}_input.npy', 'target': TARGET,
              'occlusion': occlusion(m32, m64, x),
              'saliency': saliency(m32, m64, x),
              'input_x_gradient': input_x_gradient(m32, m64, x),
              'guided_backprop': gb_entry,
              'guided_gradcam': guided_gradcam(x, gb['f64']),
              'smoothgrad': smoothgrad(m32, m64, x),
              'integrated_gradients': integrated_gradients(m32, m64, x),
              'lime_linear': lime(m32, m64, x),
              'activations': activations(m32, m64, x)}
    print(json.dumps(result, indent=1))
    manifest_path = os.path.join(PEERS, 'manifest.json')
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest['local_methods'] = result
    with open(manifest_path, 'w') as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)


if __name__ == '__main__':
    main()
