//! What an ARM request addresses, parsed once from its path and query: ARM paths are
//! case-insensitive, so routing is done here rather than by a case-sensitive router.

use crate::error::ApiError;
use axum::http::{HeaderMap, Method, StatusCode};
use nsg_model::id::types;
use nsg_model::ResourceId;
use nsg_store::{PageToken, Precondition, Scope};
use std::collections::HashMap;

/// The resource types this server stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    NetworkSecurityGroup,
    ApplicationSecurityGroup,
    VirtualNetwork,
    NetworkInterface,
    VirtualMachine,
    NetworkWatcher,
    /// `networkWatchers/{nw}/flowLogs/{name}`: stored as rows of their own (see
    /// [`Kind::nested`]).
    FlowLog,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::NetworkSecurityGroup,
        Kind::ApplicationSecurityGroup,
        Kind::VirtualNetwork,
        Kind::NetworkInterface,
        Kind::VirtualMachine,
        Kind::NetworkWatcher,
        Kind::FlowLog,
    ];

    /// The full ARM type, as Azure spells it.
    pub fn arm_type(self) -> &'static str {
        match self {
            Kind::NetworkSecurityGroup => types::NETWORK_SECURITY_GROUP,
            Kind::ApplicationSecurityGroup => types::APPLICATION_SECURITY_GROUP,
            Kind::VirtualNetwork => types::VIRTUAL_NETWORK,
            Kind::NetworkInterface => types::NETWORK_INTERFACE,
            Kind::VirtualMachine => types::VIRTUAL_MACHINE,
            Kind::NetworkWatcher => "Microsoft.Network/networkWatchers",
            // As Azure spells it in flow log answers.
            Kind::FlowLog => "Microsoft.Network/networkWatchers/FlowLogs",
        }
    }

    /// The last segment of the type (`networkWatchers`, `FlowLogs`).
    fn type_segment(self) -> &'static str {
        self.arm_type().rsplit('/').next().unwrap_or("resource")
    }

    fn from_path(namespace: &str, segment: &str) -> Option<Kind> {
        let wanted = format!("{namespace}/{segment}");
        Kind::ALL
            .into_iter()
            .find(|k| k.arm_type().eq_ignore_ascii_case(&wanted))
    }

    /// The kinds below a resource of this kind that ARM manages as resources of their own: rows
    /// of their own, not children inside this kind's documents.
    fn nested(self) -> &'static [Kind] {
        match self {
            Kind::NetworkWatcher => &[Kind::FlowLog],
            _ => &[],
        }
    }

    /// The child collections kept inside this kind's documents.
    pub fn children(self) -> &'static [Child] {
        match self {
            Kind::NetworkSecurityGroup => &[Child::SecurityRules, Child::DefaultSecurityRules],
            Kind::VirtualNetwork => &[Child::Subnets],
            _ => &[],
        }
    }

    /// POST operations on a resource of this kind.
    fn actions(self) -> &'static [Action] {
        match self {
            Kind::NetworkInterface => &[Action::EffectiveNetworkSecurityGroups],
            Kind::NetworkWatcher => &[
                Action::IpFlowVerify,
                Action::SecurityGroupView,
                Action::NetworkConfigurationDiagnostic,
            ],
            _ => &[],
        }
    }
}

/// Child collections of a resource document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Child {
    SecurityRules,
    DefaultSecurityRules,
    Subnets,
}

impl Child {
    /// The collection's name in the path and in `properties`.
    pub fn collection(self) -> &'static str {
        match self {
            Child::SecurityRules => "securityRules",
            Child::DefaultSecurityRules => "defaultSecurityRules",
            Child::Subnets => "subnets",
        }
    }

    /// The ARM type of one child.
    pub fn arm_type(self) -> &'static str {
        match self {
            Child::SecurityRules => types::SECURITY_RULE,
            Child::DefaultSecurityRules => types::DEFAULT_SECURITY_RULE,
            Child::Subnets => types::SUBNET,
        }
    }
}

/// POST operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    EffectiveNetworkSecurityGroups,
    IpFlowVerify,
    SecurityGroupView,
    NetworkConfigurationDiagnostic,
}

impl Action {
    fn segment(self) -> &'static str {
        match self {
            Action::EffectiveNetworkSecurityGroups => "effectiveNetworkSecurityGroups",
            Action::IpFlowVerify => "ipFlowVerify",
            Action::SecurityGroupView => "securityGroupView",
            Action::NetworkConfigurationDiagnostic => "networkConfigurationDiagnostic",
        }
    }
}

