//! WebSocket tests on a real socket: per-frame acks, refusals that keep the socket, the bus
//! failure path, and `IngestClient` reconnecting and resending through connection drops with
//! no loss and no duplicate on the topic.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;
use vigil_core::codec;
use vigil_core::config::IngestConfig;
use vigil_ingest::client::{ClientConfig, ClientError, ClientStats, IngestClient};
use vigil_ingest::ws::{FrameAck, FrameError};
use vigil_ingest::{AckStatus, DeviceDirectory};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn serve(h: &Harness) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = h.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn connect(addr: SocketAddr, token: &str) -> Socket {
    let mut request = format!("ws://{addr}/v1/stream")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("connect")
        .0
}

async fn reply(socket: &mut Socket) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("reply in time")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn expect_ack(socket: &mut Socket) -> FrameAck {
    let text = reply(socket).await;
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("ack expected, got {text}"))
}

async fn expect_error(socket: &mut Socket) -> FrameError {
    let text = reply(socket).await;
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("error expected, got {text}"))
}

/// Binary-codec chunks of `stream` with seqs `0..n`.
fn encoded_chunks(stream: Uuid, n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|seq| codec::encode(&chunk(stream, seq)).expect("encode"))
        .collect()
}

#[tokio::test]
async fn every_frame_gets_one_reply_in_order_and_refusals_keep_the_socket() {
    let h = harness().await;
    let addr = serve(&h).await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let mut ws = connect(addr, &h.token).await;
    let stream = Uuid::new_v4();

    let frames = encoded_chunks(stream, 3);
    for bytes in &frames {
        ws.send(Message::Binary(bytes.clone().into()))
            .await
            .expect("send");
    }
    for seq in 0..3 {
        let ack = expect_ack(&mut ws).await;
        assert_eq!(
            (ack.ack, ack.stream_id, ack.status),
            (seq, stream, AckStatus::Accepted)
        );
    }
    // JSON text frames: an EEG chunk and a heart-rate batch.
    let json = String::from_utf8(codec::to_json(&chunk(stream, 3)).expect("json")).expect("utf8");
    ws.send(Message::Text(json.into())).await.expect("send");
    assert_eq!(expect_ack(&mut ws).await.ack, 3);
    let hr = String::from_utf8(codec::to_json(&hr_batch(Uuid::new_v4(), 0)).expect("json"))
        .expect("utf8");
    ws.send(Message::Text(hr.into())).await.expect("send");
    assert_eq!(expect_ack(&mut ws).await.status, AckStatus::Accepted);
    // A binary heart-rate batch is dispatched by the header's record kind.
    let hr_stream = Uuid::new_v4();
    let hr = codec::encode(&hr_batch(hr_stream, 4)).expect("encode");
    ws.send(Message::Binary(hr.into())).await.expect("send");
    let ack = expect_ack(&mut ws).await;
    assert_eq!((ack.ack, ack.stream_id), (4, hr_stream));

    // A refused frame gets an error naming the problem; the socket stays usable.
    let mut bad = chunk(stream, 4);
    bad.samples[0][0] = f32::NEG_INFINITY;
    ws.send(Message::Binary(codec::encode(&bad).expect("encode").into()))
        .await
        .expect("send");
    let err = expect_error(&mut ws).await;
    assert_eq!(err.error.status, 422);
    assert!(
        err.error.detail.contains("infinite"),
        "{}",
        err.error.detail
    );
    assert_eq!(err.error.retry_after_s, None, "not retryable");
    ws.send(Message::Text("{not json".into()))
        .await
        .expect("send");
    assert_eq!(expect_error(&mut ws).await.error.status, 400);

    // A resend is acknowledged as a duplicate; a skip is reported as a gap.
    ws.send(Message::Binary(frames[2].clone().into()))
        .await
        .expect("send");
    assert_eq!(expect_ack(&mut ws).await.status, AckStatus::Duplicate);
    ws.send(Message::Binary(
        codec::encode(&chunk(stream, 6)).expect("encode").into(),
    ))
    .await
    .expect("send");
    let gap = expect_ack(&mut ws).await.gap.expect("gap");
    assert_eq!((gap.expected, gap.got), (4, 6));
    ws.close(None).await.expect("close");

    let seqs: Vec<u64> = drain_eeg_seqs(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(seqs, [0, 1, 2, 3, 6]);
}

#[tokio::test]
async fn frames_out_of_order_are_acked_late_and_conflicting_resends_refused() {
    let h = harness().await;
    let addr = serve(&h).await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let mut ws = connect(addr, &h.token).await;
    let stream = Uuid::new_v4();
    let frames = encoded_chunks(stream, 3);
    let send = |bytes: Vec<u8>| Message::Binary(bytes.into());

    ws.send(send(frames[1].clone())).await.expect("send");
    let ack = expect_ack(&mut ws).await;
    assert_eq!(
        (ack.ack, ack.status, ack.late),
        (1, AckStatus::Accepted, false)
    );
    ws.send(send(frames[0].clone())).await.expect("send");
    let ack = expect_ack(&mut ws).await;
    assert_eq!(
        (ack.ack, ack.status, ack.late, ack.gap),
        (0, AckStatus::Accepted, true, None),
        "late, not duplicate"
    );
    ws.send(send(frames[0].clone())).await.expect("send");
    let ack = expect_ack(&mut ws).await;
    assert_eq!((ack.status, ack.late), (AckStatus::Duplicate, false));

    let mut changed = chunk(stream, 0);
    changed.samples[0][0] += 1.0;
    ws.send(send(codec::encode(&changed).expect("encode")))
        .await
        .expect("send");
    let err = expect_error(&mut ws).await;
    assert_eq!((err.error.status, err.seq), (409, Some(0)), "{err:?}");
    assert!(err.error.problem_type.ends_with("/seq_conflict"), "{err:?}");
    assert_eq!(err.error.retry_after_s, None, "not retryable");

    ws.send(send(frames[2].clone())).await.expect("send");
    assert_eq!(expect_ack(&mut ws).await.ack, 2, "the socket stays usable");
    ws.close(None).await.expect("close");
    let seqs: Vec<u64> = drain_eeg_seqs(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(seqs, [1, 0, 2], "each exactly once");
}

#[tokio::test]
async fn upgrade_without_a_valid_token_gets_401() {
    let h = harness().await;
    let addr = serve(&h).await;
    let request = format!("ws://{addr}/v1/stream")
        .into_client_request()
        .expect("request");
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let client = IngestClient::start(ClientConfig::new(
        format!("ws://{addr}/v1/stream"),
        "vigil_dt_wrong",
    ));
    client.send(&chunk(Uuid::new_v4(), 0)).await.ok();
    let err = client.close(Duration::from_secs(10)).await;
    assert!(matches!(err, Err(ClientError::Unauthorized(_))), "{err:?}");
}

#[tokio::test]
async fn bus_failure_sends_a_retry_hint_and_closes_instead_of_buffering() {
    let h = harness_with(
        memory_bus(),
        false,
        IngestConfig {
            retry_after_s: 1,
            ..test_ingest_config()
        },
    )
    .await;
    let addr = serve(&h).await;
    let mut ws = connect(addr, &h.token).await;
    let bytes = codec::encode(&chunk(Uuid::new_v4(), 0)).expect("encode");
    ws.send(Message::Binary(bytes.into())).await.expect("send");
    let err = expect_error(&mut ws).await;
    assert_eq!(err.error.status, 503);
    assert_eq!(err.error.retry_after_s, Some(1));
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => {
            assert_eq!(frame.code, CloseCode::from(1013))
        }
        other => panic!("expected close 1013, got {other:?}"),
    }
}

#[tokio::test]
async fn client_waits_out_a_bus_outage_and_delivers_everything() {
    let h = harness_with(
        memory_bus(),
        false,
        IngestConfig {
            retry_after_s: 1,
            ..test_ingest_config()
        },
    )
    .await;
    let addr = serve(&h).await;
    let client = IngestClient::start(ClientConfig::new(
        format!("ws://{addr}/v1/stream"),
        h.token.clone(),
    ));
    let stream = Uuid::new_v4();
    for seq in 0..5 {
        client.send(&chunk(stream, seq)).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        client.stats().accepted,
        0,
        "nothing acknowledged while the bus is down"
    );
    h.bus.create_vigil_topics().await.expect("topics");
    let mut consumer = eeg_consumer(&h.bus).await;
    let stats = client
        .close(Duration::from_secs(20))
        .await
        .expect("delivered");
    assert_eq!(stats.accepted, 5);
    assert!(stats.reconnects >= 1);
    let seqs: Vec<u64> = drain_eeg_seqs(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
}

/// A TCP proxy whose live connections can be cut at will.
struct Proxy {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().expect("lock").push(task);
            }
        });
        Self { addr, connections }
    }

    /// Drops every live connection (both directions, mid-frame if need be).
    fn cut(&self) {
        for task in self.connections.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
}

