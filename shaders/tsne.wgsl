// Exact t-SNE on the device (src/gpu/tsne.rs; CPU twin: src/methods/tsne/{affinity,exact_cpu}.rs).
//
// P is stored as row blocks, each its own buffer within one storage binding: a kernel that
// touches P sees one block, rows r0 .. r0 + rows of the N×N matrix, as `P[(i − r0)·N + j]`, and
// is dispatched once per block (the shapes and r0 come as parameters).
//
// Affinities: tsne_dist writes the N×N dissimilarities into P, tsne_pcond turns each row into
// p_{j|i} in place (one workgroup per point runs the perplexity bisection), tsne_sym symmetrises
// a diagonal block in place and tsne_sym_pair an off-diagonal pair of blocks (P and PB). Per
// iteration: tsne_forces{2,3} (tiles of 256 embedding points through workgroup memory; P is read
// as P[j, i], which equals P[i, j] and is contiguous across the workgroup) and tsne_update
// (gains, momentum, step). tsne_kl runs only when the host asks for the KL.
//
// The forces and the KL sum over j, i.e. over the rows of P: each block's dispatch continues the
// sums the previous block left in acc / klout, so the sums run over j in the same order as with
// one block and the result does not depend on the split.
//
// acc holds 8 floats per point: the attractive sum (3), Σ_j w_ij, the repulsive sum (3), unused.
// state holds update | gains | gradient, N·dims each.

// Each entry point reads its own parameter struct at binding 0, the mirror of the Rust struct of
// the same name in src/gpu/tsne.rs (the reflection test checks their sizes). r0 and rows name the
// block of P a dispatch sees; first and last are 1 when the block starts or ends the sums.
struct DistParams { n: u32, d: u32, scale: f32, r0: u32, rows: u32 }
struct PcondParams { n: u32, perplexity: f32, steps: u32, tol: f32, r0: u32, rows: u32 }
// inv is 1/(2N).
struct SymParams { n: u32, inv: f32, floor: f32, r0: u32, rows: u32 }
// r0_b and rows_b: block PB, below P.
struct SymPairParams {
    n: u32, inv: f32, floor: f32, r0: u32, rows: u32, r0_b: u32, rows_b: u32,
}
struct ForcesParams { n: u32, r0: u32, rows: u32, first: u32, last: u32 }
// restart is 1 to set update 0 and gains 1 before the step.
struct UpdateParams { n: u32, dims: u32, exag: f32, lr: f32, momentum: f32, restart: u32 }
struct KlParams { n: u32, dims: u32, r0: u32, rows: u32, first: u32 }
@group(0) @binding(0) var<uniform> dist_p: DistParams;
@group(0) @binding(0) var<uniform> pcond_p: PcondParams;
@group(0) @binding(0) var<uniform> sym_p: SymParams;
@group(0) @binding(0) var<uniform> sym_pair_p: SymPairParams;
@group(0) @binding(0) var<uniform> forces_p: ForcesParams;
@group(0) @binding(0) var<uniform> update_p: UpdateParams;
@group(0) @binding(0) var<uniform> kl_p: KlParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> P: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@group(0) @binding(4) var<storage, read_write> acc: array<f32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> klout: array<f32>;
@group(0) @binding(7) var<storage, read_write> PB: array<f32>;

const TILE: u32 = 16u;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

// P[i, j] = scale · ‖x_i − x_j‖² (0 on the diagonal)
// for the block's rows; workgroup y walks the block's rows, x all columns.
@compute @workgroup_size(16, 16)
fn tsne_dist(@builtin(local_invocation_id) l: vec3<u32>,
             @builtin(workgroup_id) wg: vec3<u32>) {
    let n = dist_p.n;
    let d = dist_p.d;
    let scale = dist_p.scale;
    let r0 = dist_p.r0;
    let rows = dist_p.rows;
    let r = wg.y * TILE + l.y;
    let i = r0 + r;
    let j = wg.x * TILE + l.x;
    let rj = wg.x * TILE + l.y;
    var s = 0.0;
    for (var k0 = 0u; k0 < d; k0 += TILE) {
        let k = k0 + l.x;
        var a = 0.0;
        var b = 0.0;
        if (r < rows && k < d) { a = X[i * d + k]; }
        if (rj < n && k < d) { b = X[rj * d + k]; }
        ta[l.y][l.x] = a;
        tb[l.y][l.x] = b;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            let diff = ta[l.y][kk] - tb[l.x][kk];
            s += diff * diff;
        }
        workgroupBarrier();
    }
    if (r < rows && j < n) {
        P[r * n + j] = select(scale * s, 0.0, i == j);
    }
}

