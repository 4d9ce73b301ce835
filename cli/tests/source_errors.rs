//! What a browser learns when a connector's source fails: the error code, a
//! message that names only the dataset it asked for, and an error id; never
//! the connector's file paths, OS errors, parser details, SQL or database
//! messages. The detail is in the connector's log under the same id. The
//! real `volley` binary as the connector, the in-process gateway, browsers
//! on real sockets; a throwaway PostgreSQL (and its ODBC driver) for the
//! SQL sources.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use volley_testkit::browser::Browser;
use volley_testkit::connector::connector_config;
use volley_testkit::engine::{connectors_online, start_default_gateway};
use volley_testkit::files::{write_file, TempDir};
use volley_testkit::process::VolleyProcess;
use volley_testkit::tokens::{connector_token, session_token};
use volley_testkit::{wait_until, PgServer};

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");

const TENANT: &str = "leaky";

/// Runs the binary connector for [`TENANT`] serving `datasets` against
/// `gateway`, registered.
fn binary_connector(
    dir: &TempDir,
    addr: SocketAddr,
    gateway: &volley_engine::Gateway,
    datasets: Value,
) -> VolleyProcess {
    let config = connector_config(
        addr,
        TENANT,
        &connector_token(TENANT),
        json!({"parallel_connections": 1, "reconnect_delay": 0.1}),
        datasets,
    );
    let path = write_file(dir, "connector.yaml", config.to_string().as_bytes());
    let connector = VolleyProcess::spawn(VOLLEY, &["connector", "--config", path.to_str().expect("utf-8")]);
    assert!(
        wait_until(Duration::from_secs(10), || connectors_online(gateway) >= 1),
        "the connector did not register:\n{}",
        connector.output()
    );
    connector
}

/// The `error` or `stream_end` error a browser got for a failed query.
fn failure(browser: &mut Browser, dataset: &str) -> Value {
    let result = browser.query(dataset, &format!("q-{dataset}"));
    let end = result.end.clone().expect("the query ended");
    let error = if end["type"] == "error" { end } else { end["error"].clone() };
    assert_eq!(error["code"], "source_error", "{dataset}: {error}");
    error
}

/// Checks what the browser saw for `dataset` and what the connector logged:
/// the message names the dataset and an error id and contains none of
/// `secrets`; the connector's log has a line with that id holding the first
/// of `secrets` (the detail that was kept from the browser).
fn assert_generic(error: &Value, dataset: &str, secrets: &[&str], connector: &VolleyProcess) {
    let message = error["message"].as_str().expect("message");
    eprintln!("{dataset}: the browser got {message:?}");
    for secret in secrets {
        assert!(!message.contains(secret), "{dataset}: the browser learned {secret:?}: {message}");
    }
    assert!(message.contains(dataset), "{dataset}: the message names the dataset asked for: {message}");
    let id = error_id(message).unwrap_or_else(|| panic!("{dataset}: no error id in {message:?}"));
    let logged = wait_until(Duration::from_secs(5), || {
        connector.output().lines().any(|line| line.contains(&id) && line.contains(secrets[0]))
    });
    assert!(logged, "{dataset}: the connector logged no line with {id} and {:?}:\n{}", secrets[0], connector.output());
}

/// The 16-hex-digit id after "error id " in `message`.
fn error_id(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("error id ")?;
    let id: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    (id.len() == 16).then_some(id)
}

