//! The GPU contract, checked by reflecting every shader with naga, without a GPU. Shaders are
//! created unchecked (`create_shader_module_trusted`), so a binding table or a parameter struct
//! that drifts from its WGSL would be an out-of-bounds access at run time, not an error.
//!
//! For every [`Kernel`]: its entry point exists; the global resources it statically uses (its
//! own function and every function it calls) are binding 0, a uniform, plus storage buffers whose
//! binding numbers equal the spec's list as a set; it writes exactly the bindings
//! [`Kernel::writes`] names; its uniform is the positional `Params` (256 bytes) for an untyped
//! kernel, or for a typed one a struct of the same name and size as the Rust [`TypedParams`]
//! struct that claims the kernel. Enum constants match their Rust values.

use super::backward::{AccumulateParams, ProbSeedParams};
use super::embed::{ColorMode, ColorizeParams, MinMaxParams, ResampleParams, STORAGE_BUFFERS};
use super::image::{AscentParams, BlurParams, ResizeParams, RollParams};
use super::kernels::{Kernel, TypedParams};
use super::ops::{BinaryCode, BinaryParams, GatherParams, ReduceCode, ReduceParams, UnaryParams};
use super::tsne::{
    DistParams, ForcesParams, KlParams, PcondParams, SymPairParams, SymParams, UpdateParams,
};
use crate::model::UnaryCode;
use crate::ops::affine::ChannelParams;
use crate::ops::binary::{BinaryBwdParams, Operand};
use crate::ops::conv::ConvParams;
use crate::ops::layernorm::LayerNormParams;
use crate::ops::layout::SliceBwdParams;
use crate::ops::linear::{LinearBwdParams, LinearParams};
use crate::ops::logsoftmax::LogSoftmaxParams;
use crate::ops::lrn::LrnParams;
use crate::ops::pool::{GlobalPoolCode, GlobalPoolParams, Pool2dParams, PoolCode};
use crate::ops::softmax::SoftmaxParams;
use crate::ops::unary::{ReluRule, UnaryBwdParams};
use naga::valid::{Capabilities, GlobalUse, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, StorageAccess};
use std::collections::{BTreeSet, HashMap};

/// One Rust parameter struct: its name (last path segment), size and the kernels it claims.
struct RustParams {
    name: &'static str,
    size: usize,
    kernels: &'static [Kernel],
}

fn of<P: TypedParams>() -> RustParams {
    let full = std::any::type_name::<P>();
    RustParams {
        name: full.rsplit("::").next().unwrap_or(full),
        size: std::mem::size_of::<P>(),
        kernels: P::KERNELS,
    }
}

/// Every [`TypedParams`] struct. A typed spec line whose kernel no struct here claims fails
/// the test, so this list cannot silently fall behind.
fn rust_params() -> Vec<RustParams> {
    vec![
        of::<ResizeParams>(),
        of::<RollParams>(),
        of::<BlurParams>(),
        of::<AscentParams>(),
        of::<ResampleParams>(),
        of::<MinMaxParams>(),
        of::<ColorizeParams>(),
        of::<DistParams>(),
        of::<PcondParams>(),
        of::<SymParams>(),
        of::<SymPairParams>(),
        of::<ForcesParams>(),
        of::<UpdateParams>(),
        of::<KlParams>(),
        of::<UnaryParams>(),
        of::<UnaryBwdParams>(),
        of::<ChannelParams>(),
        of::<BinaryParams>(),
        of::<BinaryBwdParams>(),
        of::<AccumulateParams>(),
        of::<SoftmaxParams>(),
        of::<ProbSeedParams>(),
        of::<ReduceParams>(),
        of::<Pool2dParams>(),
        of::<GlobalPoolParams>(),
        of::<LrnParams>(),
        of::<LayerNormParams>(),
        of::<LogSoftmaxParams>(),
        of::<GatherParams>(),
        of::<SliceBwdParams>(),
        of::<ConvParams>(),
        of::<LinearParams>(),
        of::<LinearBwdParams>(),
    ]
}

