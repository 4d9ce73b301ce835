//! An `odbc` dataset given to a `volley` built without the `odbc` cargo
//! feature (the default build): `volley connector` and `volley connector
//! --test` stop at once with one message that names what to install and the
//! feature to build with, instead of starting a connector that would fail
//! every request for that dataset.
#![cfg(not(feature = "odbc"))]

use std::time::Duration;

use volley_testkit::files::{write_file, TempDir};
use volley_testkit::process::VolleyProcess;

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");

/// What the message must name: the package that provides the driver
/// manager's headers and library, and the build command.
const WHAT_TO_DO: [&str; 3] =
    ["built without ODBC", "apt install unixodbc-dev", "cargo build --release --features odbc"];

fn config_with_an_odbc_dataset(dir: &TempDir) -> String {
    let yaml = "gateway: { uri: \"ws://127.0.0.1:9/ws/connect\" }\n\
                tenant: { id: t1 }\n\
                datasets:\n  \
                  legado: { type: odbc, connection_string: \"Driver={PostgreSQL Unicode};Server=127.0.0.1\", query: \"SELECT 1\" }\n";
    write_file(dir, "connector.yml", yaml.as_bytes()).to_str().expect("utf-8").to_owned()
}

#[test]
fn a_connector_with_an_odbc_dataset_on_a_build_without_odbc_exits_saying_what_to_install() {
    let dir = TempDir::new("odbc-not-built");
    let config = config_with_an_odbc_dataset(&dir);

    let mut run = VolleyProcess::spawn_without_rust_log(VOLLEY, &["connector", "--config", &config]);
    assert_eq!(run.wait_exit(Duration::from_secs(10)), Some(1), "{}", run.output());
    let output = run.output();
    let message =
        output.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line:\n{output}"));
    assert!(message.contains("dataset `legado`"), "{message}");
    for needle in WHAT_TO_DO {
        assert!(message.contains(needle), "{needle:?} missing from: {message}");
    }

    let mut test = VolleyProcess::spawn_without_rust_log(VOLLEY, &["connector", "--config", &config, "--test"]);
    assert_eq!(test.wait_exit(Duration::from_secs(10)), Some(1), "{}", test.output());
    let output = test.output();
    let line = output.lines().find(|l| l.starts_with("FAIL config: ")).unwrap_or_else(|| panic!("{output}"));
    for needle in WHAT_TO_DO {
        assert!(line.contains(needle), "{needle:?} missing from: {line}");
    }
}
