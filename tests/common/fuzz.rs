//! The in-process fuzzing driver shared by tests/fuzz_inputs.rs and tests/fuzz_onnx.rs: a seeded
//! mutation stream, byte mutations, the time/execution budget, crash replay, and panic capture
//! (where a panic happened, so that a target can park known crashes instead of failing).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// splitmix64: tiny, seedable, and good enough to pick mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !bytes.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// Values at and around the edges the parsers check.
pub const EDGES: &[u64] = &[
    0,
    1,
    2,
    3,
    16,
    255,
    256,
    16383,
    16384,
    16385,
    65535,
    65536,
    1 << 24,
    (1 << 31) - 1,
    1 << 31,
    u32::MAX as u64,
    1 << 32,
    1 << 62,
    u64::MAX,
];

pub fn byte_mutation(rng: &mut Rng, data: &mut Vec<u8>) {
    match rng.below(6) {
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] = *rng.pick(&[0, 1, 0x7F, 0x80, 0xFF]);
        }
        2 => data.truncate(rng.below(data.len() + 1)),
        3 => {
            let at = rng.below(data.len() + 1);
            let n = 1 + rng.below(16);
            let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, fill);
        }
        4 if !data.is_empty() => {
            let at = rng.below(data.len());
            let n = 1 + rng.below(16.min(data.len() - at));
            data.drain(at..at + n);
        }
        _ if data.len() >= 4 => {
            // A 32-bit field anywhere, big- or little-endian, set to an edge value.
            let at = rng.below(data.len() - 3);
            let v = *rng.pick(EDGES) as u32;
            let b = if rng.below(2) == 0 {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            data[at..at + 4].copy_from_slice(&b);
        }
        _ => data.push(rng.next() as u8),
    }
}

/// One to four mutations of `base`, half of them byte mutations and half `structural` ones.
pub fn mutate(rng: &mut Rng, base: &[u8], structural: fn(&mut Rng, &[u8]) -> Vec<u8>) -> Vec<u8> {
    let mut data = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        if rng.below(2) == 0 {
            data = structural(rng, &data);
        } else {
            byte_mutation(rng, &mut data);
        }
    }
    data
}

/// How long to fuzz: `NETLENS_FUZZ_SECS` / `NETLENS_FUZZ_EXECS`, else a test-sized run of
/// `default_execs`.
pub fn budget(default_execs: u64) -> (Option<Duration>, u64) {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    match (env("NETLENS_FUZZ_SECS"), env("NETLENS_FUZZ_EXECS")) {
        (None, None) => (None, default_execs),
        (secs, execs) => (secs.map(Duration::from_secs), execs.unwrap_or(u64::MAX)),
    }
}

/// Where a panic happened: its message, its location, and the first frame in the netlens library
/// (the location alone names `alloc` for a capacity overflow, not the code that asked).
#[derive(Clone, Debug, Default)]
pub struct Panic {
    pub message: String,
    pub location: String,
    pub frame: String,
}

impl Panic {
    /// Whether any of `needles` is in its location, its first netlens frame or its message.
    pub fn matches(&self, needles: &[&str]) -> bool {
        needles.iter().any(|p| {
            self.location.contains(p) || self.frame.contains(p) || self.message.contains(p)
        })
    }
}

static LAST_PANIC: Mutex<Option<Panic>> = Mutex::new(None);
/// While set, panics are recorded but not printed: a fuzz run expects (and reports) them.
static QUIET: AtomicBool = AtomicBool::new(false);

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            // Symbol names survive `debug = false`, file names do not: look for netlens' frames.
            let frame = if location.starts_with("src/") || location.starts_with("tests/") {
                String::new()
            } else {
                std::backtrace::Backtrace::force_capture()
                    .to_string()
                    .lines()
                    .map(str::trim)
                    .find(|l| l.contains(": netlens::"))
                    .unwrap_or_default()
                    .to_string()
            };
            *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(Panic {
                message,
                location,
                frame,
            });
            if !QUIET.load(Ordering::Relaxed) {
                default(info);
            }
        }));
    });
}

/// What a fuzz target is: its name, its seeds, the folders of saved crash inputs it replays,
/// how it mutates a seed, what it runs on a mutant (`true` when the input was accepted), and which
/// panics are parked (saved under `park_dir`, counted, not failed) rather than failing the run.
pub struct Target<'a> {
    pub name: &'a str,
    pub seeds: Vec<Vec<u8>>,
    pub replay: Vec<PathBuf>,
    pub default_execs: u64,
    pub mutate: &'a mut dyn FnMut(&mut Rng, &[u8]) -> Vec<u8>,
    pub run: &'a dyn Fn(&[u8], usize) -> bool,
    pub park: &'a dyn Fn(&Panic) -> bool,
    pub park_dir: Option<PathBuf>,
}

