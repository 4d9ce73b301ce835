//! Config loading: defaults, seed compatibility, path resolution, and one
//! test per refusal (unknown key, unknown type, missing file, bad URL,
//! duplicate name, bad live spec, limits), plus dataset requests that try to
//! name something other than a configured dataset.

use std::path::Path;
use std::time::Duration;

use volley_connector::config::{
    ConfigError, DatasetProblem, LogLevel, SourceSpec, CHUNK_BYTES_MAX_DEFAULT, CHUNK_BYTES_MIN_DEFAULT,
    COMPRESSION_CODECS_DEFAULT,
};
use volley_connector::{Catalog, Config, SourceError};
use volley_protocol::Codec;

const HEAD: &str = "gateway:\n  uri: \"ws://gw.example:8081/ws/connect\"\ntenant:\n  id: abc\n";

fn dir_with_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for name in ["ventas.csv", "eventos.ndjson", "clima.parquet", "x.arrows"] {
        std::fs::write(dir.path().join("data").join(name), "a\n1\n").unwrap();
    }
    dir
}

fn load(text: &str, dir: &Path) -> Result<Config, ConfigError> {
    let path = dir.join("connector.yaml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
}

fn dataset_problem(result: Result<Config, ConfigError>, expected_name: &str) -> DatasetProblem {
    match result {
        Err(ConfigError::Dataset { name, problem }) => {
            assert_eq!(name, expected_name);
            problem
        }
        other => panic!("expected a dataset error, got {other:?}"),
    }
}

#[test]
fn seed_config_loads_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let text = "gateway:\n  uri: \"ws://gateway.example.com:8081/ws/connect\"\ntenant:\n  id: \"bf935f05\"\nperformance:\n  parallel_connections: 3\n  max_chunk_size: 16384\n  reconnect_delay: 5\nlogging:\n  level: \"INFO\"\n";
    let config = load(text, dir.path()).unwrap();
    assert_eq!(config.performance.max_chunk_bytes, 16384);
    assert_eq!(config.performance.min_chunk_bytes, 16384, "min follows a small max down");
    assert_eq!(config.performance.reconnect_delay, Duration::from_secs(5));
    assert_eq!(config.logging.level, LogLevel::Info);
    assert!(config.tenant.token.is_none());
    assert!(config.datasets.is_empty());

    let config = load(HEAD, dir.path()).unwrap();
    assert_eq!(config.performance.parallel_connections, 3);
    assert_eq!(config.performance.max_chunk_bytes, CHUNK_BYTES_MAX_DEFAULT);
    assert_eq!(config.performance.min_chunk_bytes, CHUNK_BYTES_MIN_DEFAULT);
    assert_eq!(config.performance.compression_codecs, COMPRESSION_CODECS_DEFAULT, "offers every codec by default");
}

#[test]
fn full_example_loads_and_resolves_paths_against_the_config_dir() {
    let dir = dir_with_files();
    let mut lines = vec![
        "  token: secret",
        "performance: { compression: zstd, min_chunk_size: 1000 }",
        "datasets:",
        "  ventas:   { type: csv, path: data/ventas.csv }",
        "  eventos:  { type: json, path: data/eventos.ndjson }",
        "  clima:    { type: parquet, path: data/clima.parquet, columns: [a, b] }",
        "  archivo:  { type: arrow, path: data/x.arrows }",
        "  pedidos:  { type: postgres, url: \"postgres://u:p@db:5432/shop\", query: \"SELECT 1\" }",
        "  ticker:   { type: csv, path: data/ventas.csv, live: { follow: true, poll_ms: 250 } }",
        "  polled:   { type: postgres, url: \"postgres://db/x\", query: \"SELECT ts FROM t WHERE ts > $1 ORDER BY ts\", live: { interval_ms: 1000, watermark: ts } }",
    ];
    // Builds without the `odbc` feature refuse this one (tested below).
    if cfg!(feature = "odbc") {
        lines.push(
            "  legado:   { type: odbc, connection_string: \"Driver=PostgreSQL Unicode;Server=db\", query: \"SELECT 1\" }",
        );
    }
    let text = format!("{HEAD}{}\n", lines.join("\n"));
    let config = load(&text, dir.path()).unwrap();
    assert_eq!(config.tenant.token.as_deref(), Some("secret"));
    assert_eq!(config.performance.compression_codecs, [Codec::Zstd]);
    assert_eq!(config.datasets.len(), if cfg!(feature = "odbc") { 8 } else { 7 });
    match &config.datasets["ventas"] {
        SourceSpec::Csv(csv) => assert_eq!(csv.path, dir.path().join("data/ventas.csv")),
        other => panic!("{other:?}"),
    }
    assert!(config.datasets["ticker"].is_live());
    assert!(config.datasets["polled"].is_live());
    assert!(!config.datasets["ventas"].is_live());
}

