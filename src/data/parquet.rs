//! Parquet tables in and out: texts (and per-row label lists) read from named columns, a record
//! batch at a time, and the same rows written back with two columns added, `scores` (one float
//! per label, in the labels' order) and `predicted` (the names of the predicted labels). The
//! other columns are copied as they are encoded, never decoded, so memory stays bounded by a
//! batch of texts, whatever the file's other columns, pages and row groups hold.

use crate::error::input_error;
use anyhow::{Context, Result};
use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter, ProjectionMask};
use parquet::basic::Compression;
use parquet::column::page_store::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{Type, TypePtr};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

/// The column of scores added to the output, one float per label in the labels' order.
pub const SCORES_COLUMN: &str = "scores";
/// The column of predicted label names added to the output.
pub const PREDICTED_COLUMN: &str = "predicted";

/// Values written between checks of a page's size: with the default (1,024), rows of 100 KB
/// would make pages of 100 MB, which every reader must then hold whole.
const PAGE_CHECK_ROWS: usize = 32;

/// Whether a path names a Parquet file (by its extension, in any case).
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// A Parquet file's texts (and per-row label lists) read a row group at a time, a record batch
/// at a time, only the named columns decoded: the other columns are never read here (the
/// scored output copies them as they are encoded, see [`ScoredCopy`]).
pub struct ParquetRows {
    source: String,
    file: File,
    metadata: ArrowReaderMetadata,
    projection: ProjectionMask,
    text_column: (usize, String),
    labels_column: Option<(usize, String)>,
    batch_rows: usize,
}

/// One record batch of the projected columns and the row number (from 0, in the whole file) of
/// its first row.
pub struct RowBatch {
    pub batch: RecordBatch,
    pub first_row: u64,
}

/// The record batches of one row group.
pub struct RowGroupBatches<'a> {
    rows: &'a ParquetRows,
    reader: ParquetRecordBatchReader,
    next_row: u64,
}

