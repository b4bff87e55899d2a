//! Every WGSL file under `shaders/` must parse and validate with naga, without a GPU, so a
//! broken shader fails CI even on machines where the GPU tests cannot reach an adapter.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use std::path::Path;

fn shader_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/ directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    files
}

#[test]
fn all_shaders_parse_and_validate() {
    let files = shader_files();
    assert!(
        files.len() >= 8,
        "expected the 8 kernel families, found {files:?}"
    );
    let mut failures = Vec::new();
    for path in &files {
        let src = std::fs::read_to_string(path).expect("read shader");
        let module = match naga::front::wgsl::parse_str(&src) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: {}", path.display(), e.emit_to_string(&src)));
                continue;
            }
        };
        let mut validator = Validator::new(ValidationFlags::all(), Capabilities::empty());
        if let Err(e) = validator.validate(&module) {
            failures.push(format!("{}: {}", path.display(), e.emit_to_string(&src)));
        }
        assert!(
            module
                .entry_points
                .iter()
                .all(|ep| ep.stage == naga::ShaderStage::Compute),
            "{}: only compute entry points expected",
            path.display()
        );
    }
    assert!(
        failures.is_empty(),
        "invalid shaders:\n{}",
        failures.join("\n")
    );
}

#[test]
fn expected_entry_points_exist() {
    let expected = [
        (
            "conv.wgsl",
            &[
                "conv_gemm",
                "conv_direct",
                "conv_bwd_gemm",
                "conv_bwd_direct",
            ][..],
        ),
        ("gemm.wgsl", &["linear", "linear_bwd"]),
        (
            "eltwise.wgsl",
            &[
                "unary",
                "channel_affine",
                "binary",
                "unary_bwd",
                "channel_scale_bwd",
                "binary_bwd",
                "accumulate",
            ],
        ),
        (
            "pool.wgsl",
            &["pool2d", "global_pool", "pool2d_bwd", "global_pool_bwd"],
        ),
        ("reduce.wgsl", &["reduce", "reduce_bwd"]),
        (
            "softmax.wgsl",
            &["softmax", "softmax_bwd", "softmax_prob_seed"],
        ),
        ("layout.wgsl", &["gather", "slice_bwd"]),
        ("norm.wgsl", &["lrn", "lrn_bwd"]),
        ("perturb.wgsl", &["perturb", "mask_range", "path_batch"]),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for (file, entries) in expected {
        let src = std::fs::read_to_string(dir.join(file)).expect(file);
        let module = naga::front::wgsl::parse_str(&src).expect(file);
        for e in entries {
            assert!(
                module.entry_points.iter().any(|ep| ep.name == *e),
                "{file} lacks entry point {e}"
            );
        }
    }
}
