//! A manager's keys at rest, and autolock.
//!
//! Without autolock, the key-encryption key that opens the Raft store's keys
//! (`manager::raft::at_rest`) is a file beside the node's TLS key, so a restarted manager
//! opens its store by itself. With autolock (`swarm init --autolock`, `swarm update
//! --autolock=true`), it derives from the cluster's unlock key and is held only in memory,
//! and the TLS key is sealed by it too: a manager restarted (or a disk taken away) opens
//! nothing until `swarm unlock` gives it the unlock key. What a locked daemon serves then
//! is only that (every other command hears [`manager::manager::LOCKED`]).
//!
//! Each manager follows the cluster object ([`follow`]): when autolock turns on, or the
//! unlock key is rotated, it re-seals its keys by the unlock key and removes the key file;
//! when autolock turns off, it writes a fresh key file and re-seals by that. Re-sealing
//! touches two small files, never the data.

use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use manager::raft::at_rest::KeyEncryptionKey;
use manager::Manager;

use super::state::DataDir;
use super::Daemon;
use crate::tls::NodeCredentials;

/// The first line of a TLS key file sealed under autolock (its PEM form otherwise).
const SEALED_KEY_MARK: &str = "SKIFF SEALED KEY\n";

impl DataDir {
    /// Whether this node's keys wait for an unlock key: its TLS key is sealed.
    pub fn is_locked(&self) -> bool {
        std::fs::read_to_string(self.certs().join("node.key"))
            .is_ok_and(|k| k.starts_with(SEALED_KEY_MARK))
    }

    /// The node's credentials, with its TLS key opened by `kek` if autolock sealed it.
    pub fn load_credentials(
        &self,
        kek: Option<&KeyEncryptionKey>,
    ) -> anyhow::Result<NodeCredentials> {
        let mut creds = NodeCredentials::load(&self.certs())
            .context("the node's certificates are missing or unreadable")?;
        if let Some(sealed) = creds.key_pem.strip_prefix(SEALED_KEY_MARK) {
            let kek = kek.ok_or_else(|| anyhow!(manager::manager::LOCKED))?;
            let sealed = hex::decode(sealed.trim())
                .map_err(|_| anyhow!("the node's sealed TLS key is damaged"))?;
            let key = kek
                .open(&sealed)
                .map_err(|_| anyhow!("the unlock key is wrong: it does not open this node's keys; get the current one with `skiff swarm unlock-key` on an unlocked manager"))?;
            creds.key_pem = String::from_utf8(key)
                .map_err(|_| anyhow!("the node's sealed TLS key is damaged"))?;
        }
        Ok(creds)
    }

    /// Saves the node's credentials, its TLS key sealed by `sealed_by` under autolock and
    /// plain otherwise.
    pub fn save_credentials(
        &self,
        creds: &NodeCredentials,
        sealed_by: Option<&KeyEncryptionKey>,
    ) -> anyhow::Result<()> {
        let stored = match sealed_by {
            Some(kek) => NodeCredentials {
                key_pem: format!(
                    "{SEALED_KEY_MARK}{}\n",
                    hex::encode(kek.seal(creds.key_pem.as_bytes())?)
                ),
                ..creds.clone()
            },
            None => creds.clone(),
        };
        stored
            .save(&self.certs())
            .context("cannot save the node's credentials")
    }

    /// Removes the key file (autolock on: the key is the unlock key's, in memory only).
    fn remove_key_file(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.kek_file()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).context("cannot remove the node's key file"),
        }
    }
}

impl Daemon {
    /// The key that opens this node's Raft store: the unlock key's under autolock, else
    /// the key file's (made on first use). A locked node has neither.
    pub(super) fn key_encryption_key(&self) -> anyhow::Result<KeyEncryptionKey> {
        if let Some(kek) = self.unlocked() {
            return Ok(kek);
        }
        if self.data.is_locked() {
            return Err(anyhow!(manager::manager::LOCKED));
        }
        self.data.key_encryption_key()
    }

    /// Under autolock, the key file's KEK if a file is still there: a change of KEK that a
    /// stop interrupted may have left the store sealed by it (see `Keyring::open_either`).
    pub(super) fn fallback_key_encryption_key(&self) -> Option<KeyEncryptionKey> {
        self.unlocked()?;
        self.data
            .kek_file()
            .exists()
            .then(|| self.data.key_encryption_key().ok())
            .flatten()
    }

