//! Positional kernel parameters: u32 words read in WGSL as `pu(i)`/`pf(i)` from
//! `struct Params { w: array<vec4<u32>, 16> }`. Kernels move from these to typed parameter
//! structs (see [`TypedParams`](super::kernels::TypedParams)); both work side by side meanwhile.

/// Bytes of one dispatch's parameter slot (the WGSL `Params` struct: 16 `vec4<u32>`).
pub(crate) const PARAM_BYTES: usize = 256;

/// Words of one positional parameter slot.
const PARAM_WORDS: usize = PARAM_BYTES / 4;

/// 64 words of kernel parameters: one 256-byte uniform slot per dispatch.
#[derive(Clone, Default)]
pub(crate) struct Params(Vec<u32>);

impl Params {
    pub(crate) fn words(&self) -> &[u32] {
        &self.0
    }
    pub(crate) fn new() -> Self {
        Params(Vec::with_capacity(PARAM_WORDS))
    }
    pub(crate) fn us(mut self, vs: &[usize]) -> Self {
        self.0.extend(vs.iter().map(|&v| v as u32));
        self
    }
}

/// `v` as the u32 a parameter field holds; sizes past u32 are refused before any kernel sees
/// them (the kernels index in u32).
pub(crate) fn word(v: usize) -> u32 {
    debug_assert!(v <= u32::MAX as usize, "parameter {v} past u32");
    v as u32
}
