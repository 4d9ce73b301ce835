//! A real PostgreSQL server in a temp dir on a free port, stopped on drop.
//!
//! Follows FIELD-NOTES.md: binaries in /usr/lib/postgresql/15/bin; `initdb`
//! refuses root, so as root the data dir is owned by `postgres` and every
//! command runs through `runuser -u postgres --`.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

pub struct PgServer {
    dir: tempfile::TempDir,
    pub port: u16,
    as_postgres_user: bool,
}

impl PgServer {
    /// `None` (with a message) when PostgreSQL is not installed.
    pub fn start() -> Option<PgServer> {
        if !Path::new(BIN_DIR).join("initdb").exists() {
            eprintln!("SKIP: PostgreSQL binaries not found in {BIN_DIR}");
            return None;
        }
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::Builder::new().prefix("volley-pg-").tempdir().expect("temp dir");
        if is_root {
            let status =
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().expect("chown");
            assert!(status.success(), "chown of the pg dir failed");
        }
        let port = free_port();
        let server = PgServer { dir, port, as_postgres_user: is_root };
        let data = server.data_dir();
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let options =
            format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", server.dir.path().display());
        let out = server
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(options)
            .arg("-l")
            .arg(server.dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(server.dir.path().join("log")).unwrap_or_default()
        );
        Some(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let binary = Path::new(BIN_DIR).join(program);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(binary);
            c
        } else {
            Command::new(binary)
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to test server")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").arg("-D").arg(self.data_dir()).args(["-m", "immediate", "-w", "stop"]).output();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}
