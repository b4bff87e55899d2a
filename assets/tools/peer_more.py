"""Peer references for Score-CAM and classic CAM, written once into assets/ref/peers/ and recorded
in its manifest.json (key "scorecam_and_cam"). Companion of peer_cams.py (same models, inputs,
CAM layers and conventions).

Score-CAM: pytorch-grad-cam's `ScoreCAM` on the SAME ONNX graph as netlens (onnx2torch of the
.onnx file, float32, eval mode), hooked at the CAM layer `netlens info` lists (the input of the
global average pooling), target ClassifierOutputTarget (the logit). Files for the tiny digits CNN:
`<stem>_pgc_scorecam_weights.npy` [K] (softmax over channels of the masked scores, pgc's
`get_cam_weights`), `<stem>_pgc_scorecam_lowres.npy` [h, w] (ReLU(Σ_k w_k A_k), as
peer_cams.py stores the other CAMs) and `<stem>_pgc_scorecam_map.npy` [H, W] (the upsampled,
min-max normalised map pgc returns).

Classic CAM (Zhou et al.): an independent float64 implementation. A_k: the CAM layer's
activations from the onnx2torch graph cast to float64 (model.double(), input in float64); W: the
classifier Gemm's weight read from the ONNX initializer (transB = 1, so row c is class c);
cam = Σ_k W[c, k] A_k, no bias and no ReLU (netlens' definition, Zhou et al.'s). Files:
`<stem>_cam_f64.npy` [h, w] for both models (stored as float32: the rounding of the stored
values is 6e-8 relative, far below the test bound).

SmoothGrad² and VarGrad: Captum 0.9.0's `NoiseTunnel(Saliency(model))` (nt_type smoothgrad_sq /
vargrad, 8 samples, target 3, `abs=False`: VarGrad is the variance of the signed gradient) on the
tiny digits CNN, with netlens' own noise passed in: `FixedNoiseTunnel` replaces the one method
that draws `torch.normal` noise by the noise this script computes with netlens' counter-based
formula (src/backend/ops.rs `noise::normal`: PCG hash of seed, sample and element, Box-Muller in
float32; sigma = noise fraction * (max - min) of the image, float32), reimplemented here in numpy.
Files: `<stem>_nt_noisy.npy` [8, 1, H, W] (the noisy copies, which the test checks against
netlens' `path_batch` on both backends), `<stem>_nt_smoothgrad_sq.npy` and `<stem>_nt_vargrad.npy`
[1, H, W]. The manifest also records how far Captum's default `abs=True` VarGrad lies from it.

Run from the repository root in a venv with the pinned packages (those of peer_cams.py, and
captum==0.9.0):
    /tmp/venv/bin/python assets/tools/peer_more.py
CI never runs this: the tests read only the committed .npy files.
"""

import json
import os
from importlib.metadata import version

import numpy as np
import onnx
import onnx2torch
import torch
from onnx import numpy_helper
from captum.attr import NoiseTunnel, Saliency
from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from peer_cams import CASES, M32, PEERS, PINNED, ROOT, module_for, save


def activations_f64(model_path, tensor, x):
    """The CAM layer's output of the onnx2torch graph in float64 (and the float64 logits)."""
    model = onnx2torch.convert(onnx.load(model_path)).eval().double()
    layer = module_for(model_path, model, tensor)
    seen = {}
    handle = layer.register_forward_hook(lambda m, i, o: seen.__setitem__('a', o.detach()))
    with torch.no_grad():
        logits = model(torch.tensor(x, dtype=torch.float64))
    handle.remove()
    assert seen['a'].dtype == torch.float64
    return seen['a'][0].numpy(), logits[0].numpy()


def classifier_weights(model_path):
    graph = onnx.load(model_path).graph
    gemm = [n for n in graph.node if n.op_type == 'Gemm'][-1]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    w = inits[gemm.input[1]].astype(np.float64)
    bias = inits[gemm.input[2]].astype(np.float64)
    return (w if attrs.get('transB', 0) else w.T), bias


def classic_cam(case):
    path = os.path.join(ROOT, case['model'])
    x = case['input']().astype(np.float64)
    acts, logits = activations_f64(path, case['layer'], x)
    w, bias = classifier_weights(path)
    cam = np.tensordot(w[case['target']], acts, axes=1)
    # Self-check of the structure (GAP -> Gemm): the mean of the CAM plus the bias is the logit.
    assert abs(cam.mean() + bias[case['target']] - logits[case['target']]) < 1e-9 * max(
        1.0, abs(logits[case['target']]))
    print(case['stem'], 'cam shape', cam.shape, 'max', float(np.abs(cam).max()))
    return {'method': 'numpy float64: sum_k W[target, k] * A_k (A_k: onnx2torch .double())',
            'layer': case['layer'], 'map': save(f"{case['stem']}_cam_f64.npy", cam),
            'shape': list(cam.shape)}