    /// The KEK the unlock key gave, while autolock is on.
    fn unlocked(&self) -> Option<KeyEncryptionKey> {
        self.unlocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The node's credentials as saved (see [`DataDir::load_credentials`]).
    pub(super) fn credentials(&self) -> anyhow::Result<NodeCredentials> {
        self.data.load_credentials(self.unlocked().as_ref())
    }

    /// Saves credentials the way this node keeps them now (sealed under autolock).
    pub(super) fn save_credentials(&self, creds: &NodeCredentials) -> anyhow::Result<()> {
        self.data.save_credentials(creds, self.unlocked().as_ref())
    }

    /// Saves the node's TLS key plain again and forgets the unlock key's KEK (the node is a
    /// worker now, and workers do not lock).
    pub(super) fn unseal_credentials(&self) -> anyhow::Result<()> {
        if self.unlocked().is_some() {
            let creds = self.credentials()?;
            self.data.save_credentials(&creds, None)?;
            *self.unlocked.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        Ok(())
    }

    /// `swarm unlock`: opens the node's keys with `unlock_key` and, if they open, rejoins
    /// the cluster.
    pub(super) async fn unlock(self: &Arc<Self>, unlock_key: &str) -> anyhow::Result<()> {
        if !self.slot.is_locked() {
            anyhow::bail!("this node is not locked; there is nothing to unlock");
        }
        let kek = KeyEncryptionKey::from_unlock_key(unlock_key)?;
        self.data.load_credentials(Some(&kek))?;
        *self.unlocked.lock().unwrap_or_else(|e| e.into_inner()) = Some(kek);
        self.slot.set_locked(false);
        tracing::info!("unlocked with the cluster's unlock key");
        self.resume().await;
        Ok(())
    }

    /// Makes this manager keep its keys as the cluster says: sealed by the unlock key while
    /// autolock is on, by a key file otherwise.
    async fn keep_keys(&self, manager: &Manager, unlock_key: Option<&str>) -> anyhow::Result<()> {
        let current = self.unlocked();
        let wanted = unlock_key
            .map(KeyEncryptionKey::from_unlock_key)
            .transpose()?;
        if wanted == current {
            return Ok(());
        }
        let creds = self.credentials()?;
        let _guard = self.keys.lock().await;
        match &wanted {
            Some(kek) => {
                // Each step leaves a store a restart can open (with the unlock key, or the
                // key file as the fallback): credentials sealed, then the store, then the
                // file gone.
                self.data.save_credentials(&creds, Some(kek))?;
                manager.raft().rewrap_keys(kek)?;
                *self.unlocked.lock().unwrap_or_else(|e| e.into_inner()) = Some(kek.clone());
                self.data.remove_key_file()?;
                tracing::info!(
                    "autolock: this manager's keys are sealed by the cluster's unlock key"
                );
            }
            None => {
                self.data.remove_key_file()?;
                let kek = self.data.key_encryption_key()?;
                manager.raft().rewrap_keys(&kek)?;
                self.data.save_credentials(&creds, None)?;
                *self.unlocked.lock().unwrap_or_else(|e| e.into_inner()) = None;
                tracing::info!(
                    "autolock off: this manager's keys are sealed by its key file again"
                );
            }
        }
        Ok(())
    }
}

/// Follows the cluster object on a manager and keeps its keys as autolock says, until the
/// manager stops.
pub(super) async fn follow(daemon: Arc<Daemon>, manager: Arc<Manager>) {
    let (mut wanted, mut events) = manager.store().subscribe(unlock_key);
    loop {
        if let Err(e) = daemon.keep_keys(&manager, wanted.as_deref()).await {
            tracing::error!("cannot seal this manager's keys as autolock says: {e:#}");
        }
        let changed = loop {
            match events.recv().await {
                Ok(event) if touches_cluster(&event) => break true,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break false,
            }
        };
        if !changed {
            return;
        }
        wanted = unlock_key(&manager.store().read());
    }
}

/// The cluster's unlock key while autolock is on.
fn unlock_key(store: &manager::store::ObjectStore) -> Option<String> {
    store
        .cluster()
        .filter(|c| c.spec.as_ref().is_some_and(|s| s.autolock))
        .map(|c| c.unlock_key.clone())
        .filter(|k| !k.is_empty())
}

fn touches_cluster(event: &manager::store::WatchEvent) -> bool {
    match event {
        manager::store::WatchEvent::Reset { .. } => true,
        manager::store::WatchEvent::Changes { events, .. } => events.iter().any(|e| {
            matches!(
                e.object.as_ref().and_then(|o| o.object.as_ref()),
                Some(proto::store_object::Object::Cluster(_))
            )
        }),
    }
}
