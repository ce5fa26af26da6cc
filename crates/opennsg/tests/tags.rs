//! `opennsg tags`: `update` from a real HTTP server on loopback serving the shipped files (and
//! what a bad download does to the cache), `list`, `show`, `diff`, `export`, and the commands
//! that read the cache by default.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use support::{opennsg_with, shipped_tag_file, text, Site};

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/service-tags/"
);

fn shipped(change: u32) -> Vec<u8> {
    std::fs::read(shipped_tag_file(change)).expect("shipped file")
}

/// Runs `opennsg` with `home` as XDG_DATA_HOME.
fn opennsg(home: &Path, args: &[&str]) -> Output {
    opennsg_with(&[("XDG_DATA_HOME", home)], args)
}

/// The cache's files and what `current.json` names.
fn cache_state(home: &Path) -> (Vec<String>, Option<PathBuf>) {
    let dir = home.join("opennsg/service-tags");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    (names, std::fs::read_link(dir.join("current.json")).ok())
}

#[test]
fn update_follows_the_download_page_and_a_bad_download_leaves_the_cache_as_it_was() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut wrong_cloud: serde_json::Value = serde_json::from_slice(&shipped(376)).expect("json");
    wrong_cloud["cloud"] = "AzureGovernment".into();
    let truncated = shipped(376)[..2000].to_vec();
    let environment = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/seed-vms.json"
    ))
    .expect("fixture");
    // The page links to the week's file the way Microsoft's download page does; the server's
    // address is known only once it runs, so the page is a second site's.
    let files = Site::start(vec![
        (
            "/download/ServiceTags_Public_20251103.json",
            200,
            "application/json",
            shipped(375),
        ),
        ("/new.json", 200, "application/octet-stream", shipped(376)),
        ("/old.json", 200, "application/json", shipped(375)),
        ("/truncated.json", 200, "application/json", truncated),
        (
            "/error.html",
            200,
            "text/html",
            b"<!DOCTYPE html><html><body>Service Unavailable</body></html>".to_vec(),
        ),
        ("/gone", 503, "text/html", b"<html>busy</html>".to_vec()),
        ("/environment.json", 200, "application/json", environment),
        (
            "/government.json",
            200,
            "application/json",
            serde_json::to_vec(&wrong_cloud).expect("json"),
        ),
    ]);
    let page = format!(
        r#"<html><script>window.__DLCDetails__={{"downloadFile":[{{"url":"{}/download/ServiceTags_Public_20251103.json"}}]}}</script></html>"#,
        files.url
    );
    let pages = Site::start(vec![("/details.aspx", 200, "text/html", page.into_bytes())]);

    let first = opennsg(
        home.path(),
        &[
            "tags",
            "update",
            "--from-url",
            &format!("{}/details.aspx", pages.url),
        ],
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stderr).contains(
            "ServiceTags_Public_20251103.json (Public, changeNumber 375, 8 tags) saved to"
        ),
        "{}",
        text(&first.stderr)
    );
    assert_eq!(
        text(&first.stdout),
        "no previous file: nothing to compare\n"
    );
    let installed = cache_state(home.path());
    let mode = std::fs::metadata(
        home.path()
            .join("opennsg/service-tags/ServiceTags_Public_375.json"),
    )
    .expect("cached file")
    .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o644,
        "readable by the services' users"
    );
    assert_eq!(
        installed,
        (
            vec![
                "ServiceTags_Public_375.json".to_string(),
                "current.json".to_string()
            ],
            Some(PathBuf::from("ServiceTags_Public_375.json"))
        )
    );

    for (path, says) in [
        ("/truncated.json", "not a service tag file"),
        ("/error.html", "HTML"),
        ("/gone", "503"),
        ("/environment.json", "not a service tag file"),
        ("/government.json", "not Public: pass --cloud"),
        ("/missing.json", "404"),
    ] {
        let refused = opennsg(
            home.path(),
            &[
                "tags",
                "update",
                "--from-url",
                &format!("{}{path}", files.url),
            ],
        );
        assert_eq!(refused.status.code(), Some(2), "{path}");
        let stderr = text(&refused.stderr);
        assert!(stderr.contains(says), "{path}: {stderr}");
        assert_eq!(
            cache_state(home.path()),
            installed,
            "{path} changed the cache"
        );
    }

    let second = opennsg(
        home.path(),
        &[
            "tags",
            "update",
            "--from-url",
            &format!("{}/new.json", files.url),
        ],
    );
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(
        text(&second.stdout),
        "changeNumber 375 -> 376: 1 tags added, 1 removed, 3 changed\n\
         + Storage.NorthEurope (changeNumber 27, 3 prefixes)\n\
         - ApiManagement.AustraliaCentral (changeNumber 3, 5 prefixes)\n\
         ~ AzureCloud (changeNumber 273 -> 274): +13.70.192.0/18 +13.74.0.0/16 +2603:1020:6::/47\n\
         ~ Storage (changeNumber 54 -> 55): +13.69.41.0/28 +13.70.208.16/28 +13.74.208.64/28 +2603:1020:6::/49 -13.95.240.32/28\n\
         ~ Storage.WestEurope (changeNumber 39 -> 40): +13.69.41.0/28 -13.95.240.32/28\n"
    );
    // An older week downloaded again is kept but does not become current.
    let older = opennsg(
        home.path(),
        &[
            "tags",
            "update",
            "--from-url",
            &format!("{}/old.json", files.url),
        ],
    );
    assert!(older.status.success(), "{}", text(&older.stderr));
    assert!(
        text(&older.stderr).contains("older than the current file"),
        "{}",
        text(&older.stderr)
    );
    assert_eq!(
        cache_state(home.path()).1,
        Some(PathBuf::from("ServiceTags_Public_376.json"))
    );
    let listed = opennsg(home.path(), &["tags", "list"]);
    let listed = text(&listed.stdout);
    assert!(
        listed.contains("  Public 375 ") && listed.contains("* Public 376 "),
        "{listed}"
    );

    // The other commands read the current file when no --service-tags is given: 13.69.41.5 is
    // Storage.WestEurope only from change 376 on.
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/service-tags.json"
    );
    let verify = |home: &Path| {
        let args = [
            "verify",
            fixture,
            "--nic",
            "st-nic",
            "--direction",
            "outbound",
            "--protocol",
            "tcp",
            "--local",
            "10.70.1.4:50000",
            "--remote",
            "13.69.41.5:443",
            "--json",
        ];
        opennsg(home, &args)
    };
    let with_cache = text(&verify(home.path()).stdout);
    assert!(with_cache.contains("Allow-Storage-WE"), "{with_cache}");
    let empty = tempfile::tempdir().expect("tempdir");
    let without = verify(empty.path());
    assert_eq!(
        without.status.code(),
        Some(2),
        "no cache, no tags: the environment names unknown tags"
    );
    assert!(
        text(&without.stderr).contains("opennsg tags update"),
        "{}",
        text(&without.stderr)
    );
}

