//! The client handle: cheap to clone, one HTTP connection pool shared by every clone.
#![warn(missing_docs)]

use std::fmt;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;

use crate::config::{check_header_token, AccessTokenProvider, Auth, Config};
use crate::error::{Error, ErrorKind, Result};
use crate::rest::{encode, Query};

/// A handle on one Supabase project's REST API.
///
/// Cloning is cheap (a reference count): every clone shares the same HTTP connection pool and
/// configuration. [`Client::with_access_token`] gives a handle that acts for a given user,
/// still sharing the pool, so a server can serve many users from one client.
///
/// ```no_run
/// use livechat::{Client, Config};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Department { id: String, name: String }
///
/// # async fn demo() -> livechat::Result<()> {
/// let client = Client::new(Config::from_env()?)?;
/// let departments: Vec<Department> = client
///     .from("mod_chat_departments")
///     .select("id,name")
///     .eq("site_id", "b0000000-0000-4000-8000-000000000001")
///     .order_asc("sort_order")
///     .fetch()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    pub(crate) auth: Auth,
    pub(crate) schema: Option<Arc<str>>,
}

pub(crate) struct Shared {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) rest_url: String,
    pub(crate) api_key: String,
    pub(crate) api_key_header: HeaderValue,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.shared.url)
            .field("auth", &self.auth)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client (and its connection pool) from a configuration.
    ///
    /// ```
    /// let client = livechat::Client::new(livechat::Config::new("http://127.0.0.1:54321", "key")?)?;
    /// assert_eq!(client.rest_url(), "http://127.0.0.1:54321/rest/v1");
    /// # Ok::<(), livechat::Error>(())
    /// ```
    pub fn new(config: Config) -> Result<Client> {
        check_header_token(config.api_key(), "API key")?;
        let mut api_key_header = HeaderValue::from_str(config.api_key())
            .map_err(|e| Error::config("the API key is not a valid header value").with_source(e))?;
        api_key_header.set_sensitive(true);
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("livechat/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = config.timeout() {
            builder = builder.timeout(t);
        }
        if let Some(t) = config.connect_timeout() {
            builder = builder.connect_timeout(t);
        }
        let http = builder
            .build()
            .map_err(|e| Error::config("could not build the HTTP client").with_source(e))?;
        Ok(Client {
            shared: Arc::new(Shared {
                http,
                url: config.url().to_string(),
                rest_url: config.rest_url(),
                api_key: config.api_key().to_string(),
                api_key_header,
            }),
            schema: config.schema().map(Arc::from),
            auth: config.auth,
        })
    }

    /// A client configured from the environment (see [`Config::from_env`]).
    pub fn from_env() -> Result<Client> {
        Client::new(Config::from_env()?)
    }

    /// A handle acting as the user of `access_token` (a Supabase Auth JWT), sharing this
    /// client's connection pool. Row-level security applies to that user.
    ///
    /// ```no_run
    /// # async fn demo(client: livechat::Client, user_jwt: String) -> livechat::Result<()> {
    /// let as_user = client.with_access_token(user_jwt);
    /// let visible: Vec<serde_json::Value> = as_user.from("mod_chat_conversations").fetch().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_access_token(&self, access_token: impl Into<String>) -> Client {
        Client {
            shared: self.shared.clone(),
            auth: Auth::Token(Arc::from(access_token.into().trim())),
            schema: self.schema.clone(),
        }
    }

    /// A handle that fetches the access token from `provider` before each request.
    pub fn with_access_token_provider(&self, provider: impl AccessTokenProvider) -> Client {
        Client {
            shared: self.shared.clone(),
            auth: Auth::Provider(Arc::new(provider)),
            schema: self.schema.clone(),
        }
    }

    /// A handle acting with the API key alone (no user).
    pub fn without_access_token(&self) -> Client {
        Client {
            shared: self.shared.clone(),
            auth: Auth::ApiKey,
            schema: self.schema.clone(),
        }
    }

    /// A handle on another schema (sent as `Accept-Profile` / `Content-Profile`). The schema
    /// must be exposed by the project's API settings.
    pub fn schema(&self, schema: impl Into<String>) -> Client {
        Client {
            shared: self.shared.clone(),
            auth: self.auth.clone(),
            schema: Some(Arc::from(schema.into())),
        }
    }

    /// Starts a request on a table or view.
    pub fn from(&self, table: impl AsRef<str>) -> Query {
        let url = format!(
            "{}/{}",
            self.shared.rest_url,
            encode::path_segment(table.as_ref())
        );
        Query::new(self.clone(), table.as_ref().to_string(), url, None)
    }

    /// Starts a call of a database function, `POST /rest/v1/rpc/<function>` with `args`
    /// serialized as the JSON object of named arguments.
    ///
    /// Finish it with [`Query::call`] for any result shape (scalar, object, array, or `()` for
    /// `void`), or with [`Query::fetch`] / [`Query::single`] for functions returning rows, which
    /// also accept filters, `select`, ordering and paging.
    ///
    /// ```no_run
    /// # async fn demo(client: livechat::Client) -> livechat::Result<()> {
    /// #[derive(serde::Serialize)]
    /// struct Args { a: i32, b: i32 }
    /// let sum: i32 = client.rpc("add", &Args { a: 1, b: 2 }).call().await?;
    /// # Ok(()) }
    /// ```
    pub fn rpc<A: Serialize + ?Sized>(&self, function: impl AsRef<str>, args: &A) -> Query {
        let url = format!(
            "{}/rpc/{}",
            self.shared.rest_url,
            encode::path_segment(function.as_ref())
        );
        let body = serde_json::to_string(args).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("could not serialize the arguments of {}", function.as_ref()),
            )
            .with_source(e)
        });
        Query::new(
            self.clone(),
            format!("rpc/{}", function.as_ref()),
            url,
            Some(body),
        )
    }

    /// The project URL.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The REST endpoint (`<project URL>/rest/v1`).
    pub fn rest_url(&self) -> &str {
        &self.shared.rest_url
    }

    /// The API key this client sends in the `apikey` header.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// The schema chosen with [`Client::schema`] or [`Config::with_schema`].
    pub fn schema_name(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The user access token requests carry now: the fixed token, the provider's current token,
    /// or `None` when acting with the API key alone.
    pub async fn access_token(&self) -> Result<Option<String>> {
        match &self.auth {
            Auth::ApiKey => Ok(None),
            Auth::Token(t) => Ok(Some(t.to_string())),
            Auth::Provider(p) => p.access_token().await.map_err(|e| {
                Error::new(ErrorKind::Auth, "the access-token provider failed").with_source(e)
            }),
        }
    }

    /// The bearer token requests carry in `Authorization`: the user access token, or the API
    /// key when there is no user (as Supabase clients do).
    pub async fn bearer_token(&self) -> Result<String> {
        Ok(self
            .access_token()
            .await?
            .unwrap_or_else(|| self.shared.api_key.clone()))
    }

    /// Options for a realtime client of the same project: the project URL, this client's API
    /// key, and its access token (the fixed token, or the provider asked before every join
    /// and heartbeat; when the provider fails the last token it gave is used). Tune them and
    /// finish with [`build`](crate::realtime::RealtimeOptions::build) or
    /// [`connect`](crate::realtime::RealtimeOptions::connect).
    ///
    /// ```no_run
    /// # async fn demo(client: livechat::Client) -> Result<(), livechat::realtime::Error> {
    /// use std::time::Duration;
    /// let realtime = client
    ///     .realtime_options()
    ///     .heartbeat_interval(Duration::from_secs(15))
    ///     .connect()
    ///     .await?;
    /// # let _ = realtime;
    /// # Ok(()) }
    /// ```
    pub fn realtime_options(&self) -> crate::realtime::RealtimeOptions {
        let options =
            crate::realtime::RealtimeOptions::new(self.shared.url.clone(), &*self.shared.api_key);
        match &self.auth {
            Auth::ApiKey => options,
            Auth::Token(t) => {
                let t = t.clone();
                options.access_token(move || {
                    let t = t.to_string();
                    async move { Some(t) }
                })
            }
            Auth::Provider(p) => {
                let p = p.clone();
                let last: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
                options.access_token(move || {
                    let p = p.clone();
                    let last = last.clone();
                    async move {
                        match p.access_token().await {
                            Ok(token) => {
                                if let Ok(mut l) = last.lock() {
                                    l.clone_from(&token);
                                }
                                token
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "access-token provider failed; realtime keeps the last token");
                                last.lock().ok().and_then(|l| l.clone())
                            }
                        }
                    }
                })
            }
        }
    }

    /// A realtime client of the same project with this client's API key and access token
    /// (see [`realtime_options`](Client::realtime_options)), not connected yet: it connects
    /// on [`connect`](crate::realtime::RealtimeClient::connect) or on the first channel
    /// subscribe. Must be called inside a Tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo(client: livechat::Client) -> Result<(), livechat::realtime::Error> {
    /// use livechat::realtime::ChannelConfig;
    /// let realtime = client.realtime()?;
    /// let room = realtime.channel("room1", ChannelConfig::new()).await?;
    /// room.subscribe().await?;
    /// # Ok(()) }
    /// ```
    pub fn realtime(
        &self,
    ) -> std::result::Result<crate::realtime::RealtimeClient, crate::realtime::Error> {
        self.realtime_options().build()
    }

    /// The headers every request carries: `apikey` and `Authorization: Bearer …`.
    pub(crate) async fn auth_headers(&self) -> Result<HeaderMap> {
        let bearer = self.bearer_token().await?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {bearer}")).map_err(|e| {
            Error::new(
                ErrorKind::Auth,
                "the access token contains characters that cannot be sent in a header",
            )
            .with_source(e)
        })?;
        auth.set_sensitive(true);
        let mut h = HeaderMap::new();
        h.insert("apikey", self.shared.api_key_header.clone());
        h.insert(reqwest::header::AUTHORIZATION, auth);
        Ok(h)
    }
}
