//! A closed or full stdout: `netlens info MODEL | head -1` ends quietly (exit 0, never the panic
//! "failed printing to stdout"), and writing to a full disk is exit 1 with the reason.

mod common;
use common::asset;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};

fn netlens(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netlens"));
    c.args(args).env("NODEVICE_SELECT", "1");
    c
}

/// Exit 0, or killed by SIGPIPE (the conventional end of a writer whose reader left).
fn quiet_end(status: ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(13) {
            return true;
        }
    }
    status.code() == Some(0)
}

/// `netlens info MODEL | head -1`, 100 times: the reader takes the first line and closes the pipe
/// while netlens is still writing (it panicked in 11–17 of 20 tries before).
#[test]
fn a_reader_that_leaves_after_one_line_ends_it_quietly() {
    let model = asset("models/mobilenetv2_imagenet.onnx");
    for run in 0..100 {
        let mut child = netlens(&["info", &model])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("netlens runs");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("model"), "run {run}: {first:?}");
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            quiet_end(out.status) && stderr.is_empty(),
            "run {run}: {:?}, stderr {stderr}",
            out.status
        );
    }
}

/// Every command that prints, with stdout closed before it writes anything: the commands that
/// write files print last, after the files (every print goes through `emit`; the bin denies
/// `println!`).
#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let model = asset("models/tiny_digits.onnx");
    let digit = asset("digits/digit_3_idx0649.png");
    let features = asset("ref/tsne_digits_X.npy");
    let digits = asset("digits");
    let scratch = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stdout");
    std::fs::create_dir_all(&scratch).unwrap();
    let dir = |name: &str| {
        let d = scratch.join(name);
        d.to_str().unwrap().to_string()
    };
    let (npy, maps, acts, dream, tsne, ext, report) = (
        dir("logits.npy"),
        dir("maps"),
        dir("activations"),
        dir("dream"),
        dir("tsne"),
        dir("extremes"),
        dir("report"),
    );
    let layer = "/features/features.2/Relu_output_0";
    let commands: Vec<Vec<&str>> = vec![
        vec!["info", &model],
        vec!["info", &model, "--json"],
        vec!["classify", &model, &digit, "--backend", "cpu"],
        vec!["classify", &model, &digit, "--backend", "cpu", "--json"],
        vec!["adapters"],
        vec!["run", &model, &digit, "-o", &npy, "--backend", "cpu"],
        vec!["saliency", &model, &digit, "-o", &maps, "--backend", "cpu"],
        vec![
            "gradcam",
            &model,
            &digit,
            "-o",
            &maps,
            "--backend",
            "cpu",
            "--json",
        ],
        vec![
            "activations",
            &model,
            &digit,
            "--layer",
            layer,
            "-o",
            &acts,
            "--backend",
            "cpu",
        ],
        vec![
            "deepdream",
            &model,
            "--layer",
            layer,
            "--channels",
            "0",
            "--levels",
            "1",
            "--iterations",
            "2",
            "-o",
            &dream,
            "--backend",
            "cpu",
        ],
        vec![
            "tsne",
            "--features",
            &features,
            "--iterations",
            "20",
            "-o",
            &tsne,
        ],
        vec!["extremes", &model, &digits, "-o", &ext, "--backend", "cpu"],
        vec![
            "explain",
            &model,
            &digit,
            "-o",
            &report,
            "--backend",
            "cpu",
            "--steps",
            "4",
            "--samples",
            "4",
        ],
    ];
    for args in commands {
        let mut child = netlens(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("netlens runs");
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            quiet_end(out.status) && !stderr.contains("panicked"),
            "{args:?}: {:?}, stderr {stderr}",
            out.status
        );
    }
}

/// `netlens info MODEL > /dev/full` (and `classify`, and a method that writes its files first):
/// exit 1 and a message that says why.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_exit_1_with_the_reason() {
    let model = asset("models/tiny_digits.onnx");
    let digit = asset("digits/digit_3_idx0649.png");
    let maps = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stdout_full");
    let commands: [&[&str]; 4] = [
        &["info", &model],
        &["classify", &model, &digit, "--backend", "cpu"],
        &["classify", &model, &digit, "--backend", "cpu", "--json"],
        &[
            "saliency",
            &model,
            &digit,
            "-o",
            maps.to_str().unwrap(),
            "--backend",
            "cpu",
        ],
    ];
    for args in commands {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full exists on Linux");
        let out = netlens(args).stdout(full).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: stderr {stderr}");
        assert!(
            stderr.contains("writing to stdout")
                && stderr.contains("No space left")
                && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}
