//! The `datasets:` section: [`SourceSpec`], one spec per source type (CSV
//! with its dialect, NDJSON, Parquet, Arrow IPC, PostgreSQL, ODBC), the live
//! modes, and the column types of a `schema:` override.

use std::fmt;
use std::path::PathBuf;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use super::limits::{BATCH_ROWS_DEFAULT, FOLLOW_POLL_MS_DEFAULT};

/// Source types accepted in `type:`.
pub const SOURCE_TYPES: [&str; 7] = ["csv", "json", "ndjson", "parquet", "arrow", "postgres", "odbc"];

/// One dataset's source, with paths already resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceSpec {
    Csv(CsvSpec),
    #[serde(alias = "ndjson")]
    Json(JsonSpec),
    Parquet(ParquetSpec),
    Arrow(ArrowSpec),
    Postgres(PostgresSpec),
    Odbc(OdbcSpec),
}

impl SourceSpec {
    /// True when the dataset never ends by itself (follow or polling mode).
    pub fn is_live(&self) -> bool {
        match self {
            SourceSpec::Csv(s) => s.live.as_ref().is_some_and(|l| l.follow),
            SourceSpec::Json(s) => s.live.as_ref().is_some_and(|l| l.follow),
            SourceSpec::Postgres(s) => s.live.is_some(),
            SourceSpec::Parquet(_) | SourceSpec::Arrow(_) | SourceSpec::Odbc(_) => false,
        }
    }

    /// The source type as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceSpec::Csv(_) => "csv",
            SourceSpec::Json(_) => "json",
            SourceSpec::Parquet(_) => "parquet",
            SourceSpec::Arrow(_) => "arrow",
            SourceSpec::Postgres(_) => "postgres",
            SourceSpec::Odbc(_) => "odbc",
        }
    }
}

/// A CSV dataset. Besides the file, its dialect: files as people have them
/// (Spanish Excel exports: `;`, decimal comma, Windows-1252) are read with
/// `delimiter`, `quote`, `header`, `encoding` and `decimal`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    pub path: PathBuf,
    /// `header:` (the seed's name `has_header:` too): the first line names
    /// the columns. Default true; without a header the columns are
    /// `column_1`, `column_2`, …
    #[serde(default = "default_true", alias = "header")]
    pub has_header: bool,
    /// `delimiter:` one ASCII character between fields. Absent: `,` — and
    /// then a file whose lines split consistently on another common
    /// delimiter (`;`, tab, `|`) into one column is refused with a hint.
    #[serde(default)]
    pub delimiter: Option<CsvChar>,
    /// `quote:` one ASCII character around fields that hold the delimiter;
    /// doubled inside a field it stands for itself. Default `"`.
    #[serde(default)]
    pub quote: Option<CsvChar>,
    /// `encoding:` the file's character encoding, by its usual label
    /// (`utf-8`, `windows-1252`, `latin1`, `iso-8859-15`, `utf-16le`, …, as
    /// WHATWG names them: `latin1` and `iso-8859-1` read as Windows-1252,
    /// their superset). A byte-order mark at the start wins over it and is
    /// dropped. Default UTF-8.
    #[serde(default)]
    pub encoding: TextEncoding,
    /// `decimal:` the decimal mark of numbers, `.` (default) or `,`. With
    /// `,` a column whose sampled values are all numbers written with a
    /// decimal comma (`12,5`, `-7`, `,25`, `1,5e3`; no thousands separators)
    /// is read as float64, as are float columns of `schema:`. Needs a
    /// delimiter other than `,`.
    #[serde(default)]
    pub decimal: DecimalMark,
    #[serde(default)]
    pub schema: Option<Vec<ColumnSpec>>,
    #[serde(default)]
    pub batch_rows: Option<usize>,
    #[serde(default)]
    pub live: Option<FollowSpec>,
}

impl CsvSpec {
    /// The delimiter byte in force (`,` when not given).
    pub fn delimiter_byte(&self) -> u8 {
        self.delimiter.map_or(b',', |c| c.0)
    }
    /// The quote byte in force (`"` when not given).
    pub fn quote_byte(&self) -> u8 {
        self.quote.map_or(b'"', |c| c.0)
    }
}

/// One ASCII character of a CSV dialect (`delimiter:`, `quote:`), not a
/// line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CsvChar(pub u8);

impl TryFrom<String> for CsvChar {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_bytes() {
            [byte] if byte.is_ascii() && !matches!(byte, b'\n' | b'\r') => Ok(CsvChar(*byte)),
            _ => Err(format!(
                "delimiter and quote take one ASCII character, not {text:?} (e.g. \";\", \"|\" or \"\\t\" for a tab)"
            )),
        }
    }
}