struct Shader {
    module: Module,
    info: ModuleInfo,
    layouter: naga::proc::Layouter,
}

/// Parses and validates one shader file (wgpu's own checks are skipped at run time).
fn load(file: &str, source: &str) -> Result<Shader, String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{file}.wgsl: {}", e.emit_to_string(source)))?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .map_err(|e| format!("{file}.wgsl: {}", e.emit_to_string(source)))?;
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| format!("{file}.wgsl: layout: {e}"))?;
    Ok(Shader {
        module,
        info,
        layouter,
    })
}

/// What one kernel's entry point uses at binding 0 and at its storage bindings.
struct Reflected {
    /// (type name, size) of the binding-0 uniform.
    uniform: Option<(String, u32)>,
    storage: BTreeSet<u32>,
    written: BTreeSet<u32>,
    problems: Vec<String>,
}

fn reflect(sh: &Shader, entry: &str) -> Result<Reflected, String> {
    let index = sh
        .module
        .entry_points
        .iter()
        .position(|ep| ep.name == entry)
        .ok_or_else(|| format!("no entry point {entry}"))?;
    let uses = sh.info.get_entry_point(index);
    let mut r = Reflected {
        uniform: None,
        storage: BTreeSet::new(),
        written: BTreeSet::new(),
        problems: Vec::new(),
    };
    for (handle, var) in sh.module.global_variables.iter() {
        let used = uses[handle];
        let Some(binding) = &var.binding else {
            continue;
        };
        if used.is_empty() {
            continue;
        }
        let name = var.name.as_deref().unwrap_or("?");
        if binding.group != 0 {
            r.problems
                .push(format!("{name} is in group {}", binding.group));
            continue;
        }
        match (binding.binding, var.space) {
            (0, AddressSpace::Uniform) => {
                let ty = &sh.module.types[var.ty];
                let size = sh.layouter[var.ty].size;
                r.uniform = Some((ty.name.clone().unwrap_or_default(), size));
            }
            (0, space) => r
                .problems
                .push(format!("binding 0 ({name}) is {space:?}, not a uniform")),
            (b, AddressSpace::Storage { access }) => {
                r.storage.insert(b);
                if used.contains(GlobalUse::WRITE) {
                    r.written.insert(b);
                    if !access.contains(StorageAccess::STORE) {
                        r.problems.push(format!("writes read-only binding {b}"));
                    }
                }
            }
            (b, space) => r
                .problems
                .push(format!("binding {b} ({name}) is {space:?}, not storage")),
        }
    }
    Ok(r)
}

/// Everything wrong with `kernel`, as lines naming it.
fn check(kernel: Kernel, sh: &Shader, typed: &HashMap<Kernel, &RustParams>) -> Vec<String> {
    let spec = kernel.spec();
    let r = match reflect(sh, spec.entry) {
        Ok(r) => r,
        Err(e) => return vec![format!("{kernel:?}: {e}")],
    };
    let mut problems = r.problems;
    let listed: BTreeSet<u32> = spec.bindings.iter().copied().collect();
    if listed.len() != spec.bindings.len() {
        problems.push(format!("spec lists a binding twice: {:?}", spec.bindings));
    }
    if listed.contains(&0) {
        problems.push("spec lists binding 0, which is the parameter uniform".into());
    }
    if r.storage != listed {
        problems.push(format!(
            "the shader uses storage bindings {:?}, the spec lists {:?}",
            r.storage, spec.bindings
        ));
    }
    if r.storage.len() > STORAGE_BUFFERS as usize {
        problems.push(format!(
            "{} storage bindings, over the {STORAGE_BUFFERS} check_limits asks for",
            r.storage.len()
        ));
    }
    let writes: BTreeSet<u32> = kernel.writes().iter().copied().collect();
    if r.written != writes {
        problems.push(format!(
            "the shader writes bindings {:?}, the spec says {:?} (outputs are listed last)",
            r.written, writes
        ));
    }
    match (&r.uniform, typed.get(&kernel), spec.typed) {
        (None, ..) => problems.push("does not read binding 0, which every dispatch binds".into()),
        (Some((name, size)), None, false) => {
            if name != "Params" || *size != 256 {
                problems.push(format!(
                    "untyped, but binding 0 is {name} ({size} bytes), not the positional Params"
                ));
            }
        }
        (Some((name, size)), Some(rust), true) => {
            if name != rust.name {
                problems.push(format!("WGSL reads {name}, Rust passes {}", rust.name));
            }
            if *size as usize != rust.size {
                problems.push(format!(
                    "WGSL {name} is {size} bytes, Rust {} is {} bytes",
                    rust.name, rust.size
                ));
            }
        }
        (Some(_), Some(rust), false) => problems.push(format!(
            "{} claims it, but its spec line is untyped (s(..), not t(..))",
            rust.name
        )),
        (Some(_), None, true) => {
            problems.push("typed spec line, but no TypedParams struct claims it".into())
        }
    }
    problems
        .into_iter()
        .map(|p| format!("{kernel:?} ({}:{}): {p}", spec.file, spec.entry))
        .collect()
}

