"""Peer references for the CAM family and RISE, written once into assets/ref/peers/ and recorded
in its manifest.json (key "cams_and_rise").

CAMs: pytorch-grad-cam runs on the SAME ONNX graph as netlens (onnx2torch of the .onnx file, float32,
eval mode), hooked at the CAM layer `netlens info` lists, on the same input and target class, with
ClassifierOutputTarget (the logit). For each method two files: `<stem>_pgc_<method>_lowres.npy`, the
map at the layer's resolution as pgc computes it before its scaling (`get_cam_image`, then
`np.maximum(cam, 0)`), and `<stem>_pgc_<method>_map.npy`, the upsampled normalised map pgc returns.

RISE: a plain numpy implementation of netlens' mask definition (src/backend/perturb.rs,
`RiseMasks`: PCG-hashed cells, bilinear upsampling with half-pixel centres, random shift), the
masked images scored by the same onnx2torch model (softmax probability of the target), and the
saliency sum_i score_i * mask_i / (N p) in float64. Files: `<stem>_rise_saliency.npy` [H, W],
`<stem>_rise_scores.npy` [N], and for the small model `<stem>_rise_masks.npy` (the first masks).

Run from the repository root in a venv with the pinned packages:
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch==2.15.0 onnx==1.23.2 \
        onnx2torch==1.5.15 grad-cam==1.5.7 numpy==2.4.6 pillow
    /tmp/venv/bin/python assets/tools/peer_cams.py
CI never runs this: the tests read only the committed .npy files.
"""

import json
import os
from importlib.metadata import version

import numpy as np
import onnx
import onnx2torch
import torch
from PIL import Image
from pytorch_grad_cam import (EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM,
                              XGradCAM)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
PEERS = os.path.join(ROOT, 'ref', 'peers')
PINNED = {'torch': '2.15.0', 'onnx': '1.23.2', 'onnx2torch': '1.5.15', 'grad-cam': '1.5.7',
          'numpy': '2.4.6'}

class SignCorrectedEigenCAM(EigenCAM):
    """EigenCAM with pgc's own sign correction of the projection (Seg-Eigen-CAM Eq. 13: flip
    when |min| > |max|). Plain EigenCAM takes LAPACK's arbitrary sign of the singular vector;
    netlens fixes it this way. The manifest records where plain EigenCAM agrees."""

    def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads,
                      eigen_smooth):
        return get_2d_projection_with_sign_correction(activations)


CAMS = {'gradcam': GradCAM, 'gradcam++': GradCAMPlusPlus, 'layercam': LayerCAM,
        'hirescam': HiResCAM, 'xgradcam': XGradCAM, 'eigencam': SignCorrectedEigenCAM}
# Upsampled maps of the big model only for these (224x224 float32 each); all for the small one.
BIG_MAPS = ('hirescam', 'xgradcam', 'eigencam')


def digit_input():
    img = np.asarray(Image.open(os.path.join(ROOT, 'digits', 'digit_3_idx0649.png')))
    assert img.dtype == np.uint8 and img.ndim == 2, (img.dtype, img.shape)
    return (img.astype(np.float32) / 255.0)[None, None]


CASES = [
    dict(stem='mobilenetv2_imagenet_chelsea', model='models/mobilenetv2_imagenet.onnx',
         input=lambda: np.load(os.path.join(ROOT, 'ref', 'mobilenetv2_imagenet_chelsea_input.npy')),
         input_file='ref/mobilenetv2_imagenet_chelsea_input.npy', target=285,
         layer='/features/features.18/features.18.2/Clip_output_0',
         inner='/features/features.17/conv/conv.2/Conv_output_0',
         rise=dict(num_masks=48, grid=7, p=0.5, seed=3), rise_masks_kept=0),
    dict(stem='tiny_digits_digit3', model='models/tiny_digits.onnx', input=digit_input,
         input_file='ref/peers/tiny_digits_digit3_input.npy (digits/digit_3_idx0649.png / 255)',
         target=3, layer='/features/features.11/Relu_output_0',
         inner='/features/features.8/Relu_output_0',
         rise=dict(num_masks=256, grid=4, p=0.5, seed=7), rise_masks_kept=8),
]

M32 = 0xFFFFFFFF


def pcg(v):
    state = (v * 747796405 + 2891336453) & M32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & M32
    return ((word >> 22) ^ word) & M32


def rise_hash(seed, sample, k):
    return pcg(k ^ pcg(sample ^ pcg((seed & M32) ^ pcg(seed >> 32))))


def upsample_axis(o, up, cells):
    """Half-pixel centres, clamped (PyTorch interpolate(align_corners=False)), in float64."""
    x = np.maximum((o + 0.5) * cells / up - 0.5, 0.0)
    i0 = np.minimum(np.floor(x).astype(np.int64), cells - 1)
    return i0, np.minimum(i0 + 1, cells - 1), x - i0