/// What a path addresses.
#[derive(Clone, Debug)]
pub enum Target {
    /// `…/providers/{namespace}/{type}` in a resource group or a subscription, or
    /// `…/{type}/{name}/{nested type}` below a parent (a watcher's flow logs).
    List { kind: Kind, scope: Scope },
    /// `…/{type}/{name}`.
    Resource { kind: Kind, id: ResourceId },
    /// `…/{type}/{name}/{children}`.
    Children {
        kind: Kind,
        parent: ResourceId,
        child: Child,
    },
    /// `…/{type}/{name}/{children}/{name}`.
    ChildResource {
        kind: Kind,
        parent: ResourceId,
        child: Child,
        name: String,
    },
    /// `POST …/{type}/{name}/{action}`.
    Action { id: ResourceId, action: Action },
    /// `/subscriptions/{sub}/providers/Microsoft.Network/locations/{location}/serviceTags`.
    ServiceTags {
        subscription: String,
        location: String,
    },
    /// `/subscriptions/{sub}/providers/Microsoft.Network/locations/{location}/operationResults/{id}`:
    /// where a long-running operation's answer is polled.
    OperationResult {
        subscription: String,
        location: String,
        id: String,
    },
    /// `/subscriptions/{sub}/providers/{namespace}`: a resource provider's metadata.
    Provider {
        subscription: String,
        namespace: String,
    },
    /// `/subscriptions/{sub}/resourcegroups`.
    ResourceGroups { subscription: String },
    /// `/subscriptions/{sub}/resourcegroups/{name}`.
    ResourceGroup { subscription: String, name: String },
}

/// Parses an ARM path (without the leading `/`).
pub fn parse_path(path: &str) -> Result<Target, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is = |i: usize, word: &str| {
        segments
            .get(i)
            .is_some_and(|s| s.eq_ignore_ascii_case(word))
    };
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            format!("The path '/{path}' is not an operation this server offers."),
        )
    };
    if !is(0, "subscriptions") || segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
        return Err(not_found());
    }
    let subscription = segments[1].to_string();
    check_subscription(&subscription)?;
    if is(2, "resourceGroups") {
        if let Some(group) = segments.get(3) {
            check_resource_group(group)?;
        }
    }
    if is(2, "resourceGroups") && segments.len() <= 4 {
        return Ok(match segments.get(3) {
            None => Target::ResourceGroups { subscription },
            Some(name) => Target::ResourceGroup {
                subscription,
                name: name.to_string(),
            },
        });
    }
    if is(2, "providers") && segments.len() == 4 {
        return Ok(Target::Provider {
            subscription,
            namespace: segments[3].to_string(),
        });
    }
    if is(2, "providers") && segments.len() == 5 {
        let kind = Kind::from_path(segments[3], segments[4]).ok_or_else(not_found)?;
        return Ok(Target::List {
            kind,
            scope: Scope::Subscription(subscription),
        });
    }
    // `…/providers/Microsoft.Network/locations/{location}/…`: what is asked of a location.
    if is(2, "providers") && is(3, "Microsoft.Network") && is(4, "locations") {
        let location = segments.get(5).map(|l| l.to_string());
        return match (location, segments.len()) {
            (Some(location), 7) if is(6, "serviceTags") => Ok(Target::ServiceTags {
                subscription,
                location,
            }),
            (Some(location), 8) if is(6, "operationResults") => Ok(Target::OperationResult {
                subscription,
                location,
                id: segments[7].to_string(),
            }),
            _ => Err(not_found()),
        };
    }
    if !(is(2, "resourceGroups") && is(4, "providers")) || segments.len() < 7 {
        return Err(not_found());
    }
    let kind = Kind::from_path(segments[5], segments[6]).ok_or_else(not_found)?;
    let id_of = |end: usize| {
        ResourceId::parse(&format!("/{}", segments[..end].join("/"))).map_err(|_| not_found())
    };
    match segments.len() {
        7 => Ok(Target::List {
            kind,
            scope: Scope::ResourceGroup(subscription, segments[3].to_string()),
        }),
        8 => Ok(Target::Resource {
            kind,
            id: id_of(8)?,
        }),
        9 | 10 => {
            let parent = id_of(8)?;
            if let Some(&nested) = kind
                .nested()
                .iter()
                .find(|k| k.type_segment().eq_ignore_ascii_case(segments[8]))
            {
                return Ok(match segments.len() {
                    9 => Target::List {
                        kind: nested,
                        scope: Scope::Parent(parent),
                    },
                    _ => Target::Resource {
                        kind: nested,
                        id: id_of(10)?,
                    },
                });
            }
            let child = kind
                .children()
                .iter()
                .find(|c| c.collection().eq_ignore_ascii_case(segments[8]));
            match (child, segments.get(9)) {
                (Some(&child), None) => Ok(Target::Children {
                    kind,
                    parent,
                    child,
                }),
                (Some(&child), Some(name)) => Ok(Target::ChildResource {
                    kind,
                    parent,
                    child,
                    name: name.to_string(),
                }),
                (None, None) => kind
                    .actions()
                    .iter()
                    .find(|a| a.segment().eq_ignore_ascii_case(segments[8]))
                    .map(|&action| Target::Action { id: parent, action })
                    .ok_or_else(not_found),
                (None, Some(_)) => Err(not_found()),
            }
        }
        _ => Err(not_found()),
    }
}

