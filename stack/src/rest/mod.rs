//! A PostgREST-compatible HTTP API (`/rest/v1`), imitating PostgREST v14.

use axum::Router;

/// What the REST gateway needs to serve one database.
#[derive(Clone, Debug)]
pub struct RestConfig {
    /// Connection string of the database, logging in as the `authenticator` role.
    pub db_url: String,
    /// The HS256 secret that signs API keys and user tokens.
    pub jwt_secret: String,
}

/// Builds the router to be nested at `/rest/v1`.
pub async fn router(_cfg: RestConfig) -> anyhow::Result<Router> {
    Ok(Router::new())
}
