// Image ops on [N, C, H, W] batches, each plane (sample, channel) handled on its own: bilinear
// resize, circular shift, Gaussian blur, and deep dream's normalised gradient-ascent step. Shapes
// and shifts come as uniforms; shifts arrive already reduced to [0, H) and [0, W).

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }

struct Tap { i0: u32, i1: u32, f: f32 }

// Half-pixel centres, clamped at the edges: the arithmetic of methods::upsample_bilinear, in the
// same order, so both backends agree to rounding.
fn tap(o: u32, out_len: u32, in_len: u32) -> Tap {
    let x = max((f32(o) + 0.5) * f32(in_len) / f32(out_len) - 0.5, 0.0);
    let i0 = min(u32(floor(x)), in_len - 1u);
    let i1 = min(i0 + 1u, in_len - 1u);
    return Tap(i0, i1, x - f32(i0));
}

// params: 0 total (output elements), 1 in H, 2 in W, 3 out H, 4 out W
@compute @workgroup_size(256)
fn resize_bilinear(@builtin(local_invocation_index) li: u32,
                   @builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let ih = pu(1u);
    let iw = pu(2u);
    let oh = pu(3u);
    let ow = pu(4u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let plane = i / (oh * ow);
        let r = i % (oh * ow);
        let ty = tap(r / ow, oh, ih);
        let tx = tap(r % ow, ow, iw);
        let base = plane * ih * iw;
        let row0 = base + ty.i0 * iw;
        let row1 = base + ty.i1 * iw;
        let top = src[row0 + tx.i0] * (1.0 - tx.f) + src[row0 + tx.i1] * tx.f;
        let bottom = src[row1 + tx.i0] * (1.0 - tx.f) + src[row1 + tx.i1] * tx.f;
        dst[i] = top * (1.0 - ty.f) + bottom * ty.f;
    }
}

// params: 0 total, 1 H, 2 W, 3 dy mod H, 4 dx mod W. out[y, x] = in[y - dy, x - dx], wrapping.
@compute @workgroup_size(256)
fn roll(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let h = pu(1u);
    let w = pu(2u);
    let dy = pu(3u);
    let dx = pu(4u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let base = i - i % (h * w);
        let r = i % (h * w);
        let y = (r / w + h - dy) % h;
        let x = (r % w + w - dx) % w;
        dst[i] = src[base + y * w + x];
    }
}

// params: 0 total, 1 H, 2 W, 3 radius r, 4.. the 1-D weights w[0..=r] (f32 bits). One pass over
// the (2r+1)^2 window with weights w[|ky|] w[|kx|]: small radii only, so no intermediate buffer.
@compute @workgroup_size(256)
fn blur(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let h = i32(pu(1u));
    let w = i32(pu(2u));
    let r = i32(pu(3u));
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let hw = u32(h * w);
        let base = i - i % hw;
        let y = i32((i % hw) / u32(w));
        let x = i32(i % u32(w));
        var acc = 0.0;
        for (var ky = -r; ky <= r; ky++) {
            let yy = u32(clamp(y + ky, 0, h - 1));
            var row = 0.0;
            for (var kx = -r; kx <= r; kx++) {
                let xx = u32(clamp(x + kx, 0, w - 1));
                row += pf(4u + u32(abs(kx))) * src[base + yy * u32(w) + xx];
            }
            acc += pf(4u + u32(abs(ky))) * row;
        }
        dst[i] = acc;
    }
}

var<workgroup> partial: array<f32, 256>;

// params: 0 N, 1 C, 2 H, 3 W, 4 dy mod H, 5 dx mod W, 6 step (f32), 8.. lo[C], 8 + C.. hi[C].
// One workgroup per sample: it sums |grad| over the sample, then applies
// x + step * g / (mean|g| + 1e-8) with g rolled back by (dy, dx), clamped per channel.
@compute @workgroup_size(256)
fn ascent_step(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = pu(0u);
    let c = pu(1u);
    let h = pu(2u);
    let w = pu(3u);
    let dy = pu(4u);
    let dx = pu(5u);
    let hw = h * w;
    let per = c * hw;
    for (var s = wg.x; s < n; s += nwg.x) {
        let base = s * per;
        var acc = 0.0;
        for (var j = li; j < per; j += 256u) {
            acc += abs(grad[base + j]);
        }
        partial[li] = acc;
        workgroupBarrier();
        for (var k = 128u; k > 0u; k >>= 1u) {
            if (li < k) {
                partial[li] += partial[li + k];
            }
            workgroupBarrier();
        }
        let scale = pf(6u) / (partial[0] / f32(per) + 1e-8);
        // Every thread has read the sum before the next sample overwrites it.
        workgroupBarrier();
        for (var j = li; j < per; j += 256u) {
            let ch = j / hw;
            let r = j % hw;
            let gy = (r / w + dy) % h;
            let gx = (r % w + dx) % w;
            let v = src[base + j] + scale * grad[base + ch * hw + gy * w + gx];
            dst[base + j] = clamp(v, pf(8u + ch), pf(8u + c + ch));
        }
    }
}
