//! Progress reporting for long runs (occlusion and LIME batches, data-set passes, deep-dream
//! levels, t-SNE iterations). Methods take a `&dyn Progress` so the library stays silent by
//! default and the CLI decides how loud to be.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives progress from a long-running method. All calls are cheap and may come from any thread.
pub trait Progress: Sync {
    /// A new phase with `total` steps (batches, levels, iterations) begins.
    fn start(&self, label: &str, total: u64);
    /// `n` more steps are done.
    fn advance(&self, n: u64);
    /// A short status, such as the current objective or KL divergence.
    fn message(&self, msg: &str);
    /// The phase is over.
    fn finish(&self);
}

/// Reports nothing: the default for library calls.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn message(&self, _: &str) {}
    fn finish(&self) {}
}

/// An indicatif bar on stderr. It draws nothing when `quiet` is set or when stdout is not a
/// terminal, so scripts and pipes see only the results.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar on stderr, hidden when `quiet` is set or stdout is not a terminal.
    pub fn new(quiet: bool) -> Bar {
        let visible = !quiet && std::io::stdout().is_terminal();
        let bar = ProgressBar::hidden();
        if visible {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Bar { bar }
    }
}

impl Progress for Bar {
    fn start(&self, label: &str, total: u64) {
        self.bar.reset();
        self.bar.set_prefix(label.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.set_message("");
    }
    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }
    fn message(&self, msg: &str) {
        self.bar.set_message(msg.to_string());
    }
    fn finish(&self) {
        self.bar.finish();
    }
}
