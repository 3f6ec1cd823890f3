//! How much of a text is read. No model reads more than `max_length` tokens of a text (512 at
//! most for a BERT encoder), so a text is kept up to [`MAX_TEXT_CHARS`] characters, 128 per
//! token of the longest sequence: far more than any model reads, and little enough that one
//! huge line costs no more memory than a short one. What is beyond is not read, and a text cut
//! here counts as truncated.

/// Characters of a text that are read; the rest is not kept (JSONL lines, serve's requests,
/// `--text`).
pub const MAX_TEXT_CHARS: usize = 65_536;

/// The first [`MAX_TEXT_CHARS`] characters of `text`, and whether anything was left out.
pub fn text_prefix(text: &str) -> (&str, bool) {
    // Each character takes at least one byte: a short text needs no counting.
    if text.len() <= MAX_TEXT_CHARS {
        return (text, false);
    }
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

/// [`text_prefix`] in place: cuts `text` and says whether it did.
pub fn cap_text(text: &mut String) -> bool {
    let (prefix, cut) = text_prefix(text);
    if cut {
        let end = prefix.len();
        text.truncate(end);
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cut_at_the_character_not_the_byte() {
        let short = "é".repeat(MAX_TEXT_CHARS);
        assert_eq!(text_prefix(&short), (short.as_str(), false));
        let mut long = format!("{short}ab");
        assert!(cap_text(&mut long));
        assert_eq!(long, short);
        let mut ascii = "a".repeat(MAX_TEXT_CHARS + 1);
        assert!(cap_text(&mut ascii));
        assert_eq!(ascii.len(), MAX_TEXT_CHARS);
        assert!(!cap_text(&mut ascii));
    }
}
