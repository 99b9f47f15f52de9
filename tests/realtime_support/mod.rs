//! Test helpers for the realtime client: an in-process fake Realtime server (one background
//! task per connection answers heartbeats and forwards every frame to the test), and waiting
//! helpers with generous deadlines (tests run with paused time, so deadlines cost nothing).
//!
//! The server accepts TCP on 127.0.0.1 and, for paused-time tests, in-memory pipes
//! ([`FakeServer::options`] plugs one in as the client's transport). Paused time and real
//! sockets do not mix: when tokio's runtime parks it advances the paused clock to the next
//! timer even if that park just delivered socket readiness, so a deadline can fire before a
//! frame that was already on the wire is read. In-memory pipes wake the reading task directly.
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use livechat::realtime::serializer::{decode, encode, Frame, FramePayload, Side};
use livechat::realtime::Transport;
use livechat::realtime::{
    Backoff, Channel, ChannelEvent, ChannelStatus, ConnectionState, Protocol, RealtimeClient,
    RealtimeOptions, Subscription,
};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Long enough for any client timer to fire first; with paused time it is free.
pub const PATIENCE: Duration = Duration::from_secs(3600);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "livechat=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

pub struct FakeServer {
    pub port: u16,
    pub protocol: Protocol,
    conns: mpsc::UnboundedReceiver<Conn>,
    pipes: mpsc::UnboundedSender<DuplexStream>,
    refusals: Arc<Mutex<VecDeque<u16>>>,
    pub accepted: Arc<AtomicUsize>,
}

enum Out {
    Msg(Message),
    Close(u16, String),
    Drop,
}

/// One accepted WebSocket connection, seen from the server side.
pub struct Conn {
    pub protocol: Protocol,
    /// The request URI (path and query).
    pub uri: String,
    frames: mpsc::UnboundedReceiver<Frame>,
    out: mpsc::UnboundedSender<Out>,
    answer_heartbeats: Arc<AtomicBool>,
    pub heartbeats: Arc<AtomicUsize>,
    closed: watch::Receiver<bool>,
}

