//! The measured data: [`ROWS_DEFAULT`](super::ROWS_DEFAULT) rows (or
//! `--rows`) of a mixed schema generated with a fixed seed, written as CSV
//! and Parquet and loaded into a throwaway PostgreSQL table.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int32Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::TABLE;

/// Rows per generated batch (and per write to the CSV and Parquet writers).
const GENERATE_BATCH_ROWS: usize = 64 * 1024;
/// Seed of the data generator: every run measures the same data.
const SEED: u64 = 0x5eed_da7a;

/// The generated schema, as the generator builds it (CSV readers infer their
/// own: integers as Int64, the timestamp's unit as they see fit).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int32, true),
        Field::new("quantity", DataType::Int32, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("discount", DataType::Float64, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("comment", DataType::Utf8, true),
        // Microseconds, as Parquet and PostgreSQL store timestamps (whole seconds in the data).
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("shipped", DataType::Boolean, true),
    ]))
}

/// The PostgreSQL table with the same columns.
const CREATE_TABLE: &str = "CREATE TABLE bench_source (
    id bigint NOT NULL, customer_id integer, quantity integer, amount double precision,
    discount double precision, category text, comment text, created_at timestamp, shipped boolean)";

const CATEGORIES: [&str; 12] = [
    "books",
    "garden",
    "toys",
    "grocery",
    "electronics",
    "clothing",
    "music",
    "sports",
    "health",
    "automotive",
    "office",
    "pets",
];
const WORDS: [&str; 16] = [
    "fast",
    "delivery",
    "late",
    "box",
    "damaged",
    "great",
    "value",
    "returned",
    "gift",
    "again",
    "colour",
    "size",
    "fits",
    "\"quoted\"",
    "comma,",
    "ok",
];
/// 2024-01-01T00:00:00Z, seconds.
const EPOCH_2024: i64 = 1_704_067_200;

/// One batch of rows `first..first + count`, deterministic in `rng`.
fn generate_batch(rng: &mut fastrand::Rng, first: i64, count: usize) -> Result<RecordBatch, String> {
    let mut customer = Int32Builder::with_capacity(count);
    let mut quantity = Int32Builder::with_capacity(count);
    let mut amount = Float64Builder::with_capacity(count);
    let mut discount = Float64Builder::with_capacity(count);
    let mut category = StringBuilder::with_capacity(count, count * 8);
    let mut comment = StringBuilder::with_capacity(count, count * 40);
    let mut created = TimestampMicrosecondBuilder::with_capacity(count);
    let mut shipped = BooleanBuilder::with_capacity(count);
    let mut text = String::new();
    for _ in 0..count {
        // NULL rates: 2 %, 5 %, 5 %, 30 %, 1 %, 20 %, 3 %, 10 %.
        customer.append_option((rng.u8(..100) >= 2).then(|| rng.i32(1..200_000)));
        quantity.append_option((rng.u8(..100) >= 5).then(|| rng.i32(1..50)));
        amount.append_option((rng.u8(..100) >= 5).then(|| f64::from(rng.u32(100..1_000_000)) / 100.0));
        discount.append_option((rng.u8(..100) >= 30).then(|| f64::from(rng.u8(1..60)) / 100.0));
        category.append_option((rng.u8(..100) >= 1).then(|| CATEGORIES[rng.usize(..CATEGORIES.len())]));
        if rng.u8(..100) >= 20 {
            text.clear();
            for index in 0..rng.usize(1..12) {
                if index > 0 {
                    text.push(' ');
                }
                text.push_str(WORDS[rng.usize(..WORDS.len())]);
            }
            comment.append_value(&text);
        } else {
            comment.append_null();
        }
        created.append_option((rng.u8(..100) >= 3).then(|| (EPOCH_2024 + rng.i64(0..2 * 365 * 86_400)) * 1_000_000));
        shipped.append_option((rng.u8(..100) >= 10).then(|| rng.bool()));
    }
    let count_i64 = i64::try_from(count).map_err(|e| e.to_string())?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(first..first + count_i64)),
        Arc::new(customer.finish()),
        Arc::new(quantity.finish()),
        Arc::new(amount.finish()),
        Arc::new(discount.finish()),
        Arc::new(category.finish()),
        Arc::new(comment.finish()),
        Arc::new(created.finish()),
        Arc::new(shipped.finish()),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| e.to_string())
}

