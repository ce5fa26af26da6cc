//! What an ARM request addresses, parsed once from its path and query: ARM paths are
//! case-insensitive, so routing is done here rather than by a case-sensitive router.

use crate::error::ApiError;
use axum::http::{HeaderMap, Method};
use nsg_model::ResourceId;
use nsg_store::{PageToken, Precondition, Scope};
use std::collections::HashMap;

/// The resource types this server stores, by their lower-cased ARM type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    NetworkSecurityGroup,
    ApplicationSecurityGroup,
}

impl Kind {
    pub fn from_segment(segment: &str) -> Option<Kind> {
        match segment.to_ascii_lowercase().as_str() {
            "networksecuritygroups" => Some(Kind::NetworkSecurityGroup),
            "applicationsecuritygroups" => Some(Kind::ApplicationSecurityGroup),
            _ => None,
        }
    }

    /// The full ARM type, as Azure spells it.
    pub fn arm_type(self) -> &'static str {
        match self {
            Kind::NetworkSecurityGroup => nsg_model::id::types::NETWORK_SECURITY_GROUP,
            Kind::ApplicationSecurityGroup => nsg_model::id::types::APPLICATION_SECURITY_GROUP,
        }
    }
}

/// Child collections of an NSG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Child {
    SecurityRules,
    DefaultSecurityRules,
}

impl Child {
    fn from_segment(segment: &str) -> Option<Child> {
        match segment.to_ascii_lowercase().as_str() {
            "securityrules" => Some(Child::SecurityRules),
            "defaultsecurityrules" => Some(Child::DefaultSecurityRules),
            _ => None,
        }
    }
}

/// What a path addresses.
#[derive(Clone, Debug)]
pub enum Target {
    /// `…/providers/Microsoft.Network/{type}` in a resource group or a subscription.
    List { kind: Kind, scope: Scope },
    /// `…/{type}/{name}`.
    Resource { kind: Kind, id: ResourceId },
    /// `…/networkSecurityGroups/{nsg}/{children}`.
    Children { parent: ResourceId, child: Child },
    /// `…/networkSecurityGroups/{nsg}/{children}/{name}`.
    ChildResource {
        parent: ResourceId,
        child: Child,
        name: String,
    },
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
            axum::http::StatusCode::NOT_FOUND,
            "InvalidResourceType",
            format!("The path '/{path}' is not an operation of this server (Microsoft.Network networkSecurityGroups and applicationSecurityGroups)."),
        )
    };
    if !is(0, "subscriptions") || segments.len() < 2 {
        return Err(not_found());
    }
    let subscription = segments[1].to_string();
    // Subscription-wide lists: /subscriptions/{sub}/providers/Microsoft.Network/{type}
    if is(2, "providers") && is(3, "Microsoft.Network") && segments.len() == 5 {
        let kind = Kind::from_segment(segments[4]).ok_or_else(not_found)?;
        return Ok(Target::List {
            kind,
            scope: Scope::Subscription(subscription),
        });
    }
    if !(is(2, "resourceGroups") && is(4, "providers") && is(5, "Microsoft.Network"))
        || segments.len() < 7
    {
        return Err(not_found());
    }
    let resource_group = segments[3].to_string();
    let kind = Kind::from_segment(segments[6]).ok_or_else(not_found)?;
    let id_of = |end: usize| {
        ResourceId::parse(&format!("/{}", segments[..end].join("/"))).map_err(|_| not_found())
    };
    match segments.len() {
        7 => Ok(Target::List {
            kind,
            scope: Scope::ResourceGroup(subscription, resource_group),
        }),
        8 => Ok(Target::Resource {
            kind,
            id: id_of(8)?,
        }),
        9 | 10 if kind == Kind::NetworkSecurityGroup => {
            let child = Child::from_segment(segments[8]).ok_or_else(not_found)?;
            let parent = id_of(8)?;
            match segments.get(9) {
                None => Ok(Target::Children { parent, child }),
                Some(name) if !name.is_empty() => Ok(Target::ChildResource {
                    parent,
                    child,
                    name: name.to_string(),
                }),
                Some(_) => Err(not_found()),
            }
        }
        _ => Err(not_found()),
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

/// Methods each target accepts, for 405 answers.
pub fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The method {method} is not supported on this path."),
    )
}
