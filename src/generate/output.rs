//! The resumable output file. Every line is written whole (one `write` of the line and its
//! newline, then flushed), so an interrupted run leaves complete lines only. An existing file
//! is continued: its lines are counted and their texts remembered (for the near-duplicate
//! check), and the next request number follows the highest one in it. A file whose lines are
//! not generated examples is refused rather than appended to. The file is locked while a run
//! writes it.

use super::qc::Dedup;
use super::record::Record;
use crate::error::input_error;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What was in the file before this run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// Examples already there.
    pub examples: usize,
    /// The request number to continue from.
    pub next_attempt: u64,
    /// Bytes of an incomplete last line that were cut off (left by a crash).
    pub cut_bytes: u64,
    /// The last line is a whole example without its newline (edited by hand).
    needs_newline: bool,
}

pub struct OutputFile {
    file: File,
    path: PathBuf,
}

impl OutputFile {
    /// Opens `path` to continue it (or creates it); with `replace`, an existing file is
    /// emptied first. Texts already there go into `dedup`.
    pub fn open(path: &Path, replace: bool, dedup: &mut Dedup) -> Result<(Self, Existing)> {
        if crate::files::standard_stream(path).is_some() {
            return Err(input_error(format!(
                "{} is a standard stream; the output is read back and continued on the next \
                 run, so it must be a file",
                path.display()
            )));
        }
        let target = crate::files::destination(path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&target)
            .map_err(|e| input_error(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(input_error(format!(
                    "{} is being written by another gliznet process",
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        if replace {
            file.set_len(0)
                .with_context(|| format!("cannot empty {}", path.display()))?;
        }
        let existing = scan(&file, path, dedup)?;
        if existing.cut_bytes > 0 {
            let len = file.metadata()?.len();
            file.set_len(len - existing.cut_bytes).with_context(|| {
                format!("cannot cut the incomplete last line of {}", path.display())
            })?;
        }
        file.seek(SeekFrom::End(0))?;
        if existing.needs_newline {
            file.write_all(b"\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
            },
            existing,
        ))
    }

    /// Appends one record as one line, in one write, and flushes it to the file.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Flushes the file to disk.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

fn scan(file: &File, path: &Path, dedup: &mut Dedup) -> Result<Existing> {
    let mut reader = BufReader::new(file);
    let mut existing = Existing::default();
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        number += 1;
        let complete = line.ends_with(b"\n");
        let parsed = std::str::from_utf8(&line)
            .ok()
            .and_then(|s| serde_json::from_str::<Record>(s.trim()).ok());
        match parsed {
            Some(record) => {
                dedup.insert(&record.text);
                existing.examples += 1;
                existing.next_attempt = existing.next_attempt.max(record.attempt + 1);
                existing.needs_newline = !complete;
            }
            // An incomplete last line of ours: what a crash mid-write leaves. It is cut off.
            _ if !complete && line.starts_with(b"{\"text\":") => existing.cut_bytes = n as u64,
            _ if line.iter().all(|b| b.is_ascii_whitespace()) => {
                return Err(input_error(format!(
                    "{}:{number}: a blank line; this file was not written by gliznet generate \
                     (choose another output, or replace it)",
                    path.display()
                )))
            }
            _ => {
                return Err(input_error(format!(
                    "{}:{number}: not a generated example (text, labels, not_labels, domain, \
                     length, style, model, prompt, attempt); refusing to append to it (choose \
                     another output, or replace it)",
                    path.display()
                )))
            }
        }
    }
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str, attempt: u64) -> Record {
        Record {
            text: text.into(),
            labels: vec!["a".into()],
            not_labels: vec!["b".into()],
            domain: "d".into(),
            length: "short".into(),
            style: "s".into(),
            model: "m".into(),
            prompt: "p".into(),
            attempt,
        }
    }

    #[test]
    fn continues_cuts_a_torn_line_and_refuses_foreign_files() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut dedup = Dedup::default();
        {
            let (mut out, existing) = OutputFile::open(&path, false, &mut dedup).unwrap();
            assert_eq!(existing, Existing::default());
            out.append(&record("one", 0)).unwrap();
            out.append(&record("two", 3)).unwrap();
            // A second writer is refused while the first holds the file.
            let err = OutputFile::open(&path, false, &mut Dedup::default())
                .err()
                .unwrap();
            assert!(err.to_string().contains("another gliznet process"), "{err}");
        }
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"text\": \"thr");
        std::fs::write(&path, &text).unwrap();
        let mut dedup = Dedup::default();
        let (_, existing) = OutputFile::open(&path, false, &mut dedup).unwrap();
        assert_eq!(existing.examples, 2);
        assert_eq!(existing.next_attempt, 4);
        assert_eq!(existing.cut_bytes, 13);
        assert!(dedup.contains("ONE"));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);

        let foreign = dir.path().join("notes.jsonl");
        std::fs::write(&foreign, "{\"text\": \"x\", \"labels\": [\"a\"]}\n").unwrap();
        let err = OutputFile::open(&foreign, false, &mut Dedup::default())
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("notes.jsonl:1: not a generated example"),
            "{err}"
        );
        assert!(std::fs::read_to_string(&foreign).unwrap().contains("\"x\""));
        // Nor is a foreign last line without a newline cut off.
        std::fs::write(&foreign, "hello").unwrap();
        assert!(OutputFile::open(&foreign, false, &mut Dedup::default()).is_err());
        assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "hello");
        let (_, existing) = OutputFile::open(&foreign, true, &mut Dedup::default()).unwrap();
        assert_eq!(existing.examples, 0);
    }
}
