//! The method × metric table of `netlens evaluate` and the best value of each column.

use std::path::Path;

/// One method's row: its metric values (`None` where not asked or skipped; over a folder, the
/// means), their standard deviations over a folder, and its JSON.
pub(super) struct Row {
    pub(super) method: &'static str,
    pub(super) values: Vec<Option<f64>>,
    pub(super) stds: Option<Vec<Option<f64>>>,
    pub(super) json: serde_json::Value,
}

/// Whether a higher value is better for `metric`.
fn higher_is_better(metric: &str) -> bool {
    matches!(metric, "insertion" | "increase" | "pointing-game")
}

/// The best value in column `j`, if any row has one: the rows holding it are marked.
fn best_value(rows: &[Row], j: usize, metric: &str) -> Option<f64> {
    let values = rows
        .iter()
        .filter_map(|r| r.values[j].filter(|v| v.is_finite()));
    if higher_is_better(metric) {
        values.reduce(f64::max)
    } else {
        values.reduce(f64::min)
    }
}

/// The methods holding column `j`'s best value.
pub(super) fn best_rows(rows: &[Row], j: usize, metric: &str) -> Vec<&'static str> {
    let best = best_value(rows, j, metric);
    rows.iter()
        .filter(|r| best.is_some() && r.values[j] == best)
        .map(|r| r.method)
        .collect()
}

/// The method × metric table, the best of each column marked with `*`; over a folder each cell
/// is `mean ± std`.
pub(super) fn table(
    metrics: &[&str],
    rows: &[Row],
    what: &str,
    backend: &str,
    seconds: f64,
    dir: &Path,
) -> String {
    let width = rows
        .iter()
        .map(|r| r.method.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let cell_w = if rows.iter().any(|r| r.stds.is_some()) {
        22
    } else {
        14
    };
    let mut s = format!("{:<width$}", "method");
    for m in metrics {
        let arrow = if higher_is_better(m) { "↑" } else { "↓" };
        s += &format!("  {:>cell_w$}", format!("{m} {arrow}"));
    }
    s.push('\n');
    let best: Vec<Option<f64>> = metrics
        .iter()
        .enumerate()
        .map(|(j, m)| best_value(rows, j, m))
        .collect();
    for r in rows {
        s += &format!("{:<width$}", r.method);
        for (j, v) in r.values.iter().enumerate() {
            let mark = if v.is_some() && *v == best[j] {
                "*"
            } else {
                " "
            };
            let std = r.stds.as_ref().and_then(|s| s[j]);
            let cell = match (v, std) {
                (None, _) => "-".to_string(),
                (Some(v), None) => format!("{v:.4}{mark}"),
                (Some(v), Some(sd)) => format!("{v:.4} ± {sd:.4}{mark}"),
            };
            s += &format!("  {cell:>cell_w$}");
        }
        s.push('\n');
    }
    s + &format!(
        "{what} on {backend} in {seconds:.2} s (* best per column); wrote {}",
        dir.display()
    )
}
