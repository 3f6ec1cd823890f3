//! Streaming JSONL reading. Lines are read one at a time (memory does not grow with the file),
//! blank lines are skipped, and every error names the source and the 1-based line number.

use crate::error::input_error;
use anyhow::Result;
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::marker::PhantomData;
use std::path::Path;

pub struct JsonlReader<T> {
    source: String,
    reader: Box<dyn BufRead>,
    line_number: usize,
    bytes_read: u64,
    buffer: Vec<u8>,
    _record: PhantomData<T>,
}

impl<T: DeserializeOwned> JsonlReader<T> {
    /// Opens a file, or standard input when `path` is `-`.
    pub fn open(path: &Path) -> Result<Self> {
        if path.as_os_str() == "-" {
            return Ok(Self::new("<stdin>", Box::new(std::io::stdin().lock())));
        }
        let file = File::open(path)
            .map_err(|e| input_error(format!("cannot open {}: {e}", path.display())))?;
        Ok(Self::new(
            path.display().to_string(),
            Box::new(BufReader::new(file)),
        ))
    }

    pub fn new(source: impl Into<String>, reader: Box<dyn BufRead>) -> Self {
        Self {
            source: source.into(),
            reader,
            line_number: 0,
            bytes_read: 0,
            buffer: Vec::new(),
            _record: PhantomData,
        }
    }

    pub fn from_reader(source: impl Into<String>, reader: impl Read + 'static) -> Self {
        Self::new(source, Box::new(BufReader::new(reader)))
    }

    /// Bytes consumed so far (for progress reporting).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// A `source:line` prefix for error messages about the record returned last.
    pub fn location(&self, line_number: usize) -> String {
        format!("{}:{}", self.source, line_number)
    }

    fn next_record(&mut self) -> Result<Option<(usize, T)>> {
        loop {
            self.buffer.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buffer)
                .map_err(|e| input_error(format!("cannot read {}: {e}", self.source)))?;
            if n == 0 {
                return Ok(None);
            }
            self.line_number += 1;
            self.bytes_read += n as u64;
            let line = std::str::from_utf8(&self.buffer).map_err(|_| {
                input_error(format!(
                    "{}: not valid UTF-8",
                    self.location(self.line_number)
                ))
            })?;
            // A byte-order mark (as some editors write) is not part of the first record.
            let line = if self.line_number == 1 {
                line.strip_prefix('\u{feff}').unwrap_or(line)
            } else {
                line
            };
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(line).map_err(|e| {
                input_error(format!(
                    "{}: invalid record: {e}",
                    self.location(self.line_number)
                ))
            })?;
            return Ok(Some((self.line_number, record)));
        }
    }
}

impl<T: DeserializeOwned> Iterator for JsonlReader<T> {
    type Item = Result<(usize, T)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Row {
        text: String,
    }

    fn read(bytes: &'static [u8]) -> Vec<Result<(usize, Row)>> {
        JsonlReader::from_reader("test.jsonl", bytes).collect()
    }

    #[test]
    fn reads_records_skipping_blank_lines_with_line_numbers() {
        let rows: Vec<(usize, Row)> = read(b"{\"text\":\"a\"}\n\n  \n{\"text\":\"b\"}")
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows[0], (1, Row { text: "a".into() }));
        assert_eq!(rows[1], (4, Row { text: "b".into() }));
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let rows = read(b"{\"text\":\"a\"}\nnot json\n");
        assert!(rows[0].is_ok());
        let err = rows[1].as_ref().unwrap_err().to_string();
        assert!(err.starts_with("test.jsonl:2: invalid record"), "{err}");
        let rows = read(b"{\"txt\":\"a\"}\n");
        let err = rows[0].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("test.jsonl:1") && err.contains("text"),
            "{err}"
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let rows = read("\u{feff}{\"text\":\"a\"}\n{\"text\":\"b\"}\n".as_bytes());
        assert_eq!(rows[0].as_ref().unwrap().1.text, "a");
        assert_eq!(rows[1].as_ref().unwrap().1.text, "b");
    }

    #[test]
    fn non_utf8_line_names_file_and_line() {
        let rows = read(b"{\"text\":\"a\"}\n{\"text\":\"\xff\xfe\"}\n");
        let err = rows[1].as_ref().unwrap_err().to_string();
        assert_eq!(err, "test.jsonl:2: not valid UTF-8");
    }
}
