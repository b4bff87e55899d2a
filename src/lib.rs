#![warn(missing_docs)]
//! netlens: explains what ONNX image classifiers look at, on any GPU wgpu reaches, with a CPU
//! backend beside it as the numerical oracle.

pub mod atomic;
pub mod backend;
pub mod bench;
pub mod cpu;
pub mod embed;
pub mod engine;
pub mod error;
pub mod gpu;
pub mod input;
pub mod methods;
pub mod model;
pub(crate) mod ops;
pub mod progress;
pub mod report;
pub mod viz;

pub use backend::{Backend, Forward, GradRule, Gradients, HostTensor, Seed};
pub use error::{Error, ErrorKind, Result};
pub use model::Model;
