//! Reading ONNX node attributes with errors that name the node.

use crate::error::{Error, Result};
use tract_onnx::pb::{AttributeProto, NodeProto};

/// A node under translation, for attribute access and error messages.
pub(crate) struct NodeCtx<'a> {
    pub node: &'a NodeProto,
    pub index: usize,
}

impl<'a> NodeCtx<'a> {
    /// `Conv 'name' (node #12)`, the way errors refer to nodes.
    pub fn describe(&self) -> String {
        if self.node.name.is_empty() {
            format!(
                "{} (node #{}, output '{}')",
                self.node.op_type,
                self.index,
                self.out_name(0)
            )
        } else {
            format!(
                "{} '{}' (node #{})",
                self.node.op_type, self.node.name, self.index
            )
        }
    }

    pub fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::bad_input(format!("{}: {msg}", self.describe()))
    }

    pub fn out_name(&self, i: usize) -> &str {
        self.node.output.get(i).map(String::as_str).unwrap_or("")
    }

    fn attr(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }

    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.attr(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    pub fn tensor(&self, name: &str) -> Option<&'a tract_onnx::pb::TensorProto> {
        self.attr(name).and_then(|a| a.t.as_ref())
    }

    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.attr(name).map(|a| a.floats.clone())
    }

    /// Non-negative ints, e.g. strides or kernel sizes.
    pub fn usizes(&self, name: &str) -> Result<Option<Vec<usize>>> {
        match self.ints(name) {
            None => Ok(None),
            Some(v) => v
                .iter()
                .map(|&x| {
                    usize::try_from(x)
                        .map_err(|_| self.err(format!("attribute '{name}' has negative value {x}")))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
        }
    }

    /// Name of input `i`, or `None` when absent or given as "" (an omitted optional input).
    pub fn input(&self, i: usize) -> Option<&'a str> {
        self.node
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}
