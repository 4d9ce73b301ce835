//! CSV as people have it — `;` with decimal commas in Windows-1252 from a
//! Spanish Excel (CRLF lines), `|` with `'` quotes and no header, tabs after
//! a UTF-8 byte-order mark, ISO-8859-15 — each read by the connector
//! (catalog → the IPC stream it sends) and by pyarrow with the same options
//! (`ReadOptions(encoding, autogenerate_column_names)`,
//! `ParseOptions(delimiter, quote_char)`, `ConvertOptions(decimal_point,
//! column_types)`). Column names (where there is a header), types and every
//! value must agree.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use volley_connector::{Catalog, Config, SliceOptions};

fn pyarrow_available() -> bool {
    Command::new("python3").args(["-c", "import pyarrow"]).output().is_ok_and(|o| o.status.success())
}

/// One file, the dataset's keys, and the same options for pyarrow.
struct Case {
    name: &'static str,
    bytes: &'static [u8],
    /// Extra keys of the dataset's definition (YAML flow mapping entries).
    keys: &'static str,
    /// `encoding`, `delimiter`, `quote`, `header`, `decimal`, `column_types` for pyarrow.
    pyarrow: Value,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "excel_es",
            // Windows-1252: ñ F1, ú FA, á E1, ó F3, € 80; CRLF as Excel writes.
            bytes: b"fecha;cliente;importe;unidades;ref;nota\r\n\
                     2024-01-15;Pe\xf1a;12,5;3;1,5;\"pag\xf3; con tarjeta\"\r\n\
                     2024-01-16;N\xfa\xf1ez;-7,25;;A-3;\x80 extra\r\n\
                     2024-01-17;Ib\xe1\xf1ez;1000;10;2;\"dice \"\"hola\"\"\"\r\n\
                     2024-01-18;Mu\xf1oz;,5;1;3;fin\r\n",
            keys: r#"delimiter: ";", decimal: ",", encoding: windows-1252"#,
            pyarrow: json!({"encoding": "cp1252", "delimiter": ";", "decimal": ","}),
        },
        Case {
            name: "pipes_no_header",
            bytes: b"1|'a|b'|2.5\n2|'it''s'|3\n3|plain|-0.5\n",
            keys: r#"delimiter: "|", quote: "'", header: false"#,
            pyarrow: json!({"delimiter": "|", "quote": "'", "header": false}),
        },
        Case {
            name: "tabs_after_bom",
            bytes: "\u{feff}id\tname\tvalue\n1\t\u{c5}sa\t0.5\n2\tZo\u{eb}\t\n3\t\"x\ty\"\t2\n".as_bytes(),
            keys: r#"delimiter: "\t""#,
            pyarrow: json!({"delimiter": "\t"}),
        },
        Case {
            name: "latin9",
            // ISO-8859-15: á E1, € A4.
            bytes: b"ciudad;coste\nM\xe1laga;10,5\n\xa4uro;3\n",
            keys: r#"delimiter: ";", decimal: ",", encoding: iso-8859-15"#,
            pyarrow: json!({"encoding": "iso8859_15", "delimiter": ";", "decimal": ","}),
        },
        Case {
            name: "declared_schema",
            bytes: b"fecha;importe;n\n2024-01-15;0,1;1\n2024-01-16;2,5e1;2\n2024-01-17;;3\n",
            keys: r#"delimiter: ";", decimal: ",", schema: [{name: fecha, type: utf8}, {name: importe, type: float32}, {name: n, type: int64}]"#,
            pyarrow: json!({"delimiter": ";", "decimal": ",",
                            "column_types": {"fecha": "string", "importe": "float32", "n": "int64"}}),
        },
    ]
}

const SCRIPT: &str = r#"
import sys, json, pyarrow as pa, pyarrow.ipc as ipc, pyarrow.csv as pcsv
ipc_path, src, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(ipc_path, 'rb') as f:
    t = ipc.open_stream(f).read_all()
read = pcsv.ReadOptions(encoding=opts.get('encoding', 'utf8'), use_threads=False,
                        autogenerate_column_names=not opts.get('header', True))
parse = pcsv.ParseOptions(delimiter=opts.get('delimiter', ','), quote_char=opts.get('quote', '"'))
types = {k: getattr(pa, v)() for k, v in opts.get('column_types', {}).items()}
convert = pcsv.ConvertOptions(decimal_point=opts.get('decimal', '.'), column_types=types)
s = pcsv.read_csv(src, read_options=read, parse_options=parse, convert_options=convert)
def table(x):
    return {'names': x.column_names, 'types': [str(f.type) for f in x.schema],
            'values': [c.to_pylist() for c in x.columns]}
