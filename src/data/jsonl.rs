//! Streaming JSONL reading. Lines are read one at a time (memory does not grow with the file),
//! blank lines are skipped, and every error names the source and the 1-based line number. A
//! line's text (its top-level `"text"` or `"sentence"` string) is kept up to
//! [`MAX_TEXT_CHARS`] characters as the line streams in, so that one huge line costs no more
//! memory than a short one; what is beyond is not read (nor checked).

use crate::data::text::MAX_TEXT_CHARS;
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
    texts_cut: usize,
    last_cut: bool,
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
            texts_cut: 0,
            last_cut: false,
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

    /// Whether the text of the record returned last was longer than [`MAX_TEXT_CHARS`]
    /// characters and was cut there.
    pub fn last_text_cut(&self) -> bool {
        self.last_cut
    }

    /// Records so far whose text was cut at [`MAX_TEXT_CHARS`] characters.
    pub fn texts_cut(&self) -> usize {
        self.texts_cut
    }

    /// Reads one line (its newline included) into `buffer`, its text cut as it streams in.
    /// Returns the bytes consumed (0 at the end of the input) and whether the text was cut.
    fn read_line(&mut self) -> Result<(usize, bool)> {
        self.buffer.clear();
        let mut cap = TextCap::new(MAX_TEXT_CHARS);
        let mut consumed = 0;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(input_error(format!("cannot read {}: {e}", self.source))),
            };
            if available.is_empty() {
                break;
            }
            let (used, end_of_line) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            cap.feed(&available[..used], &mut self.buffer);
            self.reader.consume(used);
            consumed += used;
            if end_of_line {
                break;
            }
        }
        Ok((consumed, cap.cut))
    }

    fn next_record(&mut self) -> Result<Option<(usize, T)>> {
        loop {
            let (n, cut) = self.read_line()?;
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
            self.last_cut = cut;
            self.texts_cut += usize::from(cut);
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

/// Copies a JSONL line as it streams in, keeping the string value of a top-level `"text"` or
/// `"sentence"` key up to `max_chars` characters and dropping the rest of that string. It
/// follows just enough JSON to find those values (nesting, keys, strings and their escapes);
/// whether the line is valid is serde's to say, on what was kept.
struct TextCap {
    max_chars: usize,
    state: Scan,
    depth: usize,
    top_is_object: bool,
    /// In the top-level object, the next string is a key.
    expect_key: bool,
    /// The key read last at the top level names a text, and its value has not begun.
    text_value_next: bool,
    /// The top-level key being read (its first bytes).
    key: Vec<u8>,
    key_too_long: bool,
    /// Characters kept of the text being read.
    chars: usize,
    dropping: bool,
    /// An escape in the text being read (`\n`, `\u00e9`), until it is whole.
    escape: Vec<u8>,
    cut: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Outside,
    Key { escaped: bool },
    OtherString { escaped: bool },
    Text,
}

const TEXT_KEYS: [&[u8]; 2] = [b"text", b"sentence"];
const LONGEST_TEXT_KEY: usize = 8;

impl TextCap {
    fn new(max_chars: usize) -> Self {
        Self {
            max_chars,
            state: Scan::Outside,
            depth: 0,
            top_is_object: false,
            expect_key: false,
            text_value_next: false,
            key: Vec::with_capacity(LONGEST_TEXT_KEY),
            key_too_long: false,
            chars: 0,
            dropping: false,
            escape: Vec::with_capacity(6),
            cut: false,
        }
    }

    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                Scan::Text if self.dropping && self.escape.is_empty() => {
                    // Nothing up to the next quote or backslash is kept.
                    match input[i..].iter().position(|&b| b == b'"' || b == b'\\') {
                        Some(j) => i += j,
                        None => return,
                    }
                    self.text_byte(input[i], out);
                }
                Scan::OtherString { escaped: false } => {
                    // Everything up to the next quote or backslash is copied at once.
                    let j = input[i..]
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\')
                        .unwrap_or(input.len() - i);
                    out.extend_from_slice(&input[i..i + j]);
                    i += j;
                    if i == input.len() {
                        return;
                    }
                    self.other_string_byte(input[i], out);
                }
                Scan::Outside => self.outside_byte(input[i], out),
                Scan::Key { .. } => self.key_byte(input[i], out),
                Scan::OtherString { .. } => self.other_string_byte(input[i], out),
                Scan::Text => self.text_byte(input[i], out),
            }
            i += 1;
        }
    }

    fn outside_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        let top = self.depth == 1 && self.top_is_object;
        match b {
            b'"' => {
                self.state = if top && self.expect_key {
                    self.key.clear();
                    self.key_too_long = false;
                    Scan::Key { escaped: false }
                } else if top && self.text_value_next {
                    self.chars = 0;
                    self.dropping = false;
                    Scan::Text
                } else {
                    Scan::OtherString { escaped: false }
                };
                self.text_value_next = false;
            }
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth == 1 {
                    self.top_is_object = b == b'{';
                    self.expect_key = self.top_is_object;
                }
                self.text_value_next = false;
            }
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            b',' if top => {
                self.expect_key = true;
                self.text_value_next = false;
            }
            b':' if top => self.expect_key = false,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => self.text_value_next = false,
        }
        out.push(b);
    }

    fn key_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        let Scan::Key { escaped } = self.state else {
            return;
        };
        if !escaped && b == b'"' {
            self.text_value_next = !self.key_too_long && TEXT_KEYS.contains(&self.key.as_slice());
            self.state = Scan::Outside;
        } else {
            self.state = Scan::Key {
                escaped: !escaped && b == b'\\',
            };
            if self.key.len() < LONGEST_TEXT_KEY {
                self.key.push(b);
            } else {
                self.key_too_long = true;
            }
        }
        out.push(b);
    }

    fn other_string_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        let Scan::OtherString { escaped } = self.state else {
            return;
        };
        self.state = if !escaped && b == b'"' {
            Scan::Outside
        } else {
            Scan::OtherString {
                escaped: !escaped && b == b'\\',
            }
        };
        out.push(b);
    }

    fn text_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        if !self.escape.is_empty() {
            self.escape.push(b);
            let whole = if self.escape[1] == b'u' { 6 } else { 2 };
            if self.escape.len() == whole {
                // A high surrogate (`\ud83d`) is half a character: the low one after it
                // counts, so that a pair is never split.
                let high_surrogate = whole == 6
                    && std::str::from_utf8(&self.escape[2..])
                        .ok()
                        .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                        .is_some_and(|u| (0xD800..0xDC00).contains(&u));
                if self.keep_char() {
                    out.extend_from_slice(&self.escape);
                    self.chars += usize::from(!high_surrogate);
                }
                self.escape.clear();
            }
            return;
        }
        match b {
            b'"' => {
                out.push(b);
                self.state = Scan::Outside;
            }
            b'\\' => self.escape.push(b),
            // A UTF-8 continuation byte belongs to the character before it.
            _ if b & 0xC0 == 0x80 => {
                if !self.dropping {
                    out.push(b);
                }
            }
            _ => {
                if self.keep_char() {
                    out.push(b);
                    self.chars += 1;
                }
            }
        }
    }

    /// Whether the character that begins here is kept: none from the first past the cap.
    fn keep_char(&mut self) -> bool {
        if !self.dropping && self.chars >= self.max_chars {
            self.dropping = true;
            self.cut = true;
        }
        !self.dropping
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

    /// The line as [`TextCap`] keeps it, fed in pieces of `piece` bytes.
    fn capped(line: &str, max_chars: usize, piece: usize) -> (String, bool) {
        let mut cap = TextCap::new(max_chars);
        let mut out = Vec::new();
        for chunk in line.as_bytes().chunks(piece) {
            cap.feed(chunk, &mut out);
        }
        (String::from_utf8(out).unwrap(), cap.cut)
    }

    #[test]
    fn only_top_level_texts_are_cut_in_characters_and_escapes_stay_whole() {
        // (line, what a cap of 3 characters keeps of it, whether it cut)
        let cases = [
            (
                r#"{"text": "abcdef", "labels": ["abcdef"]}"#,
                r#"{"text": "abc", "labels": ["abcdef"]}"#,
                true,
            ),
            (r#"{"text":"abc"}"#, r#"{"text":"abc"}"#, false),
            (r#"{"sentence": "éèêë"}"#, r#"{"sentence": "éèê"}"#, true),
            (r#"{"text": "a\"b\\c\"d\"e"}"#, r#"{"text": "a\"b"}"#, true),
            (
                r#"{"text": "ab\ud83d\ude00cd"}"#,
                r#"{"text": "ab\ud83d\ude00"}"#,
                true,
            ),
            (r#"{"text": "abc\ud83d\ude00"}"#, r#"{"text": "abc"}"#, true),
            (
                r#"{"labels": ["text", "abcdef"], "text": "wxyz"}"#,
                r#"{"labels": ["text", "abcdef"], "text": "wxy"}"#,
                true,
            ),
            (
                r#"{"meta": {"text": "abcdef"}, "note": "text"}"#,
                r#"{"meta": {"text": "abcdef"}, "note": "text"}"#,
                false,
            ),
            (
                r#"{"texts": "abcdef", "text": null}"#,
                r#"{"texts": "abcdef", "text": null}"#,
                false,
            ),
            (r#"["text", "abcdef"]"#, r#"["text", "abcdef"]"#, false),
            (r#"{"te\"xt": "abcdef"}"#, r#"{"te\"xt": "abcdef"}"#, false),
        ];
        for (line, kept, cut) in cases {
            for piece in [1, 2, 5, 1000] {
                assert_eq!(
                    capped(line, 3, piece),
                    (kept.to_string(), cut),
                    "{line} in pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn a_long_text_is_read_up_to_the_cap_and_said_to_be_cut() {
        let long = "word ".repeat(MAX_TEXT_CHARS);
        let first = format!("{{\"text\": \"{long}\", \"labels\": [\"a\"]}}\n");
        let input = format!("{first}{{\"text\": \"short\"}}\n");
        let mut reader = JsonlReader::<Row>::from_reader("big.jsonl", std::io::Cursor::new(input));
        let (line, row) = reader.next().unwrap().unwrap();
        assert_eq!(line, 1);
        assert_eq!(row.text.chars().count(), MAX_TEXT_CHARS);
        assert!(long.starts_with(&row.text));
        assert!(reader.last_text_cut());
        assert_eq!(reader.bytes_read(), first.len() as u64);
        let (_, row) = reader.next().unwrap().unwrap();
        assert_eq!(row.text, "short");
        assert!(!reader.last_text_cut());
        assert_eq!(reader.texts_cut(), 1);
        assert!(reader.next().is_none());
    }
}