def rise_mask(seed, grid, p, sample, h, w):
    ch, cw = -(-h // grid), -(-w // grid)
    cells = np.array([(rise_hash(seed, sample, k) >> 8) / 16777216.0 < p
                      for k in range(grid * grid)], dtype=np.float64).reshape(grid, grid)
    dy = rise_hash(seed, sample, grid * grid) % ch
    dx = rise_hash(seed, sample, grid * grid + 1) % cw
    y0, y1, fy = upsample_axis(np.arange(h) + dy, (grid + 1) * ch, grid)
    x0, x1, fx = upsample_axis(np.arange(w) + dx, (grid + 1) * cw, grid)
    top = cells[y0][:, x0] * (1 - fx) + cells[y0][:, x1] * fx
    bottom = cells[y1][:, x0] * (1 - fx) + cells[y1][:, x1] * fx
    mask = top * (1 - fy[:, None]) + bottom * fy[:, None]
    # Independent check of the upsampling against PyTorch's own.
    up = torch.nn.functional.interpolate(torch.tensor(cells)[None, None],
                                         size=((grid + 1) * ch, (grid + 1) * cw),
                                         mode='bilinear', align_corners=False)[0, 0].numpy()
    assert np.abs(up[dy:dy + h, dx:dx + w] - mask).max() < 1e-12
    return mask


def module_for(model_path, torch_model, tensor):
    node = next(n for n in onnx.load(model_path).graph.node if tensor in n.output)
    name = node.name.lstrip('/').replace('.', '/')
    return dict(torch_model.named_modules())[name]


def save(name, array):
    np.save(os.path.join(PEERS, name), np.ascontiguousarray(array, dtype=np.float32))
    return 'ref/peers/' + name


def run_case(case):
    path = os.path.join(ROOT, case['model'])
    model = onnx2torch.convert(onnx.load(path)).eval()
    x = case['input']().astype(np.float32)
    if case['stem'].startswith('tiny'):
        case['input_saved'] = save(case['stem'] + '_input.npy', x)
    target = case['target']
    xt = torch.tensor(x)
    out = {}
    for where, tensor in (('', case['layer']), ('inner_', case['inner'])):
        layer = module_for(path, model, tensor)
        for name, cls in CAMS.items():
            cam = cls(model=model, target_layers=[layer])
            targets = [ClassifierOutputTarget(target)]
            upsampled = cam(input_tensor=xt, targets=targets)
            acts = cam.activations_and_grads.activations[0].cpu().numpy()
            grads = [g.cpu().numpy() for g in cam.activations_and_grads.gradients]
            raw = cam.get_cam_image(xt, layer, targets, acts, grads[0] if grads else None, False)
            lowres = np.maximum(raw, 0)[0]
            key = where + name.replace('+', 'p')
            entry = {'layer': tensor, 'class': f'pytorch_grad_cam.{cls.__name__}',
                     'lowres': save(f"{case['stem']}_pgc_{key}_lowres.npy", lowres),
                     'lowres_shape': list(lowres.shape)}
            if case['stem'].startswith('tiny') or (name in BIG_MAPS and not where):
                entry['map'] = save(f"{case['stem']}_pgc_{key}_map.npy", upsampled[0])
            if cls is SignCorrectedEigenCAM:
                plain = EigenCAM(model=model, target_layers=[layer])
                plain_map = plain(input_tensor=xt, targets=targets)
                entry['plain_eigencam_max_abs_diff_of_map'] = float(
                    np.abs(plain_map - upsampled).max())
            out[key] = entry
            print(case['stem'], key, 'lowres max', float(lowres.max()), 'raw min',
                  float(raw.min()), 'raw max', float(raw.max()))

    r = case['rise']
    n, h, w = r['num_masks'], x.shape[2], x.shape[3]
    masks = np.stack([rise_mask(r['seed'], r['grid'], r['p'], i, h, w) for i in range(n)])
    with torch.no_grad():
        logits = model(torch.tensor((x * masks[:, None].astype(np.float32)).astype(np.float32)))
    scores = torch.softmax(logits, dim=1)[:, target].numpy().astype(np.float64)
    saliency = np.tensordot(scores, masks, axes=1) / (n * r['p'])
    rise = {'params': dict(r, score='softmax probability of the target'),
            'saliency': save(f"{case['stem']}_rise_saliency.npy", saliency),
            'scores': save(f"{case['stem']}_rise_scores.npy", scores)}
    if case['rise_masks_kept']:
        rise['masks'] = save(f"{case['stem']}_rise_masks.npy", masks[:case['rise_masks_kept']])
    print(case['stem'], 'rise saliency max', float(saliency.max()))
    return {'model': case['model'], 'input': case.get('input_saved', case['input_file']),
            'target': target, 'cam_layer': case['layer'], 'inner_layer': case['inner'],
            'cams': out, 'rise': rise}


def main():
    versions = {p: version(p) for p in PINNED}
    assert versions == PINNED, f'pinned {PINNED}, installed {versions}'
    torch.manual_seed(0)
    result = {'script': 'tools/peer_cams.py', 'versions': versions,
              'cam_postprocess': 'pgc: relu -> (cam-min)/(1e-7+max) -> cv2.resize INTER_LINEAR '
                                 '-> same min-max again',
              'cases': [run_case(c) for c in CASES]}
    manifest_path = os.path.join(PEERS, 'manifest.json')
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest['cams_and_rise'] = result
    with open(manifest_path, 'w') as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)


if __name__ == '__main__':
    main()