/// Writes `rows` rows as `data.csv` and `data.parquet` under `dir`.
pub(super) fn generate_files(dir: &Path, rows: u64) -> Result<(PathBuf, PathBuf), String> {
    let csv_path = dir.join("data.csv");
    let parquet_path = dir.join("data.parquet");
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| format!("{path}: {e}")
    };
    let mut csv = arrow_csv::WriterBuilder::new()
        .with_header(true)
        .with_timestamp_format("%Y-%m-%d %H:%M:%S".into())
        .build(BufWriter::new(File::create(&csv_path).map_err(io(&csv_path))?));
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut parquet =
        ArrowWriter::try_new(File::create(&parquet_path).map_err(io(&parquet_path))?, schema(), Some(properties))
            .map_err(|e| e.to_string())?;
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut written: u64 = 0;
    while written < rows {
        let count = usize::try_from((rows - written).min(GENERATE_BATCH_ROWS as u64)).map_err(|e| e.to_string())?;
        let first = i64::try_from(written).map_err(|e| e.to_string())? + 1;
        let batch = generate_batch(&mut rng, first, count)?;
        csv.write(&batch).map_err(|e| e.to_string())?;
        parquet.write(&batch).map_err(|e| e.to_string())?;
        written += count as u64;
    }
    csv.into_inner().flush().map_err(io(&csv_path))?;
    parquet.close().map_err(|e| e.to_string())?;
    Ok((csv_path, parquet_path))
}

/// A started PostgreSQL server holding the table, or why there is none.
pub(super) fn load_postgres(csv_path: &Path) -> Result<(volley_testkit::PgServer, u64), String> {
    // No WAL for a table created and filled in one transaction.
    let server = volley_testkit::PgServer::start_with(&[("wal_level", "minimal"), ("max_wal_senders", "0")])
        .map_err(|e| e.to_string())?;
    let mut client = postgres::Client::connect(&server.url(), postgres::NoTls).map_err(|e| e.to_string())?;
    let mut transaction = client.transaction().map_err(|e| e.to_string())?;
    transaction.batch_execute(CREATE_TABLE).map_err(|e| e.to_string())?;
    let mut writer = transaction
        .copy_in(&format!("COPY {TABLE} FROM STDIN WITH (FORMAT csv, HEADER true)"))
        .map_err(|e| e.to_string())?;
    let mut file = File::open(csv_path).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    std::io::copy(&mut file, &mut writer).map_err(|e| format!("COPY: {e}"))?;
    writer.finish().map_err(|e| e.to_string())?;
    transaction.commit().map_err(|e| e.to_string())?;
    // Set hint bits and the visibility map now, so no measured pass pays for it.
    client.batch_execute(&format!("VACUUM (FREEZE, ANALYZE) {TABLE}")).map_err(|e| e.to_string())?;
    let bytes: i64 =
        client.query_one(&format!("SELECT pg_relation_size('{TABLE}')"), &[]).map_err(|e| e.to_string())?.get(0);
    Ok((server, u64::try_from(bytes).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_data_is_deterministic_and_has_nulls_in_every_nullable_column() {
        let a = generate_batch(&mut fastrand::Rng::with_seed(SEED), 1, 5000).expect("batch");
        let b = generate_batch(&mut fastrand::Rng::with_seed(SEED), 1, 5000).expect("batch");
        assert_eq!(a, b, "same seed, same data");
        for (index, field) in a.schema().fields().iter().enumerate() {
            let nulls = a.column(index).null_count();
            if field.is_nullable() {
                assert!(nulls > 0 && nulls < 5000, "{}: {nulls} nulls", field.name());
            } else {
                assert_eq!(nulls, 0, "{}", field.name());
            }
        }
    }
}
