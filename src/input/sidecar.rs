//! The optional `<model>.json` beside a model: which preprocessing it was trained with, where its
//! class names are, and a description.
//!
//! ```json
//! {"preprocess": "imagenet", "labels": "imagenet_labels.txt", "description": "MobileNetV2"}
//! {"preprocess": {"resize": 256, "crop": 224, "mean": [0.5], "std": [0.5], "scale": 255}}
//! ```

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::Preprocess;
use crate::error::{Error, Result};

/// The parsed `<model>.json`; every key is optional and unknown keys are rejected.
#[derive(Clone, Debug, PartialEq)]
pub struct Sidecar {
    /// The JSON file itself, for messages.
    pub path: PathBuf,
    /// The preprocessing the model was trained with (a preset name or an explicit recipe); a
    /// `--preprocess` flag overrides it, and without either netlens falls back to a default.
    pub preprocess: Option<Preprocess>,
    /// The labels file, resolved against the JSON file's folder.
    pub labels: Option<PathBuf>,
    /// Free text about the model, for people reading the sidecar.
    pub description: Option<String>,
}

impl Sidecar {
    /// The sidecar of `model_path` (same path with the extension `.json`), if there is one.
    pub fn for_model(model_path: impl AsRef<Path>) -> Result<Option<Sidecar>> {
        let json = model_path.as_ref().with_extension("json");
        if !json.exists() {
            return Ok(None);
        }
        Sidecar::load(&json).map(Some)
    }

    /// Reads and checks a sidecar file; every problem is reported with the file's path.
    pub fn load(path: impl AsRef<Path>) -> Result<Sidecar> {
        let path = path.as_ref();
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::bad_input(format!("cannot read model sidecar {shown}: {e}")))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::bad_input(format!("model sidecar {shown} is not valid JSON: {e}"))
        })?;
        parse(path, value).map_err(|e| e.context(format!("model sidecar {shown}")))
    }

    /// The class names, one per line, if the sidecar names a labels file.
    pub fn labels(&self) -> Result<Option<Vec<String>>> {
        match &self.labels {
            None => Ok(None),
            Some(p) => load_labels(p)
                .map(Some)
                .map_err(|e| e.context(format!("labels named in {}", self.path.display()))),
        }
    }
}

fn parse(path: &Path, value: Value) -> Result<Sidecar> {
    let Value::Object(mut obj) = value else {
        return Err(Error::bad_input("expected a JSON object at the top level"));
    };
    let preprocess = obj.remove("preprocess").map(parse_preprocess).transpose()?;
    let labels = match obj.remove("labels") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => {
            Some(path.parent().unwrap_or(Path::new("")).join(s))
        }
        Some(other) => {
            return Err(Error::bad_input(format!(
                "\"labels\" must be a file name, got {other}"
            )))
        }
    };
    let description = match obj.remove("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(Error::bad_input(format!(
                "\"description\" must be a string, got {other}"
            )))
        }
    };
    // Rejecting unknown keys turns a misspelt "preprocess" into an error instead of a silently
    // wrong input.
    if let Some(key) = obj.keys().next() {
        return Err(Error::bad_input(format!(
            "unknown key {key:?} (known: preprocess, labels, description)"
        )));
    }
    Ok(Sidecar {
        path: path.to_path_buf(),
        preprocess,
        labels,
        description,
    })
}

fn parse_preprocess(value: Value) -> Result<Preprocess> {
    let mut obj = match value {
        Value::String(name) => return Preprocess::from_name(&name),
        Value::Object(obj) => obj,
        other => {
            return Err(Error::bad_input(format!(
                "\"preprocess\" must be a preset name or an object, got {other}"
            )))
        }
    };
    let resize = take_size(&mut obj, "resize")?;
    let crop = take_size(&mut obj, "crop")?;
    let mean = take_numbers(&mut obj, "mean")?.unwrap_or_else(|| vec![0.0]);
    let std = take_numbers(&mut obj, "std")?.unwrap_or_else(|| vec![1.0]);
    let scale = match obj.remove("scale") {
        None | Some(Value::Null) => 255.0,
        Some(v) => v.as_f64().ok_or_else(|| {
            Error::bad_input(format!("\"preprocess.scale\" must be a number, got {v}"))
        })?,
    };
    if let Some(key) = obj.keys().next() {
        return Err(Error::bad_input(format!(
            "unknown key {key:?} in \"preprocess\" (known: resize, crop, mean, std, scale)"
        )));
    }
    let p = Preprocess {
        resize,
        crop,
        scale,
        mean,
        std,
    };
    p.validate()?;
    Ok(p)
}