impl FakeServer {
    pub async fn start(protocol: Protocol) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, conns) = mpsc::unbounded_channel();
        let refusals = Arc::new(Mutex::new(VecDeque::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (r, a, t) = (refusals.clone(), accepted.clone(), tx.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let refusal = r.lock().unwrap().pop_front();
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(tcp, protocol, refusal, t.clone()));
            }
        });
        let (pipes, mut pipe_rx) = mpsc::unbounded_channel::<DuplexStream>();
        let (r, a) = (refusals.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Some(pipe) = pipe_rx.recv().await {
                let refusal = r.lock().unwrap().pop_front();
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(pipe, protocol, refusal, tx.clone()));
            }
        });
        FakeServer {
            port,
            protocol,
            conns,
            pipes,
            refusals,
            accepted,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next upgrade is answered with this HTTP status instead.
    pub fn refuse_next(&self, status: u16) {
        self.refusals.lock().unwrap().push_back(status);
    }

    pub async fn accept(&mut self) -> Conn {
        tokio::time::timeout(PATIENCE, self.conns.recv())
            .await
            .expect("no connection came")
            .expect("server stopped")
    }

    /// `true` if a connection is already waiting to be accepted.
    pub fn has_pending_connection(&mut self) -> bool {
        !self.conns.is_empty()
    }

    /// Options for a client of this server over an in-memory pipe, with a backoff of exactly
    /// 1 s (no jitter) to keep the timeline simple.
    pub fn options(&self) -> RealtimeOptions {
        let pipes = self.pipes.clone();
        self.tcp_options().transport(move |_url| {
            let pipes = pipes.clone();
            async move {
                let (client, server) = tokio::io::duplex(1 << 16);
                pipes
                    .send(server)
                    .map_err(|_| std::io::Error::other("fake server stopped"))?;
                Ok(Box::new(client) as Box<dyn Transport>)
            }
        })
    }

    /// Like [`options`](Self::options), over TCP (use with real time only).
    pub fn tcp_options(&self) -> RealtimeOptions {
        let fixed = Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).jitter(0.0);
        RealtimeOptions::new(self.url(), "anon-key")
            .protocol(self.protocol)
            .reconnect_backoff(fixed)
            .rejoin_backoff(fixed)
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    protocol: Protocol,
    refusal: Option<u16>,
    conns: mpsc::UnboundedSender<Conn>,
) {
    let uri = Arc::new(Mutex::new(String::new()));
    let u = uri.clone();
    // The signature is tungstenite's; its error type is what it is.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        *u.lock().unwrap() = req.uri().to_string();
        match refusal {
            Some(status) => Err(Response::builder()
                .status(status)
                .body(Some(r#"{"error":"refused by the test"}"#.to_string()))
                .unwrap()),
            None => Ok(resp),
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (ftx, frames) = mpsc::unbounded_channel();
    let (out, mut orx) = mpsc::unbounded_channel();
    let answer = Arc::new(AtomicBool::new(true));
    let heartbeats = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = watch::channel(false);
    let uri = uri.lock().unwrap().clone();
    let _ = conns.send(Conn {
        protocol,
        uri,
        frames,
        out,
        answer_heartbeats: answer.clone(),
        heartbeats: heartbeats.clone(),
        closed,
    });
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(msg)) => match decode(protocol, &msg) {
                    Ok(Some(f)) => {
                        if f.topic == "phoenix" && f.event == "heartbeat" {
                            heartbeats.fetch_add(1, Ordering::SeqCst);
                            if answer.load(Ordering::SeqCst) {
                                let reply = Frame {
                                    join_ref: None,
                                    msg_ref: f.msg_ref.clone(),
                                    topic: "phoenix".into(),
                                    event: "phx_reply".into(),
                                    payload: FramePayload::Json(json!({"status": "ok", "response": {}})),
                                };
                                let _ = ws.send(encode(protocol, Side::Server, &reply).unwrap()).await;
                            }
                        }
                        let _ = ftx.send(f);
                    }
                    Ok(None) => {}
                    Err(e) => panic!("the client sent a malformed frame: {e}"),
                },
                _ => break,
            },
            o = orx.recv() => match o {
                Some(Out::Msg(m)) => {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
                Some(Out::Close(code, reason)) => {
                    let _ = ws
                        .close(Some(CloseFrame { code: code.into(), reason: reason.into() }))
                        .await;
                }
                Some(Out::Drop) | None => break,
            },
        }
    }
    let _ = closed_tx.send(true);
}

impl Conn {
    /// The next frame, heartbeats included.
    pub async fn next_frame(&mut self) -> Frame {
        tokio::time::timeout(PATIENCE, self.frames.recv())
            .await
            .expect("no frame came")
            .expect("the connection closed")
    }

    /// The next frame that is not a heartbeat.
    pub async fn recv(&mut self) -> Frame {
        loop {
            let f = self.next_frame().await;
            if f.topic != "phoenix" {
                return f;
            }
        }
    }

    /// The next frame with this event (others are skipped).
    pub async fn recv_event(&mut self, event: &str) -> Frame {
        loop {
            let f = self.recv().await;
            if f.event == event {
                return f;
            }
        }
    }

    /// A frame already received and not yet read, if any (heartbeats skipped).
    pub fn try_recv(&mut self) -> Option<Frame> {
        while let Ok(f) = self.frames.try_recv() {
            if f.topic != "phoenix" {
                return Some(f);
            }
        }
        None
    }

    pub fn answer_heartbeats(&self, on: bool) {
        self.answer_heartbeats.store(on, Ordering::SeqCst);
    }

    pub fn send_raw(&self, m: Message) {
        let _ = self.out.send(Out::Msg(m));
    }

