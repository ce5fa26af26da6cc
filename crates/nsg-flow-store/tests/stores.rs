//! One table of cases run against every store: the directory store on a temporary folder, and
//! the blob store on a real Azurite (started per test, see `support`), each read back
//! independently of the store — files with `std::fs`, blobs with the Azure SDK's own list and
//! download calls.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;

use azure_core::error::ErrorKind;
use azure_core::http::RequestContent;
use azure_storage_blob::models::{BlockListType, StorageErrorCode};
use azure_storage_blob::BlobServiceClient;
use futures::TryStreamExt;
use nsg_flow_store::{
    service_client, BlobName, BlobPrefix, BlobStore, Credential, DirectoryStore, FlowLogStore,
    HourStamp, StoreError,
};
use serde_json::{json, Value};

const VNET_CONTAINER: &str = "insights-logs-flowlogflowevent";
const NSG_CONTAINER: &str = "insights-logs-networksecuritygroupflowevent";
const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";

/// What the cases need of a store: new instances on the same storage, and ways to look at the
/// storage that do not go through the store.
trait Implementation: Sync {
    /// A new store on the storage (a second one is a restart of the first).
    fn store(&self) -> Box<dyn FlowLogStore>;
    /// The blob's bytes as a reader gets them; `None` if it does not exist.
    fn read(&self, blob: &BlobName) -> Option<Vec<u8>>;
    /// The paths of every blob in the container, sorted.
    fn list(&self, container: &str) -> Vec<String>;
    /// Writes a blob the way another program would.
    fn put_foreign(&self, blob: &BlobName, content: &[u8]);
}

struct Directory {
    root: tempfile::TempDir,
}

impl Directory {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn file(&self, blob: &BlobName) -> std::path::PathBuf {
        self.root
            .path()
            .join(blob.container().as_str())
            .join(blob.path())
    }
}

impl Implementation for Directory {
    fn store(&self) -> Box<dyn FlowLogStore> {
        Box::new(DirectoryStore::new(self.root.path()))
    }

    fn read(&self, blob: &BlobName) -> Option<Vec<u8>> {
        match fs::read(self.file(blob)) {
            Ok(content) => Some(content),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => panic!("reading {blob}: {error}"),
        }
    }

    fn list(&self, container: &str) -> Vec<String> {
        fn walk(directory: &Path, relative: &str, found: &mut Vec<String>) {
            let Ok(entries) = fs::read_dir(directory) else {
                return;
            };
            for entry in entries {
                let entry = entry.expect("directory entry");
                let name = entry.file_name().into_string().expect("UTF-8 file name");
                let child = if relative.is_empty() {
                    name
                } else {
                    format!("{relative}/{name}")
                };
                if entry.file_type().expect("file type").is_dir() {
                    walk(&entry.path(), &child, found);
                } else {
                    found.push(child);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.root.path().join(container), "", &mut found);
        found.sort();
        found
    }

    fn put_foreign(&self, blob: &BlobName, content: &[u8]) {
        let file = self.file(blob);
        fs::create_dir_all(file.parent().expect("a blob file has a directory")).expect("mkdir");
        fs::write(file, content).expect("write a foreign file");
    }
}

struct Blob {
    azurite: nsg_netlab::Azurite,
    client: BlobServiceClient,
    runtime: tokio::runtime::Runtime,
}

fn azurite_key() -> Credential {
    Credential::AccountKey {
        account: nsg_netlab::AZURITE_ACCOUNT.to_owned(),
        key: nsg_netlab::AZURITE_ACCOUNT_KEY.to_owned(),
    }
}

fn not_found(error: &azure_core::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::HttpResponse { error_code: Some(code), .. }
            if code == StorageErrorCode::BlobNotFound.as_ref()
                || code == StorageErrorCode::ContainerNotFound.as_ref()
    )
}

impl Blob {
    fn start() -> Self {
        let azurite = nsg_netlab::Azurite::start();
        let client = service_client(&azurite.endpoint(), azurite_key()).expect("SDK client");
        // Multi-threaded so that a reader thread and the test thread can both block on it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        Self {
            azurite,
            client,
            runtime,
        }
    }