fn take_size(obj: &mut Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 && n <= u64::from(super::MAX_SIDE) => Ok(Some(n as usize)),
            _ => Err(Error::bad_input(format!(
                "\"preprocess.{key}\" must be a positive whole number of pixels, got {v}"
            ))),
        },
    }
}

fn take_numbers(obj: &mut Map<String, Value>, key: &str) -> Result<Option<Vec<f64>>> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|x| vec![x])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_f64().ok_or_else(|| {
                    Error::bad_input(format!("\"preprocess.{key}\" holds a non-number: {v}"))
                })
            })
            .collect::<Result<Vec<f64>>>()
            .map(Some),
        Some(other) => Err(Error::bad_input(format!(
            "\"preprocess.{key}\" must be a number or a list of numbers, got {other}"
        ))),
    }
}

/// Reads class names, one per line (a final newline does not add an empty class).
pub fn load_labels(path: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = path.as_ref();
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::bad_input(format!("cannot read labels file {shown}: {e}")))?;
    let labels: Vec<String> = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect();
    if labels.iter().all(|l| l.trim().is_empty()) {
        return Err(Error::bad_input(format!(
            "labels file {shown} has no labels"
        )));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("netlens-sidecar-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn absent_preset_and_custom() {
        let d = dir("ok");
        let model = d.join("net.onnx");
        assert_eq!(Sidecar::for_model(&model).unwrap(), None);

        std::fs::write(
            d.join("net.json"),
            r#"{"preprocess": "tf", "labels": "l.txt", "description": "x"}"#,
        )
        .unwrap();
        std::fs::write(d.join("l.txt"), "cat\r\ndog\n").unwrap();
        let s = Sidecar::for_model(&model).unwrap().unwrap();
        assert_eq!(s.preprocess, Some(Preprocess::tf()));
        assert_eq!(s.description.as_deref(), Some("x"));
        assert_eq!(s.labels().unwrap().unwrap(), vec!["cat", "dog"]);

        std::fs::write(
            d.join("net.json"),
            r#"{"preprocess": {"resize": 32, "crop": 28, "mean": [0.1, 0.2, 0.3], "std": 0.5, "scale": 1}}"#,
        )
        .unwrap();
        let s = Sidecar::for_model(&model).unwrap().unwrap();
        let p = s.preprocess.clone().unwrap();
        assert_eq!((p.resize, p.crop, p.scale), (Some(32), Some(28), 1.0));
        assert_eq!((p.mean, p.std), (vec![0.1, 0.2, 0.3], vec![0.5]));
        assert_eq!(s.labels().unwrap(), None);
    }

    #[test]
    fn malformed_sidecars_are_bad_input_naming_the_file() {
        let d = dir("bad");
        let model = d.join("m.onnx");
        for (text, needle) in [
            ("{not json", "not valid JSON"),
            ("[1, 2]", "object"),
            (r#"{"preprocess": "caffe"}"#, "caffe"),
            (r#"{"preprocss": "tf"}"#, "preprocss"),
            (r#"{"preprocess": {"resize": -3}}"#, "resize"),
            (r#"{"preprocess": {"mean": [0.1, 0.2]}}"#, "mean"),
            (r#"{"preprocess": {"std": [0, 1, 1]}}"#, "std"),
            (r#"{"preprocess": {"resize": 100, "crop": 224}}"#, "crop"),
            (r#"{"labels": 3}"#, "labels"),
        ] {
            std::fs::write(d.join("m.json"), text).unwrap();
            let e = Sidecar::for_model(&model).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadInput);
            assert!(e.message.contains("m.json"), "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
        std::fs::write(d.join("m.json"), r#"{"labels": "nope.txt"}"#).unwrap();
        let e = Sidecar::for_model(&model)
            .unwrap()
            .unwrap()
            .labels()
            .unwrap_err();
        assert!(
            e.message.contains("nope.txt") && e.message.contains("m.json"),
            "{e}"
        );
    }
}