impl Iterator for RowGroupBatches<'_> {
    type Item = Result<RowBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let first_row = self.next_row;
        Some(match self.reader.next()? {
            Ok(batch) => {
                self.next_row += batch.num_rows() as u64;
                Ok(RowBatch { batch, first_row })
            }
            Err(e) => Err(input_error(format!(
                "cannot read {} after row {first_row}: {e}",
                self.rows.source
            ))),
        })
    }
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
        let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
            .map_err(|e| input_error(format!("{source} is not a readable Parquet file: {e}")))?;
        let schema = metadata.schema();
        let text = find_column(schema, &source, text_column, "--text-column")?;
        if !is_string(schema.field(text).data_type()) {
            return Err(input_error(format!(
                "{source}: column \"{text_column}\" (--text-column) holds {}, not strings",
                schema.field(text).data_type()
            )));
        }
        let labels = match labels_column {
            Some(name) => {
                let index = find_column(schema, &source, name, "--labels-column")?;
                if !is_string_list(schema.field(index).data_type()) {
                    return Err(input_error(format!(
                        "{source}: column \"{name}\" (--labels-column) holds {}, not lists of \
                         strings",
                        schema.field(index).data_type()
                    )));
                }
                Some(index)
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
        let mut roots = vec![text];
        roots.extend(labels);
        let projection = ProjectionMask::roots(metadata.parquet_schema(), roots);
        // Columns of a projected batch keep the file's order.
        let (text_at, labels_at) = match labels {
            Some(l) if l < text => (1, Some(0)),
            Some(_) => (0, Some(1)),
            None => (0, None),
        };
        Ok(Self {
            source,
            file,
            metadata,
            projection,
            text_column: (text_at, text_column.to_string()),
            labels_column: labels_at.map(|at| (at, labels_column.unwrap_or("").to_string())),
            batch_rows: batch_rows.max(1),
        })
    }

    /// The file's columns, as Arrow reads them.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(self.metadata.schema())
    }

    /// Rows in the file, as its footer says.
    pub fn total_rows(&self) -> u64 {
        u64::try_from(self.metadata.metadata().file_metadata().num_rows()).unwrap_or(0)
    }

    pub fn row_groups(&self) -> usize {
        self.metadata.metadata().num_row_groups()
    }

    /// The batches of row group `index`.
    pub fn row_group(&self, index: usize) -> Result<RowGroupBatches<'_>> {
        let first_row = self.metadata.metadata().row_groups()[..index]
            .iter()
            .map(|g| u64::try_from(g.num_rows()).unwrap_or(0))
            .sum();
        let file = self
            .file
            .try_clone()
            .with_context(|| format!("cannot read {}", self.source))?;
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
                .with_row_groups(vec![index])
                .with_projection(self.projection.clone())
                .with_batch_size(self.batch_rows)
                .build()
                .map_err(|e| input_error(format!("cannot read {}: {e}", self.source)))?;
        Ok(RowGroupBatches {
            rows: self,
            reader,
            next_row: first_row,
        })
    }

    /// Every batch of the file, row group after row group.
    pub fn batches(&self) -> impl Iterator<Item = Result<RowBatch>> + '_ {
        (0..self.row_groups()).flat_map(move |g| match self.row_group(g) {
            Ok(batches) => Box::new(batches) as Box<dyn Iterator<Item = Result<RowBatch>>>,
            Err(e) => Box::new(std::iter::once(Err(e))),
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

/// The two columns the output adds: `scores` and `predicted`.
fn added_fields() -> [Arc<Field>; 2] {
    [
        Arc::new(Field::new(
            SCORES_COLUMN,
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            false,
        )),
        Arc::new(Field::new(
            PREDICTED_COLUMN,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        )),
    ]
}

/// The input's schema with `scores` and `predicted` added after its columns.
fn scored_schema(input: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
    fields.extend(added_fields());
    Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
}

/// One row's result: a score per label, and the labels predicted.
pub struct RowScores<'a> {
    pub scores: Vec<f32>,
    pub predicted: Vec<&'a str>,
}

/// A Parquet input written back with `scores` and `predicted` added. The input's row groups
/// are kept: each of its column chunks is copied as it is encoded, without being decoded, and
/// only the two new columns are encoded, their pages spilled to an unnamed temporary file
/// until their row group is complete. Memory so stays bounded by a batch and a page whatever
/// the input's page and row-group sizes.
pub struct ScoredCopy<W: Write + Send> {
    source: String,
    input: File,
    input_metadata: Arc<ParquetMetaData>,
    writer: SerializedFileWriter<W>,
    added: ArrowRowGroupWriterFactory,
}

/// The new columns of one row group, written a batch at a time.
pub struct RowGroupScores {
    index: usize,
    writers: Vec<ArrowColumnWriter>,
    rows: u64,
}

impl RowGroupScores {
    /// Adds one result per row, in the rows' order.
    pub fn write(&mut self, results: &[RowScores]) -> Result<()> {
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
        let arrays: [ArrayRef; 2] = [Arc::new(scores.finish()), Arc::new(predicted.finish())];
        // Each added column is a list of primitives: one leaf, one writer.
        for ((field, array), writer) in added_fields().iter().zip(&arrays).zip(&mut self.writers) {
            for leaf in compute_leaves(field, array)? {
                writer.write(&leaf)?;
            }
        }
        self.rows += results.len() as u64;
        Ok(())
    }
}

impl<W: Write + Send> ScoredCopy<W> {
    pub fn new(out: W, rows: &ParquetRows) -> Result<Self> {
        let input_metadata = Arc::clone(rows.metadata.metadata());
        let mut properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_write_batch_size(PAGE_CHECK_ROWS)
            .set_key_value_metadata(input_metadata.file_metadata().key_value_metadata().map(
                |pairs| {
                    pairs
                        .iter()
                        .filter(|kv| kv.key != parquet::arrow::ARROW_SCHEMA_META_KEY)
                        .cloned()
                        .collect()
                },
            ))
            .build();
        add_encoded_arrow_schema_to_metadata(&scored_schema(&rows.schema()), &mut properties);
        let properties = Arc::new(properties);

        // The added columns' Parquet types, and writers for them alone, come from a file
        // writer of their own schema (its bytes go nowhere); their column descriptors equal
        // those of the same fields in the output's schema.
        let added_schema = Arc::new(Schema::new(added_fields().to_vec()));
        let added_parquet = ArrowSchemaConverter::new().convert(&added_schema)?;
        let added_writer = SerializedFileWriter::new(
            std::io::sink(),
            added_parquet.root_schema_ptr(),
            Arc::clone(&properties),
        )?;
        let added = ArrowRowGroupWriterFactory::try_new(&added_writer, added_schema)?
            .with_page_store_factory(Arc::new(SpillFactory));

        let input_root = input_metadata.file_metadata().schema();
        let mut fields: Vec<TypePtr> = input_root.get_fields().to_vec();
        fields.extend(added_parquet.root_schema().get_fields().iter().cloned());
        let root = Type::group_type_builder(input_root.name())
            .with_fields(fields)
            .build()?;
        let writer = SerializedFileWriter::new(out, Arc::new(root), properties)?;
        let input = rows
            .file
            .try_clone()
            .with_context(|| format!("cannot read {}", rows.source))?;
        Ok(Self {
            source: rows.source.clone(),
            input,
            input_metadata,
            writer,
            added,
        })
    }

    /// The writers of row group `index`'s new columns.
    pub fn row_group(&self, index: usize) -> Result<RowGroupScores> {
        Ok(RowGroupScores {
            index,
            writers: self.added.create_column_writers(index)?,
            rows: 0,
        })
    }

    /// Writes row group `scores.index`: the input's column chunks as they are, then the new
    /// columns, which must hold one value per row.
    pub fn write_row_group(&mut self, scores: RowGroupScores) -> Result<()> {
        let group = self.input_metadata.row_group(scores.index);
        let rows = u64::try_from(group.num_rows()).unwrap_or(0);
        anyhow::ensure!(
            scores.rows == rows,
            "row group {} of {}: {} results for {rows} rows",
            scores.index,
            self.source,
            scores.rows
        );
        let mut out = self.writer.next_row_group()?;
        for column in group.columns() {
            let copied = ColumnCloseResult {
                bytes_written: u64::try_from(column.compressed_size()).unwrap_or(0),
                rows_written: rows,
                metadata: column.clone(),
                bloom_filter: None,
                column_index: None,
                offset_index: None,
            };
            out.append_column(&self.input, copied)
                .with_context(|| format!("cannot copy a column of {}", self.source))?;
        }
        for writer in scores.writers {
            writer.close()?.append_to_row_group(&mut out)?;
        }
        out.close()?;
        Ok(())
    }

    /// Writes the footer; the output is complete only after this.
    pub fn finish(self) -> Result<()> {
        self.writer.close()?;
        Ok(())
    }
}

/// Pages of the added columns kept in an unnamed temporary file (removed when closed) until
/// their row group is written: a row group of a million rows at K = 50 is 200 MB of scores.
#[derive(Debug)]
struct SpillFactory;

impl PageStoreFactory for SpillFactory {
    fn create(&self, _args: &PageStoreArgs<'_>) -> parquet::errors::Result<Box<dyn PageStore>> {
        let file = tempfile::tempfile().map_err(|e| {
            parquet::errors::ParquetError::General(format!("cannot make a temporary file: {e}"))
        })?;
        Ok(Box::new(SpilledPages {
            file,
            pages: Vec::new(),
            end: 0,
        }))
    }
}

struct SpilledPages {
    file: File,
    /// Each page's offset and length in `file`.
    pages: Vec<(u64, usize)>,
    end: u64,
}

impl PageStore for SpilledPages {
    fn put(&mut self, value: Bytes) -> parquet::errors::Result<PageKey> {
        self.file.seek(SeekFrom::Start(self.end))?;
        self.file.write_all(&value)?;
        self.pages.push((self.end, value.len()));
        self.end += value.len() as u64;
        Ok(PageKey::new(self.pages.len() as u64 - 1))
    }

    fn take(&mut self, key: PageKey) -> parquet::errors::Result<Bytes> {
        let &(offset, len) = usize::try_from(key.get())
            .ok()
            .and_then(|i| self.pages.get(i))
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!("no page {}", key.get()))
            })?;
        let mut page = vec![0; len];
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(&mut page)?;
        Ok(Bytes::from(page))
    }
}
