//! The gateway's background work: the resource alarms (disk and memory),
//! and what queues hand back (dead letters to publish, expired queues to
//! delete).

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::engine::Engine;
use crate::queue::{self, Housekeeping};

/// The resource alarms that are on, each with its reason; each watcher
/// sets and clears only its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Alarms {
    pub(crate) disk: Option<String>,
    pub(crate) memory: Option<String>,
}

impl Alarms {
    /// The reason for `connection.blocked` while any alarm is on (both
    /// joined by " & ").
    pub(crate) fn reason(&self) -> Option<String> {
        match (&self.disk, &self.memory) {
            (Some(d), Some(m)) => Some(format!("{d} & {m}")),
            (Some(r), None) | (None, Some(r)) => Some(r.clone()),
            (None, None) => None,
        }
    }
}

/// Raises the disk alarm while the data directory's file system has less
/// than `limit` bytes free (checked every second), and clears it after.
pub(crate) async fn watch_disk(
    gw: Weak<Engine>,
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
                let on = gw.alarm.borrow().disk.is_some();
                if low != on {
                    if low {
                        warn!(
                            free,
                            limit, "disk alarm: publishing connections are blocked"
                        );
                    } else {
                        info!(free, limit, "disk alarm cleared");
                    }
                    gw.alarm.send_modify(|a| {
                        a.disk =
                            low.then(|| format!("low on disk: {free} bytes free, limit {limit}"));
                    });
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

/// The process's resident memory in bytes: the second field of
/// `/proc/self/statm` (pages) times the page size.
fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = u64::try_from(rustix::param::page_size()).ok()?;
    pages.checked_mul(page)
}

/// Raises the memory alarm while the process's resident memory is at
/// least `watermark` bytes (checked every second), and clears it after.
pub(crate) async fn watch_memory(gw: Weak<Engine>, watermark: u64, stop: CancellationToken) {
    loop {
        let Some(gw) = gw.upgrade() else { return };
        match resident() {
            Some(rss) => {
                let high = rss >= watermark;
                let on = gw.alarm.borrow().memory.is_some();
                if high != on {
                    if high {
                        warn!(
                            rss,
                            watermark, "memory alarm: publishing connections are blocked"
                        );
                    } else {
                        info!(rss, watermark, "memory alarm cleared");
                    }
                    gw.alarm.send_modify(|a| {
                        a.memory = high.then(|| {
                            format!("low on memory: {rss} bytes resident, watermark {watermark}")
                        });
                    });
                }
            }
            None => debug!("resident memory unknown (/proc/self/statm)"),
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
    gw: Weak<Engine>,
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
                    if let Err(e) = queue::append(&gw.broker, &q, &[Arc::clone(&message)]).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_every_alarm_that_is_on() {
        let mut a = Alarms::default();
        assert_eq!(a.reason(), None);
        a.disk = Some("low on disk".into());
        assert_eq!(a.reason().as_deref(), Some("low on disk"));
        a.memory = Some("low on memory".into());
        assert_eq!(a.reason().as_deref(), Some("low on disk & low on memory"));
        a.disk = None;
        assert_eq!(a.reason().as_deref(), Some("low on memory"));
    }

    #[test]
    fn this_process_has_resident_memory() {
        assert!(resident().is_some_and(|rss| rss > 0));
    }
}
