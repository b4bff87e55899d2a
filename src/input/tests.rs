use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

use super::*;
use crate::error::ErrorKind;

const IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/images");
const REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/ref");

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netlens-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Max |a - b| over the tensor, and the same in 8-bit levels (|a - b| * std * 255 per channel).
fn max_diff(ours: &HostTensor, reference: &HostTensor, std: &[f64]) -> (f32, f64) {
    assert_eq!(ours.shape, reference.shape);
    let plane = ours.data.len() / 3;
    let mut worst = (0f32, 0f64);
    for c in 0..3 {
        let s = std[c.min(std.len() - 1)];
        let a = &ours.data[c * plane..(c + 1) * plane];
        let b = &reference.data[c * plane..(c + 1) * plane];
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        worst.0 = worst.0.max(d);
        worst.1 = worst.1.max(f64::from(d) * s * 255.0);
    }
    worst
}

#[test]
fn matches_pillow_reference_tensors() {
    for (model, pp) in [
        ("mobilenetv2_imagenet", Preprocess::imagenet()),
        ("efficientnet_lite0_imagenet", Preprocess::tf()),
    ] {
        for image in ["chelsea", "coffee"] {
            let ours = image_tensor(format!("{IMAGES}/{image}.png"), &pp, &[3, 224, 224]).unwrap();
            let reference = load_npy(format!("{REF}/{model}_{image}_input.npy")).unwrap();
            let (d, levels) = max_diff(&ours, &reference, &pp.std);
            println!("{model} {image}: max |diff| {d:e} ({levels:.4} 8-bit levels)");
            assert!(
                d <= 1e-5,
                "{model} {image}: max |diff| {d} ({levels} levels)"
            );
        }
    }
}

#[test]
fn geometry_follows_the_python_pipeline() {
    assert_eq!(shorter_side_size(451, 300, 256), (384, 256));
    assert_eq!(shorter_side_size(300, 451, 256), (256, 384));
    assert_eq!(shorter_side_size(600, 400, 256), (384, 256));
    assert_eq!(shorter_side_size(7, 7, 4), (4, 4));
    // Python: round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(80.0) = 80.
    let lefts: Vec<usize> = [1, 3, 5, 160, 7]
        .iter()
        .map(|&d| half_of_round_even(d))
        .collect();
    assert_eq!(lefts, vec![0, 2, 2, 80, 4]);
}

#[test]
fn crop_takes_the_centre_and_normalises_per_channel() {
    // 5x4 image whose red channel encodes the pixel index: after cropping 3x3 without resizing,
    // the first pixel must come from (left 1, top 0) (round(0.5) = 0, round(1.0) = 1).
    let (w, h) = (5usize, 4usize);
    let data: Vec<f32> = (0..w * h).flat_map(|i| [i as f32, 100.0, 200.0]).collect();
    let img = Image {
        width: w,
        height: h,
        channels: 3,
        bit_depth: 8,
        data,
    };
    let pp = Preprocess {
        resize: None,
        crop: Some(3),
        ..Preprocess::unit()
    }
    .with_mean_std(vec![0.0, 0.5, 1.0], vec![1.0, 2.0, 0.5])
    .unwrap();
    let t = preprocess(&img, &pp, &[3, 3, 3]).unwrap();
    assert_eq!(t.shape, vec![1, 3, 3, 3]);
    assert_eq!(t.data[0], 1.0 / 255.0);
    assert_eq!(t.data[4], (w + 2) as f32 / 255.0);
    assert_eq!(t.data[9], (100f32 / 255.0 - 0.5) / 2.0);
    assert_eq!(t.data[18], (200f32 / 255.0 - 1.0) / 0.5);
}

fn save_odd_images() -> Vec<(PathBuf, &'static str)> {
    let (w, h) = (40u32, 30u32);
    let mut out = Vec::new();
    let p = tmp("rgb16.png");
    ImageBuffer::from_fn(w, h, |x, y| {
        Rgb([(x * 1600) as u16, (y * 2000) as u16, 65535])
    })
    .save(&p)
    .unwrap();
    out.push((p, "rgb16"));
    let p = tmp("gray8.png");
    ImageBuffer::from_fn(w, h, |x, _| Luma([(x * 6) as u8]))
        .save(&p)
        .unwrap();
    out.push((p, "gray8"));
    let p = tmp("gray16.png");
    ImageBuffer::from_fn(w, h, |x, _| Luma([(x * 1600) as u16]))
        .save(&p)
        .unwrap();
    out.push((p, "gray16"));
    let p = tmp("graya.png");
    ImageBuffer::from_fn(w, h, |x, y| LumaA([(x * 6) as u8, (y * 8) as u8]))
        .save(&p)
        .unwrap();
    out.push((p, "graya"));
    let p = tmp("rgba.png");
    ImageBuffer::from_fn(w, h, |x, y| Rgba([(x * 6) as u8, 7, 9, (y * 8) as u8]))
        .save(&p)
        .unwrap();
    out.push((p, "rgba"));
    let p = tmp("rgb.jpg");
    ImageBuffer::from_fn(w, h, |x, _| Rgb([(x * 6) as u8, 128, 60]))
        .save(&p)
        .unwrap();
    out.push((p, "jpeg"));
    out
}

