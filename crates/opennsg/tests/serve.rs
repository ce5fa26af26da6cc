//! `opennsg serve` as a process: token file, a write and a read over real HTTP, a restart that
//! keeps the data, and the refusal to serve plain HTTP beyond loopback.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &std::path::Path, port: u16) -> Server {
    start_with(data, port, &[])
}

/// [`start`] with more arguments.
fn start_with(data: &std::path::Path, port: u16, more: &[&str]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_opennsg"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .args(more)
        .env_remove("OPENNSG_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    // The token is written before the port is bound: waiting for both keeps a test from talking
    // to another process that happens to hold the port.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !data.join("token").exists() || TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("the server exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// One request over real HTTP: returns (status, body).
fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let host = format!("127.0.0.1:{port}");
    let response = nsg_netlab::http_request(&mut stream, &host, method, path, token, body).unwrap();
    (response.status, response.body)
}

/// Creates resource group `rg`, which the tests write into.
fn create_group(port: u16, token: &str) {
    let (status, body) = http(
        port,
        "PUT",
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/rg?api-version=2021-04-01",
        token,
        r#"{"location":"westeurope"}"#,
    );
    assert!(status == 200 || status == 201, "{status} {body}");
}

#[test]
fn serves_the_api_with_a_generated_token_and_keeps_data_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start(data.path(), port);
    let token_file = data.path().join("token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let path = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg1?api-version=2024-07-01";
    create_group(port, &token);
    let (status, body) = http(port, "PUT", path, &token, r#"{"location":"westeurope"}"#);
    assert_eq!(status, 201, "{body}");
    assert_eq!(http(port, "GET", path, "wrong", "").0, 401);
    drop(server);

    // A restart reads the same token and the same data.
    let server = start(data.path(), port);
    let (status, body) = http(port, "GET", path, &token, "");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"provisioningState\":\"Succeeded\""),
        "{body}"
    );
    drop(server);
}

#[test]
fn plain_http_beyond_loopback_needs_a_flag() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opennsg"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-http"));
}

/// `--tls-self-signed` serves HTTPS with a certificate written to DATA/cert.pem, which a client
/// that trusts it verifies (the `az` CLI's way, with REQUESTS_CA_BUNDLE).
#[test]
fn serves_https_with_a_self_signed_certificate() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_opennsg"))
        .args([
            "serve",
            "--tls-self-signed",
            "--tls-name",
            "nsg-host.example",
            "--token",
            "secret",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data",
        ])
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cert = std::fs::read(data.path().join("cert.pem")).unwrap();
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = nsg_netlab::tls_client(socket, "localhost", &cert).unwrap();
    let response = nsg_netlab::http_request(
        &mut tls,
        &format!("localhost:{port}"),
        "GET",
        "/subscriptions?api-version=2022-01-01",
        "secret",
        "",
    )
    .unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.body.contains("\"subscriptionId\""), "{response:?}");
    // Regression (found by a new user): the certificate covered only localhost and the listen
    // address, so `enforce --watch https://nsg-host:8443` failed its host-name check.
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = nsg_netlab::tls_client(socket, "nsg-host.example", &cert).unwrap();
    let response = nsg_netlab::http_request(
        &mut tls,
        &format!("nsg-host.example:{port}"),
        "GET",
        "/subscriptions?api-version=2022-01-01",
        "secret",
        "",
    )
    .unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    let wrong = TcpStream::connect(("127.0.0.1", port)).unwrap();
    wrong
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let refused = nsg_netlab::tls_client(wrong, "other-host.example", &cert).and_then(|mut tls| {
        nsg_netlab::http_request(
            &mut tls,
            "other-host.example",
            "GET",
            "/subscriptions",
            "secret",
            "",
        )
    });
    assert!(refused.is_err(), "a name the certificate is not for");
}

