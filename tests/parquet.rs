//! `predict` on Parquet, end to end with the built-in model: the output keeps every input
//! column in order and adds `scores` and `predicted`, row for row; the scores are those of the
//! same texts given as JSONL (in f32: in bf16 a text's scores move by up to about 1e-3 with the
//! padding of the batch it falls in, and the two inputs batch texts differently); bad tables are refused by name and leave no output behind.

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, BinaryArray, Int64Array, LargeStringArray, RecordBatch};
use arrow_array::{StringArray, StringViewArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

mod support;
use support::{assert_input_error, assert_success, run, s};

const LABELS: [&str; 3] = ["economy", "sports", "cooking"];

fn text(i: usize) -> String {
    let topics = [
        "The central bank raised interest rates again",
        "The striker scored twice in the cup final",
        "Knead the dough and let it rise for an hour",
    ];
    format!("{} ({i})", topics[i % topics.len()])
}

/// Writes `columns` as a Parquet file whose row groups hold `row_group_rows` rows.
fn write_table(path: &Path, columns: Vec<(&str, ArrayRef)>, row_group_rows: usize) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// The whole table as one batch (the reader fills a batch across row groups); a table with
/// no rows is its schema.
fn read_table(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = Arc::clone(builder.schema());
    let mut batches: Vec<RecordBatch> = builder
        .with_batch_size(1 << 20)
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(batches.len() <= 1);
    batches
        .pop()
        .unwrap_or_else(|| RecordBatch::new_empty(schema))
}

/// The JSONL records of `predict --input FILE.jsonl` for the same texts and labels: the
/// reference each Parquet row must match.
fn jsonl_reference(dir: &Path, texts: &[String], labels: Option<&[Vec<&str>]>) -> Vec<Value> {
    let path = dir.join("reference.jsonl");
    let body: String = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let line = match labels {
                Some(l) => json!({"text": t, "labels": l[i]}),
                None => json!({"text": t}),
            };
            format!("{line}\n")
        })
        .collect();
    std::fs::write(&path, body).unwrap();
    let joined = LABELS.join(",");
    let mut args = vec!["predict", "--f32", "--input", s(&path), "--format", "jsonl"];
    if labels.is_none() {
        args.extend(["--labels", &joined]);
    }
    let out = run(&args);
    assert_success(&out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn assert_rows_match(table: &RecordBatch, reference: &[Value]) {
    assert_eq!(table.num_rows(), reference.len());
    let scores = table.column_by_name("scores").unwrap().as_list::<i32>();
    let predicted = table.column_by_name("predicted").unwrap().as_list::<i32>();
    for (row, record) in reference.iter().enumerate() {
        let labels = record["labels"].as_array().unwrap();
        let got = scores.value(row);
        let got = got.as_primitive::<Float32Type>();
        assert_eq!(got.len(), labels.len(), "row {row}");
        for (j, label) in labels.iter().enumerate() {
            let want = label["score"].as_f64().unwrap();
            assert!(
                (f64::from(got.value(j)) - want).abs() <= 1e-6,
                "row {row} label {j}: {} vs {want}",
                got.value(j)
            );
        }
        let want_predicted: Vec<&str> = labels
            .iter()
            .filter(|l| l["predicted"].as_bool().unwrap())
            .map(|l| l["label"].as_str().unwrap())
            .collect();
        let got_predicted = predicted.value(row);
        let got_predicted: Vec<&str> = got_predicted.as_string::<i32>().iter().flatten().collect();
        assert_eq!(got_predicted, want_predicted, "row {row}");
    }
}

/// A `list<string>` column of each row's labels.
fn label_lists(lists: &[Vec<&str>]) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for list in lists {
        for label in list {
            builder.values().append_value(label);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

fn table_of(n: usize) -> (Vec<String>, Vec<(&'static str, ArrayRef)>) {
    let texts: Vec<String> = (0..n).map(text).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from_iter_values(0..n as i64))),
        ("text", Arc::new(StringArray::from_iter_values(&texts))),
        (
            "payload",
            Arc::new(BinaryArray::from_iter_values(
                (0..n).map(|i| vec![(i % 251) as u8; i % 7]),
            )),
        ),
    ];
    (texts, columns)
}

/// Row counts around the reader's record batch (256 rows) and the encoder's batch (16), with
/// row groups that do not line up with either.
#[test]
fn every_row_comes_back_with_its_columns_and_the_jsonl_scores() {
    let dir = TempDir::new().unwrap();
    for n in [0usize, 1, 15, 16, 17, 255, 256, 257, 600] {
        let (texts, columns) = table_of(n);
        let input = dir.path().join(format!("in-{n}.parquet"));
        write_table(&input, columns, 100);
        let output = dir.path().join(format!("out-{n}.parquet"));
        let out = run(&[
            "predict",
            "--f32",
            "--input",
            s(&input),
            "--labels",
            &LABELS.join(","),
            "--output",
            s(&output),
        ]);
        assert_success(&out);
        assert!(out.stdout.is_empty(), "n={n}: nothing on stdout");
        let table = read_table(&output);
        let names: Vec<&str> = table
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            ["id", "text", "payload", "scores", "predicted"],
            "n={n}"
        );
        assert_eq!(table.num_rows(), n);
        if n == 0 {
            continue;
        }
        let ids = table.column(0).as_primitive::<Int64Type>();
        assert!(
            ids.values().iter().copied().eq(0..n as i64),
            "n={n}: row order"
        );
        let payload = table.column(2).as_binary::<i32>();
        for i in 0..n {
            assert_eq!(payload.value(i), vec![(i % 251) as u8; i % 7].as_slice());
        }
        let got_texts: Vec<&str> = table
            .column(1)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(got_texts, texts);
        assert_rows_match(&table, &jsonl_reference(dir.path(), &texts, None));
    }
}

