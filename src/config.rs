//! Client configuration: the project URL, the API key, an optional user access token (fixed, or
//! fetched from an [`AccessTokenProvider`] before each request), timeouts and the schema.
//!
//! ```
//! use std::time::Duration;
//! use livechat::Config;
//!
//! let config = Config::new("http://127.0.0.1:54321", "anon-key")?
//!     .with_timeout(Duration::from_secs(10));
//! assert_eq!(config.rest_url(), "http://127.0.0.1:54321/rest/v1");
//! # Ok::<(), livechat::Error>(())
//! ```
#![warn(missing_docs)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{BoxError, Error, Result};

/// Environment variable holding the project URL (as `supabase status` prints it).
pub const ENV_URL: &str = "SUPABASE_URL";
/// Environment variable holding the anon API key.
pub const ENV_ANON_KEY: &str = "SUPABASE_ANON_KEY";
/// Environment variable holding the service-role API key.
pub const ENV_SERVICE_ROLE_KEY: &str = "SUPABASE_SERVICE_ROLE_KEY";

/// The default request timeout: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A boxed future returned by an [`AccessTokenProvider`].
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<Option<String>, BoxError>> + Send + 'a>>;

/// Supplies the current user access token (a JWT) before each request, e.g. from a session that
/// refreshes itself.
///
/// Returning `Ok(None)` means "no user": the request is sent with the API key as bearer token,
/// as Supabase clients do when signed out. An `Err` fails the request with
/// [`ErrorKind::Auth`](crate::ErrorKind::Auth).
///
/// Any `Fn() -> impl Future<Output = Result<Option<String>, BoxError>>` closure is a provider:
///
/// ```
/// use std::sync::{Arc, RwLock};
/// use livechat::{BoxError, Config};
///
/// let session = Arc::new(RwLock::new(Some("user-jwt".to_string())));
/// let provider = {
///     let session = session.clone();
///     move || {
///         let token = session.read().map(|t| t.clone()).map_err(|_| BoxError::from("poisoned"));
///         async move { token }
///     }
/// };
/// let config = Config::new("http://127.0.0.1:54321", "anon-key")?
///     .with_access_token_provider(provider);
/// # Ok::<(), livechat::Error>(())
/// ```
pub trait AccessTokenProvider: Send + Sync + 'static {
    /// The token to send now, or `None` to act with the API key alone.
    fn access_token(&self) -> TokenFuture<'_>;
}

impl<F, Fut> AccessTokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Option<String>, BoxError>> + Send + 'static,
{
    fn access_token(&self) -> TokenFuture<'_> {
        Box::pin((self)())
    }
}

/// Who the requests act as, beyond the API key.
#[derive(Clone, Default)]
pub(crate) enum Auth {
    /// The API key alone (anon or service role).
    #[default]
    ApiKey,
    /// A fixed user access token.
    Token(Arc<str>),
    /// A token fetched before each request.
    Provider(Arc<dyn AccessTokenProvider>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::ApiKey => f.write_str("ApiKey"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::Provider(_) => f.write_str("Provider(..)"),
        }
    }
}

/// Which API key [`Config::from_env_with`] reads.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKeyKind {
    /// `SUPABASE_ANON_KEY`: requests are subject to row-level security (as `anon`, or as the user
    /// of an access token).
    Anon,
    /// `SUPABASE_SERVICE_ROLE_KEY`: requests bypass row-level security. For trusted server-side
    /// processes only.
    ServiceRole,
}

/// Everything a [`Client`](crate::Client) needs to talk to a Supabase project.
///
/// Secrets are redacted from the `Debug` output.
#[derive(Clone)]
pub struct Config {
    url: String,
    api_key: String,
    pub(crate) auth: Auth,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    schema: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("schema", &self.schema)
            .finish()
    }
}

