// Perturbed copies of one image, written straight into the batch on the device so that no
// occluded image is ever built on the host. `wins` holds the per-channel fill value (f32 bits)
// then four i32 per window (top, left, height, width); windows may reach past the border and
// are clipped here, and an empty window leaves its sample unchanged.

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> img: array<f32>;
@group(0) @binding(2) var<storage, read> wins: array<i32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
// path_batch reads the image (1), the baseline (4), alphas then sigmas as f32 bits (2), and
// writes the batch (3).
@group(0) @binding(4) var<storage, read> base: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }

// params: 0 total (batch elements), 1 C, 2 H, 3 W
@compute @workgroup_size(256)
fn occlude(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wg: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let c = pu(1u);
    let h = pu(2u);
    let w = pu(3u);
    let hw = h * w;
    let chw = c * hw;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let s = i / chw;
        let r = i % chw;
        let ch = r / hw;
        let y = i32((r % hw) / w);
        let x = i32(r % w);
        let m = c + 4u * s;
        let top = wins[m];
        let left = wins[m + 1u];
        let inside = y >= top && y < top + wins[m + 2u] && x >= left && x < left + wins[m + 3u];
        var v = img[r];
        if (inside) { v = bitcast<f32>(wins[ch]); }
        dst[i] = v;
    }
}

// The counter-based generator of src/backend.rs (noise::pcg / noise::normal): a seed means the
// same noise on every backend and at every batching.
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn normal(seed_lo: u32, seed_hi: u32, sample: u32, element: u32) -> f32 {
    let key = pcg(element ^ pcg(sample ^ pcg(seed_lo ^ pcg(seed_hi))));
    let u1 = (f32(key >> 8u) + 1.0) / 16777216.0;
    let u2 = f32(pcg(key) >> 8u) / 16777216.0;
    return sqrt(-2.0 * log(u1)) * cos(6.28318530717958647 * u2);
}

// params: 0 total (batch elements), 1 elements per sample, 2 samples, 3 seed low, 4 seed high.
// Sample s = base + alpha[s] (img - base) + sigma[s] * N(0, 1).
@compute @workgroup_size(256)
fn path_batch(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let n = pu(1u);
    let samples = pu(2u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let s = i / n;
        let r = i % n;
        let b = base[r];
        var v = b + bitcast<f32>(wins[s]) * (img[r] - b);
        let sigma = bitcast<f32>(wins[samples + s]);
        if (sigma != 0.0) {
            v += sigma * normal(pu(3u), pu(4u), s, r);
        }
        dst[i] = v;
    }
}
