//! Hints for CSV files read with the wrong dialect: what a person should
//! change in the dataset's definition, said where the parser's own error
//! ("Expected 1 records, found 2 records at line 2") would not tell them.
//!
//! - Wrong delimiter: the first lines of the file are split on each common
//!   delimiter (`,`, `;`, tab, `|`; quotes respected within a line). If the
//!   configured one does not split them into the same number (> 1) of fields
//!   but another does, that one is suggested: "1 column found with delimiter
//!   `,`; is the delimiter `;`? Set `delimiter: ";"` on the dataset".
//! - Not UTF-8: a file read as UTF-8 that is not is told to set `encoding:`.
//!
//! The sample is read only when a hint is needed (an error, or one column).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow_schema::ArrowError;

use super::encoding::TextReader;
use super::SourceError;
use crate::config::TextEncoding;

/// Delimiters tried, in this order of preference on a tie.
pub const CANDIDATE_DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];
/// Bytes of the file's start read to sniff its delimiter.
pub const SAMPLE_BYTES: u64 = 64 * 1024;
/// Lines of that sample looked at.
pub const SAMPLE_LINES: usize = 50;

/// What a hint needs to know about the dataset.
#[derive(Debug, Clone)]
pub struct Dialect {
    pub path: PathBuf,
    pub encoding: TextEncoding,
    pub delimiter: u8,
    pub quote: u8,
}

impl Dialect {
    /// The delimiter hint for this file, if its start suggests another
    /// delimiter; `None` when it cannot be read or nothing better fits.
    pub fn delimiter_hint(&self) -> Option<String> {
        let sample = read_sample(&self.path, self.encoding)?;
        let suggested = suggest_delimiter(&sample, self.delimiter, self.quote)?;
        let first = sample.lines().find(|l| !l.trim().is_empty())?;
        let columns = count_fields(first, self.delimiter, self.quote);
        let plural = if columns == 1 { "" } else { "s" };
        Some(format!(
            "{columns} column{plural} found with delimiter `{}`; is the delimiter `{}`? Set `delimiter: \"{}\"` on \
             the dataset",
            shown(self.delimiter),
            shown(suggested),
            shown(suggested)
        ))
    }

    /// `error` from reading the file with arrow's CSV reader, explained:
    /// with the delimiter hint when the rows did not split as expected,
    /// with the encoding hint when the bytes were not UTF-8.
    pub fn explain(&self, dataset: &str, error: ArrowError) -> SourceError {
        let text = error.to_string();
        if is_field_count_error(&text) {
            if let Some(hint) = self.delimiter_hint() {
                return SourceError::invalid(dataset, hint);
            }
        }
        if text.contains("UTF-8") && self.encoding == TextEncoding::default() {
            return SourceError::invalid(
                dataset,
                format!("{text}; if the file comes from Excel or Windows, set `encoding: windows-1252` on the dataset"),
            );
        }
        SourceError::arrow(dataset, error)
    }
}

/// Arrow's CSV errors for rows with a different number of fields.
fn is_field_count_error(text: &str) -> bool {
    text.contains("unequal lengths") || text.contains("incorrect number of fields")
}

/// A delimiter as written in a message: a tab is `\t`.
pub fn shown(byte: u8) -> String {
    match byte {
        b'\t' => "\\t".to_owned(),
        other => char::from(other).to_string(),
    }
}

fn read_sample(path: &Path, encoding: TextEncoding) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut bytes = Vec::new();
    TextReader::new(file.take(SAMPLE_BYTES), encoding.0).read_to_end(&mut bytes).ok()?;
    // The sample may end inside a character or a line: keep whole lines.
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(bytes.len(), |i| i + 1);
    Some(String::from_utf8_lossy(bytes.get(..whole).unwrap_or_default()).into_owned())
}

/// Another delimiter that splits every sampled line into the same number
/// (> 1) of fields, when the configured one does not; the one giving the
/// most fields.
pub fn suggest_delimiter(sample: &str, configured: u8, quote: u8) -> Option<u8> {
    let lines: Vec<&str> = sample.lines().filter(|l| !l.trim().is_empty()).take(SAMPLE_LINES).collect();
    let consistent = |delimiter: u8| -> Option<usize> {
        let first = count_fields(lines.first()?, delimiter, quote);
        (first > 1 && lines.iter().all(|l| count_fields(l, delimiter, quote) == first)).then_some(first)
    };
    if consistent(configured).is_some() {
        return None;
    }
    let mut best: Option<(usize, u8)> = None;
    for delimiter in CANDIDATE_DELIMITERS.into_iter().filter(|&d| d != configured && d != quote) {
        if let Some(fields) = consistent(delimiter) {
            if best.is_none_or(|(most, _)| fields > most) {
                best = Some((fields, delimiter));
            }
        }
    }
    best.map(|(_, delimiter)| delimiter)
}

/// Fields of one line split on `delimiter`, outside `quote`d parts.
pub fn count_fields(line: &str, delimiter: u8, quote: u8) -> usize {
    let mut fields = 1;
    let mut quoted = false;
    for &byte in line.as_bytes() {
        if byte == quote {
            quoted = !quoted;
        } else if byte == delimiter && !quoted {
            fields += 1;
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    // Tests index fixtures they built themselves.
    #![allow(clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn a_semicolon_file_read_with_commas_is_recognised() {
        let excel = "fecha;importe;nota\n2024-01-15;12,5;a\n2024-01-16;7;\"b;c\"\n";
        assert_eq!(suggest_delimiter(excel, b',', b'"'), Some(b';'));
        // Read with `;` already: nothing to suggest.
        assert_eq!(suggest_delimiter(excel, b';', b'"'), None);
        // An ordinary CSV whose text holds semicolons.
        let plain = "a,b\n\"x;y\",1\nz,2\n";
        assert_eq!(suggest_delimiter(plain, b',', b'"'), None);
        // Tabs, and the most fields wins over a delimiter that also splits evenly.
        assert_eq!(suggest_delimiter("a\tb\tc\n1|x\t2\t3\n", b',', b'"'), Some(b'\t'));
        // A real one-column file: nothing splits it consistently.
        assert_eq!(suggest_delimiter("name\nana\nluis;x\n", b',', b'"'), None);
        assert_eq!(suggest_delimiter("", b',', b'"'), None);
    }

    #[test]
    fn fields_are_counted_outside_quotes() {
        assert_eq!(count_fields("a;\"b;c\";d", b';', b'"'), 3);
        assert_eq!(count_fields("'a|b'|c", b'|', b'\''), 2);
        assert_eq!(shown(b'\t'), "\\t");
    }
}
