//! The report as one HTML file: inline CSS, inline base64 PNGs, and a small self-check script.

use std::fmt::Write;

use super::Report;

/// The id of the `<pre>` the page's self-check writes to once loaded: `ok N/N` when all `N`
/// images decoded and nothing logged an error, else `fail K/N` followed by one line per error.
/// Headless browsers (the report test) read it from the dumped DOM.
pub const CHECK_ID: &str = "netlens-check";

/// Standard base64 with padding (RFC 4648), for data URIs.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn img(png: &[u8], alt: &str) -> String {
    format!(
        "<img src=\"data:image/png;base64,{}\" alt=\"{}\">",
        base64(png),
        escape(alt)
    )
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0 0 4px; }
h2 { font-size: 1.1em; margin: 24px 0 8px; }
.sub { color: #666; margin: 0 0 16px; }
.top { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.top img { width: 224px; height: 224px; image-rendering: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; }
td { padding: 3px 8px; }
td.p { text-align: right; font-variant-numeric: tabular-nums; }
.bar { background: #4a7bd0; height: 10px; }
tr.explained td { font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85em; margin-top: 6px; line-height: 1.35; overflow-wrap: anywhere; }
figcaption b { font-size: 1.1em; }
.params { color: #444; }
.meta { color: #777; }
.note { color: #a15c00; }
.na { width: 100%; aspect-ratio: 1; display: flex; align-items: center; justify-content: center; background: #f0f0f0; color: #888; text-align: center; }
footer { margin-top: 24px; color: #777; font-size: 0.85em; }
#netlens-check { display: inline; margin: 0; }
"#;

// Registered before any <img>, so a picture that fails to decode is counted; console.error is
// wrapped so script errors from any later code land in the check too.
const CHECK_SCRIPT: &str = r#"
(function () {
  var errors = [];
  var loaded = false;
  function render() {
    if (!loaded) return;
    var out = document.getElementById('netlens-check');
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    var good = ok === imgs.length && errors.length === 0;
    out.textContent = (good ? 'ok ' : 'fail ') + ok + '/' + imgs.length +
      errors.map(function (e) { return '\n' + e; }).join('');
  }
  window.addEventListener('error', function (e) {
    var t = e.target;
    errors.push(t && t.tagName ? 'failed to load <' + t.tagName.toLowerCase() + '> ' + (t.alt || '') : 'error: ' + e.message);
    render();
  }, true);
  var consoleError = console.error;
  console.error = function () {
    errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    render();
    return consoleError.apply(console, arguments);
  };
  window.addEventListener('load', function () { loaded = true; render(); });
})();
"#;

/// The report page: one self-contained HTML document.
pub fn html(r: &Report) -> String {
    let mut s = String::new();
    let title = format!("netlens explain: {} on {}", r.model, r.image_name);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n<script>{CHECK_SCRIPT}</script>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = write!(
        s,
        "<h1>{}</h1>\n<p class=\"sub\">{} maps of class {} ({}) on {}, {} in total</p>\n",
        escape(&title),
        r.panels.iter().filter(|p| p.png.is_some()).count(),
        r.class,
        escape(&r.class_label),
        escape(&r.backend),
        seconds(r.seconds)
    );

    s.push_str("<div class=\"top\">\n<figure>");
    s.push_str(&img(&r.image_png, "input image"));
    let _ = writeln!(
        s,
        "<figcaption><b>Input</b><br><span class=\"meta\">{} as the model sees it</span></figcaption></figure>",
        escape(&r.image_name)
    );
    s.push_str("<div><h2>Top predictions</h2>\n<table>\n");
    for p in &r.predictions {
        let class = if p.class == r.class {
            " class=\"explained\""
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "<tr{class}><td class=\"p\">{:.1}%</td><td><div class=\"bar\" style=\"width:{:.0}px\"></div></td><td>{}</td><td class=\"meta\">{}</td></tr>",
            p.probability * 100.0,
            (p.probability * 160.0).max(1.0),
            escape(&p.label),
            p.class
        );
    }
    s.push_str("</table></div>\n</div>\n");

    let _ = writeln!(
        s,
        "<h2>Why {}? Every local method, class {}</h2>\n<div class=\"grid\">",
        escape(&r.class_label),
        r.class
    );
    for p in &r.panels {
        s.push_str("<figure>");
        match &p.png {
            Some(png) => s.push_str(&img(png, &p.title)),
            None => s.push_str("<div class=\"na\">not available</div>"),
        }
        let _ = write!(s, "<figcaption><b>{}</b>", escape(&p.title));
        if !p.params.is_empty() {
            let _ = write!(s, "<br><span class=\"params\">{}</span>", escape(&p.params));
        }
        let _ = write!(
            s,
            "<br><span class=\"meta\">{} on {}</span>",
            seconds(p.seconds),
            escape(&p.backend)
        );
        if let Some(note) = &p.note {
            let _ = write!(s, "<br><span class=\"note\">{}</span>", escape(note));
        }
        // An overflow inside the model: the map is drawn as computed, the caption says so.
        for n in &p.non_finite {
            let _ = write!(
                s,
                "<br><span class=\"note\">{}</span>",
                escape(&n.to_string())
            );
        }
        s.push_str("</figcaption></figure>\n");
    }
    s.push_str("</div>\n");
    let _ = write!(
        s,
        "<footer>netlens {} · maps are min-max normalised and shown in Turbo over the input · self-check: <pre id=\"{CHECK_ID}\">pending</pre></footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
