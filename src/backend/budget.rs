//! The memory budget: the one place where a large allocation's size is computed before it is
//! made and weighed against what the run may use (`--max-memory`, else a share of the memory the
//! system has available). Work that can be chunked asks it how many samples fit a chunk; work that
//! cannot asks it to [`Budget::check`] the size, and gets a bad-input error (exit 2) naming what
//! needed how much when it is over.

use crate::error::{Error, Result};
use crate::model::Model;

/// The share of `MemAvailable` a run takes by default. Half leaves room for the page cache, the
/// allocator's slack and other programs, and keeps a run that is near its budget well away from
/// the kernel's OOM killer.
pub const AVAILABLE_FRACTION: f64 = 0.5;

/// The budget where the available memory cannot be read (no `/proc/meminfo`): 4 GiB.
pub const FALLBACK_BYTES: u64 = 4 << 30;

/// The smallest budget `--max-memory` accepts: below it not even a small model loads.
pub const MIN_BYTES: u64 = 16 << 20;

/// How many bytes a run may allocate for its tensors, and where that number came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The limit in bytes.
    pub bytes: u64,
    /// Where it came from, for error messages (`--max-memory 4G`, `half of MemAvailable`).
    pub source: String,
}

impl Default for Budget {
    /// [`Budget::available`].
    fn default() -> Self {
        Budget::available()
    }
}

impl Budget {
    /// A budget of `bytes`, named `source` in messages.
    pub fn new(bytes: u64, source: impl Into<String>) -> Self {
        Budget {
            bytes,
            source: source.into(),
        }
    }

    /// [`AVAILABLE_FRACTION`] of `MemAvailable` in `/proc/meminfo`, or [`FALLBACK_BYTES`] where
    /// that cannot be read.
    pub fn available() -> Self {
        let avail = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| mem_available(&s));
        match avail {
            Some(b) => Budget::new(
                ((b as f64 * AVAILABLE_FRACTION) as u64).max(MIN_BYTES),
                format!(
                    "the default budget ({}% of MemAvailable; set --max-memory)",
                    (AVAILABLE_FRACTION * 100.0) as u32
                ),
            ),
            None => Budget::new(
                FALLBACK_BYTES,
                "the default budget (4 GiB; set --max-memory)",
            ),
        }
    }

    /// `--max-memory`'s value if given (see [`parse_size`]), else [`Budget::available`].
    pub fn resolve(flag: Option<&str>) -> Result<Self> {
        match flag {
            None => Ok(Budget::available()),
            Some(s) => {
                let bytes = parse_size(s).map_err(|e| e.context("--max-memory"))?;
                if bytes < MIN_BYTES {
                    return Err(Error::bad_input(format!(
                        "--max-memory {s} is below the smallest budget of {}",
                        human(MIN_BYTES)
                    )));
                }
                Ok(Budget::new(bytes, format!("--max-memory {s}")))
            }
        }
    }

    /// Refuses `bytes` for `what` when they are over the budget: a bad-input error that names
    /// what needed how much, and the budget.
    pub fn check(&self, what: &str, bytes: u128) -> Result<()> {
        if bytes > self.bytes as u128 {
            return Err(self.over(what, bytes));
        }
        Ok(())
    }

    /// How many samples of `per_sample` bytes fit beside `fixed` bytes, at most `cap` (and at
    /// least 1): the chunk size of work that can be chunked. A single sample over the budget is
    /// a bad-input error naming `what`.
    pub fn samples(&self, what: &str, per_sample: u128, fixed: u128, cap: usize) -> Result<usize> {
        let per = per_sample.max(1);
        let need = fixed.saturating_add(per);
        if need > self.bytes as u128 {
            return Err(self.over(&format!("{what} at one sample"), need));
        }
        let fit = (self.bytes as u128 - fixed) / per;
        Ok(fit.min(cap.max(1) as u128) as usize)
    }

    /// Refuses a forward (`backward` false) or forward + backward pass of `model` over `batch`
    /// samples whose activations, bounded by [`sample_bytes`], are over the budget: the check
    /// both backends make before a pass, so one sample that cannot fit is a clear exit 2 rather
    /// than an allocation failure.
    pub fn check_pass(&self, model: &Model, batch: usize, backward: bool) -> Result<()> {
        let what = match (backward, batch) {
            (false, 1) => "a forward pass of one sample".to_string(),
            (false, n) => format!("a forward pass of {n} samples"),
            (true, 1) => "a gradient pass of one sample".to_string(),
            (true, n) => format!("a gradient pass of {n} samples"),
        };
        let what = format!("{what} through '{}'", model.name);
        self.check(
            &what,
            sample_bytes(model, backward).saturating_mul(batch as u128),
        )
    }

    fn over(&self, what: &str, bytes: u128) -> Error {
        Error::bad_input(format!(
            "{what} needs {} of memory, over {} of {}",
            human_u128(bytes),
            self.source,
            human(self.bytes)
        ))
    }
}

/// `MemAvailable` in bytes from the text of `/proc/meminfo`.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Parses a size: a number with an optional binary unit `K`, `M`, `G`, `T` (also `KB`, `KiB`,
/// case-insensitive): `512M`, `4G`, `1.5G`, `1073741824`.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(Error::bad_input(format!(
                "'{s}' is not a size: use a number with K, M, G or T (512M, 4G)"
            )))
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| Error::bad_input(format!("'{s}' is not a size: use 512M, 4G, ...")))?;
    let bytes = v * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(Error::bad_input(format!("'{s}' is not a usable size")));
    }
    Ok(bytes as u64)
}

/// `bytes` for people: `1.5 GiB`, `512.0 MiB`.
pub fn human(bytes: u64) -> String {
    human_u128(bytes as u128)
}

fn human_u128(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// An upper bound on the bytes one sample takes in a forward pass (`backward` false) or a
/// forward + backward pass: every value's activation in f32, as if none were released early,
/// and for a backward its gradient too. Computed in u128 so that no shape overflows it.
pub fn sample_bytes(model: &Model, backward: bool) -> u128 {
    let values: u128 = model
        .graph
        .values
        .iter()
        .map(|v| {
            v.shape
                .iter()
                .fold(1u128, |a, &d| a.saturating_mul(d as u128))
        })
        .fold(0u128, |a, n| a.saturating_add(n));
    values.saturating_mul(if backward { 8 } else { 4 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("512mib").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5K").unwrap(), 1536);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        for bad in ["", "G", "4X", "-1G", "1e400", "0"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn meminfo_is_read_in_kib() {
        let text = "MemTotal: 100 kB\nMemFree: 5 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(mem_available(text), Some(2 << 20));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn chunks_shrink_to_the_budget_and_one_sample_over_is_refused() {
        let b = Budget::new(1000, "a test");
        assert_eq!(b.samples("x", 100, 0, 1 << 20).unwrap(), 10);
        assert_eq!(b.samples("x", 100, 500, 1 << 20).unwrap(), 5);
        assert_eq!(b.samples("x", 100, 0, 3).unwrap(), 3);
        let e = b.samples("the forward", 2000, 0, 8).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::BadInput);
        assert!(e.message.contains("the forward at one sample needs"), "{e}");
        assert!(b.check("y", 1001).is_err() && b.check("y", 1000).is_ok());
    }
}
