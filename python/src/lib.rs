//! `gliznet._native`: the library's classifier for Python. No logic of its own: it turns
//! Python values into the library's types, releases the GIL while the encoder runs, and turns
//! errors into `ValueError` (bad input) or `RuntimeError` (anything else).

use gliznet::classifier::{Classifier as Inner, LabelSet, Method};
use gliznet::data::labels::Label;
use gliznet::model::checkpoint::ModelSource;
use gliznet::model::Quantization;
use gliznet::scoring::ScoreMode;
use numpy::{PyArray2, ToPyArray};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

/// Input errors keep the library's words; anything else is a RuntimeError.
fn to_py(error: anyhow::Error) -> PyErr {
    let message = format!("{error:#}");
    if gliznet::error::is_input_error(&error) {
        PyValueError::new_err(message)
    } else {
        PyRuntimeError::new_err(message)
    }
}

/// A zero-shot classifier: the built-in model or a model directory, on the CPU or a GPU.
#[pyclass(frozen, module = "gliznet._native")]
struct Classifier {
    inner: Inner,
}

/// One label list: names (`str`) or `{"label": …, "description": …}` dicts.
fn labels_of(value: &Bound<'_, PyAny>, place: &str) -> PyResult<Vec<Label>> {
    let list = value
        .cast::<PyList>()
        .map_err(|_| PyValueError::new_err(format!("{place}: expected a list of labels")))?;
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            if item.cast::<PyString>().is_ok() {
                return Ok(Label::Name(item.extract::<String>()?));
            }
            let described = item.cast::<PyDict>().ok().and_then(|d| {
                let label = d.get_item("label").ok()??.extract::<String>().ok()?;
                let description = d.get_item("description").ok()??.extract::<String>().ok()?;
                (d.len() == 2).then_some(Label::Described { label, description })
            });
            described.ok_or_else(|| {
                PyValueError::new_err(format!(
                    "{place}[{i}]: a label is a str or {{\"label\": str, \"description\": str}}"
                ))
            })
        })
        .collect()
}

