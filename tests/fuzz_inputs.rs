//! In-process fuzzing of the two input parsers a user hands files to: the image decoder (PNG and
//! JPEG through preprocessing into a model tensor) and the `.npy` reader. Every input must give
//! `Ok` or an error, never a panic; allocations are bounded by the parsers' own checks (a decode
//! that ignored them would abort the test binary, which fails it just as surely).
//!
//! The mutator is structure-aware where it matters: PNG chunks are mutated and their CRCs fixed so
//! that mutants reach the decoder instead of failing the checksum, IHDR fields get boundary values,
//! and `.npy` headers are rebuilt with hostile shapes, dtypes and orders; plain byte flips,
//! truncations and insertions cover the rest.
//!
//! As a test it runs a few thousand mutants per target (seeded, so reproducible) plus every saved
//! crash input in assets/fuzz/crashes/. `scripts/fuzz` runs it for a fixed time instead:
//! `NETLENS_FUZZ_SECS=60` (per target) or `NETLENS_FUZZ_EXECS=N`; `NETLENS_FUZZ_SEED` varies the
//! stream. A panicking input is written to target/fuzz-crashes/ and the test fails naming it.

mod common;

use std::path::{Path, PathBuf};

use common::fuzz::{byte_mutation, crc32, fuzz, mutate, Rng, Target, EDGES};

use netlens::input::Preprocess;
use netlens::input::{check_finite, check_input_shape, image_tensor_from_bytes, parse_npy};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fuzz");

/// PNG chunks as (type, data); `None` when the bytes are not a well-formed chunk sequence.
fn png_chunks(data: &[u8]) -> Option<Vec<([u8; 4], Vec<u8>)>> {
    let mut rest = data.strip_prefix(b"\x89PNG\r\n\x1a\n")?;
    let mut chunks = Vec::new();
    while rest.len() >= 12 {
        let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        if rest.len() < 12 + len {
            return None;
        }
        chunks.push((rest[4..8].try_into().ok()?, rest[8..8 + len].to_vec()));
        rest = &rest[12 + len..];
    }
    Some(chunks)
}

