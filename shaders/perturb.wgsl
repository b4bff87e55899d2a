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

// LIME's perturbed copies. `base` holds the segment id of each pixel (whole f32 values), `wins`
// the per-channel fill value (f32 bits). Sample s keeps segment k iff the top bit of
// pcg(k ^ pcg(s ^ pcg(seed_lo ^ pcg(seed_hi)))) is set, as `segment_kept` in src/backend.rs;
// sample 0 keeps everything.
// params: 0 total (batch elements), 1 C, 2 H*W, 3 first sample, 4 seed low, 5 seed high.
@compute @workgroup_size(256)
fn segment_mask(@builtin(local_invocation_index) li: u32,
                @builtin(workgroup_id) wg: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let hw = pu(2u);
    let chw = pu(1u) * hw;
    let first = pu(3u);
    let key = pcg(pu(4u) ^ pcg(pu(5u)));
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let s = first + i / chw;
        let r = i % chw;
        let k = u32(base[r % hw]);
        var v = img[r];
        if (s != 0u && (pcg(k ^ pcg(s ^ key)) >> 31u) == 0u) {
            v = bitcast<f32>(wins[r / hw]);
        }
        dst[i] = v;
    }
}

// Score-CAM: map m of `base` ([K, h, w]) upsampled to H x W with aligned corners (PyTorch's
// UpsamplingBilinear2d), at output pixel (y, x).
// params: 1 C, 2 H, 3 W, 4 h, 5 w, 6 first map, 7 scale y (f32 bits), 8 scale x (f32 bits).
fn upsampled(m: u32, y: u32, x: u32) -> f32 {
    let h = pu(4u);
    let w = pu(5u);
    let sy = bitcast<f32>(pu(7u)) * f32(y);
    let sx = bitcast<f32>(pu(8u)) * f32(x);
    let y0 = min(u32(floor(sy)), h - 1u);
    let x0 = min(u32(floor(sx)), w - 1u);
    let y1 = min(y0 + 1u, h - 1u);
    let x1 = min(x0 + 1u, w - 1u);
    let ly = clamp(sy - f32(y0), 0.0, 1.0);
    let lx = clamp(sx - f32(x0), 0.0, 1.0);
    let at = m * h * w;
    let top = (1.0 - lx) * base[at + y0 * w + x0] + lx * base[at + y0 * w + x1];
    let bottom = (1.0 - lx) * base[at + y1 * w + x0] + lx * base[at + y1 * w + x1];
    return (1.0 - ly) * top + ly * bottom;
}

var<workgroup> lo_part: array<f32, 256>;
var<workgroup> hi_part: array<f32, 256>;

// Per map of the chunk, the min and max of its upsampled values, written to dst[2i], dst[2i+1].
// params: 0 maps in the chunk, then as `upsampled`.
@compute @workgroup_size(256)
fn map_range(@builtin(local_invocation_index) li: u32,
             @builtin(workgroup_id) wg: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let count = pu(0u);
    let hh = pu(2u);
    let ww = pu(3u);
    for (var i = wg.x; i < count; i += nwg.x) {
        var lo = 3.4e38;
        var hi = -3.4e38;
        for (var p = li; p < hh * ww; p += 256u) {
            let v = upsampled(pu(6u) + i, p / ww, p % ww);
            lo = min(lo, v);
            hi = max(hi, v);
        }
        lo_part[li] = lo;
        hi_part[li] = hi;
        workgroupBarrier();
        for (var half = 128u; half > 0u; half >>= 1u) {
            if (li < half) {
                lo_part[li] = min(lo_part[li], lo_part[li + half]);
                hi_part[li] = max(hi_part[li], hi_part[li + half]);
            }
            workgroupBarrier();
        }
        if (li == 0u) {
            dst[2u * i] = lo_part[0];
            dst[2u * i + 1u] = hi_part[0];
        }
        workgroupBarrier();
    }
}

// Sample i = image * (upsampled map first+i - min) / (max - min + 1e-8), with the range of each
// map from `map_range` in `wins` (f32 bits).
// params: 0 total (batch elements), then as `upsampled`.
@compute @workgroup_size(256)
fn scale_by_maps(@builtin(local_invocation_index) li: u32,
                 @builtin(workgroup_id) wg: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let hw = pu(2u) * pu(3u);
    let chw = pu(1u) * hw;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let s = i / chw;
        let r = i % chw;
        let p = r % hw;
        let lo = bitcast<f32>(wins[2u * s]);
        let hi = bitcast<f32>(wins[2u * s + 1u]);
        let u = upsampled(pu(6u) + s, p / pu(3u), p % pu(3u));
        dst[i] = img[r] * ((u - lo) / (hi - lo + 1e-8));
    }
}
