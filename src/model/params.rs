//! Named tensors as read from a weights file, handed to the model constructors. A missing or
//! mis-shaped tensor is an error that names it and the file it should have come from.

use crate::error::input_error;
use anyhow::Result;
use candle_core::{Shape, Tensor};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

pub struct Params {
    tensors: HashMap<String, Tensor>,
    source: String,
    /// Names read with [`Params::get`], to find tensors that nothing used.
    used: RefCell<HashSet<String>>,
}

impl Params {
    pub fn new(tensors: HashMap<String, Tensor>, source: impl Into<String>) -> Self {
        Self {
            tensors,
            source: source.into(),
            used: RefCell::new(HashSet::new()),
        }
    }

    pub fn get(&self, name: &str, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        let tensor = self
            .tensors
            .get(name)
            .ok_or_else(|| input_error(format!("{}: tensor {name} is missing", self.source)))?;
        if tensor.shape() != &shape {
            return Err(input_error(format!(
                "{}: tensor {name} has shape {:?}, expected {:?}",
                self.source,
                tensor.dims(),
                shape.dims()
            )));
        }
        self.used.borrow_mut().insert(name.to_string());
        Ok(tensor.clone())
    }

    /// The file (or model) the tensors came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Names starting with one of `prefixes` that no [`Params::get`] has read, sorted.
    pub fn unused(&self, prefixes: &[&str]) -> Vec<String> {
        let used = self.used.borrow();
        let mut names: Vec<String> = self
            .tensors
            .keys()
            .filter(|n| prefixes.iter().any(|p| n.starts_with(p)) && !used.contains(n.as_str()))
            .cloned()
            .collect();
        names.sort();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn into_tensors(self) -> HashMap<String, Tensor> {
        self.tensors
    }
}
