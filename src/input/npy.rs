//! `.npy` tensors: preprocessed inputs made elsewhere, and outputs for Python to read.

use std::io::Cursor;
use std::path::Path;

use npyz::{DType, Endianness, Order, TypeChar, WriterBuilder};

use crate::backend::HostTensor;
use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a float32 or float64 C-order `.npy` into f32 (float64 is narrowed). Both byte orders
/// are accepted. The sizes in the header are checked against the file before anything is
/// allocated from them.
pub fn load_npy(path: impl AsRef<Path>) -> Result<HostTensor> {
    let path = path.as_ref();
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::bad_input(format!("npy file {shown} does not exist"))
        } else {
            Error::bad_input(format!("cannot read npy file {shown}: {e}"))
        }
    })?;
    parse_npy(&bytes, &shown)
}

/// [`load_npy`] on bytes already in memory; `shown` names them in errors. This is also the
/// fuzzing entry point, so it must return an error, never panic, on any bytes.
pub fn parse_npy(bytes: &[u8], shown: &dyn std::fmt::Display) -> Result<HostTensor> {
    let bad = |what: String| Error::bad_input(format!("{shown} is not a valid .npy file: {what}"));
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err(bad("it does not start with the NumPy magic string".into()));
    }
    // The header's length field is read here rather than trusted to the parser, so that a
    // corrupt length cannot trigger a huge allocation.
    let (len_at, len_size) = match bytes[6] {
        1 => (8, 2),
        2 | 3 => (8, 4),
        v => return Err(bad(format!("unsupported format version {v}"))),
    };
    if bytes.len() < len_at + len_size {
        return Err(bad("the header is truncated".into()));
    }
    let header_len = if len_size == 2 {
        usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_at = len_at + len_size + header_len;
    if bytes.len() < data_at {
        return Err(bad("the header is truncated".into()));
    }
    let mut cursor = Cursor::new(bytes);
    let header =
        npyz::NpyHeader::from_reader(&mut cursor).map_err(|e| bad(format!("bad header: {e}")))?;
    if header.order() == Order::Fortran {
        return Err(Error::bad_input(format!(
            "{shown} is in Fortran order; save it in C order (numpy.ascontiguousarray)"
        )));
    }
    let dtype = header.dtype();
    let (size, little) = match &dtype {
        DType::Plain(t) if t.type_char() == TypeChar::Float && matches!(t.size_field(), 4 | 8) => {
            (t.size_field() as usize, t.endianness() != Endianness::Big)
        }
        other => {
            return Err(Error::bad_input(format!(
                "{shown} has dtype {}, expected float32 (or float64)",
                other.descr()
            )))
        }
    };
    let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|n| n.checked_mul(size).is_some())
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    let data = &bytes[data_at..];
    if data.len() < count * size {
        return Err(Error::bad_input(format!(
            "{shown} is truncated: shape {shape:?} needs {} bytes of data, the file has {}",
            count * size,
            data.len()
        )));
    }
    let data = &data[..count * size];
    let values: Vec<f32> = if size == 4 {
        data.chunks_exact(4)
            .map(|b| {
                let b = [b[0], b[1], b[2], b[3]];
                if little {
                    f32::from_le_bytes(b)
                } else {
                    f32::from_be_bytes(b)
                }
            })
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|b| {
                let b = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                (if little {
                    f64::from_le_bytes(b)
                } else {
                    f64::from_be_bytes(b)
                }) as f32
            })
            .collect()
    };
    HostTensor::new(shape, values).map_err(|e| e.context(shown))
}

/// Writes a little-endian float32 C-order `.npy`, atomically ([`crate::atomic`]); a failed
/// write is an output error naming the path.
pub fn write_npy(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    let path = path.as_ref();
    let shown = path.display();
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(Error::internal(format!(
            "writing {shown}: shape {shape:?} needs {n} values, got {}",
            data.len()
        )));
    }
    let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    crate::atomic::write_with(path, |file| {
        let mut writer = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape64)
            .writer(file)
            .begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()
    })
}

/// Checks a tensor against the model's per-sample input shape `[C, H, W]`. A single sample
/// `[C, H, W]` is accepted and given a batch axis of 1.
pub fn check_input_shape(tensor: &mut HostTensor, model_input: &[usize]) -> Result<()> {
    if tensor.shape.len() == model_input.len() && tensor.shape[..] == model_input[..] {
        tensor.shape.insert(0, 1);
        return Ok(());
    }
    if tensor.shape.len() == model_input.len() + 1 && tensor.shape[1..] == model_input[..] {
        return Ok(());
    }
    let expected: Vec<String> = std::iter::once("N".to_string())
        .chain(model_input.iter().map(|d| d.to_string()))
        .collect();
    Err(Error::bad_input(format!(
        "input tensor has shape {:?}, model expects [{}]",
        tensor.shape,
        expected.join(", ")
    )))
}

/// Loads an `.npy` input and checks it against the model's per-sample input shape.
/// Non-finite values are refused, naming the first one's position in the file's own shape: a NaN
/// would otherwise flow through the model into a confident-looking class and all-zero maps.
pub fn load_input_npy(path: impl AsRef<Path>, model_input: &[usize]) -> Result<HostTensor> {
    let path = path.as_ref();
    let mut t = load_npy(path)?;
    check_finite(&t).map_err(|e| e.context(path.display()))?;
    check_input_shape(&mut t, model_input).map_err(|e| e.context(path.display()))?;
    Ok(t)
}