fn png_bytes(chunks: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in chunks {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    out
}

/// One structure-aware PNG mutation with the CRCs fixed afterwards.
fn png_mutation(rng: &mut Rng, data: &[u8]) -> Option<Vec<u8>> {
    let mut chunks = png_chunks(data)?;
    if chunks.is_empty() {
        return None;
    }
    match rng.below(5) {
        0 => {
            let ihdr = &mut chunks.iter_mut().find(|(k, _)| k == b"IHDR")?.1;
            if ihdr.len() < 13 {
                return None;
            }
            match rng.below(4) {
                0 | 1 => {
                    let at = 4 * rng.below(2);
                    let v = *rng.pick(EDGES) as u32;
                    ihdr[at..at + 4].copy_from_slice(&v.to_be_bytes());
                }
                2 => ihdr[8] = *rng.pick(&[0, 1, 2, 4, 8, 16, 3, 32, 255]),
                _ => {
                    let field = 9 + rng.below(4);
                    ihdr[field] = *rng.pick(&[0, 1, 2, 3, 4, 6, 7, 255]);
                }
            }
        }
        1 => {
            // Corrupt compressed data or an ancillary chunk while keeping its CRC valid.
            let i = rng.below(chunks.len());
            byte_mutation(rng, &mut chunks[i].1);
        }
        2 => {
            let i = rng.below(chunks.len());
            chunks.remove(i);
        }
        3 => {
            let i = rng.below(chunks.len());
            let copy = chunks[i].clone();
            chunks.insert(rng.below(chunks.len() + 1), copy);
        }
        _ => {
            // Chunks out of order (IDAT before IHDR, IEND in the middle).
            let i = rng.below(chunks.len());
            let j = rng.below(chunks.len());
            chunks.swap(i, j);
        }
    }
    Some(png_bytes(&chunks))
}

/// A `.npy` header rebuilt from parts, some of them hostile.
fn npy_mutation(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let descr = *rng.pick(&[
        "'<f4'",
        "'>f4'",
        "'<f8'",
        "'>f8'",
        "'<f2'",
        "'<i4'",
        "'|u1'",
        "'|b1'",
        "'<c8'",
        "'O'",
        "'<f4",
        "[('a', '<f4')]",
        "'<f16'",
        "''",
        "3",
    ]);
    let order = *rng.pick(&["False", "True", "0", "'x'", "None"]);
    let rank = rng.below(6);
    let dims: Vec<String> = (0..rank)
        .map(|_| {
            if rng.below(3) == 0 {
                rng.pick(EDGES).to_string()
            } else {
                (rng.below(20)).to_string()
            }
        })
        .collect();
    let shape = match rank {
        0 => "()".to_string(),
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = match rng.below(8) {
        0 => format!("{{'descr': {descr}, 'shape': {shape}, }}"),
        1 => format!("{{'fortran_order': {order}, 'shape': {shape}}}"),
        2 => format!("{{'descr': {descr}, 'fortran_order': {order}, 'shape': {shape}, 'x': 1}}"),
        3 => format!(
            "{{'descr': {descr}, 'fortran_order': {order}, 'shape': [{}]}}",
            dims.join(",")
        ),
        _ => format!("{{'descr': {descr}, 'fortran_order': {order}, 'shape': {shape}, }}"),
    };
    header.push_str(&" ".repeat(rng.below(64)));
    header.push('\n');
    let version = *rng.pick(&[1u8, 1, 2, 3, 0, 4]);
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    let len = if rng.below(8) == 0 {
        *rng.pick(EDGES) as usize
    } else {
        header.len()
    };
    if version == 1 {
        out.extend_from_slice(&(len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    // The seed's data, shortened or lengthened.
    let body = data
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(data, |i| &data[i + 1..]);
    let keep = match rng.below(4) {
        0 => rng.below(body.len() + 1),
        _ => body.len(),
    };
    out.extend_from_slice(&body[..keep]);
    for _ in 0..rng.below(3) * rng.below(64) {
        out.push(rng.next() as u8);
    }
    out
}

fn seeds(ext: &[&str]) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(DIR).join("seeds"))
        .expect("assets/fuzz/seeds exists")
        .map(|e| e.unwrap().path())
        .filter(|p| ext.iter().any(|x| p.extension().is_some_and(|e| e == *x)))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// A small JPEG made in process (no JPEG encoder is needed to write the PNG and npy seeds).
fn jpeg_seed() -> Vec<u8> {
    let pixels: Vec<u8> = (0..12 * 10 * 3).map(|i| (i * 37 % 251) as u8).collect();
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
    image::ImageEncoder::write_image(enc, &pixels, 12, 10, image::ExtendedColorType::Rgb8)
        .expect("encode the JPEG seed");
    out
}

/// Returns whether the input was accepted (reached a tensor), to report how deep mutants get.
fn image_target(bytes: &[u8], variant: usize) -> bool {
    let crop = Preprocess {
        resize: Some(18),
        crop: Some(16),
        ..Preprocess::imagenet()
    };
    let (pp, input) = match variant % 4 {
        0 => (crop, [3, 16, 16]),
        1 => (crop, [1, 16, 16]),
        2 => (Preprocess::unit(), [3, 8, 8]),
        _ => (Preprocess::unit(), [1, 12, 9]),
    };
    let Ok(t) = image_tensor_from_bytes(bytes, &"fuzz input", &pp, &input) else {
        return false;
    };
    assert_eq!(t.shape, [1, input[0], input[1], input[2]]);
    assert!(t.data.iter().all(|v| v.is_finite()));
    true
}

fn npy_target(bytes: &[u8], _variant: usize) -> bool {
    let Ok(mut t) = parse_npy(bytes, &"fuzz input") else {
        return false;
    };
    assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
    let _ = check_finite(&t);
    let _ = check_input_shape(&mut t, &[1, 4, 4]);
    true
}

fn fuzz_parser(
    name: &str,
    seeds: Vec<Vec<u8>>,
    structural: fn(&mut Rng, &[u8]) -> Vec<u8>,
    run: fn(&[u8], usize) -> bool,
) {
    let png = name == "png";
    fuzz(Target {
        name,
        seeds,
        replay: vec![Path::new(DIR).join("crashes")],
        default_execs: 4000,
        mutate: &mut |rng, base| {
            let mut data = mutate(rng, base, structural);
            // Half the PNG mutants get valid CRCs again, so byte-level damage reaches the decoder.
            if png && rng.below(2) == 0 {
                if let Some(chunks) = png_chunks(&data) {
                    data = png_bytes(&chunks);
                }
            }
            data
        },
        run: &run,
        park: &|_| false,
        park_dir: None,
    });
}

#[test]
fn png_and_jpeg_decoder_never_panics() {
    let mut seeds = seeds(&["png"]);
    seeds.push(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/digits/digit_3_idx0649.png"
        ))
        .unwrap(),
    );
    seeds.push(jpeg_seed());
    fuzz_parser(
        "png",
        seeds,
        |rng, d| png_mutation(rng, d).unwrap_or_else(|| d.to_vec()),
        image_target,
    );
}

#[test]
fn npy_reader_never_panics() {
    let mut seeds = seeds(&["npy"]);
    seeds.push(std::fs::read(Path::new(DIR).join("x_digits.npy")).unwrap());
    fuzz_parser("npy", seeds, npy_mutation, npy_target);
}

#[test]
fn every_seed_is_accepted() {
    // Mutating inputs that the parsers reject outright would fuzz only the first check.
    for (i, s) in seeds(&["png"]).iter().enumerate() {
        image_tensor_from_bytes(s, &i, &Preprocess::unit(), &[3, 8, 8]).unwrap();
    }
    image_tensor_from_bytes(&jpeg_seed(), &"jpeg", &Preprocess::unit(), &[3, 8, 8]).unwrap();
    for (i, s) in seeds(&["npy"]).iter().enumerate() {
        parse_npy(s, &i).unwrap();
    }
}