#[test]
fn every_kernel_matches_its_shader() {
    let structs = rust_params();
    let mut typed: HashMap<Kernel, &RustParams> = HashMap::new();
    let mut problems = Vec::new();
    for s in &structs {
        for &k in s.kernels {
            if let Some(other) = typed.insert(k, s) {
                problems.push(format!("{k:?} is claimed by {} and {}", other.name, s.name));
            }
        }
    }
    let mut shaders: HashMap<&str, Shader> = HashMap::new();
    for &kernel in Kernel::ALL {
        let spec = kernel.spec();
        if !shaders.contains_key(spec.file) {
            match load(spec.file, spec.source) {
                Ok(sh) => {
                    shaders.insert(spec.file, sh);
                }
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            }
        }
        problems.extend(check(kernel, &shaders[spec.file], &typed));
    }
    assert!(
        problems.is_empty(),
        "{} contract violations:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Every shader file is reached through some kernel (cam.wgsl is gone: the CAM formulas are
    // generic ops now): as many files as `shaders/` holds.
    let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wgsl"))
        })
        .count();
    assert_eq!(shaders.len(), on_disk, "{:?}", shaders.keys());
}

#[test]
fn the_inventory_lists_every_kernel_once() {
    let unique: BTreeSet<String> = Kernel::ALL.iter().map(|k| format!("{k:?}")).collect();
    assert_eq!(unique.len(), Kernel::ALL.len());
    // Entry points are unique across the table: two kernels never share one.
    let entries: BTreeSet<(&str, &str)> = Kernel::ALL
        .iter()
        .map(|k| (k.spec().file, k.spec().entry))
        .collect();
    assert_eq!(entries.len(), Kernel::ALL.len());
}

