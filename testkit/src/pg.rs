//! A throwaway PostgreSQL server: `initdb` in a temp dir, a free port on
//! 127.0.0.1, trust authentication, no fsync; stopped and deleted on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian and Ubuntu install PostgreSQL's server binaries, one folder
/// per major version (`/usr/lib/postgresql/15/bin`); the newest is used.
pub const PG_VERSIONS_DIR: &str = "/usr/lib/postgresql";
/// Environment variable naming the folder of `initdb` and `pg_ctl`
/// explicitly (takes precedence over [`PG_VERSIONS_DIR`]).
pub const PG_BIN_ENV: &str = "VOLLEY_PG_BIN";
/// Seconds `pg_ctl start` waits for the server to accept connections (its
/// own default is 60; a loaded 2-core CI machine needs more than a laptop).
pub const PG_START_TIMEOUT_SECONDS: u32 = 120;

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// PostgreSQL's server binaries are not installed: callers skip.
    #[error("PostgreSQL server binaries not found ({0}); install the `postgresql` package or set {PG_BIN_ENV}")]
    NotInstalled(String),
    /// Installed, but a step failed.
    #[error("{step}: {detail}")]
    Failed { step: &'static str, detail: String },
}

fn failed(step: &'static str) -> impl Fn(std::io::Error) -> PgError {
    move |e| PgError::Failed { step, detail: e.to_string() }
}

/// A PostgreSQL server in a temp dir on a free port, stopped on drop.
///
/// `initdb` refuses to run as root, so as root the temp dir
/// is handed to the `postgres` system user and every server command runs
/// through `runuser -u postgres --`.
#[derive(Debug)]
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl PgServer {
    /// Creates a cluster and starts it. `settings` are extra `-c name=value`
    /// server settings (e.g. `("wal_level", "minimal")`).
    pub fn start_with(settings: &[(&str, &str)]) -> Result<PgServer, PgError> {
        let bin = bin_dir()?;
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::Builder::new().prefix("volley-pg-").tempdir().map_err(failed("temp dir"))?;
        if is_root {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .output()
                .map_err(failed("chown"))?;
            check("chown of the temp dir to postgres", &out)?;
        }
        let port = free_port()?;
        let server = PgServer { dir, bin, port, as_postgres_user: is_root };
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(server.data_dir())
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .map_err(failed("initdb"))?;
        check("initdb", &out)?;
        let mut options =
            format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", server.dir.path().display());
        for (name, value) in settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let out = server
            .command("pg_ctl")
            .arg("-D")
            .arg(server.data_dir())
            .arg("-o")
            .arg(options)
            .arg("-l")
            .arg(server.log_path())
            .args(["-t", &PG_START_TIMEOUT_SECONDS.to_string(), "-w", "start"])
            .output()
            .map_err(failed("pg_ctl start"))?;
        if !out.status.success() {
            return Err(PgError::Failed {
                step: "pg_ctl start",
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    std::fs::read_to_string(server.log_path()).unwrap_or_default()
                ),
            });
        }
        Ok(server)
    }

    /// Creates a cluster with default settings and starts it.
    pub fn start() -> Result<PgServer, PgError> {
        PgServer::start_with(&[])
    }

    /// For tests: a started server, or `None` (with a `SKIP` line) when
    /// PostgreSQL is not installed; panics on any other failure.
    pub fn start_or_skip() -> Option<PgServer> {
        match PgServer::start() {
            Ok(server) => Some(server),
            Err(PgError::NotInstalled(why)) => {
                eprintln!("SKIP: {why}");
                None
            }
            Err(e) => panic!("starting PostgreSQL: {e}"),
        }
    }

    /// A `postgres` client connected as `postgres` (trust authentication).
    #[cfg(feature = "postgres")]
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to test server")
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust authentication).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's own folder of binaries (for `psql` and friends).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn command(&self, program: &str) -> Command {
        let binary = self.bin.join(program);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(binary);
            c
        } else {
            Command::new(binary)
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").arg("-D").arg(self.data_dir()).args(["-m", "immediate", "-w", "stop"]).output();
    }
}

fn check(step: &'static str, out: &Output) -> Result<(), PgError> {
    if out.status.success() {
        return Ok(());
    }
    Err(PgError::Failed {
        step,
        detail: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    })
}

/// `$VOLLEY_PG_BIN`, else the newest `/usr/lib/postgresql/<major>/bin` with an `initdb`.
fn bin_dir() -> Result<PathBuf, PgError> {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").exists() {
            Ok(dir)
        } else {
            Err(PgError::NotInstalled(format!("no initdb in {PG_BIN_ENV}={}", dir.display())))
        };
    }
    let not_found = || PgError::NotInstalled(format!("no {PG_VERSIONS_DIR}/<version>/bin/initdb"));
    let entries = std::fs::read_dir(PG_VERSIONS_DIR).map_err(|_| not_found())?;
    entries
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
        .ok_or_else(not_found)
}

fn free_port() -> Result<u16, PgError> {
    crate::ports::try_free_port().map_err(failed("free port"))
}

/// True when unixODBC lists the PostgreSQL Unicode driver (`odbcinst -q -d`),
/// which the ODBC tests connect through to a [`PgServer`].
pub fn odbc_postgres_driver_registered() -> bool {
    std::process::Command::new("odbcinst")
        .args(["-q", "-d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("[PostgreSQL Unicode]"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server accepts TCP connections on its port, and is gone after drop.
    #[test]
    fn server_listens_until_dropped() {
        let Some(server) = PgServer::start_or_skip() else { return };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
        assert!(std::net::TcpStream::connect(addr).is_ok(), "listening on {addr}");
        assert!(server.url().ends_with(&format!(":{}/postgres", server.port())));
        drop(server);
        assert!(std::net::TcpStream::connect(addr).is_err(), "stopped after drop");
    }
}