pub const VARIANTS: usize = 4;

/// Runs the target on every saved crash input, then on mutants until the budget is spent.
pub fn fuzz(t: Target) {
    install_panic_hook();
    let mut replayed = 0;
    for dir in &t.replay {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for path in files
            .iter()
            .filter(|p| p.is_file() && !p.ends_with("README.md"))
        {
            let bytes = std::fs::read(path).unwrap();
            for variant in 0..VARIANTS {
                (t.run)(&bytes, variant);
            }
            replayed += 1;
        }
    }
    if let Ok(dir) = std::env::var("NETLENS_FUZZ_REPLAY") {
        report_replay(&t, Path::new(&dir));
    }
    let seed = std::env::var("NETLENS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x006E_6574_6C65_6E73);
    let mut rng = Rng(seed ^ t.name.len() as u64);
    let (time, max_execs) = budget(t.default_execs);
    let start = Instant::now();
    let (mut execs, mut accepted, mut parked) = (0u64, 0u64, 0u64);
    let mut places: HashMap<String, u64> = HashMap::new();
    QUIET.store(true, Ordering::Relaxed);
    while execs < max_execs && time.is_none_or(|limit| start.elapsed() < limit) {
        // Check the clock every 64 executions only.
        for _ in 0..64 {
            let base = rng.pick(&t.seeds);
            let data = (t.mutate)(&mut rng, base);
            let variant = rng.below(VARIANTS);
            *LAST_PANIC.lock().unwrap() = None;
            let outcome = catch_unwind(AssertUnwindSafe(|| (t.run)(&data, variant)));
            execs += 1;
            accepted += u64::from(matches!(outcome, Ok(true)));
            if outcome.is_ok() {
                continue;
            }
            let panic = LAST_PANIC.lock().unwrap().take().unwrap_or_default();
            let file = format!("{}-{:08x}.bin", t.name, crc32(&data));
            if let (true, Some(dir)) = ((t.park)(&panic), &t.park_dir) {
                // A few inputs per place are enough to replay it, and keep the folder small.
                let place = format!("{} {} {:.40}", panic.location, panic.frame, panic.message);
                let seen = places.entry(place).or_insert(0);
                *seen += 1;
                if *seen <= 3 {
                    save(dir, &file, &data);
                }
                parked += 1;
                continue;
            }
            QUIET.store(false, Ordering::Relaxed);
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes");
            let path = save(&dir, &file, &data);
            panic!(
                "{} target panicked (variant {variant}) on {}: '{}' at {} {} (save it under \
                 assets/fuzz/ once fixed)",
                t.name,
                path.display(),
                panic.message,
                panic.location,
                panic.frame
            );
        }
    }
    QUIET.store(false, Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let mut places: Vec<_> = places.into_iter().collect();
    places.sort();
    for (place, n) in places {
        println!("  parked {n}x: {place}");
    }
    println!(
        "fuzz {}: {execs} executions in {secs:.1} s ({:.0}/s), {accepted} accepted, {parked} parked, \
         {replayed} saved inputs replayed, seed {seed}",
        t.name,
        execs as f64 / secs
    );
}

/// Runs every input in `dir` under `catch_unwind` and prints what each did, for inputs that are
/// known to crash (parked ones, before the fix lands): `NETLENS_FUZZ_REPLAY=DIR`.
fn report_replay(t: &Target, dir: &Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("NETLENS_FUZZ_REPLAY={}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("README.md"))
        .collect();
    files.sort();
    QUIET.store(true, Ordering::Relaxed);
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let outcomes: Vec<String> = (0..VARIANTS)
            .map(
                |variant| match catch_unwind(AssertUnwindSafe(|| (t.run)(&bytes, variant))) {
                    Ok(true) => "accepted".to_string(),
                    Ok(false) => "refused".to_string(),
                    Err(_) => {
                        let p = LAST_PANIC.lock().unwrap().take().unwrap_or_default();
                        format!("PANIC at {} {}: {:.100}", p.location, p.frame, p.message)
                    }
                },
            )
            .collect();
        println!("replay {}: {}", path.display(), outcomes.join(" | "));
    }
    QUIET.store(false, Ordering::Relaxed);
}

fn save(dir: &Path, file: &str, data: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, data).unwrap();
    path
}
