"""Reference values for the faithfulness metrics of src/methods/metrics (issue 16), on the tiny
digits CNN (cheap enough for the GPU tests on lavapipe), written once into assets/ref/peers/ and
recorded in its manifest.json (key "metrics"). Same model, input and target as peer_local.py
(models/tiny_digits.onnx, ref/peers/tiny_digits_digit3_input.npy, class 3); the maps are two
committed peer maps: pytorch-grad-cam's Grad-CAM (`<stem>_pgc_gradcam_map.npy`, [H, W]) and
Captum's gradient of the probability (`<stem>_saliency_prob_f64.npy`, [1, 1, H, W]).

- deletion / insertion (Petsiuk et al. 2018): a plain numpy implementation. The map is summed
  over channels, pixels are ranked by `argsort(-r, kind="stable")` (most relevant first, ties by
  index), point i of N steps has k_i = floor(i * P / N) of the P pixels removed (set to the
  baseline 0 on every channel) or inserted (into a baseline of 0); each point is scored by the
  float64 evaluation of the graph (onnx2torch, softmax probability of the target); the AUC is
  RISE's evaluation.py `auc`, (sum - s_0/2 - s_N/2) / N. Files:
  `<stem>_metrics_<map>_curves.npy` [2, N + 1] (deletion, insertion; the float64 scores stored
  as float32, the AUCs in the manifest in float64). The float32 graph's
  AUCs are recorded beside them (`auc_f32`).
- Average Drop / Increase in Confidence: pytorch-grad-cam's `DropInConfidence` and
  `IncreaseInConfidence` (float32, as pgc runs) with `ClassifierOutputSoftmaxTarget(3)`, the
  map summed over channels and min-max normalised, (r - min) / (max - min + 1e-8); the float64
  before / after scores of the same images beside them.
- infidelity (Yeh et al. 2019): Captum's `captum.metrics.infidelity` (normalize=False) on the
  float64 graph's softmax probability, its `perturb_func` returning netlens' own noise
  (I_s = sigma * noise::normal(seed, s, element) for s = 1..=S, peer_more.py's
  `netlens_normal`) and x - I_s; the map broadcast to the input's shape.

Run from the repository root in a venv with torch, onnx, onnx2torch, grad-cam and numpy
(e.g. /tmp/venv-peers of peer_local.py): python assets/tools/peer_metrics.py
"""
import json
import os
import sys

import numpy as np
import onnx
import onnx2torch
import torch
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from captum.metrics import infidelity

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_more import netlens_normal  # noqa: E402

ASSETS = 'assets'
MODEL = os.path.join(ASSETS, 'models/tiny_digits.onnx')
STEM = 'tiny_digits_digit3'
TARGET = 3
# name: (map, steps, baseline); baseline 0.0 or ('blur', sigma).
MAPS = {
    'gradcam': ('ref/peers/tiny_digits_digit3_pgc_gradcam_map.npy', 100, 0.0),
    'saliency': ('ref/peers/tiny_digits_digit3_saliency_prob_f64.npy', 64, 0.0),
    'gradcam_blur': ('ref/peers/tiny_digits_digit3_pgc_gradcam_map.npy', 32, ('blur', 1.0)),
}


def blur(x, sigma):
    """netlens' Backend::blur in float64: the Gaussian weights w[k] = exp(-k^2 / (2 sigma^2)),
    k = 0..ceil(3 sigma), normalised over -r..r (and rounded to float32 as netlens computes them
    once on the host), applied along rows then columns with edges replicated."""
    r = int(np.ceil(3 * sigma))
    k = np.arange(r + 1, dtype=np.float64)
    w = np.exp(-k * k / (2 * sigma * sigma))
    w = (w / (w[0] + 2 * w[1:].sum())).astype(np.float32).astype(np.float64)
    taps = np.concatenate([w[:0:-1], w])
    _, c, h, wd = x.shape
    p = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (r, r), (r, r)), mode='edge')
    rows = sum(taps[i] * p[:, :, :, i:i + wd] for i in range(2 * r + 1))
    return sum(taps[i] * rows[:, :, i:i + h, :] for i in range(2 * r + 1))


def relevance(m, h, w):
    m = np.asarray(m, np.float64)
    return m.reshape(-1, h * w).sum(axis=0)