/// Issue 4, durability: SIGKILL the server in the middle of a stream of writes; after a restart
/// every write it acknowledged is there, whole, and nothing is half-written.
#[test]
fn acknowledged_writes_survive_sigkill_of_the_server() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(data.path(), port);
    let token = std::fs::read_to_string(data.path().join("token")).unwrap();
    create_group(port, &token);
    let path = |i: usize| {
        format!("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg{i}?api-version=2024-07-01")
    };
    // Each NSG carries 50 rules, so a torn write would show as a short rule list.
    let body = |i: usize| {
        let rules: Vec<String> = (0..50)
            .map(|r| format!(r#"{{"name":"r{r}","properties":{{"protocol":"Tcp","sourceAddressPrefix":"10.{i}.{r}.0/24","sourcePortRange":"*","destinationAddressPrefix":"*","destinationPortRange":"{}","access":"Allow","priority":{},"direction":"Inbound"}}}}"#, 1000 + r, 100 + r))
            .collect();
        format!(
            r#"{{"location":"westeurope","tags":{{"seq":"{i}"}},"properties":{{"securityRules":[{}]}}}}"#,
            rules.join(",")
        )
    };
    let writer = {
        let token = token.clone();
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            for i in 0..10_000 {
                if Instant::now() > deadline {
                    break;
                }
                let attempt =
                    std::panic::catch_unwind(|| http(port, "PUT", &path(i), &token, &body(i)));
                match attempt {
                    Ok((201, _)) => acknowledged.push(i),
                    _ => break, // the server is gone
                }
            }
            acknowledged
        })
    };
    // Let a stream build up, then kill without warning.
    std::thread::sleep(Duration::from_millis(700));
    server.0.kill().unwrap(); // SIGKILL
    let status = server.0.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
    let acknowledged = writer.join().unwrap();
    assert!(
        acknowledged.len() >= 5,
        "only {} writes before the kill",
        acknowledged.len()
    );
    drop(server);

    let _server = start(data.path(), port);
    for &i in &acknowledged {
        let (status, body) = http(port, "GET", &path(i), &token, "");
        assert_eq!(status, 200, "acknowledged write {i} was lost: {body}");
        let nsg: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(nsg["tags"]["seq"], i.to_string());
        assert_eq!(
            nsg["properties"]["securityRules"].as_array().unwrap().len(),
            50,
            "write {i} is torn"
        );
    }
    // The write in flight at the kill is either whole or absent.
    let next = acknowledged.last().map_or(0, |last| last + 1);
    let (status, body) = http(port, "GET", &path(next), &token, "");
    if status == 200 {
        let nsg: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            nsg["properties"]["securityRules"].as_array().unwrap().len(),
            50
        );
    } else {
        assert_eq!(status, 404, "{body}");
    }
}

/// Regression (found by a hostile probe): a malformed chunked body was answered in plain text.
#[test]
fn a_malformed_chunked_body_gets_an_arm_error() {
    use std::io::{Read, Write};
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = start(data.path(), port);
    let token = std::fs::read_to_string(data.path().join("token")).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let path = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/\
                Microsoft.Network/networkSecurityGroups/nsg1?api-version=2024-05-01";
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5\r\n{{\"loc\r\nzz-not-a-size\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{response}"
    );
    assert!(body.contains("\"InvalidRequestFormat\""), "{response}");
}

/// Issue 10: a full disk answers `507 InsufficientStorage` with an ARM body, never 500, and
/// nothing acknowledged is lost. The server runs in a mount namespace of its own whose data
/// directory is a 1 MiB tmpfs (needs root and util-linux's `unshare`).
#[test]
fn a_full_disk_answers_507_and_keeps_what_it_acknowledged() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let port = free_port();
    let script = format!(
        "mount -t tmpfs -o size=1m tmpfs '{}' && exec '{}' serve --listen 127.0.0.1:{port} \
         --data '{}' --token secret",
        data.display(),
        env!("CARGO_BIN_EXE_opennsg"),
        data.display()
    );
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare runs (util-linux)");
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server did not start (root and tmpfs needed)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let path = |i: usize| {
        format!("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg{i}?api-version=2024-07-01")
    };
    create_group(port, "secret");
    // About 100 KB of tags per NSG: a 1 MiB disk fills within a few dozen writes.
    let tags: serde_json::Map<String, serde_json::Value> = (0..400)
        .map(|k| (format!("tag{k}"), serde_json::json!("v".repeat(250))))
        .collect();
    let body = serde_json::json!({"location": "westeurope", "tags": tags}).to_string();
    let mut acknowledged = Vec::new();
    let mut full = None;
    for i in 0..200 {
        let (status, reply) = http(port, "PUT", &path(i), "secret", &body);
        match status {
            201 => acknowledged.push(i),
            _ => {
                full = Some((status, reply));
                break;
            }
        }
    }
    let (status, reply) = full.expect("the disk filled up");
    assert_eq!(status, 507, "{reply}");
    let error: serde_json::Value = serde_json::from_str(&reply).expect("an ARM body");
    assert_eq!(error["error"]["code"], "InsufficientStorage");
    assert!(!acknowledged.is_empty());
    for i in acknowledged {
        let (status, _) = http(port, "GET", &path(i), "secret", "");
        assert_eq!(status, 200, "nsg{i} was acknowledged");
    }
}

