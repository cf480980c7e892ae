//! [`LoaderStream`]: the loader as an async `Stream` that still answers
//! the loader's queries, so an async service can checkpoint between items.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::Stream;

use super::batch::Batch;
use super::loader::{Loader, Receiving};
use super::metrics::MetricsSnapshot;
use super::state::LoaderState;
use crate::Result;

/// The batches of a [`Loader`] as an async [`Stream`], from
/// [`Loader::into_stream`]; usable from any runtime (tokio included).
///
/// Unlike a plain stream it keeps the loader's queries:
/// [`state`](Self::state) after `n` items received equals the state a
/// blocking loader has after `n` batches (a batch counts as taken when
/// the stream yields it, so a `next()` future dropped before it completes
/// takes nothing), and [`metrics`](Self::metrics) and
/// [`classes`](Self::classes) answer as the loader's do. `Send`, `Sync`
/// and `Unpin`.
///
/// ```no_run
/// use futures_lite::StreamExt;
/// # async fn serve() -> ringfeed::Result<()> {
/// let mut stream = ringfeed::Loader::builder("data/train.rf").build_async().await?.into_stream();
/// while let Some(batch) = stream.next().await {
///     let batch = batch?;
///     // train on the batch, then checkpoint:
///     let checkpoint = stream.state().to_json();
/// }
/// stream.close().await;
/// # Ok(())
/// # }
/// ```
pub struct LoaderStream {
    // Declared first so it is dropped first: its clone of a worker's
    // channel must be gone before the loader's drop closes the channels
    // to wake the workers it joins.
    receiving: Option<Receiving>,
    loader: Loader,
}

// See `Loader`: the stream keeps its auto traits.
const _: fn() = || {
    fn send_sync_unpin<T: Send + Sync + Unpin>() {}
    send_sync_unpin::<LoaderStream>();
};

impl std::fmt::Debug for LoaderStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoaderStream")
            .field("loader", &self.loader)
            .field("receiving", &self.receiving.is_some())
            .finish()
    }
}

impl LoaderStream {
    pub(crate) fn new(loader: Loader) -> Self {
        LoaderStream { receiving: None, loader }
    }

    /// Where a resumed loader would start: after the last item this
    /// stream yielded. See [`Loader::state`].
    pub fn state(&self) -> LoaderState {
        self.loader.state()
    }

    /// The loader's counters now. See [`Loader::metrics`].
    pub fn metrics(&self) -> MetricsSnapshot {
        self.loader.metrics()
    }

    /// The dataset's class names. See [`Loader::classes`].
    pub fn classes(&self) -> &[String] {
        self.loader.classes()
    }

    /// The loader, for its other queries (batches per epoch, cores, I/O
    /// mode, ...).
    pub fn loader(&self) -> &Loader {
        &self.loader
    }

    /// Shuts the loader down without blocking the caller's thread; see
    /// [`Loader::close`].
    pub fn close(self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let LoaderStream { receiving, loader } = self;
        drop(receiving);
        loader.close()
    }
}

impl Stream for LoaderStream {
    type Item = Result<Batch>;

    /// The next batch; `None` after the last epoch, or after an error was
    /// yielded.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut receiving = match this.receiving.take() {
            Some(r) => r,
            None => match this.loader.begin_receive() {
                Some(r) => r,
                None => return Poll::Ready(None),
            },
        };
        match Pin::new(&mut receiving.recv).poll(cx) {
            Poll::Ready(got) => Poll::Ready(Some(this.loader.finish_receive(&receiving, got))),
            Poll::Pending => {
                this.receiving = Some(receiving);
                Poll::Pending
            }
        }
    }
}
