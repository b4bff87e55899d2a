// Class activation maps from a feature layer's activations and gradients ([N, K, hw] each), the
// GPU twin of backend::cam_map: the same formulas, summed in the same order, so the CPU backend
// is an exact oracle up to fused multiply-adds.

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> acts: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }

// params: 0 N*K (channels over the batch), 1 hw, 2 weighting (0 gradient mean, 1 Grad-CAM++).
// One thread per channel: dst[n*K + k] is its weight.
@compute @workgroup_size(256)
fn cam_weights(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let hw = pu(1u);
    let mode = pu(2u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let base = i * hw;
        var w = 0.0;
        if (mode == 0u) {
            for (var j = 0u; j < hw; j++) { w += grads[base + j]; }
            w = w / f32(hw);
        } else {
            var sum_a = 0.0;
            for (var j = 0u; j < hw; j++) { sum_a += acts[base + j]; }
            for (var j = 0u; j < hw; j++) {
                let g = grads[base + j];
                if (g != 0.0) {
                    let g2 = g * g;
                    let g3 = g * g * g;
                    let alpha = g2 / (2.0 * g2 + sum_a * g3 + 1e-6);
                    w += max(g, 0.0) * alpha;
                }
            }
        }
        dst[i] = w;
    }
}

// params: 0 N*hw, 1 hw, 2 K, 3 weighting (0, 1: channel weights from cam_weights; 2 LayerCAM:
// each location's positive gradient), 4 ReLU (0/1). One thread per output location.
@compute @workgroup_size(256)
fn cam_combine(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let hw = pu(1u);
    let k = pu(2u);
    let mode = pu(3u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let n = i / hw;
        let p = i % hw;
        var v = 0.0;
        for (var c = 0u; c < k; c++) {
            let at = (n * k + c) * hw + p;
            if (mode == 2u) {
                v += max(grads[at], 0.0) * acts[at];
            } else {
                v += weights[n * k + c] * acts[at];
            }
        }
        if (pu(4u) != 0u) { v = max(v, 0.0); }
        dst[i] = v;
    }
}