#[test]
fn unknown_keys_are_refused() {
    let dir = dir_with_files();
    assert!(matches!(load(&format!("{HEAD}colour: blue\n"), dir.path()), Err(ConfigError::Yaml(_))));
    assert!(matches!(load(&format!("{HEAD}performance: {{ max_chunk: 5 }}\n"), dir.path()), Err(ConfigError::Yaml(_))));
    let problem = dataset_problem(
        load(&format!("{HEAD}datasets:\n  v: {{ type: csv, path: data/ventas.csv, sep: \";\" }}\n"), dir.path()),
        "v",
    );
    assert!(matches!(problem, DatasetProblem::Spec(ref m) if m.contains("sep")), "{problem}");
}

#[test]
fn unknown_type_is_refused() {
    let dir = dir_with_files();
    let result = load(&format!("{HEAD}datasets:\n  hoja: {{ type: xlsx, path: data/ventas.csv }}\n"), dir.path());
    let error = result.as_ref().map(|_| ()).unwrap_err().to_string();
    assert!(error.contains("hoja") && error.contains("xlsx"), "{error}");
    assert!(matches!(dataset_problem(result, "hoja"), DatasetProblem::UnknownType(t) if t == "xlsx"));
    let result = load(&format!("{HEAD}datasets:\n  sin: {{ path: data/ventas.csv }}\n"), dir.path());
    assert!(matches!(dataset_problem(result, "sin"), DatasetProblem::MissingType));
}

#[test]
fn missing_file_is_refused() {
    let dir = dir_with_files();
    let result = load(&format!("{HEAD}datasets:\n  ventas: {{ type: csv, path: data/nope.csv }}\n"), dir.path());
    let message = result.as_ref().map(|_| ()).unwrap_err().to_string();
    assert!(message.contains("ventas") && message.contains("nope.csv"), "{message}");
    assert!(matches!(dataset_problem(result, "ventas"), DatasetProblem::MissingFile(_)));
}

#[test]
fn bad_urls_are_refused() {
    let dir = dir_with_files();
    for url in ["mysql://db/x", "postgres://db:notaport/x", ""] {
        let result = load(
            &format!("{HEAD}datasets:\n  pedidos: {{ type: postgres, url: \"{url}\", query: \"SELECT 1\" }}\n"),
            dir.path(),
        );
        assert!(matches!(dataset_problem(result, "pedidos"), DatasetProblem::BadUrl(_)), "{url}");
    }
    for uri in ["http://gw/ws", "ws://", "gw:8081"] {
        let text = format!("gateway: {{ uri: \"{uri}\" }}\ntenant: {{ id: a }}\n");
        assert!(matches!(load(&text, dir.path()), Err(ConfigError::GatewayUri { .. })), "{uri}");
    }
}

#[test]
fn duplicate_dataset_names_are_detected_not_overwritten() {
    let dir = dir_with_files();
    let text = format!(
        "{HEAD}datasets:\n  ventas: {{ type: csv, path: data/ventas.csv }}\n  ventas: {{ type: json, path: data/eventos.ndjson }}\n"
    );
    match load(&text, dir.path()) {
        Err(ConfigError::DuplicateDataset { name }) => assert_eq!(name, "ventas"),
        // A YAML layer that refuses duplicate keys itself is just as good.
        Err(ConfigError::Yaml(e)) => assert!(e.to_string().contains("duplicate"), "{e}"),
        other => panic!("duplicate accepted: {other:?}"),
    }
}

