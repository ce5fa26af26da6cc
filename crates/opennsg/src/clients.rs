//! What `serve` tells its users at start: the commands that point the Azure CLI at it, for its
//! own address, certificate and token. `conformance/az.sh` runs exactly these lines.

use std::path::Path;

/// The first line of the block; the block ends with `az login --identity`.
pub const CLI_HEADER: &str = "opennsg: to use the Azure CLI with this server:";

/// How clients present the bearer token in the commands: read from the token file, or from
/// `$OPENNSG_TOKEN` when the token came from there or from `--token`.
pub enum TokenSource<'a> {
    File(&'a Path),
    Environment,
}

/// The commands for the Azure CLI, or `None` when it cannot use this server (it needs HTTPS
/// and, to log in, the identity endpoint).
pub fn azure_cli_setup(
    public_url: &str,
    certificate: Option<&Path>,
    identity_endpoint: bool,
    token: TokenSource<'_>,
) -> Option<String> {
    if !public_url.starts_with("https://") || !identity_endpoint {
        return None;
    }
    let token = match token {
        TokenSource::File(path) => format!("$(cat '{}')", path.display()),
        TokenSource::Environment => "$OPENNSG_TOKEN".to_string(),
    };
    let mut lines = vec![CLI_HEADER.to_string()];
    if let Some(certificate) = certificate {
        lines.push(format!(
            "  export REQUESTS_CA_BUNDLE='{}'",
            certificate.display()
        ));
    }
    lines.push(format!(
        "  export IDENTITY_ENDPOINT='{public_url}/msi/token' IDENTITY_HEADER=\"{token}\""
    ));
    lines.push(format!(
        "  az cloud register -n OpenNSG --skip-endpoint-discovery --endpoint-resource-manager \
         '{public_url}/' --endpoint-active-directory '{public_url}' \
         --endpoint-active-directory-resource-id '{public_url}/' --endpoint-management '{public_url}/'"
    ));
    lines.push("  az cloud set -n OpenNSG".to_string());
    lines.push("  az login --identity".to_string());
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_needs_https_and_the_identity_endpoint() {
        let token = || TokenSource::Environment;
        assert!(azure_cli_setup("http://127.0.0.1:8080", None, true, token()).is_none());
        assert!(azure_cli_setup("https://127.0.0.1:8443", None, false, token()).is_none());
        let setup = azure_cli_setup(
            "https://nsg.example:8443",
            Some(Path::new("/data/cert.pem")),
            true,
            TokenSource::File(Path::new("/data/token")),
        )
        .expect("a setup");
        assert!(setup.starts_with(CLI_HEADER), "{setup}");
        assert!(
            setup.contains("REQUESTS_CA_BUNDLE='/data/cert.pem'"),
            "{setup}"
        );
        assert!(
            setup.contains("IDENTITY_HEADER=\"$(cat '/data/token')\""),
            "{setup}"
        );
        assert!(setup.ends_with("az login --identity"), "{setup}");
    }
}