#[test]
fn odd_color_types_load_and_preprocess() {
    for (path, kind) in save_odd_images() {
        let rgb = load_rgb(&path).unwrap();
        assert_eq!((rgb.width, rgb.height, rgb.channels), (40, 30, 3), "{kind}");
        assert_eq!(rgb.data.len(), 40 * 30 * 3, "{kind}");
        assert!(rgb.data.iter().all(|v| (0.0..=255.0).contains(v)), "{kind}");
        let px = |x: usize, y: usize| &rgb.data[(y * 40 + x) * 3..(y * 40 + x) * 3 + 3];
        match kind {
            // 16-bit keeps its fraction: 1600 * 255 / 65535 = 6.2258...
            "rgb16" => {
                assert!((px(1, 1)[0] - 1600.0 * 255.0 / 65535.0).abs() < 1e-4);
                assert_eq!(px(0, 0)[2], 255.0);
            }
            "gray8" | "graya" => assert_eq!(px(3, 5), &[18.0, 18.0, 18.0]),
            "rgba" => assert_eq!(px(3, 5), &[18.0, 7.0, 9.0]),
            "gray16" => assert!((px(2, 0)[1] - 3200.0 * 255.0 / 65535.0).abs() < 1e-4),
            _ => {}
        }
        let gray = load_gray(&path).unwrap();
        assert_eq!((gray.channels, gray.data.len()), (1, 40 * 30), "{kind}");
        if kind.starts_with("gray") {
            assert_eq!(
                gray.data[3], rgb.data[9],
                "{kind}: gray must be the file's own value"
            );
        }
        for pp in [Preprocess::imagenet(), Preprocess::tf()] {
            let t = preprocess(&rgb, &pp, &[3, 224, 224]).unwrap();
            assert_eq!(t.shape, vec![1, 3, 224, 224]);
            assert!(t.data.iter().all(|v| v.is_finite()));
        }
        let t = image_tensor(&path, &Preprocess::unit(), &[1, 16, 16]).unwrap();
        assert_eq!(t.shape, vec![1, 1, 16, 16], "{kind}");
        assert!(t.data.iter().all(|v| (0.0..=1.0).contains(v)), "{kind}");
    }
}

#[test]
fn gray_model_input_is_the_png_byte_over_255() {
    let p = tmp("digit.png");
    let buf = ImageBuffer::from_fn(16, 16, |x, y| Luma([(x * 16 + y) as u8]));
    buf.save(&p).unwrap();
    let t = image_tensor(&p, &Preprocess::unit(), &[1, 16, 16]).unwrap();
    assert_eq!(t.shape, vec![1, 1, 16, 16]);
    for (i, v) in t.data.iter().enumerate() {
        let (y, x) = (i / 16, i % 16);
        assert_eq!(*v, (x * 16 + y) as f32 / 255.0);
    }
    // Same picture stored as RGB: Pillow's luminance weights sum to one, so nothing changes.
    let p = tmp("digit_rgb.png");
    ImageBuffer::from_fn(16, 16, |x, y| {
        let v = (x * 16 + y) as u8;
        Rgb([v, v, v])
    })
    .save(&p)
    .unwrap();
    assert_eq!(
        image_tensor(&p, &Preprocess::unit(), &[1, 16, 16]).unwrap(),
        t
    );
}

#[test]
fn model_shape_mismatches_are_reported() {
    let img = Image {
        width: 8,
        height: 8,
        channels: 3,
        bit_depth: 8,
        data: vec![0.0; 192],
    };
    for (pp, input, needle) in [
        (Preprocess::imagenet(), vec![3, 299, 299], "224x224"),
        (Preprocess::imagenet(), vec![1, 224, 224], "mean"),
        (Preprocess::unit(), vec![4, 8, 8], "channels"),
        (Preprocess::unit(), vec![8, 8], "[C, H, W]"),
        (
            Preprocess {
                crop: Some(16),
                ..Preprocess::unit()
            },
            vec![3, 16, 16],
            "smaller",
        ),
    ] {
        let e = preprocess(&img, &pp, &input).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadInput);
        assert!(e.message.contains(needle), "{input:?}: {e}");
    }
}