/// The label sets of `texts`: one for all (labels a list of labels) or one per text (a list
/// of lists); with one for all, the list holds that one set.
fn label_sets(inner: &Inner, texts: usize, labels: &Bound<'_, PyAny>) -> PyResult<Vec<LabelSet>> {
    let list = labels
        .cast::<PyList>()
        .map_err(|_| PyValueError::new_err("labels: expected a list"))?;
    let per_text = !list.is_empty() && list.iter().all(|l| l.cast::<PyList>().is_ok());
    if !per_text {
        let shared = labels_of(labels, "labels")?;
        let set = inner
            .described_label_set(&shared)
            .map_err(|e| to_py(e.context("labels")))?;
        return Ok(vec![set]);
    }
    if list.len() != texts {
        return Err(PyValueError::new_err(format!(
            "labels: {} lists for {texts} texts (give one list for all texts, or one per text)",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, l)| {
            let place = format!("labels[{i}]");
            let labels = labels_of(&l, &place)?;
            inner
                .described_label_set(&labels)
                .map_err(|e| to_py(e.context(place)))
        })
        .collect()
}

/// Text `i`'s label set: the one for all texts, or its own.
fn set_of(sets: &[LabelSet], i: usize) -> &LabelSet {
    &sets[if sets.len() == 1 { 0 } else { i }]
}

impl Classifier {
    /// Checks every text and scores them all, without the GIL.
    fn score(
        &self,
        py: Python<'_>,
        texts: &[String],
        sets: &[LabelSet],
        mode: ScoreMode,
        batch_size: usize,
    ) -> PyResult<Vec<Vec<gliznet::scoring::LabelScore>>> {
        if batch_size == 0 {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        for (i, text) in texts.iter().enumerate() {
            self.inner
                .check_text(text)
                .map_err(|e| to_py(e.context(format!("texts[{i}]"))))?;
        }
        py.detach(|| {
            let items: Vec<(&str, &LabelSet)> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| (t.as_str(), set_of(sets, i)))
                .collect();
            self.inner
                .scores(&items, mode, Method::Gliznet, batch_size)
                .map(|results| results.into_iter().map(|r| r.scores).collect())
        })
        .map_err(to_py)
    }
}

#[pymethods]
impl Classifier {
    #[new]
    #[pyo3(signature = (model=None, device="auto", precision=None))]
    fn new(
        py: Python<'_>,
        model: Option<&str>,
        device: &str,
        precision: Option<&str>,
    ) -> PyResult<Self> {
        let precision = match precision {
            None => None,
            Some("f32") => Some(None),
            Some("bf16") => Some(Some(Quantization::Bf16)),
            Some("int8") => Some(Some(Quantization::Int8)),
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "precision {other:?}: expected \"f32\", \"bf16\", \"int8\" or None"
                )))
            }
        };
        let inner = py
            .detach(|| -> anyhow::Result<Inner> {
                let source = ModelSource::resolve(model)?;
                let (device, _) = gliznet::device::select(device)?;
                Inner::open(&source, device, precision)
            })
            .map_err(to_py)?;
        Ok(Self { inner })
    }

    /// The model's name, as `predict --format json` reports it.
    #[getter]
    fn model(&self) -> String {
        self.inner.loaded.name.clone()
    }

    /// The threshold used in multi-label mode when none is given.
    #[getter]
    fn default_threshold(&self) -> f32 {
        self.inner.default_threshold(Method::Gliznet)
    }

    #[pyo3(signature = (texts, labels, multi_label=true, threshold=None, batch_size=16))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        labels: &Bound<'py, PyAny>,
        multi_label: bool,
        threshold: Option<f32>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let mode = if multi_label {
            let threshold = threshold.unwrap_or_else(|| self.default_threshold());
            if !threshold.is_finite() {
                return Err(PyValueError::new_err("threshold must be a finite number"));
            }
            ScoreMode::MultiLabel { threshold }
        } else {
            if threshold.is_some() {
                return Err(PyValueError::new_err(
                    "threshold applies to multi_label=True only",
                ));
            }
            ScoreMode::SingleLabel
        };
        let sets = label_sets(&self.inner, texts.len(), labels)?;
        let scores = self.score(py, &texts, &sets, mode, batch_size)?;
        let model = self.model();
        let records = PyList::empty(py);
        for (i, (text, scores)) in texts.iter().zip(scores).enumerate() {
            let set = set_of(&sets, i);
            let labels = PyList::empty(py);
            for (name, score) in set.names.iter().zip(scores) {
                let entry = PyDict::new(py);
                entry.set_item("label", name)?;
                entry.set_item("score", score.score)?;
                entry.set_item("predicted", score.predicted)?;
                labels.append(entry)?;
            }
            let record = PyDict::new(py);
            record.set_item("text", text)?;
            record.set_item("labels", labels)?;
            record.set_item("model", &model)?;
            records.append(record)?;
        }
        Ok(records)
    }

    /// Sigmoid scores as a float32 array [texts, labels]; one label list for all texts.
    #[pyo3(signature = (texts, labels, batch_size=16))]
    fn scores<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        labels: &Bound<'py, PyAny>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let shared = labels_of(labels, "labels")?;
        let set = self
            .inner
            .described_label_set(&shared)
            .map_err(|e| to_py(e.context("labels")))?;
        let sets = [set];
        let mode = ScoreMode::MultiLabel {
            threshold: self.default_threshold(),
        };
        let scores = self.score(py, &texts, &sets, mode, batch_size)?;
        let width = shared.len();
        let flat: Vec<f32> = scores.into_iter().flatten().map(|s| s.score).collect();
        let array = numpy::ndarray::Array2::from_shape_vec((texts.len(), width), flat)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(array.to_pyarray(py))
    }

    fn __repr__(&self) -> String {
        format!("Classifier(model={:?})", self.model())
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Classifier>()?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
