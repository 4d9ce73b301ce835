//! `volley connector install|start|stop|uninstall|run-service` outside
//! Windows: each exits 1 with a message that points at the systemd unit and
//! its install script, and `run-service` creates no log file. (The Windows
//! side is type-checked by scripts/suites/windows-check.sh, not run.)
#![cfg(not(windows))]

use std::process::Command;

fn volley(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_volley")).args(args).env("RUST_LOG", "warn").output().expect("volley runs")
}

#[test]
fn service_subcommands_outside_windows_point_at_the_systemd_unit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("connector.yml");
    let log = dir.path().join("service.log");
    let (config, log) = (config.to_str().expect("utf-8"), log.to_str().expect("utf-8"));
    let commands: [&[&str]; 5] = [
        &["connector", "install", "--config", config],
        &["connector", "start"],
        &["connector", "stop", "--name", "Other"],
        &["connector", "uninstall"],
        &["connector", "run-service", "--name", "VolleyConnector", "--config", config, "--log-file", log],
    ];
    for args in commands {
        let output = volley(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("`volley connector {}`", args[1])), "{args:?}: {stderr}");
        assert!(stderr.contains("only on Windows"), "{args:?}: {stderr}");
        assert!(stderr.contains("packaging/volley-connector.service"), "{args:?}: {stderr}");
        assert!(stderr.contains("scripts/install-connector-service.sh"), "{args:?}: {stderr}");
    }
    assert!(!std::path::Path::new(log).exists(), "run-service opened no log file here");
}