/// Refuses a tensor holding NaN or ±Inf, naming the first such value's index tuple and how many
/// there are.
pub fn check_finite(t: &HostTensor) -> Result<()> {
    let Some(first) = t.data.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let count = t.data.iter().filter(|v| !v.is_finite()).count();
    let mut index = vec![0usize; t.shape.len()];
    let mut rest = first;
    for (slot, &dim) in index.iter_mut().zip(&t.shape).rev() {
        *slot = rest % dim.max(1);
        rest /= dim.max(1);
    }
    let index: Vec<String> = index.iter().map(usize::to_string).collect();
    Err(Error::bad_input(format!(
        "input tensor holds a non-finite value ({}) at index [{}] ({count} of {} values are \
         NaN or infinite); inputs must be finite",
        t.data[first],
        index.join(", "),
        t.data.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("netlens-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// A minimal v1 `.npy` with the given header dict and raw data.
    fn raw_npy(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    fn expect_bad(path: &Path, needle: &str) {
        let e = load_npy(path).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
        assert!(e.message.contains(&path.display().to_string()), "{e}");
        assert!(e.message.contains(needle), "{e}");
    }

    #[test]
    fn non_finite_values_are_refused_naming_the_first_index() {
        let mut data = vec![0.5f32; 2 * 3 * 4];
        assert!(check_finite(&HostTensor::new(vec![2, 3, 4], data.clone()).unwrap()).is_ok());
        data[12 + 4 + 3] = f32::NAN;
        data[23] = f32::NEG_INFINITY;
        let e = check_finite(&HostTensor::new(vec![2, 3, 4], data).unwrap()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadInput);
        assert!(
            e.message.contains("(NaN) at index [1, 1, 3]"),
            "{}",
            e.message
        );
        assert!(e.message.contains("2 of 24 values"), "{}", e.message);
        let p = tmp("nan.npy");
        write_npy(&p, &[1, 4], &[1.0, f32::INFINITY, 0.0, 0.0]).unwrap();
        let e = load_input_npy(&p, &[4]).unwrap_err();
        assert!(e.message.contains("(inf) at index [0, 1]"), "{}", e.message);
    }

    #[test]
    fn round_trip() {
        let p = tmp("round.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.25).collect();
        write_npy(&p, &[2, 3, 4], &data).unwrap();
        let t = load_npy(&p).unwrap();
        assert_eq!(t.shape, vec![2, 3, 4]);
        assert_eq!(t.data, data);
    }

    #[test]
    fn float64_is_narrowed() {
        let p = tmp("f64.npy");
        let vals = [1.5f64, -2.25, 1e-3];
        let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(
            &p,
            raw_npy(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                &data,
            ),
        )
        .unwrap();
        let t = load_npy(&p).unwrap();
        assert_eq!(t.data, vec![1.5f32, -2.25, 1e-3f64 as f32]);
    }

    #[test]
    fn rejects_int32_fortran_truncated_and_garbage() {
        let p = tmp("int.npy");
        std::fs::write(
            &p,
            raw_npy(
                "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
                &[0; 8],
            ),
        )
        .unwrap();
        expect_bad(&p, "<i4");
        let p = tmp("fortran.npy");
        std::fs::write(
            &p,
            raw_npy(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                &[0; 16],
            ),
        )
        .unwrap();
        expect_bad(&p, "Fortran");
        let p = tmp("short.npy");
        std::fs::write(
            &p,
            raw_npy(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 4, 4), }",
                &[0; 20],
            ),
        )
        .unwrap();
        expect_bad(&p, "truncated");
        let p = tmp("garbage.npy");
        std::fs::write(&p, b"this is not numpy at all").unwrap();
        expect_bad(&p, "magic");
        let p = tmp("badheader.npy");
        std::fs::write(&p, raw_npy("{'descr': '<f4', 'shape': (2,)", &[0; 8])).unwrap();
        expect_bad(&p, "header");
        // A header length pointing past the end of the file must fail without allocating.
        let p = tmp("hugeheader.npy");
        let mut b = MAGIC.to_vec();
        b.extend([2, 0]);
        b.extend(u32::MAX.to_le_bytes());
        std::fs::write(&p, b).unwrap();
        expect_bad(&p, "truncated");
        expect_bad(&tmp("missing.npy"), "does not exist");
    }

    #[test]
    fn input_shape_checks() {
        let mut t = HostTensor::zeros(vec![3, 8, 8]);
        check_input_shape(&mut t, &[3, 8, 8]).unwrap();
        assert_eq!(t.shape, vec![1, 3, 8, 8]);
        let mut t = HostTensor::zeros(vec![2, 3, 8, 8]);
        check_input_shape(&mut t, &[3, 8, 8]).unwrap();
        assert_eq!(t.shape, vec![2, 3, 8, 8]);
        let mut t = HostTensor::zeros(vec![8, 8]);
        let e = check_input_shape(&mut t, &[3, 8, 8]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadInput);
        assert_eq!(
            e.message,
            "input tensor has shape [8, 8], model expects [N, 3, 8, 8]"
        );
        let mut t = HostTensor::zeros(vec![1, 3, 224, 224, 1]);
        assert!(check_input_shape(&mut t, &[3, 224, 224]).is_err());
        let mut t = HostTensor::zeros(vec![1, 1, 224, 224]);
        assert!(check_input_shape(&mut t, &[3, 224, 224]).is_err());

        let p = tmp("rank3.npy");
        write_npy(&p, &[1, 4, 4], &[0.5; 16]).unwrap();
        let t = load_input_npy(&p, &[1, 4, 4]).unwrap();
        assert_eq!(t.shape, vec![1, 1, 4, 4]);
        let e = load_input_npy(&p, &[3, 4, 4]).unwrap_err();
        assert!(
            e.message.contains("rank3.npy") && e.message.contains("[N, 3, 4, 4]"),
            "{e}"
        );
    }
}