#[test]
fn diff_show_and_export_read_files() {
    let home = tempfile::tempdir().expect("tempdir");
    let (old, new) = (
        format!("{DATA}ServiceTags_Public_375.json"),
        format!("{DATA}ServiceTags_Public_376.json"),
    );
    let changed = opennsg(home.path(), &["tags", "diff", &old, &new]);
    assert_eq!(changed.status.code(), Some(1));
    assert!(text(&changed.stdout)
        .contains("~ Storage.WestEurope (changeNumber 39 -> 40): +13.69.41.0/28 -13.95.240.32/28"));
    let same = opennsg(home.path(), &["tags", "diff", &old, &old]);
    assert_eq!(
        (same.status.code(), text(&same.stdout).lines().count()),
        (Some(0), 1)
    );
    let json = opennsg(home.path(), &["tags", "diff", &old, &new, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(json["added"][0]["name"], "Storage.NorthEurope");
    assert_eq!(json["changed"][2]["removed"][0], "13.95.240.32/28");

    let show = opennsg(
        home.path(),
        &["tags", "show", "storage.westeurope", "--service-tags", &old],
    );
    let shown = text(&show.stdout);
    assert!(
        shown.contains("name:           Storage.WestEurope")
            && shown.contains("region:         westeurope")
            && shown.contains("  13.69.40.16/28"),
        "{shown}"
    );
    for (family, expected) in [
        (
            "ipv4",
            "13.69.40.16/28\n13.95.96.176/28\n13.95.240.16/28\n13.95.240.32/28\n",
        ),
        ("ipv6", "2603:1020:207::/48\n"),
    ] {
        let export = opennsg(
            home.path(),
            &[
                "tags",
                "export",
                "Storage.WestEurope",
                "--family",
                family,
                "--service-tags",
                &old,
            ],
        );
        assert_eq!(text(&export.stdout), expected, "{family}");
    }
    let unknown = opennsg(
        home.path(),
        &["tags", "show", "NoSuchTag", "--service-tags", &old],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr)
            .contains("ServiceTags_Public_375.json (8 tags, cloud Public, changeNumber 375)"),
        "{}",
        text(&unknown.stderr)
    );
    let no_cache = opennsg(home.path(), &["tags", "show", "Storage"]);
    assert!(
        text(&no_cache.stderr).contains("run `opennsg tags update`"),
        "{}",
        text(&no_cache.stderr)
    );
}
