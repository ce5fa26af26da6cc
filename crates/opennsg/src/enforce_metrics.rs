//! `opennsg enforce --watch --metrics ADDR`: the kernel's per-rule hit counts as Prometheus text
//! at `http://ADDR/metrics`, read from the kernel at every scrape.

use anyhow::{Context, Result};
use nsg_nft::hits::{Hits, RuleComment};
use nsg_nft::Kernel;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::thread;

/// Serves `/metrics` on `addr` from a thread of its own until the process ends.
pub fn serve(addr: SocketAddr, kernel: Kernel) -> Result<()> {
    let server = tiny_http::Server::http(addr)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("--metrics {addr}: cannot listen"))?;
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    match kernel.rule_hits(None) {
                        Ok(hits) => tiny_http::Response::from_string(render(&hits))
                            .with_header(content_type()),
                        Err(error) => tiny_http::Response::from_string(format!("{error}\n"))
                            .with_status_code(500),
                    }
                } else {
                    tiny_http::Response::from_string("not found: try /metrics\n")
                        .with_status_code(404)
                };
                // A scraper that went away is no concern of ours.
                let _ = request.respond(response);
            }
        })
        .context("start the metrics thread")?;
    Ok(())
}

fn content_type() -> tiny_http::Header {
    tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"text/plain; version=0.0.4"[..])
        .expect("a valid static header")
}

/// Prometheus text exposition of per-rule hits: one packets and one bytes counter per NSG rule.
pub fn render(hits: &BTreeMap<RuleComment, Hits>) -> String {
    let mut out = String::new();
    for (name, help, value) in [
        (
            "opennsg_rule_packets_total",
            "Packets an NSG rule decided: the first packet of each allowed connection, every denied packet.",
            (|h: &Hits| h.packets) as fn(&Hits) -> u64,
        ),
        (
            "opennsg_rule_bytes_total",
            "Bytes of the packets an NSG rule decided.",
            |h: &Hits| h.bytes,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (rule, hits) in hits {
            let _ = writeln!(
                out,
                "{name}{{nsg=\"{}\",rule=\"{}\",priority=\"{}\",access=\"{}\"}} {}",
                escape(&rule.nsg),
                escape(&rule.rule),
                rule.priority,
                escape(&rule.access),
                value(hits)
            );
        }
    }
    out
}

/// A label value as the exposition format requires: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prometheus_text() {
        let mut hits = BTreeMap::new();
        hits.insert(
            RuleComment::parse("NSG1/securityRules/Allow-HTTP 200 Allow").expect("comment"),
            Hits {
                packets: 2,
                bytes: 120,
            },
        );
        hits.insert(
            RuleComment {
                nsg: "odd\"name\\".into(),
                rule: "securityRules/r".into(),
                priority: 100,
                access: "Deny".into(),
            },
            Hits::default(),
        );
        let text = render(&hits);
        assert!(
            text.contains("# TYPE opennsg_rule_packets_total counter\n"),
            "{text}"
        );
        assert!(text.contains(
            "opennsg_rule_packets_total{nsg=\"NSG1\",rule=\"securityRules/Allow-HTTP\",priority=\"200\",access=\"Allow\"} 2\n"
        ), "{text}");
        assert!(text.contains(
            "opennsg_rule_bytes_total{nsg=\"NSG1\",rule=\"securityRules/Allow-HTTP\",priority=\"200\",access=\"Allow\"} 120\n"
        ), "{text}");
        assert!(text.contains("nsg=\"odd\\\"name\\\\\""), "{text}");
    }
}
