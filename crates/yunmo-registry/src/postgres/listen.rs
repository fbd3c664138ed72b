//! Change notifications: every replica listens on `yunmo_changes`, which the triggers of migration 3 notify
//! when a transaction that changes models, versions, tenants or keys commits.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;

use crate::metadata::Change;

/// The channel the triggers notify.
const CHANNEL: &str = "yunmo_changes";
/// After this long without a notification the listening connection is pinged.
const QUIET_PING: Duration = Duration::from_secs(15);
/// A ping not answered in this time counts as a lost connection (then every cache is dropped once it is back).
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Stops the listener when the last copy of the store is dropped.
pub(super) struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening; changes go to `sender`. When the listening connection is lost, [`Change::Resync`] is
/// sent once a new connection listens (changes committed in between were not seen). Not at the loss: while
/// PostgreSQL cannot be reached, the caches are what keeps loaded models and known keys serving (the key
/// cache's TTL bounds how long a key is trusted without the database).
pub(super) fn spawn(pool: PgPool, sender: broadcast::Sender<Change>) -> ListenerTask {
    ListenerTask(tokio::spawn(async move {
        let mut listening = false;
        loop {
            let mut listener = match connect(&pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(error = %error, "Cannot listen for changes in PostgreSQL; retrying in 1 s.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if listening {
                tracing::info!("Listening for changes in PostgreSQL again; dropping every cache.");
                let _ = sender.send(Change::Resync);
            }
            listening = true;
            loop {
                let received = match tokio::time::timeout(QUIET_PING, listener.try_recv()).await {
                    Ok(received) => received,
                    // Quiet for a while: check the connection answers (a host that vanished without closing
                    // it, or a network that drops packets, gives no error until TCP gives up, much later).
                    Err(_) => match tokio::time::timeout(PING_TIMEOUT, sqlx::query("SELECT 1").execute(&mut listener)).await {
                        Ok(Ok(_)) => continue,
                        _ => Ok(None),
                    },
                };
                match received {
                    Ok(Some(notification)) => {
                        let change = match notification.payload() {
                            "models" | "versions" => Change::Models,
                            "drift_baselines" => Change::Drift,
                            _ => Change::Keys,
                        };
                        let _ = sender.send(change);
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!("Lost the PostgreSQL connection that listens for changes; caches are dropped when it is back.");
                        break;
                    }
                }
            }
        }
    }))
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
