//! The ARM-compatible Microsoft.Network REST API of `opennsg serve`, on the durable store.
//!
//! Served today: networkSecurityGroups (PUT, GET, PATCH tags, DELETE, lists by resource group
//! and subscription) with their securityRules and defaultSecurityRules children, and
//! applicationSecurityGroups. ARM behaviour: PUT answers 201 on create and 200 on update with the
//! whole resource and `provisioningState: "Succeeded"` (no asynchronous operations), a full NSG
//! PUT replaces its rules, `If-Match` / `If-None-Match: *` give 412 `PreconditionFailed`, DELETE
//! answers 200, or 204 if absent, every write is validated with Azure's codes and answered only
//! after it is durable, errors are `{"error": {...}}` and bad input is never a 5xx.
//!
//! Requests need `Authorization: Bearer TOKEN` (compared in constant time), except `/healthz`.

mod back_references;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod operations;
pub mod providers;
pub mod request;
pub mod resource_groups;
pub mod resources;
pub mod watcher;

use crate::error::ApiError;
use crate::request::{Action, Target};
use crate::resources::Answer;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use nsg_store::Store;
use nsg_tags::Catalog;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Largest request body accepted (an NSG of 1,000 rules with 4,000-address sides fits).
pub const BODY_LIMIT: usize = 32 << 20;

/// What every request handler shares.
pub struct AppState {
    pub store: Store,
    /// The service tags in force; replaced whole when the tag files change (see
    /// [`AppState::replace_catalog`]).
    catalog: std::sync::RwLock<Arc<Catalog>>,
    /// Accepted bearer tokens.
    pub tokens: Vec<String>,
    /// Where clients reach this server (`https://nsg.example:8443`), for `nextLink`s: never
    /// taken from a request's `Host` header, which a caller chooses.
    pub public_url: String,
    /// Items per list page.
    pub page_size: usize,
    /// Subscriptions `GET /subscriptions` lists.
    pub subscriptions: Vec<String>,
    /// The tenant id of those subscriptions and of issued identity tokens.
    pub tenant: String,
    /// Whether `/msi/token` answers (see [`identity`]).
    pub identity_endpoint: bool,
    /// Identity tokens issued, with their expiry.
    issued: std::sync::Mutex<HashMap<String, std::time::Duration>>,
    /// Bumped by every write: cached views older than it are stale.
    generation: std::sync::atomic::AtomicU64,
    /// Each subscription's model for Network Watcher's questions, as of some generation.
    views: std::sync::Mutex<HashMap<String, Arc<watcher::View>>>,
    /// Each subscription's NSG associations (subnets and NICs per NSG), as of some generation.
    pub(crate) associations:
        std::sync::Mutex<HashMap<String, (u64, Arc<back_references::BackReferences>)>>,
    pub metrics: metrics::Metrics,
    /// Answers of long-running operations, kept for clients to poll.
    operations: operations::Operations,
}

/// The subscription `GET /subscriptions` lists unless told otherwise.
pub const DEFAULT_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";
/// The tenant OpenNSG's subscriptions belong to.
pub const DEFAULT_TENANT: &str = "00000000-0000-0000-0000-00000000000a";

impl AppState {
    /// A state with defaults: HTTP, pages of 100, the default subscription, no identity endpoint.
    pub fn new(store: Store, catalog: Arc<Catalog>, tokens: Vec<String>) -> AppState {
        AppState {
            store,
            catalog: std::sync::RwLock::new(catalog),
            tokens,
            public_url: "http://localhost".to_string(),
            page_size: 100,
            subscriptions: vec![DEFAULT_SUBSCRIPTION.to_string()],
            tenant: DEFAULT_TENANT.to_string(),
            identity_endpoint: false,
            issued: std::sync::Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            views: std::sync::Mutex::new(HashMap::new()),
            associations: std::sync::Mutex::new(HashMap::new()),
            metrics: metrics::Metrics::default(),
            operations: operations::Operations::default(),
        }
    }

