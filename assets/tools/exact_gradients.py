"""Exact (float64) gradients of the MobileNetV2 ONNX graph on chelsea, class 285, with numpy only.

Why: the peers (PyTorch autograd, Captum) compute in float32 on PyTorch's own graph (BatchNorm
unfolded). A few ReLU6 pre-activations of this image lie within float32 rounding of the kink at 0
(one at 9.9e-8), so every float32 implementation flips some of those masks its own way. This
script evaluates the same ONNX function in float64, end to end, to tell rounding from error.
Run from anywhere: `python3 assets/tools/exact_gradients.py` (needs numpy and onnx); it writes
assets/ref/exact/*_f64.npy (stored as float32) and summary.json.
"""
import json, os, sys
import numpy as np, onnx
from onnx import numpy_helper
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
m = onnx.load(os.path.join(ROOT, 'models/mobilenetv2_imagenet.onnx'))
W = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}
for n in m.graph.node:
    if n.op_type == 'Constant':
        W[n.output[0]] = numpy_helper.to_array(n.attribute[0].t).astype(np.float64)
def attr(n, k, d=None):
    for a in n.attribute:
        if a.name == k:
            return onnx.helper.get_attribute_value(a)
    return d
x0 = np.load(os.path.join(ROOT, 'ref/mobilenetv2_imagenet_chelsea_input.npy')).astype(np.float64)

def conv_fwd(x, w, b, s, p, g):
    N, C, H, Wd = x.shape
    O, Cg, kh, kw = w.shape
    xp = np.pad(x, ((0,0),(0,0),(p[0],p[2]),(p[1],p[3])))
    oh = (H + p[0] + p[2] - kh)//s + 1; ow = (Wd + p[1] + p[3] - kw)//s + 1
    out = np.zeros((N, O, oh, ow), x.dtype)
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky:ky+s*oh:s, kx:kx+s*ow:s]
            if g == 1:
                out += np.einsum('nchw,oc->nohw', patch, w[:, :, ky, kx])
            else:
                out += patch * w[:, 0, ky, kx][None, :, None, None]
    if b is not None: out += b[None, :, None, None]
    return out

def conv_bwd(gy, xshape, w, s, p, g):
    N, C, H, Wd = xshape
    O, Cg, kh, kw = w.shape
    oh, ow = gy.shape[2:]
    gxp = np.zeros((N, C, H+p[0]+p[2], Wd+p[1]+p[3]), gy.dtype)
    for ky in range(kh):
        for kx in range(kw):
            if g == 1:
                gxp[:, :, ky:ky+s*oh:s, kx:kx+s*ow:s] += np.einsum('nohw,oc->nchw', gy, w[:, :, ky, kx])
            else:
                gxp[:, :, ky:ky+s*oh:s, kx:kx+s*ow:s] += gy * w[:, 0, ky, kx][None, :, None, None]
    return gxp[:, :, p[0]:p[0]+H, p[1]:p[1]+Wd]

def run(x, target=285, prob=False):
    W2 = {k: v.astype(x.dtype) for k, v in W.items()}
    vals = {'input': x}; tape = []
    for n in m.graph.node:
        op = n.op_type; i = n.input
        if op == 'Constant': continue
        if op == 'Conv':
            s = attr(n, 'strides')[0]; p = attr(n, 'pads', [0,0,0,0]); g = attr(n, 'group', 1)
            y = conv_fwd(vals[i[0]], W2[i[1]], W2[i[2]] if len(i) > 2 else None, s, p, g)
            tape.append((n, (vals[i[0]].shape, s, p, g)))
        elif op == 'Clip':
            lo = W2[i[1]] if len(i) > 1 and i[1] else attr(n,'min'); hi = W2[i[2]] if len(i) > 2 and i[2] else attr(n,'max')
            xv = vals[i[0]]; y = np.clip(xv, lo, hi); tape.append((n, (xv, lo, hi)))
        elif op == 'Add':
            y = vals[i[0]] + vals[i[1]]; tape.append((n, None))
        elif op == 'GlobalAveragePool':
            y = vals[i[0]].mean(axis=(2,3), keepdims=True); tape.append((n, vals[i[0]].shape))
        elif op == 'Flatten':
            y = vals[i[0]].reshape(vals[i[0]].shape[0], -1); tape.append((n, vals[i[0]].shape))
        elif op == 'Gemm':
            wt = W2[i[1]]; y = vals[i[0]] @ (wt.T if attr(n,'transB',0) else wt) + W2[i[2]]; tape.append((n, wt))
        vals[n.output[0]] = y
    logits = vals[m.graph.output[0].name]
    z = logits[0]
    if prob:
        e = np.exp(z - z.max()); pr = e / e.sum()
        gl = pr[target] * ((np.arange(len(z)) == target) - pr)
    else:
        gl = (np.arange(len(z)) == target).astype(x.dtype)
    grads = {m.graph.output[0].name: gl[None, :].astype(x.dtype)}
    def acc(name, g):
        grads[name] = grads[name] + g if name in grads else g
    for n, saved in reversed(tape):
        gy = grads.pop(n.output[0], None)
        if gy is None: continue
        op = n.op_type; i = n.input
        if op == 'Conv':
            xs, s, p, g = saved; acc(i[0], conv_bwd(gy, xs, W2[i[1]], s, p, g))
        elif op == 'Clip':
            xv, lo, hi = saved; acc(i[0], gy * ((xv > lo) & (xv < hi)))
        elif op == 'Add':
            acc(i[0], gy); acc(i[1], gy)
        elif op == 'GlobalAveragePool':
            sh = saved; acc(i[0], np.broadcast_to(gy, sh) / (sh[2]*sh[3]))
        elif op == 'Flatten':
            acc(i[0], gy.reshape(saved))
        elif op == 'Gemm':
            wt = saved; acc(i[0], gy @ (wt if attr(n,'transB',0) else wt.T))
    return logits, grads['input']

def rel(a, b): return np.linalg.norm(a.ravel()-b.ravel())/np.linalg.norm(b.ravel())

def ig(method, steps=32):
    """Captum's IntegratedGradients with a zero baseline: its alphas and step sizes."""
    if method == 'gausslegendre':
        xs, ws = np.polynomial.legendre.leggauss(steps); alphas, sizes = (xs + 1) / 2, ws / 2
    else:  # riemann_trapezoid
        alphas = np.linspace(0, 1, steps); sizes = np.full(steps, 1 / steps); sizes[[0, -1]] /= 2
    total = np.zeros_like(x0)
    for a, s in zip(alphas, sizes):
        total += s * run(a * x0)[1]
    return total * x0

if __name__ == '__main__':
    out = os.path.join(ROOT, 'ref/exact'); peers = os.path.join(ROOT, 'ref/peers')
    stem = 'mobilenetv2_imagenet_chelsea_'
    results = {
        'grad_logit': run(x0)[1],
        'grad_prob': run(x0, prob=True)[1],
        'ig_gausslegendre': ig('gausslegendre'),
        'ig_trapezoid': ig('riemann_trapezoid'),
    }
    report = {}
    for name, g64 in results.items():
        np.save(os.path.join(out, stem + name + '_f64.npy'), g64.astype(np.float32))
        report[name] = rel(np.load(os.path.join(peers, stem + name + '.npy')), g64)
        print(f'{name}: peer vs exact relative L2 {report[name]:.3e}')
    json.dump({'peer_vs_exact_relative_l2': report}, open(os.path.join(out, 'summary.json'), 'w'), indent=1)
