// Image ops on [N, C, H, W] batches, each plane (sample, channel) handled on its own: bilinear
// resize, circular shift, Gaussian blur, and deep dream's normalised gradient-ascent step. Shapes
// and shifts come as uniforms; shifts arrive already reduced to [0, H) and [0, W).

// Each entry point reads its own parameter struct at binding 0, the mirror of the Rust struct
// of the same name in src/gpu/image.rs (the reflection test checks their sizes).
struct ResizeParams { total: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32 }
struct RollParams { total: u32, h: u32, w: u32, dy: u32, dx: u32 }
// weights[k / 4][k % 4] is w[k], k = 0..=radius.
struct BlurParams { total: u32, h: u32, w: u32, radius: u32, weights: array<vec4<f32>, 7> }
// lo[c / 4][c % 4] and hi[c / 4][c % 4] bound channel c.
struct AscentParams {
    n: u32, c: u32, h: u32, w: u32, dy: u32, dx: u32, step: f32,
    lo: array<vec4<f32>, 6>,
    hi: array<vec4<f32>, 6>,
}
@group(0) @binding(0) var<uniform> resize_p: ResizeParams;
@group(0) @binding(0) var<uniform> roll_p: RollParams;
@group(0) @binding(0) var<uniform> blur_p: BlurParams;
@group(0) @binding(0) var<uniform> ascent_p: AscentParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

struct Tap { i0: u32, i1: u32, f: f32 }

// Half-pixel centres, clamped at the edges: the arithmetic of methods::upsample_bilinear, in the
// same order, so both backends agree to rounding.
fn tap(o: u32, out_len: u32, in_len: u32) -> Tap {
    let x = max((f32(o) + 0.5) * f32(in_len) / f32(out_len) - 0.5, 0.0);
    let i0 = min(u32(floor(x)), in_len - 1u);
    let i1 = min(i0 + 1u, in_len - 1u);
    return Tap(i0, i1, x - f32(i0));
}

@compute @workgroup_size(256)
fn resize_bilinear(@builtin(local_invocation_index) li: u32,
                   @builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = resize_p.total;
    let ih = resize_p.in_h;
    let iw = resize_p.in_w;
    let oh = resize_p.out_h;
    let ow = resize_p.out_w;
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

// out[y, x] = in[y - dy, x - dx], wrapping.
@compute @workgroup_size(256)
fn roll(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = roll_p.total;
    let h = roll_p.h;
    let w = roll_p.w;
    let dy = roll_p.dy;
    let dx = roll_p.dx;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let base = i - i % (h * w);
        let r = i % (h * w);
        let y = (r / w + h - dy) % h;
        let x = (r % w + w - dx) % w;
        dst[i] = src[base + y * w + x];
    }
}

// One pass over the (2r+1)^2 window with weights w[|ky|] w[|kx|]: small radii only, so no intermediate buffer.
fn blur_weight(k: u32) -> f32 { return blur_p.weights[k >> 2u][k & 3u]; }

@compute @workgroup_size(256)
fn blur(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = blur_p.total;
    let h = i32(blur_p.h);
    let w = i32(blur_p.w);
    let r = i32(blur_p.radius);
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
                row += blur_weight(u32(abs(kx))) * src[base + yy * u32(w) + xx];
            }
            acc += blur_weight(u32(abs(ky))) * row;
        }
        dst[i] = acc;
    }
}

var<workgroup> partial: array<f32, 256>;

// One workgroup per sample: it sums |grad| over the sample, then applies
// x + step * g / (mean|g| + 1e-8) with g rolled back by (dy, dx), clamped per channel.
@compute @workgroup_size(256)
fn ascent_step(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = ascent_p.n;
    let c = ascent_p.c;
    let h = ascent_p.h;
    let w = ascent_p.w;
    let dy = ascent_p.dy;
    let dx = ascent_p.dx;
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
        let scale = ascent_p.step / (partial[0] / f32(per) + 1e-8);
        // Every thread has read the sum before the next sample overwrites it.
        workgroupBarrier();
        for (var j = li; j < per; j += 256u) {
            let ch = j / hw;
            let r = j % hw;
            let gy = (r / w + dy) % h;
            let gx = (r % w + dx) % w;
            let v = src[base + j] + scale * grad[base + ch * hw + gy * w + gx];
            let lo = ascent_p.lo[ch >> 2u][ch & 3u];
            let hi = ascent_p.hi[ch >> 2u][ch & 3u];
            dst[base + j] = clamp(v, lo, hi);
        }
    }
}
