//! A minimal logical-replication client: a `replication=database` connection that runs
//! `START_REPLICATION SLOT … LOGICAL` and reads the `wal2json` messages as they are decoded
//! (no polling, so no re-decoding of the WAL on every call).
//!
//! Only the parts of the PostgreSQL protocol needed here: startup with trust, cleartext, MD5 or
//! SCRAM-SHA-256 authentication, simple query, and the CopyBoth stream of XLogData / keepalive
//! messages with standby status updates.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::config::Host;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the stream yields.
#[derive(Debug)]
pub enum Event {
    /// A decoded message (one `wal2json` v2 JSON object) and the LSN it was written at.
    Data { lsn: u64, data: Bytes },
    /// The server's position; `reply` asks for a status update now.
    Keepalive { wal_end: u64, reply: bool },
}

/// A streaming replication connection.
pub struct WalStream {
    io: Box<dyn Io>,
    buf: BytesMut,
}

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn error_fields(body: &[u8]) -> String {
    let mut code = String::new();
    let mut message = String::new();
    let mut rest = body;
    while let Some((&t, tail)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        let val = String::from_utf8_lossy(&tail[..end]).to_string();
        match t {
            b'C' => code = val,
            b'M' => message = val,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    format!("{code}: {message}")
}

/// Microseconds since 2000-01-01, PostgreSQL's epoch.
fn pg_now() -> i64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    unix - 946_684_800_000_000
}

impl WalStream {
    /// Connects in replication mode and authenticates.
    pub async fn connect(cfg: &tokio_postgres::Config) -> io::Result<WalStream> {
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let io: Box<dyn Io> = match cfg.get_hosts().first() {
            Some(Host::Tcp(h)) => {
                let s = tokio::net::TcpStream::connect((h.as_str(), port)).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            #[cfg(unix)]
            Some(Host::Unix(dir)) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                Box::new(tokio::net::UnixStream::connect(path).await?)
            }
            #[allow(unreachable_patterns)]
            _ => return Err(err("no usable host in the database URL")),
        };
        let mut s = WalStream {
            io,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        let user = cfg.get_user().unwrap_or("postgres").to_string();
        let db = cfg.get_dbname().unwrap_or(&user).to_string();
        let password = cfg.get_password().map(<[u8]>::to_vec);
        let mut out = BytesMut::new();
        frontend::startup_message(
            [
                ("user", user.as_str()),
                ("database", db.as_str()),
                ("replication", "database"),
                ("application_name", "livechat-realtime-wal"),
                ("options", "-c TimeZone=UTC"),
            ],
            &mut out,
        )?;
        s.write(&out).await?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, body) = s.read_msg().await?;
            match tag {
                b'R' => {
                    let mut b = body.clone();
                    if b.len() < 4 {
                        return Err(err("short authentication message"));
                    }
                    let code = b.get_i32();
                    let need_pw = || {
                        password
                            .clone()
                            .ok_or_else(|| err("the database asks for a password"))
                    };
                    let mut out = BytesMut::new();
                    match code {
                        0 => continue,
                        3 => frontend::password_message(&need_pw()?, &mut out)?,
                        5 => {
                            if b.len() < 4 {
                                return Err(err("short MD5 salt"));
                            }
                            let salt = [b[0], b[1], b[2], b[3]];
                            let h = md5_hash(user.as_bytes(), &need_pw()?, salt);
                            frontend::password_message(h.as_bytes(), &mut out)?;
                        }
                        10 => {
                            let mechs = String::from_utf8_lossy(&b).to_string();
                            if !mechs.split('\0').any(|m| m == "SCRAM-SHA-256") {
                                return Err(err(format!("unsupported SASL mechanisms {mechs:?}")));
                            }
                            let sc = ScramSha256::new(&need_pw()?, ChannelBinding::unsupported());
                            frontend::sasl_initial_response(
                                "SCRAM-SHA-256",
                                sc.message(),
                                &mut out,
                            )?;
                            scram = Some(sc);
                        }
                        11 => {
                            let sc = scram
                                .as_mut()
                                .ok_or_else(|| err("unexpected SASL continue"))?;
                            sc.update(&b)?;
                            frontend::sasl_response(sc.message(), &mut out)?;
                        }
                        12 => {
                            let sc = scram.as_mut().ok_or_else(|| err("unexpected SASL final"))?;
                            sc.finish(&b)?;
                            continue;
                        }
                        other => return Err(err(format!("unsupported authentication {other}"))),
                    }
                    s.write(&out).await?;
                }
                b'E' => return Err(err(error_fields(&body))),
                b'Z' => return Ok(s),
                _ => {} // ParameterStatus, BackendKeyData, notices
            }
        }
    }

    /// Starts streaming the slot from its confirmed position.
    pub async fn start(&mut self, slot: &str, options: &[(&str, &str)]) -> io::Result<()> {
        let opts = options
            .iter()
            .map(|(k, v)| format!("\"{}\" '{}'", k.replace('"', ""), v.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "START_REPLICATION SLOT \"{}\" LOGICAL 0/0 ({opts})",
            slot.replace('"', "")
        );
        let mut out = BytesMut::new();
        frontend::query(&sql, &mut out)?;
        self.write(&out).await?;
        loop {
            let (tag, body) = self.read_msg().await?;
            match tag {
                b'W' => return Ok(()),
                b'E' => return Err(err(error_fields(&body))),
                _ => {}
            }
        }
    }

    /// The next stream event. Cancel-safe: partially read data stays buffered.
    pub async fn next(&mut self) -> io::Result<Event> {
        loop {
            let (tag, mut body) = self.read_msg().await?;
            match tag {
                b'd' if !body.is_empty() => match body.get_u8() {
                    b'w' if body.len() >= 24 => {
                        let start = body.get_u64();
                        let _end = body.get_u64();
                        let _time = body.get_i64();
                        return Ok(Event::Data {
                            lsn: start,
                            data: body,
                        });
                    }
                    b'k' if body.len() >= 17 => {
                        let wal_end = body.get_u64();
                        let _time = body.get_i64();
                        let reply = body.get_u8() != 0;
                        return Ok(Event::Keepalive { wal_end, reply });
                    }
                    _ => {}
                },
                b'E' => return Err(err(error_fields(&body))),
                b'c' => return Err(err("replication stream ended")),
                _ => {}
            }
        }
    }

    /// Whether a complete message is already buffered (to batch what arrived together).
    pub fn has_buffered(&self) -> bool {
        if self.buf.len() < 5 {
            return false;
        }
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        len >= 4 && self.buf.len() > len as usize
    }

    /// Reports `lsn` as written, flushed and applied.
    pub async fn confirm(&mut self, lsn: u64) -> io::Result<()> {
        let mut body = BytesMut::with_capacity(34);
        body.put_u8(b'r');
        body.put_u64(lsn);
        body.put_u64(lsn);
        body.put_u64(lsn);
        body.put_i64(pg_now());
        body.put_u8(0);
        let mut out = BytesMut::with_capacity(39);
        out.put_u8(b'd');
        out.put_i32(4 + body.len() as i32);
        out.extend_from_slice(&body);
        self.write(&out).await
    }

    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.io.write_all(data).await?;
        self.io.flush().await
    }

    async fn read_msg(&mut self) -> io::Result<(u8, Bytes)> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                if len < 4 {
                    return Err(err("invalid message length"));
                }
                let total = 1 + len as usize;
                if self.buf.len() >= total {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(total - 5).freeze();
                    return Ok((tag, body));
                }
                self.buf.reserve(total - self.buf.len());
            }
            let n = self.io.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "database closed the replication connection",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_are_read() {
        assert_eq!(
            error_fields(b"SERROR\0C42704\0Mslot does not exist\0\0"),
            "42704: slot does not exist"
        );
    }
}