#[test]
fn file_source_errors_reach_browsers_without_paths_or_parser_details() {
    let dir = TempDir::new("leak-files");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let victim = write_file(&dir, "data/victim.csv", b"name,salary\nana,100\n");
    // 1500 good rows (the schema is inferred from the first 1000: id is an
    // integer), then a row whose id is not.
    let mut ledger = String::from("id,amount\n");
    for i in 0..1500 {
        ledger.push_str(&format!("{i},{}\n", i * 3));
    }
    ledger.push_str("CONFIDENTIAL-4111111111111111,7\n");
    let ledger_path = write_file(&dir, "data/ledger.csv", ledger.as_bytes());

    let gateway = start_default_gateway();
    let datasets = json!({
        "victim": {"type": "csv", "path": victim},
        "ledger": {"type": "csv", "path": ledger_path, "batch_rows": 500},
    });
    let connector = binary_connector(&dir, gateway.local_addr(), &gateway, datasets);
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), true);

    // Registered at start, deleted now: the open fails before stream_start.
    std::fs::remove_file(&victim).expect("delete victim.csv");
    let error = failure(&mut browser, "victim");
    let dir_text = dir.path().to_string_lossy().into_owned();
    assert_generic(&error, "victim", &["victim.csv", "No such file", &dir_text, "os error"], &connector);

    // A row the parser refuses, after 1500 good ones: the failure is in stream_end.
    let result = browser.query("ledger", "q-ledger-2");
    let end = result.end.clone().expect("end");
    assert_eq!(end["type"], "stream_end", "the stream started before the bad row: {end}");
    assert!(!result.payloads.is_empty(), "the good rows arrived");
    let secrets = ["CONFIDENTIAL-4111111111111111", "ledger.csv", &dir_text, "line", "Int64", "parse"];
    assert_generic(&end["error"], "ledger", &secrets, &connector);

    // The tunnel serves on.
    let result = browser.query("ledger", "q-ledger-3");
    assert!(result.end.is_some() && result.start.is_some(), "{result:?}");
}

#[test]
fn sql_source_errors_reach_browsers_without_sql_or_database_messages() {
    let Some(server) = PgServer::start_or_skip() else { return };
    server.client().batch_execute("CREATE TABLE ok (n int8); INSERT INTO ok VALUES (1), (2);").expect("create table");
    let dir = TempDir::new("leak-sql");
    let gateway = start_default_gateway();
    // The ODBC part needs a volley built with the `odbc` feature (scripts/test.sh's odbc step).
    let odbc = cfg!(feature = "odbc") && volley_testkit::odbc_postgres_driver_registered();
    let mut datasets = json!({
        // Fails at prepare: the table does not exist.
        "payroll": {"type": "postgres", "url": server.url(), "query": "SELECT salary FROM payroll_2024_secret"},
        // Fails while rows are fetched, after the schema is known.
        "divide": {"type": "postgres", "url": server.url(),
                   "query": "SELECT g, 100 / (g - 3) AS boom FROM generate_series(1, 5) AS g"},
        // Fails to connect: nothing listens on port 1.
        "unreachable": {"type": "postgres", "url": "postgres://reader:hunter2@127.0.0.1:1/warehouse", "query": "SELECT 1"},
    });
    if odbc {
        datasets["legacy"] = json!({
            "type": "odbc",
            "connection_string": format!(
                "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={};Database=postgres;Uid=postgres;Pwd=;",
                server.port()
            ),
            "query": "SELECT salary FROM payroll_2024_secret",
        });
    } else {
        eprintln!(
            "SKIP (ODBC part): driver `PostgreSQL Unicode` not registered (apt install odbc-postgresql unixodbc)"
        );
    }
    let connector = binary_connector(&dir, gateway.local_addr(), &gateway, datasets);
    let mut browser = Browser::connect(gateway.local_addr(), &session_token(TENANT, &["*"]), true);

    let error = failure(&mut browser, "payroll");
    assert_generic(&error, "payroll", &["payroll_2024_secret", "relation", "salary", "ERROR", "db error"], &connector);

    let error = failure(&mut browser, "divide");
    assert_generic(&error, "divide", &["division by zero", "generate_series", "ERROR"], &connector);

    let error = failure(&mut browser, "unreachable");
    assert_generic(
        &error,
        "unreachable",
        &["Connection refused", "127.0.0.1:1", "hunter2", "warehouse", "os error"],
        &connector,
    );

    if odbc {
        let error = failure(&mut browser, "legacy");
        assert_generic(&error, "legacy", &["payroll_2024_secret", "relation", "ODBC", "SQLSTATE"], &connector);
    }
    // A good query on the same tunnel still works.
    server.client().batch_execute("SELECT 1").expect("server still up");
    assert_eq!(connectors_online(&gateway), 1);
}