def counts(steps, pixels):
    return [i * pixels // steps for i in range(steps + 1)]


def curves(model, x, r, steps, baseline):
    """Deletion and insertion scores at each point, in the given model's precision."""
    _, c, h, w = x.shape
    p = h * w
    order = np.argsort(-r, kind='stable')
    flat = x.reshape(c, p)
    if isinstance(baseline, tuple):
        base = blur(x, baseline[1]).astype(x.dtype).reshape(c, p)
    else:
        base = np.full_like(flat, baseline)
    images = []
    for kind in ('deletion', 'insertion'):
        for k in counts(steps, p):
            if kind == 'deletion':
                img = flat.copy()
                img[:, order[:k]] = base[:, order[:k]]
            else:
                img = base.copy()
                img[:, order[:k]] = flat[:, order[:k]]
            images.append(img.reshape(c, h, w))
    batch = np.stack(images)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(batch).to(dtype)), dim=1)[:, TARGET]
    return probs.numpy().astype(np.float64).reshape(2, steps + 1)


INFIDELITY = dict(samples=10, sigma=0.1, seed=7)


def captum_infidelity(m64, x, m):
    n, sigma, seed = INFIDELITY['samples'], INFIDELITY['sigma'], INFIDELITY['seed']
    elements = np.arange(x.size)
    noise = np.stack([(np.float32(-sigma) * netlens_normal(seed, s, elements)).reshape(x.shape[1:])
                      for s in range(1, n + 1)])
    perturb = torch.from_numpy(-noise.astype(np.float64))

    def perturb_func(inputs):
        assert inputs.shape[0] == n
        return perturb, inputs - perturb

    attr = np.broadcast_to(np.asarray(m, np.float64).reshape(-1, *x.shape[2:]), x.shape[1:])
    prob = lambda t: torch.softmax(m64(t), dim=1)
    value = infidelity(prob, perturb_func, torch.from_numpy(x.astype(np.float64)),
                       torch.from_numpy(np.ascontiguousarray(attr)[None]), target=TARGET,
                       n_perturb_samples=n, normalize=False)
    return float(value[0])


def auc(s):
    return float((s.sum() - s[0] / 2 - s[-1] / 2) / (len(s) - 1))


def main():
    m32 = onnx2torch.convert(onnx.load(MODEL)).eval()
    m64 = onnx2torch.convert(onnx.load(MODEL)).eval().double()
    x = np.load(os.path.join(ASSETS, 'ref/peers', STEM + '_input.npy')).astype(np.float32)
    _, c, h, w = x.shape
    result = {'model': 'models/tiny_digits.onnx', 'input': f'ref/peers/{STEM}_input.npy',
              'target': TARGET, 'score': 'softmax probability of the target',
              'versions': {'torch': torch.__version__, 'numpy': np.__version__}, 'maps': {}}
    for name, (path, steps, baseline) in MAPS.items():
        r = relevance(np.load(os.path.join(ASSETS, path)), h, w)
        c64 = curves(m64, x.astype(np.float64), r, steps, baseline)
        c32 = curves(m32, x, r, steps, baseline)
        out = f'ref/peers/{STEM}_metrics_{name}_curves.npy'
        np.save(os.path.join(ASSETS, out), c64.astype(np.float32))
        # pytorch-grad-cam's confidence metrics on the min-max normalised map.
        cam = ((r - r.min()) / (r.max() - r.min() + 1e-8)).astype(np.float32).reshape(1, h, w)
        xt = torch.from_numpy(x)
        targets = [ClassifierOutputSoftmaxTarget(TARGET)]
        drop = float(DropInConfidence()(xt, cam, targets, m32)[0])
        inc = float(IncreaseInConfidence()(xt, cam, targets, m32)[0])
        with torch.no_grad():
            pair = torch.from_numpy(np.concatenate([x, x * cam[None]]).astype(np.float64))
            b64, a64 = torch.softmax(m64(pair), dim=1)[:, TARGET].numpy().tolist()
        result['maps'][name] = {
            'map': path, 'steps': steps, 'curves': out,
            'baseline': list(baseline) if isinstance(baseline, tuple) else baseline,
            'deletion_auc': auc(c64[0]), 'insertion_auc': auc(c64[1]),
            'auc_f32': {'deletion': auc(c32[0]), 'insertion': auc(c32[1])},
            'pgc_drop_in_confidence': drop, 'pgc_increase_in_confidence': inc,
            'confidence_before_f64': b64, 'confidence_after_f64': a64,
            'captum_infidelity_f64': captum_infidelity(m64, x, np.load(os.path.join(ASSETS, path))),
        }
        print(name, json.dumps(result['maps'][name]))
    manifest_path = os.path.join(ASSETS, 'ref/peers/manifest.json')
    with open(manifest_path) as f:
        manifest = json.load(f)
    result['infidelity'] = INFIDELITY
    manifest['metrics'] = result
    with open(manifest_path, 'w') as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)


if __name__ == '__main__':
    main()
