// 2-D convolution, NCHW. Two entry points:
//   conv_gemm   : tiled implicit GEMM (M = N*OH*OW pixels, N = out channels of a group,
//                 K = ic_per_group*KH*KW), 64x64 tiles, 4x4 per thread, K tiles of 16,
//                 one group per dispatch z.
//   conv_direct : one thread per output element; used for depthwise convs (ic_per_group == 1)
//                 where a GEMM would have K = KH*KW and waste most of each tile.
// Every shape comes from the uniform so one pipeline serves every batch size.

// Mirrors `ConvParams` in src/ops/conv.rs (the reflection test checks the size).
struct ConvParams {
    n: u32, c: u32, h: u32, w: u32,
    oc: u32, oh: u32, ow: u32, kh: u32,
    kw: u32, sh: u32, sw: u32, dh: u32,
    dw: u32, pt: i32, pl: i32, icg: u32,
    ocg: u32, has_bias: u32, has_act: u32, lo: f32,
    hi: f32,
}
@group(0) @binding(0) var<uniform> conv_p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn finish(p: ConvParams, oc: u32, acc: f32) -> f32 {
    var v = acc;
    if (p.has_bias != 0u) { v += bias[oc]; }
    if (p.has_act != 0u) { v = min(max(v, p.lo), p.hi); }
    return v;
}

var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

@compute @workgroup_size(256)
fn conv_gemm(@builtin(local_invocation_index) li: u32,
             @builtin(workgroup_id) wg: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = conv_p;
    let ohw = p.oh * p.ow;
    let khw = p.kh * p.kw;
    let big_m = p.n * ohw;
    let big_k = p.icg * khw;
    let g = wg.z;
    let n0 = wg.y * 64u;
    let tx = li % 16u;
    let ty = li / 16u;
    let tiles_m = (big_m + 63u) / 64u;
    // Grid-stride over M tiles keeps the dispatch under max_compute_workgroups_per_dimension.
    for (var tm = wg.x; tm < tiles_m; tm += nwg.x) {
        let m0 = tm * 64u;
        var acc: array<vec4<f32>, 4>;
        for (var k0 = 0u; k0 < big_k; k0 += 16u) {
            for (var t = 0u; t < 4u; t++) {
                let idx = li + t * 256u;
                let kk = idx / 64u;
                let mm = idx % 64u;
                let k = k0 + kk;
                let m = m0 + mm;
                var v = 0.0;
                if (m < big_m && k < big_k) {
                    let nb = m / ohw;
                    let r = m % ohw;
                    let oy = r / p.ow;
                    let ox = r % p.ow;
                    let ci = k / khw;
                    let r2 = k % khw;
                    let ky = r2 / p.kw;
                    let kx = r2 % p.kw;
                    let iy = i32(oy * p.sh + ky * p.dh) - p.pt;
                    let ix = i32(ox * p.sw + kx * p.dw) - p.pl;
                    if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
                        v = x[((nb * p.c + g * p.icg + ci) * p.h + u32(iy)) * p.w + u32(ix)];
                    }
                }
                As[idx] = v;
                let ocl = n0 + mm;
                var wv = 0.0;
                if (ocl < p.ocg && k < big_k) {
                    wv = wt[(g * p.ocg + ocl) * big_k + k];
                }
                Bs[idx] = wv;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < 16u; kk++) {
                let ab = kk * 64u + ty * 4u;
                let bb = kk * 64u + tx * 4u;
                let b = vec4<f32>(Bs[bb], Bs[bb + 1u], Bs[bb + 2u], Bs[bb + 3u]);
                acc[0] += As[ab] * b;
                acc[1] += As[ab + 1u] * b;
                acc[2] += As[ab + 2u] * b;
                acc[3] += As[ab + 3u] * b;
            }
            workgroupBarrier();
        }
        for (var i = 0u; i < 4u; i++) {
            let m = m0 + ty * 4u + i;
            if (m < big_m) {
                let nb = m / ohw;
                let r = m % ohw;
                for (var j = 0u; j < 4u; j++) {
                    let ocl = n0 + tx * 4u + j;
                    if (ocl < p.ocg) {
                        let oc = g * p.ocg + ocl;
                        y[(nb * p.oc + oc) * ohw + r] = finish(p, oc, acc[i][j]);
                    }
                }
            }
        }
    }
}

@compute @workgroup_size(256)
fn conv_direct(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = conv_p;
    let ohw = p.oh * p.ow;
    let total = p.n * p.oc * ohw;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let r = i % ohw;
        let oy = r / p.ow;
        let ox = r % p.ow;
        let oc = (i / ohw) % p.oc;
        let nb = i / (ohw * p.oc);
        let g = oc / p.ocg;
        var acc = 0.0;
        for (var ci = 0u; ci < p.icg; ci++) {
            let xbase = (nb * p.c + g * p.icg + ci) * p.h;
            let wbase = ((oc * p.icg) + ci) * p.kh * p.kw;
            for (var ky = 0u; ky < p.kh; ky++) {
                let iy = i32(oy * p.sh + ky * p.dh) - p.pt;
                if (iy < 0 || iy >= i32(p.h)) { continue; }
                for (var kx = 0u; kx < p.kw; kx++) {
                    let ix = i32(ox * p.sw + kx * p.dw) - p.pl;
                    if (ix < 0 || ix >= i32(p.w)) { continue; }
                    acc += x[(xbase + u32(iy)) * p.w + u32(ix)] * wt[wbase + ky * p.kw + kx];
                }
            }
        }
        y[i] = finish(p, oc, acc);
    }
}

