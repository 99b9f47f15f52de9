//! Broadcast over HTTP: `POST /realtime/v1/api/broadcast`.

use super::error::{Error, ErrorKind};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;
use url::Url;

/// One message for [`RealtimeClient::broadcast_http`](super::RealtimeClient::broadcast_http).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpBroadcastMessage {
    /// The channel name, without the `realtime:` prefix.
    pub topic: String,
    /// The user event name.
    pub event: String,
    /// The payload.
    pub payload: Value,
    /// Send to the private channel of that name (needs an RLS write policy).
    pub private: bool,
}

impl HttpBroadcastMessage {
    /// A message for the public channel `topic`.
    pub fn new(topic: impl Into<String>, event: impl Into<String>, payload: Value) -> Self {
        let topic = topic.into();
        HttpBroadcastMessage {
            topic: topic
                .strip_prefix("realtime:")
                .map(str::to_string)
                .unwrap_or(topic),
            event: event.into(),
            payload,
            private: false,
        }
    }

    /// Targets the private channel of that name.
    pub fn private(mut self, on: bool) -> Self {
        self.private = on;
        self
    }
}

#[derive(Serialize)]
struct Body<'a> {
    messages: &'a [HttpBroadcastMessage],
}

#[derive(Debug)]
pub(crate) struct HttpBroadcaster {
    client: reqwest::Client,
    url: Url,
    api_key: String,
}

impl HttpBroadcaster {
    pub(crate) fn new(url: Url, api_key: String, timeout: Duration) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::Http, "cannot build the HTTP client").with_source(e)
            })?;
        Ok(HttpBroadcaster {
            client,
            url,
            api_key,
        })
    }

    /// Sends the batch; the server answers 202 with an empty body.
    pub(crate) async fn send(
        &self,
        token: Option<&str>,
        messages: &[HttpBroadcastMessage],
    ) -> Result<(), Error> {
        let body = serde_json::to_vec(&Body { messages }).map_err(|e| {
            Error::new(ErrorKind::InvalidInput, "cannot serialize the messages").with_source(e)
        })?;
        let bearer = token.unwrap_or(&self.api_key);
        let resp = self
            .client
            .post(self.url.clone())
            .header("apikey", &self.api_key)
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Http
                };
                Error::new(kind, "HTTP broadcast request failed").with_source(e)
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or(text);
        tracing::warn!(status = status.as_u16(), %message, "HTTP broadcast refused");
        let class = super::ErrorClass::for_http_status(status.as_u16());
        let class = if status.as_u16() == 401 {
            super::ErrorClass::RefreshToken
        } else {
            class
        };
        Err(Error::new(
            ErrorKind::Http,
            format!("HTTP broadcast refused: {message}"),
        )
        .with_status(status.as_u16())
        .with_class(class))
    }
}
