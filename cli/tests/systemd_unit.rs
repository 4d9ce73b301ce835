//! packaging/volley-connector.service, run the way systemd runs it: the
//! `ExecStart=` command line (with the test's binary and config in place of
//! /usr/local/bin/volley and /etc/volley/connector.yml) in a clean
//! environment holding only systemd's `PATH` and the unit's `Environment=`
//! assignments. The config's `logging.level` must decide what is logged; a
//! `RUST_LOG` in the unit would override it for every installation.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use volley_testkit::files::{write_file, TempDir};
use volley_testkit::process::VolleyProcess;

const UNIT: &str = include_str!("../../packaging/volley-connector.service");
/// Where scripts/install-connector-service.sh puts the binary and the config.
const INSTALLED_BINARY: &str = "/usr/local/bin/volley";
const INSTALLED_CONFIG: &str = "/etc/volley/connector.yml";
/// systemd's default `PATH` for system services.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// What the connector logs at info level as soon as it runs.
const STARTED_LINE: &str = "connector for tenant";

/// The value of each `key=` line of the unit's `[Service]` section.
fn service_values(key: &str) -> Vec<String> {
    let mut in_service = false;
    let mut values = Vec::new();
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if let Some(value) = line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')) {
            if in_service {
                values.push(value.to_owned());
            }
        }
    }
    values
}

/// The connector as the unit starts it, with `config` in place of the installed one.
fn start_as_the_unit_does(config: &Path) -> VolleyProcess {
    assert!(service_values("EnvironmentFile").is_empty(), "the unit reads an EnvironmentFile; this test must too");
    let exec_start = service_values("ExecStart");
    let [exec_start] = exec_start.as_slice() else { panic!("one ExecStart= expected, found {exec_start:?}") };
    assert!(!exec_start.contains(['"', '\'', '$', '%']), "quoting and specifiers are not handled: {exec_start}");
    let mut words = exec_start.split_whitespace();
    assert_eq!(words.next(), Some(INSTALLED_BINARY), "{exec_start}");
    let args: Vec<String> = words
        .map(|word| if word == INSTALLED_CONFIG { config.to_str().expect("utf-8").to_owned() } else { word.to_owned() })
        .collect();
    assert!(args.iter().any(|a| Path::new(a) == config), "ExecStart= does not use {INSTALLED_CONFIG}: {exec_start}");

    let mut command = Command::new(env!("CARGO_BIN_EXE_volley"));
    command.args(&args).env_clear().env("PATH", SYSTEMD_PATH);
    for assignments in service_values("Environment") {
        assert!(!assignments.contains(['"', '\'']), "quoted Environment= is not handled: {assignments}");
        for assignment in assignments.split_whitespace() {
            let (name, value) = assignment.split_once('=').unwrap_or_else(|| panic!("Environment={assignments}"));
            command.env(name, value);
        }
    }
    VolleyProcess::spawn_command(command)
}

fn connector_config(dir: &TempDir, level: &str) -> std::path::PathBuf {
    // No gateway listens on port 9: the connector keeps retrying, which it
    // logs as warnings.
    let yaml = format!(
        "gateway: {{ uri: \"ws://127.0.0.1:9/ws/connect\" }}\n\
         tenant: {{ id: t1 }}\n\
         performance: {{ parallel_connections: 1, reconnect_delay: 0.1 }}\n\
         logging: {{ level: {level} }}\n\
         datasets:\n  ventas: {{ type: csv, path: ventas.csv }}\n"
    );
    write_file(dir, "ventas.csv", b"a,b\n1,2\n");
    write_file(dir, &format!("connector-{level}.yml"), yaml.as_bytes())
}

fn stop(mut connector: VolleyProcess) -> String {
    connector.signal("-TERM");
    assert_eq!(connector.wait_exit(Duration::from_secs(15)), Some(0), "{}", connector.output());
    connector.output()
}

#[test]
fn the_systemd_unit_leaves_the_log_level_to_the_config() {
    let dir = TempDir::new("systemd-unit");

    // The control: at INFO the start line and the retry warnings appear.
    let info = start_as_the_unit_does(&connector_config(&dir, "INFO"));
    assert!(info.wait_for_line(STARTED_LINE, Duration::from_secs(10)).is_some(), "{}", info.output());
    assert!(info.wait_for_line(" WARN ", Duration::from_secs(10)).is_some(), "{}", info.output());
    stop(info);

    // At ERROR neither appears while the same retries happen.
    let error = start_as_the_unit_does(&connector_config(&dir, "ERROR"));
    std::thread::sleep(Duration::from_secs(2));
    let output = stop(error);
    let logged: Vec<&str> =
        output.lines().filter(|l| [" INFO ", " WARN ", STARTED_LINE].iter().any(|n| l.contains(n))).collect();
    assert!(logged.is_empty(), "logging.level: ERROR was not honoured under the unit's environment:\n{output}");
}