#[test]
fn bad_live_specs_are_refused() {
    let dir = dir_with_files();
    let cases = [
        ("{ type: csv, path: data/ventas.csv, live: { follow: true, poll_ms: 0 } }", "poll_ms"),
        ("{ type: csv, path: data/ventas.csv, live: { interval_ms: 5 } }", "interval_ms"),
        ("{ type: parquet, path: data/clima.parquet, live: { follow: true } }", "no live mode"),
        ("{ type: postgres, url: \"postgres://db/x\", query: \"SELECT 1\", live: { interval_ms: 1000, watermark: ts } }", "$1"),
        ("{ type: postgres, url: \"postgres://db/x\", query: \"SELECT $1\", live: { interval_ms: 1000 } }", "watermark"),
        ("{ type: postgres, url: \"postgres://db/x\", query: \"SELECT $1\", live: { interval_ms: 1, watermark: ts } }", "interval_ms"),
    ];
    for (definition, hint) in cases {
        let result = load(&format!("{HEAD}datasets:\n  vivo: {definition}\n"), dir.path());
        match dataset_problem(result, "vivo") {
            DatasetProblem::BadLive(message) => assert!(message.contains(hint), "{definition}: {message}"),
            other => panic!("{definition}: {other:?}"),
        }
    }
}

#[test]
fn compression_offers_none_one_or_a_list_of_codecs() {
    let dir = dir_with_files();
    for (value, offered) in
        [("none", vec![]), ("lz4", vec![Codec::Lz4]), ("[lz4, zstd]", vec![Codec::Lz4, Codec::Zstd]), ("[]", vec![])]
    {
        let config = load(&format!("{HEAD}performance: {{ compression: {value} }}\n"), dir.path()).unwrap();
        assert_eq!(config.performance.compression_codecs, offered, "{value}");
    }
    for (value, needle) in
        [("brotli", "brotli"), ("[zstd, zstd]", "twice"), ("[none]", "none"), ("7", "not a codec name")]
    {
        match load(&format!("{HEAD}performance: {{ compression: {value} }}\n"), dir.path()) {
            Err(ConfigError::Setting { key: "performance.compression", reason }) => {
                assert!(reason.contains(needle), "{value}: {reason}");
            }
            other => panic!("{value}: {other:?}"),
        }
    }
}

#[test]
fn limits_and_names_are_checked() {
    let dir = dir_with_files();
    for performance in [
        "{ parallel_connections: 0 }",
        "{ max_chunk_size: 100 }",
        "{ max_chunk_size: 1000000000 }",
        "{ min_chunk_size: 2000000 }",
        "{ reconnect_delay: -1 }",
    ] {
        let result = load(&format!("{HEAD}performance: {performance}\n"), dir.path());
        assert!(matches!(result, Err(ConfigError::Setting { .. })), "{performance}: {result:?}");
    }
    assert!(matches!(
        load(&format!("{HEAD}logging: {{ level: loud }}\n"), dir.path()),
        Err(ConfigError::Setting { key: "logging.level", .. })
    ));
    for name in ["\"../etc\"", "\"a/b\"", "\".hidden\"", "\"with space\""] {
        let result = load(&format!("{HEAD}datasets:\n  {name}: {{ type: csv, path: data/ventas.csv }}\n"), dir.path());
        assert!(
            matches!(result, Err(ConfigError::Dataset { problem: DatasetProblem::Name(_), .. })),
            "{name}: {result:?}"
        );
    }
    let result =
        load(&format!("{HEAD}datasets:\n  v: {{ type: csv, path: data/ventas.csv, batch_rows: 0 }}\n"), dir.path());
    assert!(matches!(dataset_problem(result, "v"), DatasetProblem::Limit(_)));
    let result = load(
        &format!("{HEAD}datasets:\n  v: {{ type: csv, path: data/ventas.csv, schema: [{{name: a, type: money}}] }}\n"),
        dir.path(),
    );
    assert!(matches!(dataset_problem(result, "v"), DatasetProblem::BadSchema(_)));
}