#[test]
fn a_labels_column_gives_each_row_its_own_labels() {
    let dir = TempDir::new().unwrap();
    let n = 40;
    let texts: Vec<String> = (0..n).map(text).collect();
    let lists: Vec<Vec<&str>> = (0..n)
        .map(|i| match i % 3 {
            0 => vec!["economy", "sports"],
            1 => vec!["sports", "weather", "cooking", "finance"],
            _ => vec!["cooking"],
        })
        .collect();
    // Large strings and string views are read as plain strings are.
    let input = dir.path().join("in.parquet");
    write_table(
        &input,
        vec![
            (
                "body",
                Arc::new(LargeStringArray::from_iter_values(&texts)) as ArrayRef,
            ),
            ("candidates", label_lists(&lists)),
            (
                "note",
                Arc::new(StringViewArray::from_iter_values(texts.iter().map(|_| "x"))),
            ),
        ],
        16,
    );
    let output = dir.path().join("out.parquet");
    let out = run(&[
        "predict",
        "--f32",
        "--input",
        s(&input),
        "--text-column",
        "body",
        "--labels-column",
        "candidates",
        "--output",
        s(&output),
    ]);
    assert_success(&out);
    let table = read_table(&output);
    assert_eq!(table.column(0).data_type(), &DataType::LargeUtf8);
    assert_rows_match(&table, &jsonl_reference(dir.path(), &texts, Some(&lists)));
}

