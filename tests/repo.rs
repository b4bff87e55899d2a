//! The repository as a user meets it: the README's test command in a fresh clone, the default
//! output folders in `.gitignore`, class names in the docs against the shipped labels.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// The ```sh blocks of the README's "Two commands" section, in order.
fn two_commands() -> Vec<String> {
    let readme = read("README.md");
    let start = readme
        .find("## Two commands")
        .expect("README has a 'Two commands' section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| {
            b[..b.find("```").expect("closed code block")]
                .trim()
                .to_string()
        })
        .collect()
}

fn run(dir: &Path, program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

/// The README's test command, tried in a fresh clone of this repository (its committed state): it
/// is the one script, the script is there and executable, and its prerequisite check passes on
/// this machine (the full run is the CI itself: `.ci/run` calls the same script).
#[test]
fn readme_test_command_is_one_script_that_checks_in_a_fresh_clone() {
    let commands = two_commands();
    let test = commands.last().expect("the README's test command");
    assert_eq!(test, "scripts/test", "the README's test command");
    assert!(
        read(".ci/run").lines().any(|l| l.trim() == "scripts/test"),
        ".ci/run must run the README's test command"
    );

    let clone = std::env::temp_dir().join(format!("netlens_clone_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&clone);
    let out = run(
        &root(),
        "git",
        &[
            "clone",
            "--quiet",
            root().to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "git clone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = clone.join(test);
    let meta = std::fs::metadata(&script)
        .unwrap_or_else(|e| panic!("{test} in a fresh clone (is it committed?): {e}"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            meta.permissions().mode() & 0o111 != 0,
            "{test} is not executable in a fresh clone"
        );
    }
    let out = run(&clone, script.to_str().unwrap(), &["--check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{test} --check: {stderr}");
    assert!(out.status.success(), "{test} --check: {stderr}");
    let _ = std::fs::remove_dir_all(&clone);
}

/// The `-o` default of every subcommand, from its `--help`.
fn default_output_folders() -> Vec<String> {
    let bin = env!("CARGO_BIN_EXE_netlens");
    let help = |args: &[&str]| {
        let out = Command::new(bin).args(args).arg("--help").output().unwrap();
        assert!(out.status.success(), "{args:?} --help");
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(&[]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert!(commands.len() > 10, "subcommands from --help: {commands:?}");
    let mut folders = Vec::new();
    for c in &commands {
        let text = help(&[c]);
        // clap prints `-o, --output <OUTPUT>` then its doc, ending in `[default: DIR]`.
        let Some(at) = text.find("--output <") else {
            continue;
        };
        // Its own line and any wrapped continuation, up to the next option.
        let mut lines = text[at..].lines();
        let mut option = lines.next().unwrap_or("").to_string();
        for l in lines.take_while(|l| !l.trim_start().starts_with('-') && !l.trim().is_empty()) {
            option.push_str(l);
        }
        if let Some(d) = option.find("[default: ") {
            let rest = &option[d + 10..];
            folders.push(rest[..rest.find(']').unwrap()].to_string());
        }
    }
    folders.sort();
    folders.dedup();
    folders
}

/// `cargo run --release` (and every other command run with its defaults) leaves nothing untracked:
/// each default output folder, and the `out/` of the README's example, is in `.gitignore`.
#[test]
fn default_output_folders_are_ignored() {
    let mut folders = default_output_folders();
    assert!(
        folders.iter().any(|f| f == "netlens-report"),
        "explain's default folder: {folders:?}"
    );
    let readme_out = two_commands()
        .iter()
        .flat_map(|c| {
            let words: Vec<String> = c.split_whitespace().map(str::to_string).collect();
            let outs: Vec<String> = words
                .windows(2)
                .filter(|w| w[0] == "-o")
                .map(|w| w[1].clone())
                .collect();
            outs
        })
        .collect::<Vec<_>>();
    folders.extend(readme_out);
    let ignored: Vec<String> = read(".gitignore")
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_matches('/').to_string())
        .collect();
    let missing: Vec<&String> = folders.iter().filter(|f| !ignored.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "default output folders not in .gitignore: {missing:?} (all: {folders:?})"
    );
}

/// Every "class N (name)" in the README and the gallery script names the shipped label of N.
#[test]
fn class_names_in_the_docs_match_the_labels() {
    let labels: Vec<String> = read("assets/models/imagenet_labels.txt")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(labels.len(), 1000);
    let mut checked = 0;
    for doc in ["README.md", "docs/gallery.sh"] {
        let text = read(doc).replace('\n', " ").replace("# ", "");
        for (at, _) in text.match_indices("class ") {
            let rest = &text[at + 6..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let Some(named) = rest[digits.len()..].strip_prefix(" (") else {
                continue;
            };
            if digits.is_empty() {
                continue;
            }
            let name = &named[..named.find(')').unwrap()];
            let k: usize = digits.parse().unwrap();
            assert_eq!(name, labels[k], "{doc}: class {k} is {}", labels[k]);
            checked += 1;
        }
    }
    assert!(checked >= 2, "found {checked} class names to check");
}