def score_cam(case):
    path = os.path.join(ROOT, case['model'])
    model = onnx2torch.convert(onnx.load(path)).eval()
    x = case['input']().astype(np.float32)
    xt = torch.tensor(x)
    layer = module_for(path, model, case['layer'])
    cam = ScoreCAM(model=model, target_layers=[layer])
    targets = [ClassifierOutputTarget(case['target'])]
    upsampled = cam(input_tensor=xt, targets=targets)
    acts = cam.activations_and_grads.activations[0].cpu().numpy()
    weights = cam.get_cam_weights(xt, layer, targets, acts, None)
    raw = cam.get_cam_image(xt, layer, targets, acts, None, False)
    lowres = np.maximum(raw, 0)[0]
    stem = case['stem']
    print(stem, 'scorecam lowres max', float(lowres.max()), 'weights', weights.shape)
    return {'class': 'pytorch_grad_cam.ScoreCAM', 'layer': case['layer'], 'batch_size': 16,
            'weights': save(f'{stem}_pgc_scorecam_weights.npy', weights[0]),
            'lowres': save(f'{stem}_pgc_scorecam_lowres.npy', lowres),
            'map': save(f'{stem}_pgc_scorecam_map.npy', upsampled[0])}


NT = dict(samples=8, noise=0.15, seed=7, target=3)


def pcg_u32(v):
    """src/backend/ops.rs `noise::pcg` on uint32 arrays (wrapping arithmetic done in uint64)."""
    v = np.asarray(v, dtype=np.uint64)
    state = (v * 747796405 + 2891336453) & M32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & M32
    return ((word >> 22) ^ word) & M32


def netlens_normal(seed, sample, elements):
    """src/backend/ops.rs `noise::normal(seed, sample, element)` for an array of elements."""
    inner = int(pcg_u32(sample ^ int(pcg_u32((seed & M32) ^ int(pcg_u32(seed >> 32))))))
    key = pcg_u32(np.asarray(elements, dtype=np.uint64) ^ inner)
    u1 = ((key >> 8).astype(np.float32) + np.float32(1.0)) / np.float32(16777216.0)
    u2 = (pcg_u32(key) >> 8).astype(np.float32) / np.float32(16777216.0)
    z = np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(np.float32(2 * np.pi) * u2)
    assert z.dtype == np.float32
    exact = np.sqrt(-2.0 * np.log(u1.astype(np.float64))) * np.cos(2 * np.pi * u2.astype(np.float64))
    assert np.abs(z - exact).max() < 1e-5, np.abs(z - exact).max()
    return z


class FixedNoiseTunnel(NoiseTunnel):
    """NoiseTunnel with the noise given instead of drawn (its only random step)."""
    noise = None

    def _add_noise_to_input(self, input, stdev, nt_samples_partition):
        assert input.shape[0] == 1 and self.noise.shape[0] == nt_samples_partition
        return input.repeat_interleave(nt_samples_partition, dim=0) + self.noise


def noise_tunnel(case):
    path = os.path.join(ROOT, case['model'])
    model = onnx2torch.convert(onnx.load(path)).eval()
    x = case['input']().astype(np.float32)
    n = NT['samples']
    sigma = np.float32(NT['noise']) * (x.max() - x.min())
    assert sigma.dtype == np.float32
    elements = np.arange(x.size)
    noise = np.stack([(sigma * netlens_normal(NT['seed'], s, elements)).reshape(x.shape[1:])
                      for s in range(n)])
    noisy = x + noise
    stem = case['stem']
    out = {'params': dict(NT, sigma=float(sigma),
                          api='FixedNoiseTunnel(Saliency(model)).attribute(x, nt_type, '
                              'nt_samples=8, stdevs=sigma, target=3, abs=False)'),
           'noisy': save(f'{stem}_nt_noisy.npy', noisy)}
    xt = torch.tensor(x)
    for nt_type in ('smoothgrad_sq', 'vargrad'):
        results = {}
        for abs_ in (False, True):
            nt = FixedNoiseTunnel(Saliency(model))
            nt.noise = torch.tensor(noise)
            results[abs_] = nt.attribute(xt, nt_type=nt_type, nt_samples=n, stdevs=float(sigma),
                                         target=NT['target'], abs=abs_).detach().numpy()[0]
        # Independent check of Captum's reduction over the same noisy copies.
        xs = torch.tensor(noisy, requires_grad=True)
        g = torch.autograd.grad(model(xs)[:, NT['target']].sum(), xs)[0].numpy().astype(np.float64)
        mine = (g ** 2).mean(0) if nt_type == 'smoothgrad_sq' else (g ** 2).mean(0) - g.mean(0) ** 2
        scale = np.abs(mine).max()
        out[nt_type] = {
            'map': save(f'{stem}_nt_{nt_type}.npy', results[False]),
            'float64_reduction_max_rel_diff': float(np.abs(results[False] - mine).max() / scale),
            'abs_true_max_rel_diff': float(np.abs(results[True] - results[False]).max() / scale)}
        print(stem, nt_type, out[nt_type])
    return out


def main():
    pinned = dict(PINNED, captum='0.9.0')
    versions = {p: version(p) for p in pinned}
    assert versions == pinned, f'pinned {pinned}, installed {versions}'
    torch.manual_seed(0)
    cases = []
    for case in CASES:
        entry = {'model': case['model'], 'target': case['target'], 'cam_layer': case['layer'],
                 'cam': classic_cam(case)}
        if case['stem'].startswith('tiny'):
            entry['scorecam'] = score_cam(case)
            entry['noise_tunnel'] = noise_tunnel(case)
        cases.append(entry)
    result = {'script': 'tools/peer_more.py', 'versions': versions, 'cases': cases}
    manifest_path = os.path.join(PEERS, 'manifest.json')
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest['scorecam_and_cam'] = result
    with open(manifest_path, 'w') as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)


if __name__ == '__main__':
    main()