/// Sends chunks of one stream with the seqs of `order` through a proxy that is cut after the
/// sends at the indexes in `cut_after`; returns the client's counters once every frame got
/// its reply, and the seqs produced, in topic order.
async fn stream_through_cuts(order: &[u64], cut_after: &[usize]) -> (ClientStats, Vec<u64>) {
    let h = harness().await;
    let addr = serve(&h).await;
    let proxy = Proxy::start(addr).await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let client = IngestClient::start(ClientConfig {
        max_in_flight: 8,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..ClientConfig::new(format!("ws://{}/v1/stream", proxy.addr), h.token.clone())
    });
    let stream = Uuid::new_v4();
    for (i, &seq) in order.iter().enumerate() {
        client.send(&chunk(stream, seq)).await.expect("send");
        if cut_after.contains(&i) {
            proxy.cut();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stats = client.close(Duration::from_secs(30)).await.expect("closed");
    eprintln!("client stats: {stats:?}");
    let seqs = drain_eeg_seqs(&mut consumer, Duration::from_millis(500)).await;
    (stats, seqs)
}

#[tokio::test]
async fn client_reconnects_after_drops_and_resends_without_loss_or_duplicates() {
    let total = 60u64;
    let order: Vec<u64> = (0..total).collect();
    let (stats, seqs) = stream_through_cuts(&order, &[15, 35, 50]).await;
    assert!(stats.reconnects >= 3, "{stats:?}");
    assert_eq!(stats.accepted + stats.duplicates, total, "{stats:?}");
    assert_eq!((stats.rejected, stats.late), (0, 0), "{stats:?}");
    assert_eq!(stats.gaps, 0, "resends keep the stream gapless: {stats:?}");
    assert_eq!(seqs, order, "exactly once, in order");
}

#[tokio::test]
async fn client_resends_interleaved_out_of_order_lose_nothing() {
    let total = 60u64;
    // Pairs swapped (1, 0, 3, 2, ...): every even seq reaches the gateway after its
    // successor, and the cuts make the client resend them interleaved with new frames.
    let order: Vec<u64> = (0..total).map(|i| i ^ 1).collect();
    let (stats, mut seqs) = stream_through_cuts(&order, &[15, 34, 51]).await;
    assert!(stats.reconnects >= 3, "{stats:?}");
    assert_eq!(stats.accepted + stats.duplicates, total, "{stats:?}");
    assert_eq!((stats.rejected, stats.conflicts), (0, 0), "{stats:?}");
    assert!(stats.late >= 1, "even seqs come late: {stats:?}");
    seqs.sort_unstable();
    assert_eq!(seqs, (0..total).collect::<Vec<_>>(), "each exactly once");
}

#[tokio::test]
async fn client_counts_conflicts_and_below_window_refusals_and_does_not_resend_them() {
    let h = harness_with_seq_window(4).await;
    let addr = serve(&h).await;
    let mut consumer = eeg_consumer(&h.bus).await;
    let client = IngestClient::start(ClientConfig::new(
        format!("ws://{addr}/v1/stream"),
        h.token.clone(),
    ));
    let stream = Uuid::new_v4();
    for seq in 0..8 {
        client.send(&chunk(stream, seq)).await.expect("send");
    }
    let mut changed = chunk(stream, 7);
    changed.samples[0][0] += 1.0;
    client.send(&changed).await.expect("send");
    client.send(&chunk(stream, 1)).await.expect("send"); // tracked: 4..=7
    client.send(&chunk(stream, 8)).await.expect("send");
    let stats = client.close(Duration::from_secs(20)).await.expect("closed");
    assert_eq!(
        (
            stats.accepted,
            stats.rejected,
            stats.conflicts,
            stats.below_window,
            stats.reconnects
        ),
        (9, 2, 1, 1, 0),
        "{stats:?}"
    );
    let last = stats.last_rejection.expect("a refusal");
    assert_eq!(last.status, 422, "{last:?}");
    let seqs: Vec<u64> = drain_eeg_seqs(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(seqs, (0..9).collect::<Vec<_>>());
}

#[tokio::test]
async fn revoking_a_device_ends_its_open_socket() {
    let h = harness_with(
        memory_bus(),
        true,
        IngestConfig {
            auth_cache_ttl_ms: 0,
            ..test_ingest_config()
        },
    )
    .await;
    let addr = serve(&h).await;
    let mut ws = connect(addr, &h.token).await;
    let stream = Uuid::new_v4();
    let frame = |seq| Message::Binary(codec::encode(&chunk(stream, seq)).expect("encode").into());
    ws.send(frame(0)).await.expect("send");
    assert_eq!(expect_ack(&mut ws).await.status, AckStatus::Accepted);
    assert!(h.directory.revoke(DEVICE).await.expect("revoke"));
    ws.send(frame(1)).await.expect("send");
    assert_eq!(expect_error(&mut ws).await.error.status, 401);
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) => {}
        other => panic!("expected the socket to close, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_rate_limit_delays_frames_instead_of_refusing_them() {
    let h = harness_with(
        memory_bus(),
        true,
        IngestConfig {
            rate_limit_per_s: 20.0,
            rate_limit_burst: 1,
            ..test_ingest_config()
        },
    )
    .await;
    let addr = serve(&h).await;
    let mut ws = connect(addr, &h.token).await;
    let stream = Uuid::new_v4();
    let started = std::time::Instant::now();
    for seq in 0..6 {
        ws.send(Message::Binary(
            codec::encode(&chunk(stream, seq)).expect("encode").into(),
        ))
        .await
        .expect("send");
    }
    for seq in 0..6 {
        let ack = expect_ack(&mut ws).await;
        assert_eq!((ack.ack, ack.status), (seq, AckStatus::Accepted));
    }
    // 1 frame of burst, then 5 more at 20/s: at least ~250 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}