fn expect_bad(path: &Path, needle: &str) {
    for result in [load_rgb(path), load_gray(path)] {
        let e = result.unwrap_err();
        println!("{e}");
        assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
        assert!(e.message.contains(&path.display().to_string()), "{e}");
        assert!(e.message.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn broken_files_are_bad_input_naming_the_path() {
    let p = tmp("empty.png");
    std::fs::write(&p, b"").unwrap();
    expect_bad(&p, "empty");
    let p = tmp("text.png");
    std::fs::write(&p, "this is a text file, not a picture\n").unwrap();
    expect_bad(&p, "not a PNG or JPEG");
    let p = tmp("random.dat");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&p, &noise).unwrap();
    expect_bad(&p, "not a PNG or JPEG");
    let p = tmp("animation.gif");
    std::fs::write(&p, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    expect_bad(&p, "only PNG and JPEG");
    let p = tmp("random.jpg");
    std::fs::write(&p, &noise).unwrap();
    expect_bad(&p, "not a PNG or JPEG");
    let p = tmp("corrupt.jpg");
    std::fs::write(&p, [&[0xFF, 0xD8, 0xFF, 0xE0][..], &noise].concat()).unwrap();
    expect_bad(&p, "");
    let full = std::fs::read(format!("{IMAGES}/chelsea.png")).unwrap();
    let p = tmp("truncated.png");
    std::fs::write(&p, &full[..full.len() / 2]).unwrap();
    expect_bad(&p, "");
    let p = tmp("header_only.png");
    std::fs::write(&p, &full[..40]).unwrap();
    expect_bad(&p, "");
    expect_bad(&tmp("does_not_exist.png"), "does not exist");
    expect_bad(&std::env::temp_dir(), "directory");
}

#[test]
fn huge_declared_size_is_rejected_before_decoding() {
    // A valid PNG header claiming 100000 x 100000 pixels, and nothing else.
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
        out.extend((body.len() as u32).to_be_bytes());
        out.extend(kind);
        out.extend(body);
        out.extend(crc32(&[&kind[..], body].concat()).to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    let p = tmp("huge.png");
    std::fs::write(&p, &png).unwrap();
    expect_bad(&p, "too large");

    // Within the side and pixel limits but 2 GiB of 16-bit RGBA samples: over the decode budget.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(16384u32.to_be_bytes());
    ihdr.extend(16384u32.to_be_bytes());
    ihdr.extend([16, 6, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    let p = tmp("over_budget.png");
    std::fs::write(&p, &png).unwrap();
    expect_bad(&p, "2048 MiB, over the 1024 MiB decode budget");
}

#[test]
fn palettes_that_panicked_the_png_crate_are_bad_input() {
    // Found by tests/fuzz_inputs.rs: png 0.18 indexes out of bounds on these instead of failing.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fuzz/crashes");
    for (file, needle) in [
        ("png_plte_43_bytes.png", "PLTE chunk is 43 bytes"),
        (
            "png_trns_3_of_2.png",
            "tRNS chunk has 3 entries for a palette of 2",
        ),
    ] {
        expect_bad(&dir.join(file), needle);
    }
}

#[test]
fn row_by_row_tensor_equals_the_whole_image_path() {
    // image_tensor converts and resizes the decoded file row by row; load_image converts the
    // whole image first. Both must give the same tensor to the bit, for every sample type, both
    // channel counts, and every resize shape (both axes, one axis, none).
    for (path, kind) in save_odd_images() {
        for c in [1, 3] {
            let cases = [
                // The ImageNet preset's three means fit RGB only; tf's single one fits both.
                (
                    if c == 3 {
                        Preprocess::imagenet()
                    } else {
                        Preprocess::tf()
                    },
                    [c, 224, 224],
                ),
                (Preprocess::unit(), [c, 16, 16]),
                (Preprocess::unit(), [c, 30, 40]),
                (Preprocess::unit(), [c, 20, 40]),
                (Preprocess::unit(), [c, 30, 17]),
            ];
            for (pp, input) in cases {
                let whole = preprocess(&load_image(&path, c).unwrap(), &pp, &input).unwrap();
                let rows = image_tensor(&path, &pp, &input).unwrap();
                assert_eq!(rows.shape, whole.shape, "{kind} {input:?}");
                let same = rows
                    .data
                    .iter()
                    .zip(&whole.data)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{kind} {input:?}");
                let bytes = std::fs::read(&path).unwrap();
                let mem = image_tensor_from_bytes(&bytes, &kind, &pp, &input).unwrap();
                assert_eq!(mem.data, rows.data, "{kind} {input:?} from memory");
            }
        }
    }
}

#[test]
fn batching_stacks_samples() {
    let a = HostTensor::new(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let b = HostTensor::new(vec![1, 1, 2, 2], vec![5.0, 6.0, 7.0, 8.0]).unwrap();
    let t = batch(vec![a.clone(), b]).unwrap();
    assert_eq!(t.shape, vec![2, 1, 2, 2]);
    assert_eq!(t.data, (1..=8).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(batch(vec![a.clone()]).unwrap(), a);
    assert_eq!(batch(vec![]).unwrap_err().kind, ErrorKind::BadInput);
    let c = HostTensor::zeros(vec![1, 3, 2, 2]);
    let e = batch(vec![a, c]).unwrap_err();
    assert!(e.message.contains("[1, 3, 2, 2]"), "{e}");
}