/// The output keeps the input's row groups, and every input column chunk is copied byte for
/// byte (its compressed size is the input's) and reads back equal, whatever its type: nested,
/// dictionary-encoded, with a time zone, with nulls, in many small pages. The labels column
/// comes before the text column, the file's own key-value metadata is kept.
#[test]
fn the_input_s_row_groups_and_columns_are_copied_as_they_are() {
    use arrow_array::types::Int32Type;
    use arrow_array::{DictionaryArray, Float64Array, StructArray, TimestampMillisecondArray};
    use arrow_schema::Field;
    use parquet::file::metadata::KeyValue;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let dir = TempDir::new().unwrap();
    let n = 37;
    let texts: Vec<String> = (0..n).map(text).collect();
    let lists: Vec<Vec<&str>> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                vec!["economy", "cooking"]
            } else {
                vec!["sports", "economy", "weather"]
            }
        })
        .collect();
    let meta = StructArray::from(vec![
        (
            Arc::new(Field::new("a", DataType::Int64, false)),
            Arc::new(Int64Array::from_iter_values(0..n as i64)) as ArrayRef,
        ),
        (
            Arc::new(Field::new("b", DataType::Utf8, true)),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 4 != 0).then(|| format!("b{i}"))),
            )) as ArrayRef,
        ),
    ]);
    let tags: DictionaryArray<Int32Type> =
        (0..n).map(|i| ["red", "green", "blue"][i % 3]).collect();
    let stamps =
        TimestampMillisecondArray::from_iter_values((0..n as i64).map(|i| 1_700_000_000_000 + i))
            .with_timezone("Europe/Paris");
    let weights = Float64Array::from_iter((0..n).map(|i| (i % 5 != 0).then_some(i as f64 / 3.0)));
    let batch = RecordBatch::try_from_iter(vec![
        ("candidates", label_lists(&lists)),
        ("meta", Arc::new(meta)),
        ("text", Arc::new(StringArray::from_iter_values(&texts))),
        ("tags", Arc::new(tags)),
        ("stamp", Arc::new(stamps)),
        ("weight", Arc::new(weights)),
    ])
    .unwrap();
    let input = dir.path().join("in.parquet");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(10))
        .set_data_page_row_count_limit(3)
        .set_write_batch_size(3)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "owner".into(),
            "gliznet-test".to_string(),
        )]))
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&input).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let output = dir.path().join("out.parquet");
    let out = run(&[
        "predict",
        "--f32",
        "--input",
        s(&input),
        "--labels-column",
        "candidates",
        "--output",
        s(&output),
    ]);
    assert_success(&out);

    let footer = |path: &Path| {
        SerializedFileReader::new(std::fs::File::open(path).unwrap())
            .unwrap()
            .metadata()
            .clone()
    };
    let (before, after) = (footer(&input), footer(&output));
    assert_eq!(before.num_row_groups(), 4);
    assert_eq!(after.num_row_groups(), before.num_row_groups());
    for (g, (a, b)) in before
        .row_groups()
        .iter()
        .zip(after.row_groups())
        .enumerate()
    {
        assert_eq!(b.num_rows(), a.num_rows(), "row group {g}");
        assert_eq!(b.num_columns(), a.num_columns() + 2, "row group {g}");
        for (c, (x, y)) in a.columns().iter().zip(b.columns()).enumerate() {
            assert_eq!(y.column_path(), x.column_path(), "row group {g} column {c}");
            assert_eq!(
                y.compressed_size(),
                x.compressed_size(),
                "row group {g} column {c}"
            );
            assert_eq!(y.num_values(), x.num_values(), "row group {g} column {c}");
        }
    }
    let kv = after.file_metadata().key_value_metadata().unwrap();
    assert!(kv
        .iter()
        .any(|p| p.key == "owner" && p.value.as_deref() == Some("gliznet-test")));

    let table = read_table(&output);
    assert_eq!(table.num_columns(), batch.num_columns() + 2);
    for (c, field) in batch.schema().fields().iter().enumerate() {
        assert_eq!(table.schema().field(c), field.as_ref(), "column {c}");
        assert_eq!(
            table.column(c).as_ref(),
            batch.column(c).as_ref(),
            "column {}",
            field.name()
        );
    }
    assert_rows_match(&table, &jsonl_reference(dir.path(), &texts, Some(&lists)));
}

#[test]
fn parquet_input_to_standard_output_is_the_jsonl_input_s_output() {
    let dir = TempDir::new().unwrap();
    let (texts, columns) = table_of(20);
    let input = dir.path().join("in.parquet");
    write_table(&input, columns, 7);
    let out = run(&[
        "predict",
        "--f32",
        "--input",
        s(&input),
        "--labels",
        &LABELS.join(","),
        "--format",
        "jsonl",
    ]);
    assert_success(&out);
    let got: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, jsonl_reference(dir.path(), &texts, None));
}

