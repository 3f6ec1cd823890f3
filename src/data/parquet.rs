//! Parquet tables in and out: texts (and per-row label lists) read from named columns, a record
//! batch at a time, and the same rows written back with two columns added, `scores` (one float
//! per label, in the labels' order) and `predicted` (the names of the predicted labels).
//! Memory stays bounded by the batch size and the output's row-group size, whatever the file's.

use crate::error::input_error;
use anyhow::{Context, Result};
use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// The column of scores added to the output, one float per label in the labels' order.
pub const SCORES_COLUMN: &str = "scores";
/// The column of predicted label names added to the output.
pub const PREDICTED_COLUMN: &str = "predicted";

/// Row groups written are cut at this many encoded bytes, so that the writer's buffer stays
/// bounded whatever the input's row groups.
const MAX_ROW_GROUP_BYTES: usize = 64 << 20;
/// Values written between checks of a page's size: with the default (1,024), rows of 100 KB
/// would make pages of 100 MB, which every reader must then hold whole.
const PAGE_CHECK_ROWS: usize = 32;

/// Whether a path names a Parquet file (by its extension, in any case).
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// A Parquet file read a record batch at a time, with the columns that hold the texts and,
/// optionally, each row's labels.
pub struct ParquetRows {
    source: String,
    reader: ParquetRecordBatchReader,
    schema: SchemaRef,
    text_column: (usize, String),
    labels_column: Option<(usize, String)>,
    total_rows: u64,
    rows_read: u64,
}

/// One record batch and the row number (from 0, in the whole file) of its first row.
pub struct RowBatch {
    pub batch: RecordBatch,
    pub first_row: u64,
}

impl ParquetRows {
    /// Opens `path` and checks that the named columns exist with a type that holds text (a
    /// string column; a list of strings for the labels).
    pub fn open(
        path: &Path,
        text_column: &str,
        labels_column: Option<&str>,
        batch_rows: usize,
    ) -> Result<Self> {
        let source = path.display().to_string();
        let file =
            File::open(path).map_err(|e| input_error(format!("cannot open {source}: {e}")))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| input_error(format!("{source} is not a readable Parquet file: {e}")))?;
        let total_rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let schema = Arc::clone(builder.schema());
        let text = find_column(&schema, &source, text_column, "--text-column")?;
        if !is_string(schema.field(text).data_type()) {
            return Err(input_error(format!(
                "{source}: column \"{text_column}\" (--text-column) holds {}, not strings",
                schema.field(text).data_type()
            )));
        }
        let labels = match labels_column {
            Some(name) => {
                let index = find_column(&schema, &source, name, "--labels-column")?;
                if !is_string_list(schema.field(index).data_type()) {
                    return Err(input_error(format!(
                        "{source}: column \"{name}\" (--labels-column) holds {}, not lists of \
                         strings",
                        schema.field(index).data_type()
                    )));
                }
                Some((index, name.to_string()))
            }
            None => None,
        };
        for added in [SCORES_COLUMN, PREDICTED_COLUMN] {
            if schema.index_of(added).is_ok() {
                return Err(input_error(format!(
                    "{source} already has a column \"{added}\", which the output adds; rename \
                     it first"
                )));
            }
        }
        let reader = builder
            .with_batch_size(batch_rows.max(1))
            .build()
            .with_context(|| format!("cannot read {source}"))?;
        Ok(Self {
            source,
            reader,
            schema,
            text_column: (text, text_column.to_string()),
            labels_column: labels,
            total_rows,
            rows_read: 0,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Rows in the file, as its footer says.
    pub fn total_rows(&self) -> u64 {
        self.total_rows
    }

    pub fn next_batch(&mut self) -> Option<Result<RowBatch>> {
        let batch = self.reader.next()?;
        let first_row = self.rows_read;
        Some(match batch {
            Ok(batch) => {
                self.rows_read += batch.num_rows() as u64;
                Ok(RowBatch { batch, first_row })
            }
            Err(e) => Err(input_error(format!(
                "cannot read {} after row {first_row}: {e}",
                self.source
            ))),
        })
    }

    pub fn text_column_name(&self) -> &str {
        &self.text_column.1
    }

    pub fn labels_column_name(&self) -> Option<&str> {
        self.labels_column.as_ref().map(|(_, name)| name.as_str())
    }

    /// Where a row is, for messages: the file, the row (from 0) and the column.
    pub fn location(&self, row: u64, column: &str) -> String {
        format!("{}, row {row}, column \"{column}\"", self.source)
    }

    /// The texts of a batch; a null text is an error that names its row.
    pub fn texts(&self, rows: &RowBatch) -> Result<Vec<String>> {
        let (index, name) = &self.text_column;
        let column = rows.batch.column(*index);
        (0..column.len())
            .map(|i| {
                string_at(column.as_ref(), i)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        input_error(format!(
                            "{}: the text is null",
                            self.location(rows.first_row + i as u64, name)
                        ))
                    })
            })
            .collect()
    }