/// `SCREAMING_SNAKE` of a CamelCase Rust name.
fn screaming(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The `u32` constants of a shader whose names start with `prefix`.
fn wgsl_consts(source: &str, prefix: &str) -> HashMap<String, u32> {
    let module = naga::front::wgsl::parse_str(source).expect("shader parses");
    module
        .constants
        .iter()
        .filter_map(|(_, c)| {
            let name = c.name.clone()?;
            if !name.starts_with(prefix) {
                return None;
            }
            match module.global_expressions[c.init] {
                naga::Expression::Literal(naga::Literal::U32(v)) => Some((name, v)),
                ref e => panic!("{name} is {e:?}, not a u32 literal"),
            }
        })
        .collect()
}

/// A Rust enum the shader branches on equals its WGSL constants `ENUM_NAME_VARIANT`, both ways.
fn check_enum<E: std::fmt::Debug + Copy>(
    source: &str,
    enum_name: &str,
    all: &[E],
    value: fn(E) -> u32,
) {
    let prefix = format!("{}_", screaming(enum_name));
    let wgsl = wgsl_consts(source, &prefix);
    let rust: HashMap<String, u32> = all
        .iter()
        .map(|&v| {
            (
                format!("{prefix}{}", screaming(&format!("{v:?}"))),
                value(v),
            )
        })
        .collect();
    assert_eq!(wgsl, rust, "{enum_name}: WGSL constants vs Rust values");
}

#[test]
fn enums_match_their_wgsl_constants() {
    let colormap = Kernel::Colorize.spec().source;
    check_enum(colormap, "ColorMode", &ColorMode::ALL, |m| m as u32);
    let eltwise = Kernel::Unary.spec().source;
    check_enum(eltwise, "UnaryCode", &UnaryCode::ALL, |m| m as u32);
    check_enum(eltwise, "ReluRule", &ReluRule::ALL, |m| m as u32);
    check_enum(eltwise, "BinaryCode", &BinaryCode::ALL, |m| m as u32);
    check_enum(eltwise, "Operand", &Operand::ALL, |m| m as u32);
    let reduce = Kernel::Reduce.spec().source;
    check_enum(reduce, "ReduceCode", &ReduceCode::ALL, |m| m as u32);
    let pool = Kernel::Pool2d.spec().source;
    check_enum(pool, "PoolCode", &PoolCode::ALL, |m| m as u32);
    check_enum(pool, "GlobalPoolCode", &GlobalPoolCode::ALL, |m| m as u32);
}

#[test]
fn screaming_snake_names() {
    assert_eq!(screaming("TurboAuto"), "TURBO_AUTO");
    assert_eq!(screaming("ColorMode"), "COLOR_MODE");
}

/// The recorder refuses parameters a kernel does not read before anything reaches the GPU: a
/// typed kernel given positional words or another kernel's struct, an untyped kernel given a
/// struct.
#[test]
fn dispatch_refuses_parameters_the_kernel_does_not_read() {
    use super::kernels::{Bind, KernelParams, Params};
    use crate::backend::{Backend, HostTensor};
    let _serial = super::tests::serial();
    let gpu = super::tests::gpu();
    let image = HostTensor::new(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let x = gpu.upload(&image).unwrap();
    let out = gpu.alloc(vec![1, 1, 2, 2]).unwrap();
    let roll = RollParams {
        total: 4,
        h: 2,
        w: 2,
        dy: 1,
        dx: 0,
    };
    let resize = ResizeParams {
        total: 4,
        in_h: 2,
        in_w: 2,
        out_h: 2,
        out_w: 2,
    };
    let try_dispatch = |kernel: Kernel, params: &dyn Fn() -> Box<dyn KernelParams>| {
        gpu.record_deferred("contract test", |rec| {
            rec.keep([&x, &out]);
            let binds: [Bind; 2] = [(&x).into(), (&out).into()];
            rec.dispatch_1d(kernel, &binds, Boxed(params()), 4)
        })
    };
    let words = || Box::new(Params::new().us(&[4, 2, 2, 1, 0])) as Box<dyn KernelParams>;
    let e = try_dispatch(Kernel::Roll, &words).unwrap_err().to_string();
    assert!(e.contains("Roll does not read positional Params"), "{e}");
    let e = try_dispatch(Kernel::Roll, &|| Box::new(resize))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Roll does not read") && e.contains("ResizeParams"),
        "{e}"
    );
    let e = try_dispatch(Kernel::Gather, &|| Box::new(roll))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Gather does not read") && e.contains("RollParams"),
        "{e}"
    );
    try_dispatch(Kernel::Roll, &|| Box::new(roll)).unwrap();
    // The accepted one ran: rows shifted down by one.
    assert_eq!(gpu.read(&out).unwrap().data, vec![3.0, 4.0, 1.0, 2.0]);
}

/// Lets the test pass boxed parameters of either form through the generic dispatch.
struct Boxed(Box<dyn super::kernels::KernelParams>);

impl super::kernels::KernelParams for Boxed {
    fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }
    fn typed(&self) -> Option<(&'static str, &'static [Kernel])> {
        self.0.typed()
    }
}