/// `enforce --watch` as a service: a refused token or a malformed URL stops it with a hint, an
/// unreachable server is retried with growing pauses.
#[test]
fn watch_stops_on_a_refused_token_and_retries_an_unreachable_server() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = start(data.path(), port);
    let watch = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_opennsg"))
            .args([
                "enforce",
                "--watch",
                url,
                "--token",
                "not-the-token",
                "--interval",
                "0.2",
            ])
            .env_remove("OPENNSG_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let finished = |mut child: Child| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "enforce --watch did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    let refused = finished(watch(&format!("http://127.0.0.1:{port}")));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("401 Unauthorized") && stderr.contains("--token"),
        "{stderr}"
    );

    let malformed = finished(watch("ftp://127.0.0.1"));
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert_eq!(malformed.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("expected http(s)://HOST"), "{stderr}");

    let nobody = free_port();
    let mut retrying = watch(&format!("http://127.0.0.1:{nobody}"));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        retrying.try_wait().unwrap().is_none(),
        "an unreachable server is retried"
    );
    let _ = retrying.kill();
    let output = retrying.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("trying again in 0.2 s") && stderr.contains("trying again in 0.4 s"),
        "{stderr}"
    );
}

/// `serve` reads DATA/service-tags' current file, and a new one made current by
/// `opennsg tags update --data DATA` is in force after a SIGHUP, without a restart.
#[test]
fn serve_reloads_the_service_tag_cache_on_sighup() {
    let data = tempfile::tempdir().unwrap();
    let shipped = |change: u32| {
        format!(
            "{}/../../tests/data/service-tags/ServiceTags_Public_{change}.json",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    let update = |change: u32| {
        let out = Command::new(env!("CARGO_BIN_EXE_opennsg"))
            .args(["tags", "update", "--from-file", &shipped(change), "--data"])
            .arg(data.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    update(375);
    let port = free_port();
    let server = start(data.path(), port);
    let token = std::fs::read_to_string(data.path().join("token")).unwrap();
    let change_number = || {
        let (status, body) = http(
            port,
            "GET",
            "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Network/locations/westeurope/serviceTags?api-version=2024-05-01",
            token.trim(),
            "",
        );
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        answer["changeNumber"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(change_number(), "375");
    update(376);
    let hangup = Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    while change_number() != "376" {
        assert!(Instant::now() < deadline, "the new tags were not picked up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A restart keeps the self-signed certificate clients were told to trust (`enforce --watch
/// --ca-cert DATA/cert.pem` outlives a restart of the server); other names make a new one.
#[test]
fn the_self_signed_certificate_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let certificate = |names: &[&str]| {
        let mut args = vec!["--tls-self-signed"];
        for name in names {
            args.extend(["--tls-name", name]);
        }
        let server = start_with(data.path(), free_port(), &args);
        let pem = std::fs::read(data.path().join("cert.pem")).unwrap();
        drop(server);
        pem
    };
    let first = certificate(&["nsg.example"]);
    assert_eq!(certificate(&["nsg.example"]), first);
    assert_ne!(certificate(&["other.example"]), first);
    let key = std::fs::metadata(data.path().join("key.pem")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
}