    /// The service tags in force now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts new service tags in force: requests from now on use them, and every cached view
    /// (built with the old tags) is stale.
    pub fn replace_catalog(&self, catalog: Catalog) {
        *self
            .catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(catalog);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The write generation: how many writes this server has applied.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Remembers an identity token until `expires` (seconds since the epoch).
    fn issue(&self, token: String, expires: std::time::Duration) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if let Ok(mut issued) = self.issued.lock() {
            issued.retain(|_, until| *until > now);
            issued.insert(token, expires);
        }
    }

    fn accepts(&self, presented: &str) -> bool {
        let configured = self.tokens.iter().fold(false, |ok, known| {
            ok | bool::from(known.as_bytes().ct_eq(presented.as_bytes()))
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let issued = self
            .issued
            .lock()
            .map(|issued| issued.get(presented).is_some_and(|until| *until > now))
            .unwrap_or(false);
        configured || issued
    }
}

/// The router: `/healthz` open, everything else behind the bearer token.
pub fn router(state: Arc<AppState>) -> Router {
    let arm = Router::new()
        .route("/subscriptions", get(list_subscriptions))
        .route("/{*path}", any(arm_request))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics_text))
        .route("/msi/token", get(identity_token))
        .merge(arm)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(arm_error_bodies))
        .layer(middleware::from_fn(request_ids))
        .with_state(state)
}

/// ARM's request ids on every answer; the client's id, when it sends one, correlates.
async fn request_ids(request: Request, next: Next) -> Response {
    let correlation = request
        .headers()
        .get("x-ms-client-request-id")
        .cloned()
        .unwrap_or_else(new_id_header);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("x-ms-request-id", new_id_header());
    headers.insert("x-ms-correlation-request-id", correlation);
    response
}

/// Every error answer is an ARM error body. Ours are already; axum's own rejections (a body
/// over the limit or unreadable, a path that is not UTF-8, a method a route does not take)
/// come as plain text or empty, and are rewritten here with the same status and headers.
async fn arm_error_bodies(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let said = String::from_utf8_lossy(&text).trim().to_string();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "MethodNotAllowed",
            format!("The method {method} is not supported on this path."),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "RequestEntityTooLarge",
            format!("The request body is larger than the limit of {BODY_LIMIT} bytes."),
        ),
        StatusCode::NOT_FOUND => ("NotFound", "No such path.".to_string()),
        status if status.is_client_error() => (
            "InvalidRequestFormat",
            if said.is_empty() {
                "The request cannot be read.".to_string()
            } else {
                format!("The request cannot be read: {said}")
            },
        ),
        _ => ("InternalServerError", "The server failed.".to_string()),
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

fn new_id_header() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a header value")
}

async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let accepted = presented.is_some_and(|token| state.accepts(token));
    if accepted {
        next.run(request).await
    } else {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            if presented.is_some() {
                "InvalidAuthenticationToken"
            } else {
                "AuthenticationFailed"
            },
            if presented.is_some() {
                "The access token is invalid."
            } else {
                "Authentication failed. The 'Authorization' header is missing."
            },
        )
        .into_response();
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        response
    }
}

