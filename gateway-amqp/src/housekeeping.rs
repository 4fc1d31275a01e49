//! The gateway's background work: the disk alarm, and what queues hand
//! back (dead letters to publish, expired queues to delete).

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::gateway::Inner;
use crate::queue::{self, Housekeeping};

/// Raises the disk alarm while the data directory's file system has less
/// than `limit` bytes free (checked every second), and clears it after.
pub(crate) async fn watch_disk(
    gw: Weak<Inner>,
    dir: std::path::PathBuf,
    limit: u64,
    stop: CancellationToken,
) {
    loop {
        let Some(gw) = gw.upgrade() else { return };
        match rustix::fs::statvfs(&dir) {
            Ok(s) => {
                let free = s.f_bavail.saturating_mul(s.f_frsize);
                let low = free < limit;
                let on = gw.alarm.borrow().is_some();
                if low != on {
                    if low {
                        warn!(
                            free,
                            limit, "disk alarm: publishing connections are blocked"
                        );
                    } else {
                        info!(free, limit, "disk alarm cleared");
                    }
                    gw.alarm.send_replace(
                        low.then(|| format!("low on disk: {free} bytes free, limit {limit}")),
                    );
                }
            }
            Err(e) => debug!(dir = %dir.display(), "free space unknown: {e}"),
        }
        drop(gw);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// Publishes dead letters and deletes expired queues, for as long as the
/// gateway lives.
pub(crate) async fn housekeeping(
    gw: Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<Housekeeping>,
    stop: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            _ = stop.cancelled() => return,
            job = rx.recv() => job,
        };
        let Some(job) = job else { return };
        let Some(gw) = gw.upgrade() else { return };
        match job {
            Housekeeping::DeadLetter { vhost, message } => {
                let queues = match gw
                    .route(
                        &vhost,
                        &message.exchange,
                        &message.routing_key,
                        message.properties.headers.as_ref(),
                    )
                    .await
                {
                    Ok(q) => q,
                    Err(r) => {
                        debug!(
                            vhost,
                            exchange = message.exchange,
                            "dead letter dropped: {}",
                            r.text
                        );
                        continue;
                    }
                };
                let message = Arc::new(*message);
                for q in queues {
                    if let Err(e) =
                        queue::append(&gw.broker, &q.topic, &[Arc::clone(&message)]).await
                    {
                        warn!(topic = %q.topic, "dead letter not stored: {e}");
                    }
                }
            }
            Housekeeping::Expired { vhost, name } => {
                info!(vhost, queue = name, "queue expired (x-expires)");
                let _ = gw.delete_queue(&vhost, &name, false, false, None).await;
            }
        }
    }
}
