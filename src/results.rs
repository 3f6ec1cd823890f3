//! Writers for prediction results: a readable table, a JSON array, or JSON lines. Records are
//! written as they come, so output memory does not grow with the input.

use crate::scoring::LabelScore;
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A readable table per text.
    Table,
    /// One JSON array of records.
    Json,
    /// One JSON record per line.
    Jsonl,
}

#[derive(Serialize)]
struct LabelRecord<'a> {
    label: &'a str,
    score: f32,
    predicted: bool,
}

#[derive(Serialize)]
struct TextRecord<'a> {
    text: &'a str,
    labels: Vec<LabelRecord<'a>>,
    /// The model that produced the scores (a directory, or the built-in model's name).
    model: &'a str,
}

pub struct ResultWriter<W: Write> {
    out: W,
    format: Format,
    written: usize,
    model: String,
}

impl<W: Write> ResultWriter<W> {
    pub fn new(out: W, format: Format, model: impl Into<String>) -> Self {
        Self {
            out,
            format,
            written: 0,
            model: model.into(),
        }
    }

    pub fn write(&mut self, text: &str, labels: &[String], scores: &[LabelScore]) -> Result<()> {
        let record = TextRecord {
            model: &self.model,
            text,
            labels: labels
                .iter()
                .zip(scores)
                .map(|(label, s)| LabelRecord {
                    label,
                    score: s.score,
                    predicted: s.predicted,
                })
                .collect(),
        };
        match self.format {
            Format::Jsonl => writeln!(self.out, "{}", serde_json::to_string(&record)?)?,
            Format::Json => {
                let separator = if self.written == 0 { "[\n  " } else { ",\n  " };
                write!(self.out, "{separator}{}", serde_json::to_string(&record)?)?;
            }
            Format::Table => write_table(&mut self.out, self.written == 0, &record)?,
        }
        self.written += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        if self.format == Format::Json {
            let close = if self.written == 0 { "[]\n" } else { "\n]\n" };
            self.out.write_all(close.as_bytes())?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// The widest a label column gets in a table; longer labels are cut with an ellipsis (JSON
/// output keeps them whole).
const LABEL_COLUMN: usize = 40;
/// The text line of a table record.
const TEXT_PREVIEW: usize = 100;

fn write_table(out: &mut impl Write, first: bool, record: &TextRecord) -> Result<()> {
    if !first {
        writeln!(out)?;
    }
    writeln!(out, "{}", preview(record.text, TEXT_PREVIEW))?;
    let cells: Vec<String> = record
        .labels
        .iter()
        .map(|l| cut(&escape_controls(l.label), LABEL_COLUMN))
        .collect();
    let width = cells.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    for (label, cell) in record.labels.iter().zip(&cells) {
        let mark = if label.predicted { "  *" } else { "" };
        writeln!(out, "  {cell:<width$}  {:.4}{mark}", label.score)?;
    }
    Ok(())
}

/// Control characters (a newline, an escape sequence) and format characters (Unicode's
/// category Cf: bidi overrides such as U+202E, zero-width spaces and joiners, the BOM) written
/// as escapes, so that one record stays on its rows, cannot drive the terminal, and cannot
/// reorder the columns it is printed in.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() || is_format_character(c) {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Unicode's format characters (general category Cf, Unicode 15.1).
const FORMAT_CHARACTERS: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// True for a character of Unicode's general category Cf (format).
pub fn is_format_character(c: char) -> bool {
    let c = c as u32;
    FORMAT_CHARACTERS
        .iter()
        .any(|&(low, high)| (low..=high).contains(&c))
}

/// `text` cut at `max_chars` with an ellipsis.
fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        text.chars().take(max_chars - 1).collect::<String>() + "…"
    }
}

/// The text on one line (whitespace runs as one space, other control characters escaped),
/// cut at `max_chars` with an ellipsis.
fn preview(text: &str, max_chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    cut(&escape_controls(&flat), max_chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores() -> Vec<LabelScore> {
        vec![
            LabelScore {
                score: 0.9,
                predicted: true,
            },
            LabelScore {
                score: 0.1,
                predicted: false,
            },
        ]
    }

    fn render(format: Format, records: usize) -> String {
        let mut buf = Vec::new();
        let mut writer = ResultWriter::new(&mut buf, format, "m");
        let labels = vec!["a".to_string(), "bb".to_string()];
        for i in 0..records {
            writer
                .write(&format!("text {i}"), &labels, &scores())
                .unwrap();
        }
        writer.finish().unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn json_is_one_valid_array_in_input_order() {
        for n in [0, 1, 3] {
            let parsed: serde_json::Value = serde_json::from_str(&render(Format::Json, n)).unwrap();
            let array = parsed.as_array().unwrap();
            assert_eq!(array.len(), n);
            if n > 0 {
                assert_eq!(array[n - 1]["text"], format!("text {}", n - 1));
                assert_eq!(array[0]["labels"][1]["label"], "bb");
                assert_eq!(array[0]["labels"][0]["predicted"], true);
                assert_eq!(array[0]["model"], "m");
            }
        }
    }

    #[test]
    fn jsonl_has_one_object_per_line() {
        let out = render(Format::Jsonl, 2);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["text"], "text 1");
    }

    #[test]
    fn table_rows_escape_control_characters_and_cap_the_label_column() {
        let mut buf = Vec::new();
        let mut writer = ResultWriter::new(&mut buf, Format::Table, "m");
        let long = "x".repeat(5000);
        let labels = vec!["two\nlines".to_string(), long, "esc\u{1b}[31m".to_string()];
        let mut three = scores();
        three.push(LabelScore {
            score: 0.5,
            predicted: false,
        });
        writer.write("a\u{7}text", &labels, &three).unwrap();
        writer.finish().unwrap();
        let out = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert_eq!(lines[0], "a\\u{7}text");
        assert!(lines[1].starts_with("  two\\nlines "), "{out}");
        assert!(lines[2].contains('…'), "{out}");
        assert!(lines[3].starts_with("  esc\\u{1b}[31m "), "{out}");
        assert!(!out.contains('\u{1b}'));
        for line in &lines[1..] {
            assert!(
                line.chars().count() <= 2 + LABEL_COLUMN + 2 + 6 + 3,
                "{line}"
            );
        }
    }

    /// Issue 35, defect 14: bidi overrides and other format characters (Cf) are escaped like
    /// control characters, in labels and in the text line.
    #[test]
    fn table_rows_escape_bidi_and_other_format_characters() {
        let mut buf = Vec::new();
        let mut writer = ResultWriter::new(&mut buf, Format::Table, "m");
        let labels = vec![
            "evil\u{202e}lebal".to_string(),
            "zero\u{200b}width\u{2066}isolate\u{feff}".to_string(),
        ];
        writer
            .write("text \u{202d}override\u{e0041}", &labels, &scores())
            .unwrap();
        writer.finish().unwrap();
        let out = String::from_utf8(buf).unwrap();
        assert!(out.chars().all(|c| !is_format_character(c)), "{out:?}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "text \\u{202d}override\\u{e0041}");
        assert!(lines[1].starts_with("  evil\\u{202e}lebal "), "{out}");
        assert!(
            lines[2].starts_with("  zero\\u{200b}width\\u{2066}isolate\\u{feff}"),
            "{out}"
        );
        // Letters, marks and spaces of other scripts are not format characters.
        for c in ['a', 'é', 'ß', 'ע', 'ا', '中', '\u{0301}', ' ', '…'] {
            assert!(!is_format_character(c), "{c:?}");
        }
        for c in [
            '\u{ad}',
            '\u{61c}',
            '\u{200f}',
            '\u{2069}',
            '\u{fffb}',
            '\u{e007f}',
        ] {
            assert!(is_format_character(c), "{c:?}");
        }
    }

    #[test]
    fn table_marks_predicted_labels() {
        let out = render(Format::Table, 1);
        assert_eq!(out, "text 0\n  a   0.9000  *\n  bb  0.1000\n");
        assert!(preview(&"x".repeat(300), 100).ends_with('…'));
    }
}
