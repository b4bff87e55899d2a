// Perturbed copies of one image, written straight into the batch on the device so that no
// perturbed image or mask is ever built on the host: `perturb` (one kernel for every mask source,
// the CPU twin is src/cpu/perturb.rs) with `mask_range` ahead of it for Score-CAM's maps, and
// `path_batch` (IG's path points, SmoothGrad's noisy copies).

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> img: array<f32>;
// perturb: the per-channel fill value (f32 bits), then for windows four i32 per window (top,
// left, height, width), for Score-CAM's maps each map's (min, max) after upsampling as written
// by `mask_range` (f32 bits), for deletion / insertion each sample's shown rank range [lo, hi). path_batch: alphas then sigmas (f32 bits).
@group(0) @binding(2) var<storage, read> words: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
// perturb: the segment label map [H, W], the Score-CAM maps [K, h, w] or the pixel ranking
// [H, W] (whole f32 values). path_batch: the baseline.
@group(0) @binding(4) var<storage, read> base: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }

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

// params: 0 total (batch elements), 1 elements per sample, 2 samples, 3 seed low, 4 seed high,
// 5 the path index of the batch's first sample (a chunk of a longer path draws that path's noise).
// Sample s = base + alpha[s] (img - base) + sigma[s] * N(0, 1) of path sample first + s.
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
        var v = b + bitcast<f32>(words[s]) * (img[r] - b);
        let sigma = bitcast<f32>(words[samples + s]);
        if (sigma != 0.0) {
            v += sigma * normal(pu(3u), pu(4u), s + pu(5u), r);
        }
        dst[i] = v;
    }
}

// Mask sources and fills of `perturb` (backend::MaskSource, backend::Fill).
const SOURCE_WINDOWS: u32 = 0u;
const SOURCE_SEGMENTS: u32 = 1u;
const SOURCE_MAPS: u32 = 2u;
const SOURCE_RISE: u32 = 3u;
const SOURCE_RANKED: u32 = 4u;
const FILL_CONSTANT: u32 = 0u;
const FILL_MULTIPLY: u32 = 1u;

// Params of `perturb` and `mask_range`: 0 total (batch elements; mask_range: maps in the chunk),
// 1 C, 2 H, 3 W, 4 source, 5 fill, 6 first sample, 7 seed low, 8 seed high, then
// maps: 9 h, 10 w, 11 scale y (f32 bits), 12 scale x (f32 bits);
// RISE: 9 grid s, 10 cell h, 11 cell w, 12 p (f32 bits), 13 upsampled h, 14 upsampled w.

// The hash of (seed, sample, k) shared with backend::perturb_hash.
fn hash(sample: u32, k: u32) -> u32 {
    return pcg(k ^ pcg(sample ^ pcg(pu(7u) ^ pcg(pu(8u)))));
}

