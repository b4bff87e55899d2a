//! `netlens explain` end to end: the report is written, and a real browser (headless Chromium)
//! decodes every picture in it without a console error. The page's own self-check
//! (`<pre id="netlens-check">`) is read from the dumped DOM; a screenshot is kept as
//! `target/report-screenshot.png` for CI artifacts.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Chromium binary; a missing browser fails the test with the way out.
fn chromium() -> String {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new(name).arg("--version").output() {
            if out.status.success() {
                return name.to_string();
            }
        }
    }
    panic!(
        "the report test needs Chromium for a headless browser check: \
         apt-get install -y chromium (Debian) or put chromium on PATH"
    );
}

/// Headless Chromium on `page` with `extra` arguments; root (CI containers) needs --no-sandbox.
fn headless(browser: &str, page: &Path, extra: &[&str]) -> Output {
    let url = format!("file://{}", page.display());
    let profile = scratch_in("report", "chromium-profile");
    Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs")
}

/// The text of `<pre id="netlens-check">` in a dumped DOM.
fn check_text(dom: &str) -> Option<String> {
    let start = dom.find("id=\"netlens-check\"")?;
    let open = start + dom[start..].find('>')? + 1;
    let close = open + dom[open..].find("</pre>")?;
    Some(dom[open..close].to_string())
}

#[test]
fn explain_report_renders_in_a_real_browser() {
    let browser = chromium();
    let dir = scratch_in("report", "explain-default");
    let _ = std::fs::remove_dir_all(&dir);
    // The default model and image, on the CPU backend (lavapipe would take minutes).
    let out = netlens(&[
        "explain",
        "-o",
        dir.to_str().unwrap(),
        "--backend",
        "cpu",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(summary["class"], 285, "the cat");
    let panels = summary["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["method"].as_str().unwrap())
        .collect();
    for want in [
        "Strongest activation channel",
        "CAM",
        "Grad-CAM",
        "Grad-CAM++",
        "Occlusion sensitivity",
        "Vanilla gradient",
        "SmoothGrad",
        "Integrated Gradients",
        "Guided backprop",
    ] {
        assert!(titles.contains(&want), "{want} missing from {titles:?}");
    }
    for p in panels {
        assert_eq!(p["available"], true, "{p}");
        assert!(p["seconds"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["backend"].as_str().unwrap().starts_with("CPU"), "{p}");
    }

    let report = dir.join("report.html");
    let html = std::fs::read_to_string(&report).expect("report.html");
    // Self-contained: every picture is inline, nothing is fetched.
    let images = html.matches("<img ").count();
    assert_eq!(
        images,
        panels.len() + 1,
        "one picture per panel plus the input"
    );
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), images);
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));

    let report = std::fs::canonicalize(&report).unwrap();
    let dom = headless(&browser, &report, &["--dump-dom"]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let check = check_text(&dom_text).unwrap_or_else(|| {
        panic!(
            "no netlens-check in the dumped DOM; stderr: {}",
            String::from_utf8_lossy(&dom.stderr)
        )
    });
    assert_eq!(
        check,
        format!("ok {images}/{images}"),
        "the page's self-check"
    );

    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let run = headless(
        &browser,
        &report,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,2000",
            "--hide-scrollbars",
        ],
    );
    assert!(
        run.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let png = image::open(&shot).expect("screenshot is a PNG");
    assert_eq!((png.width(), png.height()), (1400, 2000));
}

/// The self-check can fail: a picture that does not decode turns it to `fail`.
#[test]
fn self_check_reports_a_broken_picture() {
    let browser = chromium();
    let page = scratch_in("report", "broken.html");
    std::fs::write(
        &page,
        format!(
            "<!DOCTYPE html><html><head><script>{}</script></head><body><img src=\"data:image/png;base64,AAAA\" alt=\"bad\"><pre id=\"netlens-check\">pending</pre></body></html>",
            netlens_check_script()
        ),
    )
    .unwrap();
    let dom = headless(&browser, &page, &["--dump-dom"]);
    let check = check_text(&String::from_utf8_lossy(&dom.stdout)).expect("check element");
    assert!(check.starts_with("fail 0/1"), "{check}");
}

/// The check script as the report embeds it, cut from a rendered report.
fn netlens_check_script() -> String {
    let r = netlens::report::Report {
        model: "m".into(),
        image_name: "i".into(),
        image_png: vec![],
        predictions: vec![],
        class: 0,
        class_label: "c".into(),
        backend: "b".into(),
        panels: vec![],
        seconds: 0.0,
    };
    let html = netlens::report::html(&r);
    let start = html.find("<script>").unwrap() + "<script>".len();
    let end = html.find("</script>").unwrap();
    html[start..end].to_string()
}