/// A text file's character encoding (`encoding:`); see [`CsvSpec::encoding`].
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TextEncoding(pub &'static encoding_rs::Encoding);

impl Default for TextEncoding {
    fn default() -> Self {
        TextEncoding(encoding_rs::UTF_8)
    }
}

impl fmt::Debug for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl TryFrom<String> for TextEncoding {
    type Error = String;
    fn try_from(label: String) -> Result<Self, String> {
        match encoding_rs::Encoding::for_label_no_replacement(label.as_bytes()) {
            Some(encoding) => Ok(TextEncoding(encoding)),
            None => Err(format!(
                "unknown encoding {label:?} (e.g. utf-8, windows-1252 for Excel on Windows, latin1, iso-8859-15)"
            )),
        }
    }
}

/// The decimal mark of numbers in a CSV file (`decimal:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum DecimalMark {
    /// `1.5`
    #[default]
    Point,
    /// `1,5`
    Comma,
}

impl TryFrom<String> for DecimalMark {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "." => Ok(DecimalMark::Point),
            "," => Ok(DecimalMark::Comma),
            other => Err(format!("{other:?} is not a decimal mark: \".\" or \",\"")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSpec {
    pub path: PathBuf,
    #[serde(default)]
    pub schema: Option<Vec<ColumnSpec>>,
    #[serde(default)]
    pub batch_rows: Option<usize>,
    #[serde(default)]
    pub live: Option<FollowSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSpec {
    pub path: PathBuf,
    /// Top-level column names to read (projection); all when absent.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub batch_rows: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrowSpec {
    /// An Arrow IPC file (`ARROW1` magic) or stream.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    pub url: String,
    pub query: String,
    #[serde(default)]
    pub batch_rows: Option<usize>,
    #[serde(default)]
    pub live: Option<PollSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdbcSpec {
    pub connection_string: String,
    pub query: String,
    #[serde(default)]
    pub batch_rows: Option<usize>,
}

/// `live:` for csv/json: follow the file like `tail -f`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowSpec {
    pub follow: bool,
    #[serde(default = "default_follow_poll_ms")]
    pub poll_ms: u64,
}

/// `live:` for postgres: re-run the query every `interval_ms` with `$1` = the
/// largest `watermark` value seen so far.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSpec {
    pub interval_ms: u64,
    /// Column of the result whose largest value becomes the next `$1`.
    pub watermark: String,
    /// `$1` for the first run, as text (e.g. `2024-01-01 00:00:00`); when
    /// absent the lowest value of the parameter's type (`-infinity` for
    /// timestamps and dates).
    #[serde(default)]
    pub initial: Option<String>,
}

/// One column of a CSV/NDJSON schema override.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default = "default_true")]
    pub nullable: bool,
}

fn default_true() -> bool {
    true
}

fn default_follow_poll_ms() -> u64 {
    FOLLOW_POLL_MS_DEFAULT
}

impl SourceSpec {
    /// Rows per batch for this source.
    pub fn batch_rows(&self) -> usize {
        let configured = match self {
            SourceSpec::Csv(s) => s.batch_rows,
            SourceSpec::Json(s) => s.batch_rows,
            SourceSpec::Parquet(s) => s.batch_rows,
            SourceSpec::Postgres(s) => s.batch_rows,
            SourceSpec::Odbc(s) => s.batch_rows,
            SourceSpec::Arrow(_) => None,
        };
        configured.unwrap_or(BATCH_ROWS_DEFAULT)
    }
}

/// Maps a schema-override type name onto an Arrow type.
pub fn parse_column_type(name: &str) -> Option<DataType> {
    Some(match name.to_ascii_lowercase().as_str() {
        "bool" | "boolean" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "utf8" | "string" => DataType::Utf8,
        "date32" | "date" => DataType::Date32,
        "timestamp_s" => DataType::Timestamp(TimeUnit::Second, None),
        "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "timestamp_us" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp_ns" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        _ => return None,
    })
}

/// Builds the Arrow schema of a `schema:` override.
pub fn schema_from_columns(columns: &[ColumnSpec]) -> Result<SchemaRef, String> {
    if columns.is_empty() {
        return Err("schema has no columns".into());
    }
    let mut fields = Vec::with_capacity(columns.len());
    for column in columns {
        if fields.iter().any(|f: &Field| f.name() == &column.name) {
            return Err(format!("column `{}` appears twice", column.name));
        }
        let data_type = parse_column_type(&column.data_type).ok_or_else(|| {
            format!(
                "column `{}` has unknown type `{}` (bool, int8..int64, uint8..uint64, float32, float64, utf8, date32, timestamp_s/ms/us/ns)",
                column.name, column.data_type
            )
        })?;
        fields.push(Field::new(&column.name, data_type, column.nullable));
    }
    Ok(std::sync::Arc::new(Schema::new(fields)))
}
