//! `volley token`: signs a browser session token or a connector credential
//! (PROTOCOL.md §6) and prints it — and only it — on stdout, so that
//! `TOKEN=$(volley token …)` works.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Args;
use volley_protocol::token::{sign, ConnectorClaims, SessionClaims, ROLE_CONNECTOR};
use volley_protocol::Limits;

/// Default lifetime of a browser session token: one hour.
const SESSION_TTL_SECONDS_DEFAULT: i64 = 3600;
/// Default lifetime of a connector credential: 365 days. A connector runs
/// unattended at a customer site; rotating its credential is a deliberate act.
const CONNECTOR_TTL_SECONDS_DEFAULT: i64 = 365 * 24 * 3600;
/// Random bytes in a generated `jti`: 128 bits, so ids never collide and
/// cannot be guessed (the `jti` is the revocation key).
const JTI_RANDOM_BYTES: usize = 16;

/// Sign a browser session token (HS256 JWT) and print it on stdout.
/// With --connector, sign a connector credential instead.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    export VOLLEY_SECRET=…   # keeps the secret out of shell history\n  \
    volley token --tenant abc-123 --user ana --datasets ventas,ticker --ttl 600\n  \
    VOLLEY_SECRET=<connector_secret_key> volley token --connector --tenant abc-123")]
pub struct TokenArgs {
    /// Shared HS256 secret: the gateway's `tableros_secret_key` for a session
    /// token; with --connector, its `connector_secret_key` (or
    /// `tableros_secret_key` when the gateway has none). Prefer the
    /// VOLLEY_SECRET environment variable, which keeps it out of shell history.
    #[arg(long, value_name = "S", env = "VOLLEY_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Tenant id (claim `cuenta_id`).
    #[arg(long, value_name = "T")]
    pub tenant: String,
    /// User id (claim `sub`); required for a session token.
    #[arg(long, value_name = "U", required_unless_present = "connector", conflicts_with = "connector")]
    pub user: Option<String>,
    /// Comma-separated datasets the session may read (claim `permisos`);
    /// absent or `*` means all.
    #[arg(long, value_name = "a,b", value_delimiter = ',', conflicts_with = "connector")]
    pub datasets: Option<Vec<String>>,
    /// Edge (gateway) id the session is issued for (claim `edge_id`).
    #[arg(long, value_name = "E", default_value = "", conflicts_with = "connector")]
    pub edge: String,
    /// Lifetime in seconds from now (claim `exp`); default 3600 for a
    /// session, 365 days for a connector. Negative values make an already
    /// expired token, for testing.
    #[arg(long = "ttl", value_name = "SECONDS", allow_negative_numbers = true)]
    pub ttl_seconds: Option<i64>,
    /// Token id (claim `jti`, the revocation key); default: 128 random bits
    /// from the operating system, as hex.
    #[arg(long, value_name = "ID")]
    pub jti: Option<String>,
    /// Sign a connector credential (claims `cuenta_id`, `role`, `jti`,
    /// `iat`, `exp`) instead of a browser session token.
    #[arg(long)]
    pub connector: bool,
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let token = build(&args, unix_now()?)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{token}").context("writing the token to stdout")?;
    Ok(())
}

/// Validates the arguments and signs the token; `now` is Unix seconds.
fn build(args: &TokenArgs, now: i64) -> anyhow::Result<String> {
    if args.secret.is_empty() {
        bail!("the secret is empty; pass --secret or set VOLLEY_SECRET");
    }
    non_empty("--tenant", &args.tenant)?;
    let jti = match &args.jti {
        Some(jti) => {
            non_empty("--jti", jti)?;
            jti.clone()
        }
        None => random_jti()?,
    };
    let default_ttl = if args.connector { CONNECTOR_TTL_SECONDS_DEFAULT } else { SESSION_TTL_SECONDS_DEFAULT };
    let ttl_seconds = args.ttl_seconds.unwrap_or(default_ttl);
    let Some(exp) = now.checked_add(ttl_seconds) else {
        bail!("--ttl {ttl_seconds} overflows the expiry time");
    };
    let secret = args.secret.as_bytes();
    let token = if args.connector {
        let claims = ConnectorClaims {
            cuenta_id: args.tenant.clone(),
            role: ROLE_CONNECTOR.to_owned(),
            jti,
            iat: now,
            exp,
            nbf: None,
        };
        sign(&claims, secret)?
    } else {
        // clap guarantees --user when --connector is absent; re-checked here.
        let Some(user) = &args.user else { bail!("--user is required for a session token") };
        non_empty("--user", user)?;
        let claims = SessionClaims {
            sub: user.clone(),
            cuenta_id: args.tenant.clone(),
            edge_id: args.edge.clone(),
            permisos: permisos(args.datasets.as_deref())?,
            jti,
            iat: now,
            exp,
            nbf: None,
            role: None,
        };
        sign(&claims, secret)?
    };
    let token_bytes_max = Limits::DEFAULT.token_bytes_max;
    if token.len() > token_bytes_max {
        bail!(
            "the token is {} bytes, over the gateway's default limit of {token_bytes_max} (token_bytes_max); \
             list fewer datasets or use `*`",
            token.len()
        );
    }
    Ok(token)
}

/// `--datasets` → the `permisos` claim: all (`["*"]`) when absent or when
/// any entry is `*`; otherwise the names, each checked like a protocol id.
fn permisos(datasets: Option<&[String]>) -> anyhow::Result<Vec<String>> {
    let Some(datasets) = datasets else { return Ok(vec!["*".to_owned()]) };
    if datasets.iter().any(|d| d == "*") {
        return Ok(vec!["*".to_owned()]);
    }
    let id_bytes_max = Limits::DEFAULT.id_bytes_max;
    for name in datasets {
        if name.is_empty() {
            bail!("--datasets has an empty name (check for a stray comma)");
        }
        if name.len() > id_bytes_max {
            bail!("dataset name {name:?} is longer than {id_bytes_max} bytes");
        }
    }
    Ok(datasets.to_vec())
}

fn non_empty(flag: &str, value: &str) -> anyhow::Result<()> {
    if value.is_empty() {
        bail!("{flag} must not be empty");
    }
    Ok(())
}

/// 128 bits from the operating system's CSPRNG, as 32 lowercase hex digits.
pub(crate) fn random_jti() -> anyhow::Result<String> {
    let mut bytes = [0u8; JTI_RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the operating system's random source failed: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn unix_now() -> anyhow::Result<i64> {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).context("the system clock is before 1970")?;
    i64::try_from(elapsed.as_secs()).context("the system clock is beyond the year 292 billion")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permisos_default_to_all() {
        assert_eq!(permisos(None).unwrap(), vec!["*"]);
        assert_eq!(permisos(Some(&["a".into(), "*".into()])).unwrap(), vec!["*"]);
        assert_eq!(permisos(Some(&["a".into(), "b".into()])).unwrap(), vec!["a", "b"]);
        assert!(permisos(Some(&["a".into(), String::new()])).is_err());
        assert!(permisos(Some(&["x".repeat(65)])).is_err());
    }

    #[test]
    fn random_jti_is_128_bits_of_hex_and_differs() {
        let a = random_jti().unwrap();
        let b = random_jti().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
