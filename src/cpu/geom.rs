//! The geometry of one convolution, shared by the general and the depthwise paths (its own file so
//! that conv.rs and depthwise.rs need not import each other).

/// Geometry of one convolution, validated against the data it runs on.
pub(super) struct Geom {
    pub n: usize,
    pub ic: usize,
    pub h: usize,
    pub w: usize,
    pub oc: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub groups: usize,
}
