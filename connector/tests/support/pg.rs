//! The tests' view of [`volley_testkit::PgServer`]: `start` returns `None`
//! (with a SKIP line) when PostgreSQL is not installed and panics on any
//! other failure; `client` connects with the `postgres` crate.
#![allow(dead_code)] // cli/tests/postgres.rs includes this file and uses a subset

pub struct PgServer {
    inner: volley_testkit::PgServer,
}

impl PgServer {
    /// `None` (with a message) when PostgreSQL is not installed.
    pub fn start() -> Option<PgServer> {
        match volley_testkit::PgServer::start() {
            Ok(inner) => Some(PgServer { inner }),
            Err(volley_testkit::PgError::NotInstalled(why)) => {
                eprintln!("SKIP: {why}");
                None
            }
            Err(e) => panic!("starting PostgreSQL: {e}"),
        }
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    pub fn url(&self) -> String {
        self.inner.url()
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to test server")
    }
}