// Score-CAM: map m of `base` ([K, h, w]) upsampled to H x W with aligned corners (PyTorch's
// UpsamplingBilinear2d), at output pixel (y, x).
fn upsampled(m: u32, y: u32, x: u32) -> f32 {
    let h = pu(9u);
    let w = pu(10u);
    let sy = pf(11u) * f32(y);
    let sx = pf(12u) * f32(x);
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

struct Tap { i0: u32, i1: u32, f: f32 }

// RISE: upsampled coordinate o (of `up`) from `cells` cells, half-pixel centres, clamped, as
// backend::perturb's rise_tap.
fn rise_tap(o: u32, up: u32, cells: u32) -> Tap {
    let x = max((f32(o) + 0.5) * f32(cells) / f32(up) - 0.5, 0.0);
    let i0 = min(u32(floor(x)), cells - 1u);
    return Tap(i0, min(i0 + 1u, cells - 1u), x - f32(i0));
}

fn rise_cell(sample: u32, k: u32) -> f32 {
    return select(0.0, 1.0, f32(hash(sample, k) >> 8u) / 16777216.0 < pf(12u));
}

// RISE mask `sample` at pixel (y, x): its s x s grid upsampled to (s + 1) cells and cropped at
// the sample's shift, as backend::RiseMasks::mask.
fn rise(sample: u32, y: u32, x: u32) -> f32 {
    let s = pu(9u);
    let dy = hash(sample, s * s) % pu(10u);
    let dx = hash(sample, s * s + 1u) % pu(11u);
    let ty = rise_tap(y + dy, pu(13u), s);
    let tx = rise_tap(x + dx, pu(14u), s);
    let top = rise_cell(sample, ty.i0 * s + tx.i0) * (1.0 - tx.f)
        + rise_cell(sample, ty.i0 * s + tx.i1) * tx.f;
    let bottom = rise_cell(sample, ty.i1 * s + tx.i0) * (1.0 - tx.f)
        + rise_cell(sample, ty.i1 * s + tx.i1) * tx.f;
    return top * (1.0 - ty.f) + bottom * ty.f;
}

// Mask `i` of the batch at pixel (y, x): 1 shows the image.
fn mask(i: u32, y: u32, x: u32) -> f32 {
    let source = pu(4u);
    let sample = pu(6u) + i;
    if (source == SOURCE_WINDOWS) {
        let m = pu(1u) + 4u * i;
        let top = bitcast<i32>(words[m]);
        let left = bitcast<i32>(words[m + 1u]);
        let yi = i32(y);
        let xi = i32(x);
        let inside = yi >= top && yi < top + bitcast<i32>(words[m + 2u])
            && xi >= left && xi < left + bitcast<i32>(words[m + 3u]);
        return select(1.0, 0.0, inside);
    }
    if (source == SOURCE_SEGMENTS) {
        // backend::segment_kept: the top bit of the hash; sample 0 keeps every segment.
        let k = u32(base[y * pu(3u) + x]);
        return select(0.0, 1.0, sample == 0u || (hash(sample, k) >> 31u) == 1u);
    }
    if (source == SOURCE_MAPS) {
        let lo = bitcast<f32>(words[pu(1u) + 2u * i]);
        let hi = bitcast<f32>(words[pu(1u) + 2u * i + 1u]);
        return (upsampled(sample, y, x) - lo) / (hi - lo + 1e-8);
    }
    if (source == SOURCE_RANKED) {
        // backend::rank_shown: the pixel shows the image iff lo <= rank < hi.
        let r = u32(base[y * pu(3u) + x]);
        let at = pu(1u) + 2u * i;
        return select(0.0, 1.0, r >= words[at] && r < words[at + 1u]);
    }
    return rise(sample, y, x);
}

@compute @workgroup_size(256)
fn perturb(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wg: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let w = pu(3u);
    let hw = pu(2u) * w;
    let chw = pu(1u) * hw;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let s = i / chw;
        let r = i % chw;
        let p = r % hw;
        let m = mask(s, p / w, p % w);
        let x = img[r];
        var v = x * m;
        if (pu(5u) == FILL_CONSTANT) {
            let fill = bitcast<f32>(words[r / hw]);
            v = m * x + (1.0 - m) * fill;
            if (m == 1.0) { v = x; }
            if (m == 0.0) { v = fill; }
        }
        dst[i] = v;
    }
}

var<workgroup> lo_part: array<f32, 256>;
var<workgroup> hi_part: array<f32, 256>;

// Per map of the chunk, the min and max of its upsampled values, written after the C fill words
// of `perturb`'s words: dst[C + 2i], dst[C + 2i + 1].
@compute @workgroup_size(256)
fn mask_range(@builtin(local_invocation_index) li: u32,
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
            dst[pu(1u) + 2u * i] = lo_part[0];
            dst[pu(1u) + 2u * i + 1u] = hi_part[0];
        }
        workgroupBarrier();
    }
}