const WG: u32 = 256u;
var<workgroup> ra: array<f32, 256>;
var<workgroup> rb: array<f32, 256>;
var<workgroup> shared_a: f32;
var<workgroup> shared_b: f32;

// Sums a and b over the workgroup into shared_a and shared_b.
fn reduce2(li: u32, a: f32, b: f32) {
    ra[li] = a;
    rb[li] = b;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            ra[li] += ra[li + s];
            rb[li] += rb[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        shared_a = ra[0];
        shared_b = rb[0];
    }
}

// At most `steps` bisection steps to the entropy tolerance `tol`. Row i of P holds
// the dissimilarities on entry and p_{j|i} on exit. Distances are shifted by the row minimum (P is
// unchanged by it, exp no longer underflows).
@compute @workgroup_size(256)
fn tsne_pcond(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = pcond_p.n;
    let target_h = log(pcond_p.perplexity);
    let steps = pcond_p.steps;
    let tol = pcond_p.tol;
    let r0 = pcond_p.r0;
    let rows = pcond_p.rows;
    for (var r = wg.x; r < rows; r += nwg.x) {
        let i = r0 + r;
        let row = r * n;
        var m = 3.0e38;
        for (var j = li; j < n; j += WG) {
            if (j != i) { m = min(m, P[row + j]); }
        }
        ra[li] = m;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (li < s) { ra[li] = min(ra[li], ra[li + s]); }
            workgroupBarrier();
        }
        if (li == 0u) { shared_a = ra[0]; }
        let dmin = workgroupUniformLoad(&shared_a);
        var beta = 1.0;
        var lo = -1.0;  // -1: no lower bound yet
        var hi = -1.0;  // -1: no upper bound yet
        var sp = 1.0;
        for (var step = 0u; step <= steps; step++) {
            var a = 0.0;
            var b = 0.0;
            for (var j = li; j < n; j += WG) {
                if (j != i) {
                    let dd = P[row + j] - dmin;
                    let e = exp(-dd * beta);
                    a += e;
                    b += dd * e;
                }
            }
            reduce2(li, a, b);
            sp = workgroupUniformLoad(&shared_a);
            let sdp = workgroupUniformLoad(&shared_b);
            // The last pass only computes the normaliser for the final beta.
            if (step == steps) { break; }
            let diff = log(sp) + beta * sdp / sp - target_h;
            if (abs(diff) <= tol) { break; }
            if (diff > 0.0) {
                lo = beta;
                if (hi < 0.0) { beta = beta * 2.0; } else { beta = (beta + hi) * 0.5; }
            } else {
                hi = beta;
                if (lo < 0.0) { beta = beta * 0.5; } else { beta = (beta + lo) * 0.5; }
            }
        }
        for (var j = li; j < n; j += WG) {
            var v = 0.0;
            if (j != i) { v = exp(-(P[row + j] - dmin) * beta) / sp; }
            P[row + j] = v;
        }
        workgroupBarrier();
    }
}

// On the diagonal block (rows and columns
// r0 .. r0 + rows): P ← max((P + Pᵀ) / 2N, floor), zero diagonal; each pair is owned by the
// thread of its upper-triangle element.
@compute @workgroup_size(16, 16)
fn tsne_sym(@builtin(global_invocation_id) g: vec3<u32>) {
    let n = sym_p.n;
    let r0 = sym_p.r0;
    let rows = sym_p.rows;
    let a = g.y;
    let b = g.x;
    if (a >= rows || b >= rows) { return; }
    let i = r0 + a;
    let j = r0 + b;
    if (a == b) {
        P[a * n + i] = 0.0;
    } else if (a < b) {
        let v = max((P[a * n + j] + P[b * n + i]) * sym_p.inv, sym_p.floor);
        P[a * n + j] = v;
        P[b * n + i] = v;
    }
}