async fn list_subscriptions(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match request::parse_query(&query) {
        Ok(_) => Json(identity::subscriptions(&state)).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn identity_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let resource = query.get("resource").map(String::as_str);
    match identity::token(&state, &headers, resource) {
        Ok(token) => Json(token).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let stored = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || state.store.count()).await
    };
    if let Ok(Ok(count)) = stored {
        state.metrics.resources.set(count as i64);
    }
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn arm_request(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    request_path: axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let path = request_path.0;
    let started = std::time::Instant::now();
    let operation = request::operation(&path);
    let method_label = method.to_string();
    let metrics_state = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        let call = Call {
            method: &method,
            headers: &headers,
            query: &query,
            path: &path,
            body: &body,
        };
        handle(&state, call)
    })
    .await;
    let response = match result {
        Ok(Ok(answer)) => {
            let mut response = match answer.body {
                Some(body) => (answer.status, Json(body)).into_response(),
                None => answer.status.into_response(),
            };
            for (name, value) in answer.headers {
                match HeaderValue::from_str(&value) {
                    Ok(value) => {
                        response.headers_mut().insert(name, value);
                    }
                    Err(_) => {
                        tracing::error!(header = name, "an answer's header is not a header value")
                    }
                }
            }
            response
        }
        Ok(Err(error)) => error.into_response(),
        Err(join) => {
            tracing::error!(error = %join, "request handler failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "The request failed inside the server.",
            )
            .into_response()
        }
    };
    let metrics = &metrics_state.metrics;
    metrics
        .requests
        .get_or_create(&metrics::RequestLabels {
            operation: operation.clone(),
            method: method_label,
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&metrics::OperationLabels { operation })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// One ARM request, as the handler got it.
struct Call<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    query: &'a HashMap<String, String>,
    path: &'a str,
    body: &'a [u8],
}

