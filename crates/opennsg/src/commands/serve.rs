//! `opennsg serve`: the Microsoft.Network API on the embedded store, over HTTP or HTTPS.

use anyhow::{bail, Context, Result};
use clap::Args;
use opennsg::tag_cache::{describe_reload, TagCache, TagFiles, TagReloader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Options from this TOML file (keys are the long options; the command line wins).
    /// Default: /etc/opennsg/serve.toml ($OPENNSG_CONFIG_DIR/serve.toml), if it exists.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on. Beyond loopback it needs TLS or --insecure-http.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// Directory of the store (created if missing).
    #[arg(long, default_value = "opennsg-data")]
    pub(crate) data: PathBuf,
    /// Microsoft's ServiceTags_*.json files (repeatable), for rules naming service tags.
    /// Default: the current file of DATA/service-tags (`opennsg tags update --data DATA`).
    /// Reloaded when they change: on SIGHUP, and every --tags-interval.
    #[arg(long = "service-tags", value_name = "FILE")]
    pub(crate) service_tags: Vec<PathBuf>,
    /// Seconds between checks for new service tag files.
    #[arg(long, default_value_t = 60.0, value_parser = positive_seconds)]
    pub(crate) tags_interval: f64,
    /// Bearer token clients must send; default: $OPENNSG_TOKEN, else DATA/token (created
    /// with a random token, mode 0600).
    #[arg(long, env = "OPENNSG_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Allow plain HTTP on a non-loopback address.
    #[arg(long)]
    pub(crate) insecure_http: bool,
    /// Serve HTTPS with this certificate (PEM; with --tls-key).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate, written to DATA/cert.pem for clients to trust.
    #[arg(long)]
    pub(crate) tls_self_signed: bool,
    /// A host name (or address) the self-signed certificate is for, besides localhost, the
    /// loopback addresses and the listen address (repeatable): the name clients use.
    #[arg(long = "tls-name", value_name = "NAME", requires = "tls_self_signed")]
    pub(crate) tls_names: Vec<String>,
    /// Where clients reach this server (e.g. https://nsg.example:8443), for the nextLinks of
    /// list pages; default: the listen address.
    #[arg(long, value_name = "URL")]
    pub(crate) public_url: Option<String>,
    /// Answer `GET /msi/token` for `az login --identity`, to callers whose
    /// X-IDENTITY-HEADER is the bearer token.
    #[arg(long)]
    pub(crate) identity_endpoint: bool,
    /// Subscription ids `GET /subscriptions` lists (repeatable).
    #[arg(long = "subscription", value_name = "ID")]
    pub(crate) subscriptions: Vec<String>,
}

/// The base of the URLs the server hands out: `--public-url`, else the listen address (with
/// `localhost` for an unspecified one).
fn public_url(given: Option<&str>, listen: std::net::SocketAddr, tls: bool) -> Result<String> {
    let scheme = if tls { "https" } else { "http" };
    let Some(given) = given else {
        let host = if listen.ip().is_unspecified() {
            format!("localhost:{}", listen.port())
        } else {
            listen.to_string()
        };
        return Ok(format!("{scheme}://{host}"));
    };
    let url = given.trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(authority) if !authority.is_empty() && !authority.contains(['/', '?', '#', ' ']) => {
            Ok(url.to_string())
        }
        _ => bail!("--public-url {given}: expected http(s)://HOST[:PORT], without a path"),
    }
}