/// Subscription ids are GUIDs.
fn check_subscription(id: &str) -> Result<(), ApiError> {
    if uuid::Uuid::try_parse(id).is_ok() && id.len() == 36 {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "InvalidSubscriptionId",
        format!("The provided subscription identifier '{id}' is malformed or invalid."),
    ))
}

/// ARM's resource group names: 1 to 90 letters, digits, `-`, `_`, `.`, `(` and `)`, not
/// ending in `.`.
pub fn check_resource_group(name: &str) -> Result<(), ApiError> {
    let invalid: String = name
        .chars()
        .filter(|c| !(c.is_alphanumeric() || "-_.()".contains(*c)))
        .collect();
    let problem = if name.is_empty() || name.chars().count() > 90 {
        "must be 1 to 90 characters long".to_string()
    } else if !invalid.is_empty() {
        format!("has these invalid characters: '{invalid}'")
    } else if name.ends_with('.') {
        "must not end with a period".to_string()
    } else {
        return Ok(());
    };
    Err(ApiError::bad_request(
        "InvalidResourceGroup",
        format!(
            "The provided resource group name '{name}' {problem}. The name can only be a letter, \
             digit, '-', '.', '(', ')' or '_', and cannot end with '.'."
        ),
    ))
}

/// A low-cardinality name of what a path asks, for metrics.
pub fn operation(path: &str) -> String {
    match parse_path(path) {
        Ok(Target::List { kind, .. }) => format!("list {}", kind.type_segment()),
        Ok(Target::Resource { kind, .. }) => kind.type_segment().to_string(),
        Ok(Target::Children { child, .. } | Target::ChildResource { child, .. }) => {
            child.collection().to_string()
        }
        Ok(Target::Action { action, .. }) => action.segment().to_string(),
        Ok(Target::ServiceTags { .. }) => "serviceTags".to_string(),
        Ok(Target::OperationResult { .. }) => "operationResults".to_string(),
        Ok(Target::Provider { .. }) => "providers".to_string(),
        Ok(Target::ResourceGroups { .. }) => "list resourceGroups".to_string(),
        Ok(Target::ResourceGroup { .. }) => "resourceGroups".to_string(),
        Err(_) => "unknown".to_string(),
    }
}

/// The query parameters ARM requests carry.
pub struct Query {
    pub api_version: String,
    pub skip_token: Option<PageToken>,
}

/// `api-version` is required on every ARM request; any well-formed version is accepted.
pub fn parse_query(query: &HashMap<String, String>) -> Result<Query, ApiError> {
    let api_version = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v.clone())
        .ok_or_else(|| {
            ApiError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        })?;
    if !well_formed_api_version(&api_version) {
        return Err(ApiError::bad_request(
            "InvalidApiVersionParameter",
            format!("The api-version '{api_version}' is invalid. The supported format is YYYY-MM-DD or YYYY-MM-DD-preview."),
        ));
    }
    let skip_token = match query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("$skipToken"))
    {
        None => None,
        Some((_, token)) => Some(PageToken::parse(token).map_err(|_| {
            ApiError::bad_request(
                "InvalidSkipToken",
                format!("'{token}' is not a skip token of this server."),
            )
        })?),
    };
    Ok(Query {
        api_version,
        skip_token,
    })
}

fn well_formed_api_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let parts: Vec<&str> = date.split('-').collect();
    matches!(parts.as_slice(), [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2
        && [y, m, d].iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())))
}

/// `If-Match` / `If-None-Match: *`.
pub fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    if let Some(value) = headers.get("if-match") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("InvalidRequestFormat", "If-Match is not text"))?;
        return Ok(Precondition::IfMatch(value.to_string()));
    }
    match headers.get("if-none-match").map(|v| v.to_str()) {
        Some(Ok("*")) => Ok(Precondition::IfNoneMatch),
        Some(_) => Err(ApiError::bad_request(
            "InvalidRequestFormat",
            "If-None-Match supports only '*'.",
        )),
        None => Ok(Precondition::None),
    }
}

pub fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The method {method} is not supported on this path."),
    )
}