    fn block_sizes(&self, blob: &BlobName) -> Vec<(Vec<u8>, i64)> {
        let client = self
            .client
            .blob_client(blob.container().as_str(), blob.path())
            .block_blob_client();
        let list = self.runtime.block_on(async {
            let response = client
                .get_block_list(BlockListType::All, None)
                .await
                .expect("block list");
            response.into_model().expect("block list XML")
        });
        assert!(
            list.uncommitted_blocks.unwrap_or_default().is_empty(),
            "blocks left uncommitted"
        );
        list.committed_blocks
            .unwrap_or_default()
            .into_iter()
            .map(|block| {
                (
                    block.name.unwrap_or_default(),
                    block.size.unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl Implementation for Blob {
    fn store(&self) -> Box<dyn FlowLogStore> {
        Box::new(BlobStore::new(&self.azurite.endpoint(), azurite_key()).expect("blob store"))
    }

    fn read(&self, blob: &BlobName) -> Option<Vec<u8>> {
        let client = self
            .client
            .blob_client(blob.container().as_str(), blob.path());
        self.runtime.block_on(async {
            match client.download(None).await {
                Ok(response) => Some(response.body.collect().await.expect("blob body").into()),
                Err(error) if not_found(&error) => None,
                Err(error) => panic!("downloading {blob}: {error}"),
            }
        })
    }

    fn list(&self, container: &str) -> Vec<String> {
        let client = self.client.blob_container_client(container);
        let mut names: Vec<String> = self.runtime.block_on(async {
            let mut listing = client.list_blobs(None).expect("list blobs");
            let mut names = Vec::new();
            loop {
                match listing.try_next().await {
                    Ok(Some(item)) => names.push(item.name.expect("a listed blob has a name")),
                    Ok(None) => return names,
                    Err(error) if not_found(&error) => return names,
                    Err(error) => panic!("listing {container}: {error}"),
                }
            }
        });
        names.sort();
        names
    }

    fn put_foreign(&self, blob: &BlobName, content: &[u8]) {
        let container = self.client.blob_container_client(blob.container().as_str());
        let client = self
            .client
            .blob_client(blob.container().as_str(), blob.path());
        self.runtime.block_on(async {
            container.create(None).await.expect("create container");
            client
                .upload(RequestContent::from(content.to_vec()), None)
                .await
                .expect("upload a foreign blob");
        });
    }
}

/// A VNet flow log blob in Azure's layout.
fn vnet_blob(flow_log: &str, hour: u8, mac: &str) -> BlobName {
    let path = format!(
        "flowLogResourceID=/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/\
         MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_EASTUS/FLOWLOGS/{flow_log}/\
         y=2026/m=12/d=04/h={hour:02}/m=00/macAddress={mac}/PT1H.json"
    );
    BlobName::new(VNET_CONTAINER, &path).expect("a valid blob name")
}

fn vnet_scope(flow_log: &str) -> BlobPrefix {
    BlobPrefix::parse(&format!(
        "{VNET_CONTAINER}/flowLogResourceID=/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/\
         NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_EASTUS/\
         FLOWLOGS/{flow_log}"
    ))
    .expect("a valid prefix")
}

/// A record shaped like a VNet flow log record, numbered so order is visible.
fn record(minute: u32) -> Value {
    json!({
        "time": format!("2026-12-04T01:{:02}:00.0000000Z", minute % 60),
        "flowLogVersion": 4,
        "flowLogGUID": "66aa66aa-bb77-cc88-dd99-00ee00ee00ee",
        "macAddress": "00224871C205",
        "category": "FlowLogFlowEvent",
        "operationName": "FlowLogFlowEvent",
        "flowRecords": {"flows": [{"aclID": "00000000-1111-2222-3333-444444444444", "flowGroups": [{
            "rule": "DefaultRule_AllowInternetOutBound",
            "flowTuples": [format!("{},10.0.0.6,52.239.184.180,{},443,6,O,E,NX,3,767,2,1580",
                1_796_346_000_000_u64 + u64::from(minute) * 60_000, 20_000 + minute)]
        }]}]}
    })
}

fn records(minutes: std::ops::Range<u32>) -> Vec<Value> {
    minutes.map(record).collect()
}

/// The blob's records, failing unless it is exactly one JSON document `{"records":[…]}`.
fn document(implementation: &dyn Implementation, blob: &BlobName) -> Vec<Value> {
    let content = implementation
        .read(blob)
        .unwrap_or_else(|| panic!("{blob} does not exist"));
    parse_document(&content)
        .unwrap_or_else(|fault| panic!("{blob}: {fault}: {}", String::from_utf8_lossy(&content)))
}

fn parse_document(content: &[u8]) -> Result<Vec<Value>, String> {
    let value: Value = serde_json::from_slice(content).map_err(|error| error.to_string())?;
    match value {
        Value::Object(mut object) if object.len() == 1 => match object.remove("records") {
            Some(Value::Array(records)) => Ok(records),
            _ => Err("no records array".to_owned()),
        },
        _ => Err("not an object with only `records`".to_owned()),
    }
}

fn each_append_leaves_exactly_the_records_appended_in_order(implementation: &dyn Implementation) {
    let mut store = implementation.store();
    let blob = vnet_blob("FL1", 1, "00224871C205");
    let mut expected = Vec::new();
    for batch in [0..1, 1..4, 4..5, 5..7] {
        let batch = records(batch);
        store.append(&blob, &batch).expect("append");
        expected.extend(batch);
        assert_eq!(document(implementation, &blob), expected);
    }
    // Compact JSON, nothing around it: the same bytes in every store.
    let compact: Vec<String> = expected.iter().map(Value::to_string).collect();
    let bytes = format!("{{\"records\":[{}]}}", compact.join(","));
    assert_eq!(
        implementation.read(&blob).map(String::from_utf8),
        Some(Ok(bytes))
    );
}

fn blob_names_are_exactly_as_given(implementation: &dyn Implementation) {
    let mut store = implementation.store();
    let vnet = [
        vnet_blob("FL1", 1, "00224871C205"),
        vnet_blob("FL1", 1, "00224871C206"),
        vnet_blob("FL2", 23, "00224871C205"),
        // The portal's form of the path, from Microsoft's pages.
        BlobName::new(
            VNET_CONTAINER,
            &format!(
                "flowLogResourceID=/{SUBSCRIPTION}_NETWORKWATCHERRG/NETWORKWATCHER_EASTUS_FL3-RG1-FLOWLOGS/\
                 y=2026/m=12/d=04/h=01/m=00/macAddress=00224871C205/PT1H.json"
            ),
        )
        .expect("valid"),
    ];
    let nsg = BlobName::parse(&format!(
        "{NSG_CONTAINER}/resourceId=/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/RG1/PROVIDERS/\
         MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG1/y=2026/m=12/d=04/h=01/m=00/\
         macAddress=00224871C205/PT1H.json"
    ))
    .expect("valid");
    for blob in vnet.iter().chain([&nsg]) {
        store.append(blob, &records(0..1)).expect("append");
    }
    let mut expected: Vec<String> = vnet.iter().map(|blob| blob.path().to_owned()).collect();
    expected.sort();
    assert_eq!(implementation.list(VNET_CONTAINER), expected);
    assert_eq!(
        implementation.list(NSG_CONTAINER),
        vec![nsg.path().to_owned()]
    );
}

fn sixty_minutes_of_appends_make_one_hour(implementation: &dyn Implementation) {
    let mut store = implementation.store();
    let blob = vnet_blob("FL1", 1, "00224871C205");
    for minute in 0..60 {
        store.append(&blob, &[record(minute)]).expect("append");
    }
    assert_eq!(document(implementation, &blob), records(0..60));
    assert_eq!(
        implementation.list(VNET_CONTAINER),
        vec![blob.path().to_owned()]
    );
}

fn retention_removes_older_hours_of_its_flow_log_only(implementation: &dyn Implementation) {
    let mut store = implementation.store();
    let older = vnet_blob("FL1", 1, "00224871C205");
    let newer = vnet_blob("FL1", 2, "00224871C205");
    // FL10 starts with "FL1" but is another flow log, with its own retention.
    let other_flow_log = vnet_blob("FL10", 1, "00224871C205");
    let without_hour = BlobName::new(
        VNET_CONTAINER,
        &format!("{}/notes.json", vnet_scope("FL1").path()),
    )
    .expect("valid");
    for blob in [&older, &newer, &other_flow_log, &without_hour] {
        store.append(blob, &records(0..2)).expect("append");
    }
    let cutoff = HourStamp::new(2026, 12, 4, 2).expect("an hour");
    assert_eq!(
        store
            .remove_older_than(&vnet_scope("FL1"), cutoff)
            .expect("retention"),
        1
    );
    let mut kept: Vec<String> = [&newer, &other_flow_log, &without_hour]
        .iter()
        .map(|blob| blob.path().to_owned())
        .collect();
    kept.sort();
    assert_eq!(implementation.list(VNET_CONTAINER), kept);
    assert_eq!(implementation.read(&older), None);
    assert_eq!(document(implementation, &newer), records(0..2));
    assert_eq!(
        store
            .remove_older_than(&vnet_scope("FL1"), cutoff)
            .expect("retention again"),
        0
    );
}

fn retention_of_a_container_never_written_deletes_nothing(implementation: &dyn Implementation) {
    let mut store = implementation.store();
    let cutoff = HourStamp::new(2026, 12, 4, 2).expect("an hour");
    assert_eq!(
        store
            .remove_older_than(&vnet_scope("FL1"), cutoff)
            .expect("retention"),
        0
    );
}

fn a_new_store_continues_the_blobs_of_an_earlier_one(implementation: &dyn Implementation) {
    let blob = vnet_blob("FL1", 1, "00224871C205");
    implementation
        .store()
        .append(&blob, &records(0..2))
        .expect("first store");
    implementation
        .store()
        .append(&blob, &records(2..3))
        .expect("second store");
    assert_eq!(document(implementation, &blob), records(0..3));
}

fn no_records_write_nothing(implementation: &dyn Implementation) {
    let blob = vnet_blob("FL1", 1, "00224871C205");
    implementation.store().append(&blob, &[]).expect("append");
    assert_eq!(implementation.read(&blob), None);
    assert_eq!(implementation.list(VNET_CONTAINER), Vec::<String>::new());
}

fn a_blob_written_by_another_program_is_refused_and_kept(implementation: &dyn Implementation) {
    let blob = vnet_blob("FL1", 1, "00224871C205");
    let foreign = br#"[{"not": "a flow log"}]"#;
    implementation.put_foreign(&blob, foreign);
    let error = implementation
        .store()
        .append(&blob, &records(0..1))
        .expect_err("a foreign blob");
    let message = error.to_string();
    assert!(
        message.contains(blob.path()) && message.contains("not a flow log document"),
        "{message}"
    );
    assert_eq!(implementation.read(&blob), Some(foreign.to_vec()));
}

fn a_reader_polling_during_appends_never_sees_invalid_json(implementation: &dyn Implementation) {
    const APPENDS: u32 = 40;
    let blob = vnet_blob("FL1", 1, "00224871C205");
    let mut store = implementation.store();
    let started = Barrier::new(2);
    let done = AtomicBool::new(false);
    let reads = thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0;
            let mut seen = 0;
            started.wait();
            loop {
                let finished = done.load(Ordering::Acquire);
                if let Some(content) = implementation.read(&blob) {
                    let found = parse_document(&content).unwrap_or_else(|fault| {
                        panic!(
                            "read {reads}: {fault}: {}",
                            String::from_utf8_lossy(&content)
                        )
                    });
                    assert!(
                        found.len() >= seen,
                        "records went from {seen} to {}",
                        found.len()
                    );
                    assert_eq!(found, records(0..found.len() as u32), "read {reads}");
                    seen = found.len();
                    reads += 1;
                }
                if finished {
                    return reads;
                }
            }
        });
        started.wait();
        for minute in 0..APPENDS {
            store.append(&blob, &[record(minute)]).expect("append");
        }
        done.store(true, Ordering::Release);
        reader.join().expect("the reader thread")
    });
    // The last read came after the last append.
    assert!(reads >= 1);
    assert_eq!(document(implementation, &blob), records(0..APPENDS));
}

/// Each case becomes one test per implementation, `directory::CASE` and `blob::CASE`.
macro_rules! every_store {
    ($($case:ident),* $(,)?) => {
        mod directory {
            $(#[test] fn $case() { super::$case(&super::Directory::new()) })*
        }
        mod blob {
            $(#[test] fn $case() { super::$case(&super::Blob::start()) })*
        }
    };
}

every_store!(
    each_append_leaves_exactly_the_records_appended_in_order,
    blob_names_are_exactly_as_given,
    sixty_minutes_of_appends_make_one_hour,
    retention_removes_older_hours_of_its_flow_log_only,
    retention_of_a_container_never_written_deletes_nothing,
    a_new_store_continues_the_blobs_of_an_earlier_one,
    no_records_write_nothing,
    a_blob_written_by_another_program_is_refused_and_kept,
    a_reader_polling_during_appends_never_sees_invalid_json,
);

#[test]
fn blobs_are_block_blobs_in_azures_blocks() {
    let storage = Blob::start();
    let blob = vnet_blob("FL1", 1, "00224871C205");
    let mut store = storage.store();
    store.append(&blob, &records(0..1)).expect("append");
    store.append(&blob, &records(1..3)).expect("append");
    let blocks = storage.block_sizes(&blob);
    // As Microsoft's "Read flow logs" shows them: 12 bytes `{"records":[`, one block per record
    // (a comma before all but the first), 2 bytes `]}`; ids all of one length.
    let sizes: Vec<i64> = blocks.iter().map(|(_, size)| *size).collect();
    let record_size = |minute, comma| record(minute).to_string().len() as i64 + comma;
    assert_eq!(
        sizes,
        vec![
            12,
            record_size(0, 0),
            record_size(1, 1),
            record_size(2, 1),
            2
        ]
    );
    assert!(blocks.iter().all(|(id, _)| id.len() == blocks[0].0.len()));
}

#[test]
fn directory_files_are_0644_and_retention_removes_emptied_hour_directories() {
    let directory = Directory::new();
    let mut store = directory.store();
    let older = vnet_blob("FL1", 1, "00224871C205");
    let newer = vnet_blob("FL1", 2, "00224871C205");
    store.append(&older, &records(0..1)).expect("append");
    store.append(&newer, &records(0..1)).expect("append");
    let mode = fs::metadata(directory.file(&newer))
        .expect("the file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);

    let cutoff = HourStamp::new(2026, 12, 4, 2).expect("an hour");
    assert_eq!(
        store
            .remove_older_than(&vnet_scope("FL1"), cutoff)
            .expect("retention"),
        1
    );
    // `…/d=04/h=01/m=00/macAddress=…/PT1H.json`: everything from h=01 down is gone, d=04 stays.
    let hour_directory = |blob: &BlobName| {
        directory
            .file(blob)
            .ancestors()
            .nth(3)
            .expect("the h= directory")
            .to_owned()
    };
    assert!(!hour_directory(&older).exists());
    assert!(hour_directory(&newer).is_dir());
}

#[test]
fn a_store_given_a_sas_token_writes_as_one_given_the_key() {
    let storage = Blob::start();
    // The SDK client of the key carries an account SAS in its URL: a token as a user gets one.
    let token = storage.client.url().query().expect("a SAS").to_owned();
    let mut store = BlobStore::new(
        &storage.azurite.endpoint(),
        Credential::SharedAccessSignature(format!("?{token}")),
    )
    .expect("blob store");
    let blob = vnet_blob("FL1", 1, "00224871C205");
    store.append(&blob, &records(0..2)).expect("append");
    store.append(&blob, &records(2..3)).expect("append");
    assert_eq!(document(&storage, &blob), records(0..3));
}

#[test]
fn a_wrong_key_is_refused_with_the_services_status_and_code() {
    let azurite = nsg_netlab::Azurite::start();
    let wrong = Credential::AccountKey {
        account: nsg_netlab::AZURITE_ACCOUNT.to_owned(),
        key: "d3Jvbmcga2V5".to_owned(),
    };
    let mut store = BlobStore::new(&azurite.endpoint(), wrong).expect("blob store");
    let error = store
        .append(&vnet_blob("FL1", 1, "00224871C205"), &records(0..1))
        .expect_err("a wrong key");
    match &error {
        StoreError::Azure { status, code, .. } => {
            assert_eq!(*status, Some(403));
            assert_eq!(code.as_deref(), Some("AuthorizationFailure"));
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains(VNET_CONTAINER), "{error}");
}

#[test]
fn errors_never_carry_the_signature() {
    // Nothing listens there: the SDK's error names the request URL, SAS included.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}/{}", nsg_netlab::AZURITE_ACCOUNT);
    let mut store = BlobStore::new(&endpoint, azurite_key()).expect("blob store");
    let error = store
        .append(&vnet_blob("FL1", 1, "00224871C205"), &records(0..1))
        .expect_err("nothing listens");
    let text = format!("{error} {error:?}");
    assert!(text.contains("sig=REDACTED"), "{text}");
    assert_eq!(
        text.matches("sig=").count(),
        text.matches("sig=REDACTED").count(),
        "{text}"
    );
}

#[test]
fn a_container_deleted_under_the_store_is_made_again_by_the_next_append() {
    let storage = Blob::start();
    let blob = vnet_blob("FL1", 1, "00224871C205");
    let mut store = storage.store();
    store.append(&blob, &records(0..1)).expect("append");
    let container = storage.client.blob_container_client(VNET_CONTAINER);
    storage
        .runtime
        .block_on(container.delete(None))
        .expect("delete the container");
    let error = store
        .append(&blob, &records(1..2))
        .expect_err("no container");
    assert!(
        matches!(&error, StoreError::Azure { code: Some(code), .. } if code == "ContainerNotFound"),
        "{error:?}"
    );
    store.append(&blob, &records(2..3)).expect("append again");
    assert_eq!(document(&storage, &blob), records(2..3));
}

#[test]
fn the_blob_store_lists_and_reads_back_what_it_wrote() {
    let azurite = nsg_netlab::Azurite::start();
    let mut store = BlobStore::new(&azurite.endpoint(), azurite_key()).expect("blob store");
    let blobs = [
        vnet_blob("FL1", 1, "00224871C205"),
        vnet_blob("FL1", 2, "00224871C205"),
    ];
    for blob in &blobs {
        store.append(blob, &records(0..2)).expect("append");
    }
    let mut listed = store.list(&vnet_scope("FL1")).expect("list");
    listed.sort();
    let mut expected: Vec<String> = blobs.iter().map(|b| b.path().to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for blob in &blobs {
        let content = store.read(blob).expect("read").expect("exists");
        assert_eq!(parse_document(&content), Ok(records(0..2)));
    }
    assert_eq!(
        store
            .read(&vnet_blob("FL1", 3, "00224871C205"))
            .expect("read"),
        None
    );
    assert_eq!(
        store.list(&vnet_scope("FL9")).expect("list"),
        Vec::<String>::new()
    );
}
