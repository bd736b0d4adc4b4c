//! One LISTEN connection per store: commits announced by any process (through
//! NOTIFY, sent by its notifier once they landed) wake this process's
//! subscribers.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::store::{Inner, TOPIC_PREFIX};
use crate::types::CommunityId;
use crate::writer::APPENDED_CHANNEL;

const RECONNECT_DELAY_MS: u64 = 1_000;

pub(crate) fn spawn(inner: Weak<Inner>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(config) = inner.upgrade().map(|i| i.pg_config.clone()) else {
                return;
            };
            if let Err(error) = listen(&inner, config).await {
                tracing::warn!(%error, "event listener lost its connection; reconnecting");
            }
            // Notifications may have been missed while disconnected: make
            // every subscriber look at the log again.
            match inner.upgrade() {
                Some(inner) => {
                    inner.listening.store(false, Ordering::Release);
                    inner.wake_all();
                }
                None => return,
            }
            tokio::time::sleep(Duration::from_millis(RECONNECT_DELAY_MS)).await;
        }
    })
}

async fn listen(
    inner: &Weak<Inner>,
    config: tokio_postgres::Config,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let driver = async {
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(notice) = message? {
                let Some(inner) = inner.upgrade() else {
                    return Ok(());
                };
                if let Some(topic) = notice.payload().strip_prefix(TOPIC_PREFIX) {
                    inner.announce_topic(topic);
                } else if let Some((community_id, position)) = parse_notice(notice.payload()) {
                    inner.kept_streams.heard(community_id, position);
                    inner.announce_local(community_id, position);
                }
            }
        }
        Ok(())
    };
    tokio::pin!(driver);
    let listen_statement = format!("LISTEN {APPENDED_CHANNEL}");
    tokio::select! {
        listened = client.batch_execute(&listen_statement) => listened?,
        ended = &mut driver => return ended,
    }
    if let Some(inner) = inner.upgrade() {
        // Listening from here on; what was announced before is looked at
        // again.
        inner.listening.store(true, Ordering::Release);
        inner.wake_all();
    }
    driver.await
}

fn parse_notice(payload: &str) -> Option<(CommunityId, i64)> {
    let (community, position) = payload.split_once(':')?;
    Some((
        CommunityId::new(Uuid::parse_str(community).ok()?),
        position.parse().ok()?,
    ))
}