print(json.dumps({'connector': table(t), 'pyarrow': table(s)}, default=str))
"#;

/// The dataset `name` in `dir` as the IPC stream the connector sends.
fn connector_ipc(dir: &Path, name: &str, keys: &str) -> Vec<u8> {
    let yaml = format!(
        "gateway: {{ uri: \"ws://127.0.0.1:1/ws/connect\" }}\ntenant: {{ id: t1 }}\ndatasets:\n  \
         {name}: {{ type: csv, path: {name}.csv, batch_rows: 2, {keys} }}\n"
    );
    let config = Config::from_yaml(&yaml, dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    let stream = Catalog::new(&config)
        .open(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_ipc(SliceOptions::default(), None)
        .expect("slicer");
    let mut bytes = Vec::new();
    for message in stream {
        bytes.extend_from_slice(&message.unwrap_or_else(|e| panic!("{name}: {e}")).bytes);
    }
    bytes
}

#[test]
fn csv_dialects_read_as_pyarrow_reads_them() {
    if !pyarrow_available() {
        eprintln!("SKIP: python3 with pyarrow is not installed (pip install pyarrow)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for case in cases() {
        let csv = dir.path().join(format!("{}.csv", case.name));
        std::fs::write(&csv, case.bytes).expect("write csv");
        let ipc = dir.path().join(format!("{}.arrows", case.name));
        std::fs::write(&ipc, connector_ipc(dir.path(), case.name, case.keys)).expect("write ipc");
        let output = Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(&ipc)
            .arg(&csv)
            .arg(case.pyarrow.to_string())
            .output()
            .expect("python3 runs");
        assert!(output.status.success(), "{}: pyarrow failed: {}", case.name, String::from_utf8_lossy(&output.stderr));
        let both: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        let (ours, theirs) = (&both["connector"], &both["pyarrow"]);
        if case.pyarrow["header"] != json!(false) {
            assert_eq!(ours["names"], theirs["names"], "{}: column names", case.name);
        }
        assert_eq!(ours["types"], theirs["types"], "{}: column types", case.name);
        assert_eq!(ours["values"], theirs["values"], "{}: values", case.name);
        eprintln!("{}: {} columns agree: {}", case.name, ours["types"].as_array().map_or(0, Vec::len), ours["types"]);
    }
}

/// A value past the inference sample that is not a decimal-comma number
/// fails the stream naming the column, the value and the row.
#[test]
fn a_bad_decimal_comma_value_names_its_column_value_and_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("t.csv"), "a;b\nx;1,5\ny;1.234,5\n").expect("write");
    let yaml = "gateway: { uri: \"ws://127.0.0.1:1/ws/connect\" }\ntenant: { id: t1 }\ndatasets:\n  \
                t: { type: csv, path: t.csv, delimiter: \";\", decimal: \",\", schema: [{name: a, type: utf8}, {name: b, type: float64}] }\n";
    let config = Config::from_yaml(yaml, dir.path()).expect("config");
    let error = Catalog::new(&config)
        .open("t")
        .expect("opens")
        .into_batches()
        .find_map(Result::err)
        .expect("the bad value fails the stream")
        .to_string();
    assert!(error.contains("column `b`") && error.contains("`1.234,5`") && error.contains("row 2"), "{error}");
}

/// The dialect keys are checked when the config loads.
#[test]
fn dialect_keys_are_checked_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("t.csv"), "a\n1\n").expect("write");
    for (keys, expected) in [
        (r#"delimiter: ";;""#, "one ASCII character"),
        (r#"quote: "\n""#, "one ASCII character"),
        ("encoding: klingon", "unknown encoding"),
        (r#"decimal: "x""#, "decimal mark"),
        (r#"decimal: ",""#, "needs a delimiter other than"),
        (r#"delimiter: "'", quote: "'""#, "the same character"),
        ("header: false, has_header: false", "duplicate field"),
    ] {
        let yaml = format!(
            "gateway: {{ uri: \"ws://127.0.0.1:1/ws/connect\" }}\ntenant: {{ id: t1 }}\ndatasets:\n  \
             t: {{ type: csv, path: t.csv, {keys} }}\n"
        );
        let error = Config::from_yaml(&yaml, dir.path()).expect_err(keys).to_string();
        assert!(error.contains("dataset `t`") && error.contains(expected), "{keys}: {error}");
    }
}