/// One ARM request, synchronously (the store blocks). Every write makes cached views stale;
/// bumped whatever the outcome, since an extra rebuild is cheaper than reasoning about which
/// failed writes wrote nothing.
fn handle(state: &AppState, call: Call<'_>) -> Result<Answer, ApiError> {
    let answer = route(state, &call);
    if matches!(*call.method, Method::PUT | Method::PATCH | Method::DELETE) {
        state
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
    answer
}

/// Routes a request, then acts.
fn route(state: &AppState, call: &Call<'_>) -> Result<Answer, ApiError> {
    let Call {
        method,
        headers,
        query,
        path,
        body,
    } = *call;
    let target = request::parse_path(path)?;
    let query = request::parse_query(query)?;
    let precondition = request::precondition(headers)?;
    resources::flow_logs::require_watcher(state, method, &target)?;
    match (target, method.clone()) {
        (Target::Resource { kind, id }, Method::GET) => resources::get(state, kind, &id),
        (Target::Resource { kind, id }, Method::PUT) => {
            resources::put(state, kind, &id, resources::parse_body(body)?, precondition)
        }
        (Target::Resource { kind, id }, Method::PATCH) => {
            resources::patch_tags(state, kind, &id, resources::parse_body(body)?, precondition)
        }
        (Target::Resource { kind, id }, Method::DELETE) => {
            resources::delete(state, kind, &id, precondition)
        }
        (Target::List { kind, scope }, Method::GET) => {
            let (value, next) = resources::list(state, kind, scope, query.skip_token.as_ref())?;
            Ok(Answer::ok(list_page(
                state,
                path,
                &query.api_version,
                value,
                next,
            )))
        }
        (Target::ResourceGroups { subscription }, Method::GET) => {
            let (value, next) =
                resource_groups::list(state, &subscription, query.skip_token.as_ref())?;
            Ok(Answer::ok(list_page(
                state,
                path,
                &query.api_version,
                value,
                next,
            )))
        }
        (Target::ResourceGroup { subscription, name }, method) => match method {
            Method::PUT => {
                resource_groups::put(state, &subscription, &name, resources::parse_body(body)?)
            }
            Method::GET => resource_groups::get(state, &subscription, &name),
            Method::HEAD => resource_groups::exists(state, &subscription, &name),
            Method::DELETE => resource_groups::delete(state, &subscription, &name),
            other => Err(request::method_not_allowed(&other)),
        },
        (
            Target::Children {
                kind,
                parent,
                child,
            },
            Method::GET,
        ) => resources::list_children(state, kind, &parent, child),
        (
            Target::ChildResource {
                kind,
                parent,
                child,
                name,
            },
            Method::GET,
        ) => resources::get_child(state, kind, &parent, child, &name),
        (
            Target::ChildResource {
                kind,
                parent,
                child,
                name,
            },
            Method::PUT,
        ) => resources::put_child(
            state,
            kind,
            &parent,
            child,
            &name,
            resources::parse_body(body)?,
            precondition,
        ),
        (
            Target::ChildResource {
                kind,
                parent,
                child,
                name,
            },
            Method::DELETE,
        ) => resources::delete_child(state, kind, &parent, child, &name, precondition),
        (
            Target::Action {
                id,
                action: Action::IpFlowVerify,
            },
            Method::POST,
        ) => watcher::ip_flow_verify(state, &id, resources::parse_body(body)?),
        (
            Target::Action {
                id,
                action: Action::EffectiveNetworkSecurityGroups,
            },
            Method::POST,
        ) => watcher::effective(state, &id),
        (
            Target::Action {
                id,
                action: Action::SecurityGroupView,
            },
            Method::POST,
        ) => watcher::security_group_view(state, &id, resources::parse_body(body)?),
        (
            Target::Action {
                id,
                action: Action::NetworkConfigurationDiagnostic,
            },
            Method::POST,
        ) => watcher::diagnostic::run(state, &id, &query.api_version, resources::parse_body(body)?),
        (
            Target::OperationResult {
                subscription,
                location,
                id,
            },
            Method::GET,
        ) => operations::result(state, &subscription, &location, &id),
        (
            Target::Provider {
                subscription,
                namespace,
            },
            Method::GET,
        ) => providers::get(&subscription, &namespace),
        (Target::ServiceTags { subscription, .. }, Method::GET) => {
            Ok(watcher::service_tags(state, &subscription))
        }
        (_, method) => Err(request::method_not_allowed(&method)),
    }
}

/// One page of a list, with the `nextLink` clients follow verbatim (it carries the
/// api-version).
fn list_page(
    state: &AppState,
    path: &str,
    api_version: &str,
    value: Vec<serde_json::Value>,
    next: Option<nsg_store::PageToken>,
) -> serde_json::Value {
    let mut page = json!({ "value": value });
    if let Some(next) = next {
        page["nextLink"] = json!(format!(
            "{}/{path}?api-version={api_version}&$skipToken={}",
            state.public_url,
            next.as_str()
        ));
    }
    page
}

/// A certificate and its private key, PEM.
pub struct Tls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl Tls {
    /// A self-signed certificate for `localhost` and the loopback addresses (clients trust it
    /// with e.g. `REQUESTS_CA_BUNDLE=cert.pem`).
    pub fn self_signed(extra_names: &[String]) -> Result<Tls, String> {
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        names.extend(extra_names.iter().cloned());
        let certified = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
        Ok(Tls {
            cert_pem: certified.cert.pem().into_bytes(),
            key_pem: certified.key_pair.serialize_pem().into_bytes(),
        })
    }
}

/// Where the server listens and what it serves.
pub struct ServeOptions {
    pub listen: std::net::SocketAddr,
    pub state: Arc<AppState>,
    /// HTTPS with this certificate; plain HTTP without.
    pub tls: Option<Tls>,
}

/// Serves until Ctrl-C or SIGTERM; in-flight requests finish (their writes are already durable
/// when answered).
pub async fn serve(options: ServeOptions) -> std::io::Result<()> {
    let app = router(options.state);
    match options.tls {
        None => {
            let listener = tokio::net::TcpListener::bind(options.listen).await?;
            tracing::info!(address = %listener.local_addr()?, "serving the Microsoft.Network API over HTTP");
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
        Some(tls) => {
            // One process-wide crypto provider; a second install is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config =
                axum_server::tls_rustls::RustlsConfig::from_pem(tls.cert_pem, tls.key_pem).await?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            tracing::info!(address = %options.listen, "serving the Microsoft.Network API over HTTPS");
            axum_server::bind_rustls(options.listen, config)
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