/// Errors name the file, the row and the column, exit 2, and leave no output file.
#[test]
fn bad_tables_are_refused_by_name_and_leave_no_output() {
    let dir = TempDir::new().unwrap();
    let output = dir.path().join("out.parquet");
    let labels = LABELS.join(",");
    let predict = |input: &PathBuf, extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--input",
            s(input),
            "--labels",
            &labels,
            "--output",
            s(&output),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };

    let (_, columns) = table_of(5);
    let plain = dir.path().join("plain.parquet");
    write_table(&plain, columns, 5);
    assert_input_error(
        &predict(&plain, &["--text-column", "body"]),
        &[
            "plain.parquet",
            "no column \"body\"",
            "--text-column",
            "id, text, payload",
        ],
    );
    assert_input_error(
        &predict(&plain, &["--text-column", "id"]),
        &["column \"id\"", "Int64", "not strings"],
    );

    // A null text deep in the second record batch: named, and nothing written.
    let n = 300;
    let texts: Vec<Option<String>> = (0..n).map(|i| (i != 290).then(|| text(i))).collect();
    let with_null = dir.path().join("null.parquet");
    write_table(
        &with_null,
        vec![("text", Arc::new(StringArray::from(texts)) as ArrayRef)],
        64,
    );
    assert_input_error(
        &predict(&with_null, &[]),
        &["null.parquet", "row 290", "column \"text\"", "null"],
    );
    assert!(!output.exists(), "a failed run leaves no output");

    let taken = dir.path().join("taken.parquet");
    write_table(
        &taken,
        vec![
            (
                "text",
                Arc::new(StringArray::from(vec!["a b c"])) as ArrayRef,
            ),
            ("scores", Arc::new(Int64Array::from(vec![1]))),
        ],
        1,
    );
    assert_input_error(&predict(&taken, &[]), &["already has a column \"scores\""]);

    let not_parquet = dir.path().join("text.parquet");
    std::fs::write(&not_parquet, "{\"text\": \"hello\"}\n").unwrap();
    assert_input_error(
        &predict(&not_parquet, &[]),
        &["text.parquet", "not a readable Parquet file"],
    );
    assert!(!output.exists());

    // Parquet's flags need a Parquet input.
    let jsonl = dir.path().join("in.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"hello\"}\n").unwrap();
    assert_input_error(
        &predict(&jsonl, &[]),
        &["--output FILE.parquet", "Parquet input"],
    );
    let out = run(&[
        "predict",
        "--input",
        s(&jsonl),
        "--labels",
        &labels,
        "--text-column",
        "t",
    ]);
    assert_input_error(&out, &["--text-column", "Parquet input"]);
    // Labels from nowhere.
    let out = run(&["predict", "--input", s(&plain), "--output", s(&output)]);
    assert_input_error(&out, &["--labels-column"]);
    // The output may not be the input.
    let out = run(&[
        "predict",
        "--input",
        s(&plain),
        "--labels",
        &labels,
        "--output",
        s(&plain),
    ]);
    assert_input_error(&out, &["same file"]);
}

/// `--output` that is not Parquet takes `--format`, written whole.
#[test]
fn a_jsonl_output_file_holds_what_standard_output_would() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"The bank raised rates\"}\n{\"text\": \"A goal\"}\n",
    )
    .unwrap();
    let output = dir.path().join("out.jsonl");
    let labels = LABELS.join(",");
    let base = [
        "predict",
        "--input",
        s(&input),
        "--labels",
        &labels,
        "--format",
        "jsonl",
    ];
    let to_stdout = run(&base);
    assert_success(&to_stdout);
    let mut args = base.to_vec();
    args.extend(["--output", s(&output)]);
    let to_file = run(&args);
    assert_success(&to_file);
    assert!(to_file.stdout.is_empty());
    assert_eq!(std::fs::read(&output).unwrap(), to_stdout.stdout);
}
