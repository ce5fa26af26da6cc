//! Long-running operations as Azure answers them: `202 Accepted` with a `Location` to poll, and
//! the answer at that location. Operations here finish before the 202 is sent (an answer is
//! computed in the request), so the first poll gets it; only the last [`KEPT`] answers are kept,
//! in memory: they are derived from the store and a client can ask again.

use crate::error::ApiError;
use crate::resources::{location_name, Answer};
use crate::AppState;
use axum::http::StatusCode;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How many finished operations' answers are kept for polling.
pub const KEPT: usize = 1_000;

/// The answers of the last [`KEPT`] finished operations, oldest first.
#[derive(Default)]
pub struct Operations {
    finished: Mutex<VecDeque<Finished>>,
}

struct Finished {
    /// Lower case: subscription ids are compared case-insensitively, like every id.
    subscription: String,
    /// As [`location_name`] spells it.
    location: String,
    id: String,
    answer: Arc<Value>,
}

impl Operations {
    /// Keeps `answer` as a finished operation of `subscription` in `location`; returns its id.
    fn finish(&self, subscription: &str, location: &str, answer: Value) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let finished = Finished {
            subscription: subscription.to_ascii_lowercase(),
            location: location_name(location),
            id: id.clone(),
            answer: Arc::new(answer),
        };
        let mut kept = self
            .finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(finished);
        id
    }

    fn get(&self, subscription: &str, location: &str, id: &str) -> Option<Arc<Value>> {
        let (subscription, location) = (subscription.to_ascii_lowercase(), location_name(location));
        let kept = self
            .finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.iter()
            .rev()
            .find(|f| {
                f.subscription == subscription
                    && f.location == location
                    && f.id.eq_ignore_ascii_case(id)
            })
            .map(|f| f.answer.clone())
    }
}

/// Answers a finished operation the way Azure answers a long-running one: 202 with the absolute
/// URL of its result (built from the server's public URL, like `nextLink`s).
pub fn accepted(
    state: &AppState,
    subscription: &str,
    location: &str,
    api_version: &str,
    answer: Value,
) -> Answer {
    let id = state.operations.finish(subscription, location, answer);
    Answer::accepted(format!(
        "{}/subscriptions/{subscription}/providers/Microsoft.Network/locations/{}/operationResults/{id}?api-version={api_version}",
        state.public_url.trim_end_matches('/'),
        location_name(location),
    ))
}

/// `GET …/locations/{location}/operationResults/{id}`: the operation's answer, 200; 404
/// `OperationNotFound` for an id this server did not give out or no longer keeps.
pub fn result(
    state: &AppState,
    subscription: &str,
    location: &str,
    id: &str,
) -> Result<Answer, ApiError> {
    let answer = state.operations.get(subscription, location, id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            format!(
                "The operation '{id}' in location '{location}' was not found: it does not exist or is \
                 no longer kept (the server keeps the last {KEPT} results)."
            ),
        )
    })?;
    Ok(Answer::ok(answer.as_ref().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_last_results_are_kept() {
        let operations = Operations::default();
        let first = operations.finish("SUB", "West Europe", json!(0));
        assert_eq!(
            operations.get("sub", "westeurope", &first).as_deref(),
            Some(&json!(0)),
            "subscription and location compared as ARM compares them"
        );
        assert!(operations.get("other", "westeurope", &first).is_none());
        let ids: Vec<String> = (1..=KEPT)
            .map(|i| operations.finish("sub", "westeurope", json!(i)))
            .collect();
        assert!(
            operations.get("sub", "westeurope", &first).is_none(),
            "the oldest went"
        );
        assert_eq!(
            operations.get("sub", "westeurope", &ids[0]).as_deref(),
            Some(&json!(1))
        );
        assert_eq!(
            operations
                .get("sub", "westeurope", &ids[KEPT - 1])
                .as_deref(),
            Some(&json!(KEPT))
        );
    }
}
