//! `volley health [URL]`: one plain-HTTP `GET` of a gateway's `/health`,
//! exit status 0 when it answers 200 and 1 otherwise. It is the container
//! image's `HEALTHCHECK`: the runtime image has no shell, curl or wget.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;

/// The URL probed when none is given: the gateway's default port on this
/// machine (inside a container: the container itself).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8081/health";

/// Bytes of the answer read at most: the status line, the headers and the
/// start of the body are all a health check looks at.
pub const RESPONSE_BYTES_MAX: usize = 16 * 1024;

/// Check that a gateway answers `GET /health` with 200; exit status 0 if
/// so, 1 otherwise (the container image's HEALTHCHECK). Plain HTTP only.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The URL to probe (`http://HOST[:PORT][/PATH]`).
    #[arg(value_name = "URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// Give up after this many seconds (connect, send and read together).
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_seconds: u64,
}

/// Where to send the request.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// Host name or address as written (IPv6 without brackets).
    host: String,
    port: u16,
    /// `Host:` header value.
    authority: String,
    /// Request target, starting with `/`.
    path: String,
}

pub fn run(args: HealthArgs) -> anyhow::Result<()> {
    let target = parse_url(&args.url)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    let (status, body) = probe(&target, deadline).map_err(|error| anyhow!("{}: {error:#}", args.url))?;
    if status != 200 {
        bail!("{} answered HTTP {status}, not 200: {}", args.url, one_line(&body));
    }
    println!("{}", one_line(&body));
    Ok(())
}

fn parse_url(url: &str) -> anyhow::Result<Target> {
    let Some(rest) = url.strip_prefix("http://") else {
        if url.starts_with("https://") {
            bail!(
                "{url}: volley health speaks plain HTTP only; probe a gateway with a tls: section with your \
                 orchestrator's HTTPS probe (Kubernetes: httpGet with scheme: HTTPS)"
            );
        }
        bail!("{url}: not an http:// URL (expected http://HOST[:PORT][/PATH])");
    };
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, format!("/{path}")),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(|| anyhow!("{url}: `[` without `]` in the host"))?;
        match after {
            "" => (host, None),
            _ => {
                let port = after.strip_prefix(':').ok_or_else(|| anyhow!("{url}: unexpected text after `]`"))?;
                (host, Some(port))
            }
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        bail!("{url}: no host");
    }
    let port = match port {
        None => 80,
        Some(port) => port.parse::<u16>().map_err(|_| anyhow!("{url}: port {port:?} is not a number 0-65535"))?,
    };
    Ok(Target { host: host.to_owned(), port, authority: authority.to_owned(), path })
}

/// Sends the request and reads at most [`RESPONSE_BYTES_MAX`] of the
/// answer; the status code and what of the body arrived.
fn probe(target: &Target, deadline: Instant) -> anyhow::Result<(u16, String)> {
    let addresses: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.host))?
        .collect();
    let mut last_error = None;
    let mut stream = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, remaining(deadline)?) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => {
                last_error =
                    Some(anyhow!("cannot connect to {address} ({error}); is the gateway running and listening there?"))
            }
        }
    }
    let mut stream = match (stream, last_error) {
        (Some(stream), _) => stream,
        (None, Some(error)) => return Err(error),
        (None, None) => bail!("{} resolves to no address", target.host),
    };
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: volley-health\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).context("sending the request")?;
    let mut response = Vec::with_capacity(1024);
    let mut buffer = [0u8; 4096];
    while response.len() < RESPONSE_BYTES_MAX {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                let room = RESPONSE_BYTES_MAX - response.len();
                response.extend(buffer.iter().take(n.min(room)));
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset or a stall after the status line: judge what arrived.
            Err(_) if !response.is_empty() => break,
            Err(error) if is_timeout(&error) => bail!("no answer within the timeout (--timeout)"),
            Err(error) => return Err(anyhow!(error).context("reading the answer")),
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .lines()
        .next()
        .filter(|line| line.starts_with("HTTP/"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("the answer is not HTTP: {}", one_line(&text)))?;
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

fn remaining(deadline: Instant) -> anyhow::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("no answer within the timeout (--timeout)");
    }
    Ok(left)
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// `text` on one line, at most 200 characters: for messages.
fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", flat.get(..end).unwrap_or_default()),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, authority: &str, path: &str) -> Target {
        Target { host: host.into(), port, authority: authority.into(), path: path.into() }
    }

    #[test]
    fn urls_parse_into_host_port_and_path() {
        assert_eq!(parse_url(DEFAULT_URL).unwrap(), target("127.0.0.1", 8081, "127.0.0.1:8081", "/health"));
        assert_eq!(parse_url("http://gw.example").unwrap(), target("gw.example", 80, "gw.example", "/"));
        assert_eq!(
            parse_url("http://[::1]:9000/health?x=1").unwrap(),
            target("::1", 9000, "[::1]:9000", "/health?x=1")
        );
        assert_eq!(parse_url("http://[::1]/").unwrap(), target("::1", 80, "[::1]", "/"));
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        let message = |url: &str| parse_url(url).unwrap_err().to_string();
        assert!(message("https://gw:8081/health").contains("plain HTTP only"));
        assert!(message("gw:8081/health").contains("not an http:// URL"));
        assert!(message("http://:8081/health").contains("no host"));
        assert!(message("http://gw:99999/").contains("not a number"));
        assert!(message("http://[::1/").contains("without `]`"));
        assert!(message("http://[::1]x/").contains("after `]`"));
    }

    #[test]
    fn messages_are_one_bounded_line() {
        assert_eq!(one_line("a\r\n  b\tc"), "a b c");
        let long = "é".repeat(300);
        assert_eq!(one_line(&long).chars().count(), 201);
    }
}