pub(crate) fn serve(args: ServeArgs) -> Result<u8> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let listen = args.listen;
    let serves_tls = args.tls_cert.is_some() || args.tls_self_signed;
    if !listen.ip().is_loopback() && !serves_tls && !args.insecure_http {
        bail!("{listen} is not a loopback address: serve it over TLS (--tls-cert/--tls-key or --tls-self-signed) or pass --insecure-http");
    }
    let public_url = public_url(args.public_url.as_deref(), listen, serves_tls)?;
    let tag_files = TagFiles {
        explicit: args.service_tags.clone(),
        cache: Some(TagCache::in_data(&args.data)),
    };
    let (mut tags, catalog) = TagReloader::start(
        tag_files,
        std::time::Duration::from_secs_f64(args.tags_interval),
    )?;
    if catalog.is_empty() {
        tracing::warn!("no service tag file: rules may name only the built-in tags (run `opennsg tags update --data {}`, or pass --service-tags)", args.data.display());
    }
    let store = nsg_store::Store::open(&args.data)
        .with_context(|| format!("opening the store in {}", args.data.display()))?;
    for group in nsg_api::resource_groups::adopt(&store)
        .map_err(|e| anyhow::anyhow!("adopting resource groups: {}", e.message))?
    {
        eprintln!("opennsg: created resource group {group}, which held resources stored before groups were served");
    }
    let token_file = args.data.join("token");
    let token_file = std::path::absolute(&token_file).unwrap_or(token_file);
    let (token, token_source) = match args.token {
        Some(token) if !token.trim().is_empty() => {
            (token, opennsg::clients::TokenSource::Environment)
        }
        _ => (
            stored_token(&args.data)?,
            opennsg::clients::TokenSource::File(&token_file),
        ),
    };
    let given_certificate = args.tls_cert.clone();
    let tls = match (args.tls_cert, args.tls_key, args.tls_self_signed) {
        (Some(cert), Some(key), _) => Some(nsg_api::Tls {
            cert_pem: std::fs::read(&cert)
                .with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?,
        }),
        (_, _, true) => {
            let mut names = args.tls_names.clone();
            if !listen.ip().is_unspecified() {
                names.push(listen.ip().to_string());
            }
            Some(self_signed(&args.data, &names)?)
        }
        _ => None,
    };
    let certificate = args.tls_self_signed.then(|| args.data.join("cert.pem"));
    let certificate = certificate
        .map(|path| std::path::absolute(&path).unwrap_or(path))
        .or(given_certificate);
    if let Some(setup) = opennsg::clients::azure_cli_setup(
        &public_url,
        certificate.as_deref(),
        args.identity_endpoint,
        token_source,
    ) {
        eprintln!("{setup}");
    }
    let mut state = nsg_api::AppState::new(store, std::sync::Arc::new(catalog), vec![token]);
    state.identity_endpoint = args.identity_endpoint;
    state.public_url = public_url;
    if !args.subscriptions.is_empty() {
        state.subscriptions = args.subscriptions;
    }
    let state = std::sync::Arc::new(state);
    let reloaded = state.clone();
    // Checks for new tag files every second (cheap: a flag and a clock until a check is due).
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        match tags.poll(&reloaded.catalog()) {
            Ok(Some((catalog, changes))) => {
                tracing::info!("{}", describe_reload(&changes));
                reloaded.replace_catalog(catalog);
            }
            Ok(None) => {}
            Err(error) => tracing::error!("service tags not reloaded: {error:#}"),
        }
    });
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime
        .block_on(nsg_api::serve(nsg_api::ServeOptions { listen, state, tls }))
        .with_context(|| format!("serving on {listen}"))?;
    Ok(0)
}

/// The token in DATA/token, created with 32 random bytes (hex) and mode 0600 if missing.
fn stored_token(data: &std::path::Path) -> Result<String> {
    let path = data.join("token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            eprintln!("opennsg: bearer token from {}", path.display());
            return Ok(token);
        }
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, token.as_bytes())?;
    eprintln!(
        "opennsg: new bearer token written to {}: {token}",
        path.display()
    );
    Ok(token)
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 86400.0 => Ok(seconds),
        _ => Err("expected seconds, more than 0 and at most 86400".to_string()),
    }
}

/// The self-signed certificate of DATA: the one made before (DATA/cert.pem, DATA/key.pem) if it
/// was made for the same names, so that clients trusting it keep working across restarts; else a
/// new one.
fn self_signed(data: &std::path::Path, names: &[String]) -> Result<nsg_api::Tls> {
    use std::io::Write;
    let (cert_path, key_path, names_path) = (
        data.join("cert.pem"),
        data.join("key.pem"),
        data.join("cert-names"),
    );
    let wanted = names.join("\n");
    if let (Ok(cert_pem), Ok(key_pem), Ok(made_for)) = (
        std::fs::read(&cert_path),
        std::fs::read(&key_path),
        std::fs::read_to_string(&names_path),
    ) {
        if made_for == wanted {
            eprintln!(
                "opennsg: self-signed certificate {} (kept)",
                cert_path.display()
            );
            return Ok(nsg_api::Tls { cert_pem, key_pem });
        }
    }
    let tls = nsg_api::Tls::self_signed(names)
        .map_err(|e| anyhow::anyhow!("making a self-signed certificate: {e}"))?;
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("writing {}", key_path.display()))?;
    key.write_all(&tls.key_pem)
        .with_context(|| format!("writing {}", key_path.display()))?;
    for (path, bytes) in [
        (&cert_path, &tls.cert_pem[..]),
        (&names_path, wanted.as_bytes()),
    ] {
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "opennsg: self-signed certificate written to {}",
        cert_path.display()
    );
    Ok(tls)
}