    /// Each row's labels, when a labels column was named; a null list or a null label is an
    /// error that names its row.
    pub fn label_lists(&self, rows: &RowBatch) -> Result<Option<Vec<Vec<String>>>> {
        let Some((index, name)) = &self.labels_column else {
            return Ok(None);
        };
        let column = rows.batch.column(*index);
        let lists: Vec<Option<ArrayRef>> = match column.data_type() {
            DataType::List(_) => column.as_list::<i32>().iter().collect(),
            DataType::LargeList(_) => column.as_list::<i64>().iter().collect(),
            other => unreachable!("checked at open: {other}"),
        };
        lists
            .into_iter()
            .enumerate()
            .map(|(i, list)| {
                let location = || self.location(rows.first_row + i as u64, name);
                let list =
                    list.ok_or_else(|| input_error(format!("{}: the list is null", location())))?;
                (0..list.len())
                    .map(|j| {
                        string_at(list.as_ref(), j)
                            .map(str::to_string)
                            .ok_or_else(|| {
                                input_error(format!("{}: label {} is null", location(), j + 1))
                            })
                    })
                    .collect()
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

fn find_column(schema: &Schema, source: &str, name: &str, flag: &str) -> Result<usize> {
    schema.index_of(name).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        input_error(format!(
            "{source} has no column \"{name}\" ({flag}); its columns: {}",
            names.join(", ")
        ))
    })
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_string_list(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(item) | DataType::LargeList(item) => is_string(item.data_type()),
        _ => false,
    }
}

/// The string at `i` of a string array of any offset width; `None` when it is null.
fn string_at(array: &dyn Array, i: usize) -> Option<&str> {
    if array.is_null(i) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(array.as_string_view().value(i)),
        _ => None,
    }
}

/// The input's schema with `scores` and `predicted` added after its columns.
pub fn scored_schema(input: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        SCORES_COLUMN,
        DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
        false,
    )));
    fields.push(Arc::new(Field::new(
        PREDICTED_COLUMN,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        false,
    )));
    Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
}

/// Writes record batches with their scores added as columns.
pub struct ScoredWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
}

/// One row's result: a score per label, and the labels predicted.
pub struct RowScores<'a> {
    pub scores: Vec<f32>,
    pub predicted: Vec<&'a str>,
}

impl<W: Write + Send> ScoredWriter<W> {
    pub fn new(out: W, input: &Schema) -> Result<Self> {
        let schema = scored_schema(input);
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES))
            .set_write_batch_size(PAGE_CHECK_ROWS)
            .build();
        let writer = ArrowWriter::try_new(out, Arc::clone(&schema), Some(properties))?;
        Ok(Self { writer, schema })
    }

    /// Writes `batch` with one result per row.
    pub fn write(&mut self, batch: &RecordBatch, results: &[RowScores]) -> Result<()> {
        assert_eq!(batch.num_rows(), results.len(), "one result per row");
        let mut scores = ListBuilder::new(Float32Builder::new());
        let mut predicted = ListBuilder::new(StringBuilder::new());
        for row in results {
            scores.values().append_slice(&row.scores);
            scores.append(true);
            for name in &row.predicted {
                predicted.values().append_value(name);
            }
            predicted.append(true);
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(scores.finish()));
        columns.push(Arc::new(predicted.finish()));
        let out = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.writer.write(&out)?;
        Ok(())
    }

    /// Writes the footer; the output is complete only after this.
    pub fn finish(self) -> Result<()> {
        self.writer.close()?;
        Ok(())
    }
}