// ---- Backward (input gradient only): dx = conv_transpose(dy, W) ----
// Same uniform layout as the forward (bias/act words unused). `x` holds dy and `y` receives dx.
//   conv_bwd_gemm   : implicit GEMM over M = N*H*W input pixels, N = in channels of a group,
//                     K = oc_per_group*KH*KW; a K entry contributes only when the tap lands on
//                     the output grid (stride divisibility), otherwise it loads a zero.
//   conv_bwd_direct : one thread per dx element, for depthwise convs.

// The output position whose tap (ky or kx) reads input position `i`, or -1.
fn out_pos(i: u32, k: u32, s: u32, d: u32, pad: i32, n_out: u32) -> i32 {
    let num = i32(i) + pad - i32(k * d);
    if (num < 0 || (u32(num) % s) != 0u) { return -1; }
    let o = u32(num) / s;
    if (o >= n_out) { return -1; }
    return i32(o);
}

@compute @workgroup_size(256)
fn conv_bwd_gemm(@builtin(local_invocation_index) li: u32,
                 @builtin(workgroup_id) wg: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = conv_p;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let khw = p.kh * p.kw;
    let big_m = p.n * hw;
    let big_k = p.ocg * khw;
    let g = wg.z;
    let n0 = wg.y * 64u;
    let tx = li % 16u;
    let ty = li / 16u;
    let tiles_m = (big_m + 63u) / 64u;
    for (var tm = wg.x; tm < tiles_m; tm += nwg.x) {
        let m0 = tm * 64u;
        var acc: array<vec4<f32>, 4>;
        for (var k0 = 0u; k0 < big_k; k0 += 16u) {
            for (var t = 0u; t < 4u; t++) {
                let idx = li + t * 256u;
                let kk = idx / 64u;
                let mm = idx % 64u;
                let k = k0 + kk;
                let m = m0 + mm;
                var v = 0.0;
                if (m < big_m && k < big_k) {
                    let nb = m / hw;
                    let r = m % hw;
                    let iy = r / p.w;
                    let ix = r % p.w;
                    let ocl = k / khw;
                    let r2 = k % khw;
                    let oy = out_pos(iy, r2 / p.kw, p.sh, p.dh, p.pt, p.oh);
                    let ox = out_pos(ix, r2 % p.kw, p.sw, p.dw, p.pl, p.ow);
                    if (oy >= 0 && ox >= 0) {
                        v = x[((nb * p.oc + g * p.ocg + ocl) * p.oh + u32(oy)) * p.ow + u32(ox)];
                    }
                }
                As[idx] = v;
                let ci = n0 + mm;
                var wv = 0.0;
                if (ci < p.icg && k < big_k) {
                    let ocl = k / khw;
                    wv = wt[((g * p.ocg + ocl) * p.icg + ci) * khw + k % khw];
                }
                Bs[idx] = wv;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < 16u; kk++) {
                let ab = kk * 64u + ty * 4u;
                let bb = kk * 64u + tx * 4u;
                let b = vec4<f32>(Bs[bb], Bs[bb + 1u], Bs[bb + 2u], Bs[bb + 3u]);
                acc[0] += As[ab] * b;
                acc[1] += As[ab + 1u] * b;
                acc[2] += As[ab + 2u] * b;
                acc[3] += As[ab + 3u] * b;
            }
            workgroupBarrier();
        }
        for (var i = 0u; i < 4u; i++) {
            let m = m0 + ty * 4u + i;
            if (m < big_m) {
                let nb = m / hw;
                let r = m % hw;
                for (var j = 0u; j < 4u; j++) {
                    let ci = n0 + tx * 4u + j;
                    if (ci < p.icg) {
                        y[(nb * p.c + g * p.icg + ci) * hw + r] = acc[i][j];
                    }
                }
            }
        }
    }
}

@compute @workgroup_size(256)
fn conv_bwd_direct(@builtin(local_invocation_index) li: u32,
                   @builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = conv_p;
    let hw = p.h * p.w;
    let total = p.n * p.c * hw;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let r = i % hw;
        let iy = r / p.w;
        let ix = r % p.w;
        let ch = (i / hw) % p.c;
        let nb = i / (hw * p.c);
        let g = ch / p.icg;
        let ci = ch % p.icg;
        var acc = 0.0;
        for (var ocl = 0u; ocl < p.ocg; ocl++) {
            let oc = g * p.ocg + ocl;
            let ybase = (nb * p.oc + oc) * p.oh;
            let wbase = (oc * p.icg + ci) * p.kh * p.kw;
            for (var ky = 0u; ky < p.kh; ky++) {
                let oy = out_pos(iy, ky, p.sh, p.dh, p.pt, p.oh);
                if (oy < 0) { continue; }
                for (var kx = 0u; kx < p.kw; kx++) {
                    let ox = out_pos(ix, kx, p.sw, p.dw, p.pl, p.ow);
                    if (ox < 0) { continue; }
                    acc += x[(ybase + u32(oy)) * p.ow + u32(ox)] * wt[wbase + ky * p.kw + kx];
                }
            }
        }
        y[i] = acc;
    }
}