#[test]
fn only_configured_names_can_be_opened() {
    let dir = dir_with_files();
    let config =
        load(&format!("{HEAD}datasets:\n  ventas: {{ type: csv, path: data/ventas.csv }}\n"), dir.path()).unwrap();
    let catalog = Catalog::new(&config);
    assert_eq!(catalog.names().collect::<Vec<_>>(), ["ventas"]);
    let ventas_path = dir.path().join("data/ventas.csv");
    let requests = [
        "../../etc/passwd".to_string(),
        "/etc/passwd".to_string(),
        ventas_path.display().to_string(),
        "data/ventas.csv".to_string(),
        "SELECT * FROM pg_shadow".to_string(),
        "ventas ".to_string(),
        "VENTAS".to_string(),
        String::new(),
    ];
    for request in requests {
        match catalog.open(&request) {
            Err(SourceError::UnknownDataset { name }) => {
                assert!(request.starts_with(&name), "{name}");
            }
            other => panic!("{request:?} was not refused: {other:?}"),
        }
    }
    assert!(catalog.open("ventas").is_ok());
}

/// Without the `odbc` cargo feature (the default build) an `odbc` dataset is
/// refused when the config loads, with one message that says what to
/// install and how to rebuild.
#[cfg(not(feature = "odbc"))]
#[test]
fn an_odbc_dataset_in_a_build_without_odbc_says_what_to_install_and_enable() {
    let dir = dir_with_files();
    let text = format!(
        "{HEAD}datasets:\n  legado: {{ type: odbc, connection_string: \"Driver=PostgreSQL Unicode;Server=db\", query: \"SELECT 1\" }}\n"
    );
    let error = load(&text, dir.path()).map(|_| ()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ConfigError::Dataset { ref name, .. } if name == "legado"), "{message}");
    for needle in ["built without ODBC", "apt install unixodbc-dev", "--features odbc"] {
        assert!(message.contains(needle), "{needle:?} missing from: {message}");
    }
}

#[test]
fn gateway_uri_is_one_uri_or_a_list_of_them() {
    let dir = dir_with_files();
    let one = load(HEAD, dir.path()).unwrap();
    assert_eq!(one.gateway.uris, vec!["ws://gw.example:8081/ws/connect".to_owned()]);
    let text =
        "gateway:\n  uri:\n    - ws://gw-1:8081/ws/connect\n    - wss://gw-2:443/ws/connect\ntenant:\n  id: abc\n";
    let listed = load(text, dir.path()).unwrap();
    assert_eq!(listed.gateway.uris, vec!["ws://gw-1:8081/ws/connect", "wss://gw-2:443/ws/connect"]);
    assert_eq!(listed.gateway.describe(), "ws://gw-1:8081/ws/connect, wss://gw-2:443/ws/connect");
}

#[test]
fn a_gateway_list_names_the_entry_that_is_wrong_and_what_to_write() {
    let dir = dir_with_files();
    let refusal = |uri: &str| {
        let text = format!("gateway: {{ uri: {uri} }}\ntenant: {{ id: a }}\n");
        load(&text, dir.path()).expect_err(uri).to_string()
    };
    let empty = refusal("[]");
    assert!(empty.contains("gateway.uri") && empty.contains("empty list") && empty.contains("ws://"), "{empty}");
    let bad = refusal("[\"ws://gw-1/ws/connect\", \"http://gw-2/ws\"]");
    assert!(bad.contains("entry 2 of 2") && bad.contains("http://gw-2/ws"), "{bad}");
    assert!(bad.contains("must start with ws:// or wss://") && bad.contains("ws://host:port/ws/connect"), "{bad}");
    let twice = refusal("[\"ws://gw-1/ws/connect\", \"ws://gw-1/ws/connect\"]");
    assert!(twice.contains("entry 2 of 2") && twice.contains("repeats entry 1"), "{twice}");
    let number = refusal("[\"ws://gw-1/ws/connect\", 7]");
    assert!(number.contains("entry 2 of 2") && number.contains("a number is not a URI"), "{number}");
    let map = refusal("{ host: gw }");
    assert!(map.contains("a map is neither a URI nor a list of URIs"), "{map}");
    let many: Vec<String> =
        (0..=volley_connector::config::GATEWAY_URIS_MAX).map(|i| format!("\"ws://gw-{i}/\"")).collect();
    let many = refusal(&format!("[{}]", many.join(", ")));
    assert!(many.contains("more than 64"), "{many}");
    // The seed's single string keeps its message.
    let text = "gateway: { uri: \"http://gw/ws\" }\ntenant: { id: a }\n";
    assert!(matches!(load(text, dir.path()), Err(ConfigError::GatewayUri { .. })));
}