    pub fn send(&self, frame: Frame) {
        self.send_raw(encode(self.protocol, Side::Server, &frame).unwrap());
    }

    pub fn push(&self, join_ref: Option<&str>, topic: &str, event: &str, payload: Value) {
        self.send(Frame {
            join_ref: join_ref.map(str::to_string),
            msg_ref: None,
            topic: topic.into(),
            event: event.into(),
            payload: FramePayload::Json(payload),
        });
    }

    pub fn reply(&self, to: &Frame, status: &str, response: Value) {
        self.send(Frame {
            join_ref: to.join_ref.clone(),
            msg_ref: to.msg_ref.clone(),
            topic: to.topic.clone(),
            event: "phx_reply".into(),
            payload: FramePayload::Json(json!({"status": status, "response": response})),
        });
    }

    /// Accepts a join the way the server does: the postgres_changes entries echoed with ids.
    pub fn accept_join(&self, join: &Frame) -> Vec<Value> {
        let pg = payload(join)["config"]["postgres_changes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let echoed: Vec<Value> = pg
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut f = f.clone();
                f["id"] = json!(1000 + i);
                f
            })
            .collect();
        self.reply(join, "ok", json!({ "postgres_changes": echoed }));
        echoed.iter().map(|e| e["id"].clone()).collect()
    }

    pub fn system(&self, join: &Frame, extension: &str, status: &str, message: &str) {
        self.push(
            join.join_ref.as_deref(),
            &join.topic,
            "system",
            json!({"extension": extension, "status": status, "message": message, "channel": "x"}),
        );
    }

    /// `phx_close` for a join, as the server sends it (the join ref in both ref fields).
    pub fn close_channel(&self, join: &Frame) {
        self.send(Frame {
            join_ref: join.join_ref.clone(),
            msg_ref: join.join_ref.clone(),
            topic: join.topic.clone(),
            event: "phx_close".into(),
            payload: FramePayload::Json(json!({})),
        });
    }

    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.out.send(Out::Close(code, reason.into()));
    }

    /// Drops the TCP connection without a close frame.
    pub fn drop_connection(&self) {
        let _ = self.out.send(Out::Drop);
    }

    /// Waits until the connection is closed.
    pub async fn closed(&mut self) {
        let _ = tokio::time::timeout(PATIENCE, self.closed.wait_for(|c| *c))
            .await
            .expect("the connection stayed open");
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

pub fn payload(f: &Frame) -> &Value {
    match &f.payload {
        FramePayload::Json(v) => v,
        other => panic!("expected a JSON payload, got {other:?}"),
    }
}

pub async fn wait_status(ch: &Channel, pred: impl Fn(&ChannelStatus) -> bool) -> ChannelStatus {
    let mut s = ch.status_changes();
    tokio::time::timeout(PATIENCE, async {
        while let Some(st) = s.next().await {
            if pred(&st) {
                return st;
            }
        }
        panic!("status stream ended")
    })
    .await
    .unwrap_or_else(|_| panic!("status not reached; last {:?}", ch.status()))
}

pub async fn wait_state(
    client: &RealtimeClient,
    pred: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    let mut s = client.connection_states();
    tokio::time::timeout(PATIENCE, async {
        while let Some(st) = s.next().await {
            if pred(&st) {
                return st;
            }
        }
        panic!("state stream ended")
    })
    .await
    .unwrap_or_else(|_| panic!("state not reached; last {:?}", client.connection_state()))
}

pub async fn next_event(
    sub: &mut Subscription,
    pred: impl Fn(&ChannelEvent) -> bool,
) -> ChannelEvent {
    tokio::time::timeout(PATIENCE, async {
        while let Some(ev) = sub.next().await {
            if pred(&ev) {
                return ev;
            }
        }
        panic!("subscription ended")
    })
    .await
    .expect("event did not come")
}