// The same as tsne_sym for the pairs (i in P's rows, j in PB's rows): every such pair has
// i < j, and its thread owns both P[i, j] and PB[j, i].
@compute @workgroup_size(16, 16)
fn tsne_sym_pair(@builtin(global_invocation_id) g: vec3<u32>) {
    let n = sym_pair_p.n;
    let a = g.y;
    let b = g.x;
    if (a >= sym_pair_p.rows || b >= sym_pair_p.rows_b) { return; }
    let i = sym_pair_p.r0 + a;
    let j = sym_pair_p.r0_b + b;
    let v = max((P[a * n + j] + PB[b * n + i]) * sym_pair_p.inv, sym_pair_p.floor);
    P[a * n + j] = v;
    PB[b * n + i] = v;
}

var<workgroup> sx: array<f32, 256>;
var<workgroup> sy: array<f32, 256>;
var<workgroup> sz: array<f32, 256>;

// 2-D embedding, Y is [N, 2]. Sums over j in the block's rows, for every i.
@compute @workgroup_size(256)
fn tsne_forces2(@builtin(local_invocation_index) li: u32,
                @builtin(workgroup_id) wg: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = forces_p.n;
    let r0 = forces_p.r0;
    let r1 = r0 + forces_p.rows;
    let first = forces_p.first != 0u;
    let last = forces_p.last != 0u;
    for (var base = wg.x * WG; base < n; base += nwg.x * WG) {
        let i = base + li;
        let valid = i < n;
        var yi = vec2<f32>(0.0);
        if (valid) { yi = vec2<f32>(Y[2u * i], Y[2u * i + 1u]); }
        var attr = vec2<f32>(0.0);
        var rep = vec2<f32>(0.0);
        var z = 0.0;
        if (valid && !first) {
            attr = vec2<f32>(acc[8u * i], acc[8u * i + 1u]);
            z = acc[8u * i + 3u];
            rep = vec2<f32>(acc[8u * i + 4u], acc[8u * i + 5u]);
        }
        for (var j0 = r0; j0 < r1; j0 += WG) {
            let j = j0 + li;
            if (j < r1) {
                sx[li] = Y[2u * j];
                sy[li] = Y[2u * j + 1u];
            }
            workgroupBarrier();
            if (valid) {
                let cnt = min(WG, r1 - j0);
                var at = (j0 - r0) * n + i;
                for (var k = 0u; k < cnt; k++) {
                    let d = yi - vec2<f32>(sx[k], sy[k]);
                    let w = 1.0 / (1.0 + dot(d, d));
                    attr += (P[at] * w) * d;
                    rep += (w * w) * d;
                    z += w;
                    at += n;
                }
            }
            workgroupBarrier();
        }
        if (valid) {
            // The j = i term added w = 1 to z and nothing to the sums; taken off once the sum is
            // complete, so a split P subtracts it at the same point as an unsplit one.
            acc[8u * i] = attr.x;
            acc[8u * i + 1u] = attr.y;
            acc[8u * i + 2u] = 0.0;
            acc[8u * i + 3u] = select(z, z - 1.0, last);
            acc[8u * i + 4u] = rep.x;
            acc[8u * i + 5u] = rep.y;
            acc[8u * i + 6u] = 0.0;
        }
    }
}

// As tsne_forces2 for a 3-D embedding, Y is [N, 3].
@compute @workgroup_size(256)
fn tsne_forces3(@builtin(local_invocation_index) li: u32,
                @builtin(workgroup_id) wg: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = forces_p.n;
    let r0 = forces_p.r0;
    let r1 = r0 + forces_p.rows;
    let first = forces_p.first != 0u;
    let last = forces_p.last != 0u;
    for (var base = wg.x * WG; base < n; base += nwg.x * WG) {
        let i = base + li;
        let valid = i < n;
        var yi = vec3<f32>(0.0);
        if (valid) { yi = vec3<f32>(Y[3u * i], Y[3u * i + 1u], Y[3u * i + 2u]); }
        var attr = vec3<f32>(0.0);
        var rep = vec3<f32>(0.0);
        var z = 0.0;
        if (valid && !first) {
            attr = vec3<f32>(acc[8u * i], acc[8u * i + 1u], acc[8u * i + 2u]);
            z = acc[8u * i + 3u];
            rep = vec3<f32>(acc[8u * i + 4u], acc[8u * i + 5u], acc[8u * i + 6u]);
        }
        for (var j0 = r0; j0 < r1; j0 += WG) {
            let j = j0 + li;
            if (j < r1) {
                sx[li] = Y[3u * j];
                sy[li] = Y[3u * j + 1u];
                sz[li] = Y[3u * j + 2u];
            }
            workgroupBarrier();
            if (valid) {
                let cnt = min(WG, r1 - j0);
                var at = (j0 - r0) * n + i;
                for (var k = 0u; k < cnt; k++) {
                    let d = yi - vec3<f32>(sx[k], sy[k], sz[k]);
                    let w = 1.0 / (1.0 + dot(d, d));
                    attr += (P[at] * w) * d;
                    rep += (w * w) * d;
                    z += w;
                    at += n;
                }
            }
            workgroupBarrier();
        }
        if (valid) {
            acc[8u * i] = attr.x;
            acc[8u * i + 1u] = attr.y;
            acc[8u * i + 2u] = attr.z;
            acc[8u * i + 3u] = select(z, z - 1.0, last);
            acc[8u * i + 4u] = rep.x;
            acc[8u * i + 5u] = rep.y;
            acc[8u * i + 6u] = rep.z;
        }
    }
}

