//! Server-sent events: `data: {json}` chunks ending in `data: [DONE]`.
//!
//! A producer task writes chunks into a bounded channel that the response body reads. When the
//! client goes away, hyper drops the body, the channel closes, and the task is cancelled at its
//! next await point — dropping the engine streams it owns, which aborts them and frees their KV
//! blocks. Comment keep-alives every few seconds make a silent disconnect (a request still waiting
//! in the queue) show up as a failed write.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Where a producer writes its chunks.
pub struct Sink {
    tx: mpsc::Sender<Event>,
}

impl Sink {
    /// Sends one `data:` chunk; false once the client is gone.
    pub async fn json(&self, v: &Value) -> bool {
        self.tx.send(Event::default().data(v.to_string())).await.is_ok()
    }

    pub async fn done(&self) -> bool {
        self.tx.send(Event::default().data("[DONE]")).await.is_ok()
    }
}

/// A streaming response fed by `producer`, which runs as its own task and is cancelled as soon as
/// the client disconnects.
pub fn respond<F, Fut>(producer: F) -> Response
where
    F: FnOnce(Sink) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Event>(64);
    let closed = tx.clone();
    let work = producer(Sink { tx });
    let task = async move {
        tokio::select! {
            _ = work => {}
            _ = closed.closed() => tracing::info!("client disconnected; request aborted"),
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
    let body = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Sse::new(body).keep_alive(KeepAlive::new().interval(Duration::from_secs(5))).into_response()
}
