// A map [h, w] turned into texture texels on the device: bilinear resampling to the texture's
// size (half-pixel centres, as methods::upsample_bilinear), an optional min/max reduction, then
// either the raw value (R32Float) or Turbo packed as RGBA8 (viz::turbo, viz::heatmap's
// normalisation), written into rows padded for a buffer-to-texture copy.

// Each entry point reads its own parameter struct at binding 0, the mirror of the Rust struct
// of the same name in src/gpu/embed.rs (the reflection test checks their sizes).
struct ResampleParams { in_h: u32, in_w: u32, out_h: u32, out_w: u32 }
// n: the values to scan, at least 1.
struct MinMaxParams { n: u32 }
// stride: texels per padded row; lo and hi: the range of COLOR_MODE_TURBO_RANGE.
struct ColorizeParams { width: u32, height: u32, stride: u32, mode: u32, lo: f32, hi: f32 }
@group(0) @binding(0) var<uniform> resample_p: ResampleParams;
@group(0) @binding(0) var<uniform> min_max_p: MinMaxParams;
@group(0) @binding(0) var<uniform> colorize_p: ColorizeParams;

// ColorMode in src/gpu/embed.rs (values pinned by the reflection test).
const COLOR_MODE_RAW: u32 = 0u;
const COLOR_MODE_TURBO_RANGE: u32 = 1u;
const COLOR_MODE_TURBO_AUTO: u32 = 2u;
@group(0) @binding(1) var<storage, read> src: array<f32>;
// min then max of the resampled map, from min_max.
@group(0) @binding(2) var<storage, read> range: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_f: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_u: array<u32>;

// Source coordinate of output index o along one axis, as methods::upsample_bilinear computes it:
// (first index, second index, weight of the second).
fn src_coord(o: u32, out: u32, inp: u32) -> vec3<f32> {
    let x = max((f32(o) + 0.5) * f32(inp) / f32(out) - 0.5, 0.0);
    let i0 = min(u32(floor(x)), inp - 1u);
    let i1 = min(i0 + 1u, inp - 1u);
    return vec3<f32>(f32(i0), f32(i1), x - f32(i0));
}

// out_f[oy * out_w + ox].
@compute @workgroup_size(256)
fn resample(@builtin(local_invocation_index) li: u32,
            @builtin(workgroup_id) wg: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let in_h = resample_p.in_h;
    let in_w = resample_p.in_w;
    let out_h = resample_p.out_h;
    let out_w = resample_p.out_w;
    for (var i = wg.x * 256u + li; i < out_h * out_w; i += nwg.x * 256u) {
        let sy = src_coord(i / out_w, out_h, in_h);
        let sx = src_coord(i % out_w, out_w, in_w);
        let y0 = u32(sy.x) * in_w;
        let y1 = u32(sy.y) * in_w;
        let x0 = u32(sx.x);
        let x1 = u32(sx.y);
        let top = src[y0 + x0] * (1.0 - sx.z) + src[y0 + x1] * sx.z;
        let bottom = src[y1 + x0] * (1.0 - sx.z) + src[y1 + x1] * sx.z;
        out_f[i] = top * (1.0 - sy.z) + bottom * sy.z;
    }
}

var<workgroup> lo: array<f32, 256>;
var<workgroup> hi: array<f32, 256>;

// One workgroup: out_f[0] = min, out_f[1] = max of src[0..n].
@compute @workgroup_size(256)
fn min_max(@builtin(local_invocation_index) li: u32) {
    let n = min_max_p.n;
    var a = src[0];
    var b = src[0];
    for (var i = li; i < n; i += 256u) {
        a = min(a, src[i]);
        b = max(b, src[i]);
    }
    lo[li] = a;
    hi[li] = b;
    for (var s = 128u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            lo[li] = min(lo[li], lo[li + s]);
            hi[li] = max(hi[li], hi[li + s]);
        }
    }
    if (li == 0u) {
        out_f[0] = lo[0];
        out_f[1] = hi[0];
    }
}

// Google's Turbo, Mikhailov's polynomial fit: viz::turbo evaluated in f32 (the host uses f64; the
// difference is far below one 8-bit step).
fn turbo(t: f32) -> vec3<f32> {
    let x = clamp(t, 0.0, 1.0);
    let v4 = vec4<f32>(1.0, x, x * x, x * x * x);
    let v2 = vec2<f32>(v4.z * v4.z, v4.w * v4.z);
    let r = dot(v4, vec4<f32>(0.13572138, 4.61539260, -42.66032258, 132.13108234))
        + dot(v2, vec2<f32>(-152.94239396, 59.28637943));
    let g = dot(v4, vec4<f32>(0.09140261, 2.19418839, 4.84296658, -14.18503333))
        + dot(v2, vec2<f32>(4.27729857, 2.82956604));
    let b = dot(v4, vec4<f32>(0.10667330, 12.64194608, -60.58204836, 110.36276771))
        + dot(v2, vec2<f32>(-89.90310912, 27.34824973));
    return clamp(vec3<f32>(r, g, b), vec3<f32>(0.0), vec3<f32>(1.0));
}

// Raw f32 bits, Turbo over [lo, hi], or Turbo over range[0..2] with viz::heatmap's
// normalisation, as the mode says.
@compute @workgroup_size(256)
fn colorize(@builtin(local_invocation_index) li: u32,
            @builtin(workgroup_id) wg: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = colorize_p.width;
    let h = colorize_p.height;
    let stride = colorize_p.stride;
    let mode = colorize_p.mode;
    for (var i = wg.x * 256u + li; i < w * h; i += nwg.x * 256u) {
        let v = src[i];
        let at = (i / w) * stride + i % w;
        if (mode == COLOR_MODE_RAW) {
            out_u[at] = bitcast<u32>(v);
        } else {
            var t: f32;
            if (mode == COLOR_MODE_TURBO_AUTO) {
                let m = range[0];
                t = (v - m) / (1e-7 + (range[1] - m));
            } else {
                t = (v - colorize_p.lo) / (colorize_p.hi - colorize_p.lo);
            }
            out_u[at] = pack4x8unorm(vec4<f32>(turbo(t), 1.0));
        }
    }
}