// Every workgroup sums Z itself (N reads, far below the forces' N²),
// so one dispatch does the whole step.
@compute @workgroup_size(256)
fn tsne_update(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = update_p.n;
    let dims = update_p.dims;
    let exag = update_p.exag;
    let lr = update_p.lr;
    let mom = update_p.momentum;
    let restart = update_p.restart != 0u;
    var s = 0.0;
    for (var k = li; k < n; k += WG) { s += acc[8u * k + 3u]; }
    reduce2(li, s, 0.0);
    let inv_z = 1.0 / workgroupUniformLoad(&shared_a);
    let nd = n * dims;
    for (var i = wg.x * WG + li; i < n; i += nwg.x * WG) {
        for (var c = 0u; c < dims; c++) {
            let e = i * dims + c;
            let g = exag * acc[8u * i + c] - acc[8u * i + 4u + c] * inv_z;
            var u = state[e];
            var gain = state[nd + e];
            if (restart) {
                u = 0.0;
                gain = 1.0;
            }
            gain = select(gain * 0.8, gain + 0.2, u * g < 0.0);
            gain = max(gain, 0.01);
            u = mom * u - lr * gain * g;
            Y[e] += u;
            state[e] = u;
            state[nd + e] = gain;
            state[2u * nd + e] = g;
        }
    }
}

// Per point:
// Σ_j p_ij (ln p_ij + ln(1 + d²_ij)) and Σ_j w_ij over j in the block's rows, continuing the
// previous block's; the host adds ln Σ w to the sum of the first to get KL(P‖Q).
@compute @workgroup_size(256)
fn tsne_kl(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wg: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = kl_p.n;
    let dims = kl_p.dims;
    let r0 = kl_p.r0;
    let r1 = r0 + kl_p.rows;
    let first = kl_p.first != 0u;
    for (var base = wg.x * WG; base < n; base += nwg.x * WG) {
        let i = base + li;
        let valid = i < n;
        var yi = vec3<f32>(0.0);
        if (valid) {
            yi.x = Y[dims * i];
            yi.y = Y[dims * i + 1u];
            if (dims == 3u) { yi.z = Y[dims * i + 2u]; }
        }
        var s = 0.0;
        var z = 0.0;
        if (valid && !first) {
            s = klout[2u * i];
            z = klout[2u * i + 1u];
        }
        for (var j0 = r0; j0 < r1; j0 += WG) {
            let j = j0 + li;
            if (j < r1) {
                sx[li] = Y[dims * j];
                sy[li] = Y[dims * j + 1u];
                sz[li] = 0.0;
                if (dims == 3u) { sz[li] = Y[dims * j + 2u]; }
            }
            workgroupBarrier();
            if (valid) {
                let cnt = min(WG, r1 - j0);
                for (var k = 0u; k < cnt; k++) {
                    if (j0 + k != i) {
                        let d = yi - vec3<f32>(sx[k], sy[k], sz[k]);
                        let d2 = dot(d, d);
                        let p = P[(j0 - r0 + k) * n + i];
                        if (p > 0.0) { s += p * (log(p) + log(1.0 + d2)); }
                        z += 1.0 / (1.0 + d2);
                    }
                }
            }
            workgroupBarrier();
        }
        if (valid) {
            klout[2u * i] = s;
            klout[2u * i + 1u] = z;
        }
    }
}
