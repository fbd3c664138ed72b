//! Extractors whose rejections answer in the route group's own error shape (axum's answer in text/plain).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Deserialize;
use yunmo_service::ServiceError;

use crate::auth::shape_of;
use crate::error::ApiError;

/// The query string, parsed; a malformed one is a 400 naming the problem, in the route's error shape.
pub struct Query<T>(pub T);

impl<T: for<'de> Deserialize<'de>, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => {
                let message = format!("invalid query string: {}", rejection.body_text());
                Err(ApiError::new(ServiceError::invalid(message), shape_of(parts.uri.path())))
            }
        }
    }
}
