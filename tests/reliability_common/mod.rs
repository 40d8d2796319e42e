//! Helpers shared by the `reliability_*` tests (issue 7): seeded randomness, the long-mode switch,
//! ledger summaries and a figures line that CI logs keep.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use redrive_emulator::{EmulatorHandle, LedgerEntry, LedgerOutcome};

/// `REDRIVE_LONG=1` selects the long variants (more iterations, bigger backlogs).
pub fn long() -> bool {
    std::env::var("REDRIVE_LONG").is_ok_and(|v| v == "1" || v == "true")
}

/// `short` in CI, `long` with `REDRIVE_LONG=1`.
pub fn scale(short: usize, long_value: usize) -> usize {
    if long() { long_value } else { short }
}

/// A seeded RNG: `REDRIVE_SEED` (decimal) overrides `default`, so a failure can be replayed.
pub fn rng(default: u64) -> (StdRng, u64) {
    let seed = std::env::var("REDRIVE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (StdRng::seed_from_u64(seed), seed)
}

/// Ledger entries by outcome kind (`redriven`, `replayed`, `notRedrivable`, `faulted`, ...).
pub fn outcome_counts(ledger: &[LedgerEntry]) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for e in ledger {
        let k = match &e.outcome {
            LedgerOutcome::Redriven { .. } => "redriven",
            LedgerOutcome::Replayed { .. } => "replayed",
            LedgerOutcome::NotRedrivable { .. } => "notRedrivable",
            LedgerOutcome::DoesNotExist => "doesNotExist",
            LedgerOutcome::InvalidArn => "invalidArn",
            LedgerOutcome::ValidationError { .. } => "validationError",
            LedgerOutcome::LimitExceeded => "limitExceeded",
            LedgerOutcome::AccessDenied => "accessDenied",
            LedgerOutcome::Unauthenticated { .. } => "unauthenticated",
            LedgerOutcome::Throttled => "throttled",
            LedgerOutcome::Faulted { .. } => "faulted",
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// (execution, redriveCount before) pairs redriven more than once: must always be empty.
pub fn duplicates(handle: &EmulatorHandle) -> Vec<((String, u32), u32)> {
    crate::support::redrives_per_attempt(&handle.ledger())
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect()
}

/// Print a machine-greppable line of figures (`RELIABILITY <test> key=value ...`).
pub fn figures(test: &str, pairs: &[(&str, String)]) {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RELIABILITY {test} {}", body.join(" "));
}

/// Sleep on the Tokio timer.
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A TCP proxy in front of `upstream` (the API server, the emulator) that can hold back what the
/// client sends, like a slow network, and record what the server answers.
///
/// Held-back bytes of a client that disconnects (killed) are dropped, never forwarded: a kill
/// during the delay is a crash before the request left the process.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    /// Delay of client-to-server data, in milliseconds (changeable while running).
    pub delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Everything the server sent, when recording.
    pub recorded: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: std::net::SocketAddr, record: bool) -> Proxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let recorded = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (d, r) = (delay_ms.clone(), recorded.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (d, r) = (d.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let (closed_tx, mut closed_rx) = tokio::sync::watch::channel(false);
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let wait = d.load(Ordering::Relaxed);
                            if wait > 0 {
                                // Drop the chunk if the client goes away meanwhile.
                                let mut probe = [0u8; 1];
                                tokio::select! {
                                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                                    _ = cr.peek_or_eof(&mut probe) => break,
                                }
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = closed_tx.send(true);
                        let _ = sw.shutdown().await;
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = tokio::select! {
                                res = sr.read(&mut buf) => match res {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                },
                                _ = closed_rx.wait_for(|c| *c) => break,
                            };
                            if record {
                                let mut rec = r.lock().unwrap();
                                if rec.len() < 256 << 20 {
                                    rec.extend_from_slice(&buf[..n]);
                                }
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Proxy {
            addr,
            delay_ms,
            recorded,
            task,
        }
    }

    /// The recorded server bytes as (lossy) text.
    pub fn recorded_text(&self) -> String {
        String::from_utf8_lossy(&self.recorded.lock().unwrap()).into_owned()
    }
}

/// Resolves when the read half reports EOF or an error (the client went away); never consumes
/// data, and never resolves while the client is connected.
trait PeekOrEof {
    async fn peek_or_eof(&mut self, probe: &mut [u8; 1]);
}

impl PeekOrEof for tokio::net::tcp::OwnedReadHalf {
    async fn peek_or_eof(&mut self, probe: &mut [u8; 1]) {
        match self.peek(probe).await {
            Ok(0) | Err(_) => {}
            // More data is waiting: the client is alive. Park until the delay ends.
            Ok(_) => std::future::pending::<()>().await,
        }
    }
}

/// A plain HTTP/1.1 request to a loopback server (the emulator's admin API): (status, body).
pub async fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr.trim_start_matches("http://");
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    // Chunked bodies (axum streams JSON without Content-Length sometimes).
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut r = rest;
        while let Some((size, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(tail.get(..n)?);
            r = tail.get(n + 2..)?;
        }
        out
    } else {
        rest.to_string()
    };
    Some((code, body))
}