impl Config {
    /// A configuration for the project at `url` (e.g. `https://xyz.supabase.co` or
    /// `http://127.0.0.1:54321`) with an API key (anon or service role).
    ///
    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) when the URL is not an
    /// `http`/`https` URL or the key is empty or cannot be sent as an HTTP header.
    pub fn new(url: impl AsRef<str>, api_key: impl Into<String>) -> Result<Config> {
        let raw = url.as_ref().trim();
        let parsed = url::Url::parse(raw)
            .map_err(|e| Error::config(format!("invalid project URL {raw:?}")).with_source(e))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(Error::config(format!(
                "the project URL must be http(s)://host[:port], got {raw:?}"
            )));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::config(format!(
                "the project URL must not have a query or fragment, got {raw:?}"
            )));
        }
        let api_key = api_key.into().trim().to_string();
        check_header_token(&api_key, "API key")?;
        Ok(Config {
            url: raw.trim_end_matches('/').to_string(),
            api_key,
            auth: Auth::ApiKey,
            timeout: Some(DEFAULT_TIMEOUT),
            connect_timeout: None,
            schema: None,
        })
    }

    /// Reads `SUPABASE_URL` and an API key from the environment: `SUPABASE_SERVICE_ROLE_KEY`
    /// when it is set and not empty, otherwise `SUPABASE_ANON_KEY`. These are the names
    /// `supabase status -o env` prints (and the local stack's `up` command).
    ///
    /// Use [`Config::from_env_with`] to insist on one key.
    ///
    /// ```no_run
    /// let client = livechat::Client::new(livechat::Config::from_env()?)?;
    /// # Ok::<(), livechat::Error>(())
    /// ```
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], with the given API key.
    pub fn from_env_with(kind: ApiKeyKind) -> Result<Config> {
        Config::from_lookup_with(kind, |name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup` instead of the process
    /// environment (for tests, or a configuration file mapped to the same names).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use livechat::Config;
    ///
    /// let vars = HashMap::from([
    ///     ("SUPABASE_URL", "http://127.0.0.1:54321"),
    ///     ("SUPABASE_ANON_KEY", "anon.jwt.here"),
    /// ]);
    /// let config = Config::from_lookup(|name| vars.get(name).map(|v| v.to_string()))?;
    /// assert_eq!(config.url(), "http://127.0.0.1:54321");
    /// # Ok::<(), livechat::Error>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let service = lookup(ENV_SERVICE_ROLE_KEY).filter(|v| !v.trim().is_empty());
        let kind = if service.is_some() {
            ApiKeyKind::ServiceRole
        } else {
            ApiKeyKind::Anon
        };
        Config::from_lookup_with(kind, lookup)
    }

    /// Like [`Config::from_lookup`], with the given API key.
    pub fn from_lookup_with(
        kind: ApiKeyKind,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let get = |name: &str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| Error::config(format!("environment variable {name} is not set")))
        };
        let url = get(ENV_URL)?;
        let key = match kind {
            ApiKeyKind::Anon => get(ENV_ANON_KEY)?,
            ApiKeyKind::ServiceRole => get(ENV_SERVICE_ROLE_KEY)?,
        };
        Config::new(url, key)
    }

    /// Acts as the user of this access token (a JWT from Supabase Auth): requests carry
    /// `Authorization: Bearer <token>`, so row-level security applies to that user.
    pub fn with_access_token(mut self, token: impl Into<String>) -> Config {
        self.auth = Auth::Token(Arc::from(token.into().trim()));
        self
    }

    /// Fetches the access token from `provider` before each request.
    pub fn with_access_token_provider(mut self, provider: impl AccessTokenProvider) -> Config {
        self.auth = Auth::Provider(Arc::new(provider));
        self
    }

    /// The total time allowed for one request, from connecting to reading the whole body
    /// (default 30 s). `None` waits forever.
    pub fn with_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Config {
        self.timeout = timeout.into();
        self
    }

    /// The time allowed for establishing a connection (default: bounded only by the request
    /// timeout).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Config {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The database schema to use instead of the first exposed one (`public` on Supabase); sent
    /// as `Accept-Profile` / `Content-Profile`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Config {
        self.schema = Some(schema.into());
        self
    }

    /// The project URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The REST endpoint: the project URL followed by `/rest/v1`.
    pub fn rest_url(&self) -> String {
        format!("{}/rest/v1", self.url)
    }

    /// The API key.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The request timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// The schema, if one was chosen.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Whether a user access token or provider is configured.
    pub fn has_access_token(&self) -> bool {
        !matches!(self.auth, Auth::ApiKey)
    }
}

/// Checks that a secret can go into a header verbatim.
pub(crate) fn check_header_token(value: &str, what: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::config(format!("the {what} is empty")));
    }
    if !value.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(Error::config(format!(
            "the {what} contains characters that cannot be sent in an HTTP header"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::collections::HashMap;

    fn lookup(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        move |k| map.get(k).map(|v| v.to_string())
    }

    #[test]
    fn from_env_prefers_the_service_role_key() {
        let c = Config::from_lookup(lookup(&[
            (ENV_URL, "http://127.0.0.1:54321/"),
            (ENV_ANON_KEY, "anon"),
            (ENV_SERVICE_ROLE_KEY, "service"),
        ]))
        .unwrap();
        assert_eq!(c.api_key(), "service");
        assert_eq!(c.url(), "http://127.0.0.1:54321");
        assert_eq!(c.rest_url(), "http://127.0.0.1:54321/rest/v1");

        let c = Config::from_lookup(lookup(&[
            (ENV_URL, "http://127.0.0.1:54321"),
            (ENV_ANON_KEY, "anon"),
            (ENV_SERVICE_ROLE_KEY, ""),
        ]))
        .unwrap();
        assert_eq!(c.api_key(), "anon");

        let c = Config::from_lookup_with(
            ApiKeyKind::Anon,
            lookup(&[
                (ENV_URL, "http://127.0.0.1:54321"),
                (ENV_ANON_KEY, "anon"),
                (ENV_SERVICE_ROLE_KEY, "service"),
            ]),
        )
        .unwrap();
        assert_eq!(c.api_key(), "anon");
    }

    #[test]
    fn missing_variables_are_config_errors() {
        let e = Config::from_lookup(lookup(&[(ENV_ANON_KEY, "anon")])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("SUPABASE_URL"));
        let e = Config::from_lookup(lookup(&[(ENV_URL, "http://x")])).unwrap_err();
        assert!(e.to_string().contains("SUPABASE_ANON_KEY"));
    }

    #[test]
    fn bad_urls_and_keys_are_rejected() {
        for url in ["", "localhost:54321", "ftp://x", "http://x?a=1"] {
            assert_eq!(
                Config::new(url, "k").unwrap_err().kind(),
                ErrorKind::Config,
                "{url}"
            );
        }
        assert!(Config::new("http://x", "").is_err());
        assert!(Config::new("http://x", "a\nb").is_err());
        assert!(Config::new("https://xyz.supabase.co", "key").is_ok());
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Config::new("http://x", "secret-key")
            .unwrap()
            .with_access_token("secret-token");
        let s = format!("{c:?}");
        assert!(!s.contains("secret"), "{s}");
    }
}
