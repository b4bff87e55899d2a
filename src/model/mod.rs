//! Model import (ONNX through tract-onnx) and netlens' own IR.

pub mod activation;
pub mod import;
pub mod ir;
pub mod limits;

pub use activation::*;
pub use ir::*;
pub use limits::*;

use crate::error::{Error, Result};

/// An imported classifier: the IR graph plus what the file told us about itself.
#[derive(Clone, Debug)]
pub struct Model {
    /// The imported IR graph every backend runs.
    pub graph: Graph,
    /// A display name (the file stem).
    pub name: String,
}

impl Model {
    /// Per-sample input shape `[C, H, W]`.
    pub fn input_shape(&self) -> &[usize] {
        &self.graph.values[self.graph.input].shape
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.graph.values[self.graph.output].sample_len()
    }

    /// Resolves a layer by its ONNX tensor name, with a helpful error naming close matches.
    pub fn layer(&self, name: &str) -> Result<ValueId> {
        if let Some(v) = self.graph.value_by_name(name) {
            if v == self.graph.input || self.graph.producer(v).is_some() {
                return Ok(v);
            }
            return Err(Error::bad_input(format!(
                "layer '{name}' of model '{}' does not contribute to the output, so it is never computed",
                self.name
            )));
        }
        let needle = name.to_lowercase();
        let close: Vec<&str> = self
            .graph
            .values
            .iter()
            .map(|v| v.name.as_str())
            .filter(|n| {
                let l = n.to_lowercase();
                l.contains(&needle) || needle.contains(&l)
            })
            .take(5)
            .collect();
        let hint = if close.is_empty() {
            "run `netlens info MODEL` to list the layers".to_string()
        } else {
            format!("did you mean one of: {}", close.join(", "))
        };
        Err(Error::bad_input(format!(
            "model '{}' has no layer named '{name}'; {hint}",
            self.name
        )))
    }
}
