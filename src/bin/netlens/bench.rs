//! `netlens bench`: every method on the GPU and the CPU backend, as a table, JSON and the README's
//! Markdown.

use std::path::{Path, PathBuf};

use clap::Args;
use netlens::bench::{self, BenchReport, Options};
use netlens::error::{Error, Result};

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, default_value = crate::DEFAULT_MODEL)]
    pub model: PathBuf,
    #[arg(long, default_value = crate::DEFAULT_IMAGE)]
    pub image: PathBuf,
    /// Class to explain (default: the top prediction).
    #[arg(long)]
    pub class: Option<usize>,
    /// Methods, comma-separated (default: all): forward, channel, cam, gradcam, gradcam++,
    /// layercam, occlusion, saliency, gradient-x-input, guided, smoothgrad, ig, guided-gradcam.
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Timed calls per method and backend (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Untimed calls before timing.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Batch size of the forward entry.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Skip the GPU backend.
    #[arg(long)]
    pub no_gpu: bool,
    /// Skip the CPU backend.
    #[arg(long)]
    pub no_cpu: bool,
    /// Write the results as JSON to FILE (`-`: stdout, instead of the table).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the Markdown table (the README's) to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Run nothing: render the JSON of an earlier `--json` run (with --markdown, or to stdout).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// No per-method lines on stderr while running.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn write(path: &Path, text: &str) -> Result<()> {
    netlens::atomic::write_bytes(path, text.as_bytes())
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    let report: BenchReport = match &args.from {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::bad_input(format!("cannot read {}: {e}", path.display())))?;
            serde_json::from_str(&text).map_err(|e| {
                Error::bad_input(format!(
                    "{} is not a `netlens bench --json` file: {e}",
                    path.display()
                ))
            })?
        }
        None => {
            let options = Options {
                methods: args.methods.clone(),
                repeat: args.repeat,
                warmup: args.warmup,
                gpu: !args.no_gpu,
                cpu: !args.no_cpu,
                batch: args.batch,
                class: args.class,
                ..Options::default()
            };
            let quiet = args.quiet;
            bench::run(&args.model, &args.image, &options, &mut |r| {
                if quiet {
                    return;
                }
                let t = |v: Option<f64>| v.map_or("-".into(), bench::format_seconds);
                eprintln!(
                    "  {:<18} gpu {:>10}  cpu {:>10}  submissions/call {}",
                    r.method,
                    t(r.gpu_median_s),
                    t(r.cpu_median_s),
                    r.gpu_submissions_per_call
                        .map_or("-".into(), |v| format!("{v:.0}"))
                );
            })?
        }
    };
    let table = bench::markdown(&report);
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::internal(e.to_string()))?;
    if let Some(path) = &args.markdown {
        write(path, &table)?;
    }
    match &args.json {
        Some(p) if p.as_os_str() == "-" => outln!("{json}"),
        Some(p) => {
            write(p, &json)?;
            out!("{table}");
        }
        None => out!("{table}"),
    }
    Ok(())
}
