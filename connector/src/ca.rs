//! The CA certificates the connector trusts for `wss://` when
//! `gateway.ca_file` is set: read once when the config is loaded (so a bad
//! file is a config error) and again by the tunnel when it builds its TLS
//! client. Its own module so that `config` and `tunnel` both use it without
//! `config` importing `tunnel`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Reads the CA certificates of `gateway.ca_file`.
pub fn load_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE in the file", path.display()));
    }
    Ok(certs)
}
