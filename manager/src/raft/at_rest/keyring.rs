//! The keys that seal the Raft store's values, and how they are retired.
//!
//! One key seals log entries and another the snapshot, each value naming its key by a
//! number. A key is retired, its bytes dropped from the key file, once no live value needs
//! it: when the log is purged, the entries left are sealed again with a fresh log key and
//! the old ones go; when a snapshot replaces the last, the last one's key goes. sled keeps
//! the bytes of removed or overwritten values in its files until it happens to rewrite
//! them, so this is what makes a removed secret really gone after the next snapshot and
//! purge: what is left of it on disk no key opens any more.
//!
//! The key file (`KEYS_FILE` in the Raft directory) is itself sealed by the node's
//! key-encryption key and replaced whole (written aside, synced, renamed), always before a
//! value sealed with a new key is written, and a key is dropped only after what replaced
//! its values is flushed.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{random_key, Aead, AtRestError, KeyEncryptionKey, KEY_LEN, MAGIC};

/// The file in the Raft directory holding the keys, sealed by the KEK.
pub const KEYS_FILE: &str = "keys";

/// What a value is: it decides which current key seals it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Class {
    /// A Raft log entry.
    Log,
    /// The state machine's snapshot.
    Snapshot,
}

/// The keys, as the key file holds them.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Ring {
    /// Each key with the class of values it seals.
    keys: BTreeMap<u32, (Class, [u8; KEY_LEN])>,
    log: u32,
    snapshot: u32,
}

impl Ring {
    /// A ring with a fresh key for each class.
    fn new() -> Result<Self, AtRestError> {
        Ok(Ring {
            keys: BTreeMap::from([
                (1, (Class::Log, random_key()?)),
                (2, (Class::Snapshot, random_key()?)),
            ]),
            log: 1,
            snapshot: 2,
        })
    }

    fn current(&self, class: Class) -> u32 {
        match class {
            Class::Log => self.log,
            Class::Snapshot => self.snapshot,
        }
    }
}

/// The Raft store's keys (see the module docs).
pub struct Keyring {
    /// Where the key file lives; `None` for a test's ring kept in memory only.
    dir: Option<PathBuf>,
    kek: Mutex<KeyEncryptionKey>,
    ring: Mutex<Ring>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(..)")
    }
}

impl Keyring {
    /// The keys of the Raft directory `dir`, opened with `kek`; made (and written) if the
    /// directory has none yet.
    pub fn load_or_create(dir: &Path, kek: &KeyEncryptionKey) -> Result<Self, AtRestError> {
        let path = dir.join(KEYS_FILE);
        let ring = match std::fs::read(&path) {
            Ok(sealed) => {
                let bytes = Aead::new(kek.bytes())
                    .open(&sealed, 0)
                    .map_err(|_| AtRestError::WrongKey)?;
                bincode::deserialize(&bytes).map_err(|_| AtRestError::WrongKey)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ring = Ring::new()?;
                write(dir, &ring, kek)?;
                ring
            }
            Err(source) => {
                return Err(AtRestError::Io {
                    what: "read",
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Ok(Self {
            dir: Some(dir.to_owned()),
            kek: Mutex::new(kek.clone()),
            ring: Mutex::new(ring),
        })
    }

    /// [`Keyring::load_or_create`] with `kek`, or, if the key file is sealed by `fallback`
    /// instead, with that one, and then sealed by `kek` from now on: a daemon that stopped
    /// half way through changing its key-encryption key (autolock turned on or off) finishes
    /// the change instead of finding its store locked for good.
    pub fn open_either(
        dir: &Path,
        kek: &KeyEncryptionKey,
        fallback: Option<&KeyEncryptionKey>,
    ) -> Result<Self, AtRestError> {
        match (Self::load_or_create(dir, kek), fallback) {
            (Err(AtRestError::WrongKey), Some(fallback)) => {
                let ring = Self::load_or_create(dir, fallback)?;
                ring.rewrap(kek)?;
                Ok(ring)
            }
            (result, _) => result,
        }
    }

    /// A ring kept nowhere (its changes are never written): for tests' throwaway stores.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Self {
        Self {
            dir: None,
            kek: Mutex::new(KeyEncryptionKey::generate().expect("random")),
            ring: Mutex::new(Ring::new().expect("random")),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `plaintext` sealed with the current key of its `class`.
    pub fn seal(&self, class: Class, plaintext: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let (id, key) = self.current(class);
        Aead::new(&key).seal(&[plaintext], id)
    }

    /// `buf[SEALED_PREFIX..]` sealed where it lies with the current key of its `class`,
    /// leaving `buf` holding what [`Keyring::seal`] would have returned, with no copy of the
    /// plaintext (a snapshot).
    pub fn seal_in_place(&self, class: Class, buf: &mut Vec<u8>) -> Result<(), AtRestError> {
        let (id, key) = self.current(class);
        Aead::new(&key).seal_in_place(buf, id)
    }

    /// The current key of `class`, with its number.
    fn current(&self, class: Class) -> (u32, [u8; KEY_LEN]) {
        let ring = self.lock();
        let id = ring.current(class);
        (id, ring.keys[&id].1)
    }

    /// The plaintext of a sealed value, if its key is still held.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let (id, key) = self.key_of(sealed)?;
        Aead::new(&key).open(sealed, id)
    }

    /// Opens a sealed value where it lies, if its key is still held: the plaintext is left
    /// at the range returned.
    pub fn open_in_place(&self, sealed: &mut [u8]) -> Result<Range<usize>, AtRestError> {
        let (id, key) = self.key_of(sealed)?;
        Aead::new(&key).open_in_place(sealed, id)
    }

    /// The key a sealed value names, with its number.
    fn key_of(&self, sealed: &[u8]) -> Result<(u32, [u8; KEY_LEN]), AtRestError> {
        let id = key_id(sealed).ok_or(AtRestError::Open)?;
        let key = self.lock().keys.get(&id).ok_or(AtRestError::Retired)?.1;
        Ok((id, key))
    }

    /// Makes a fresh key the current one of `class` (kept on disk before it is used); the
    /// old one stays until [`Keyring::retire`].
    pub fn rotate(&self, class: Class) -> Result<(), AtRestError> {
        let mut ring = self.lock();
        let mut next = ring.clone();
        let id = next.keys.keys().next_back().copied().unwrap_or(0) + 1;
        next.keys.insert(id, (class, random_key()?));
        match class {
            Class::Log => next.log = id,
            Class::Snapshot => next.snapshot = id,
        }
        self.persist(&next, &self.kek.lock().unwrap_or_else(|e| e.into_inner()))?;
        *ring = next;
        Ok(())
    }

    /// Drops the keys of `class` but its current one: call once no live value of the class
    /// is sealed with them (the other class's keys are its own business).
    pub fn retire(&self, class: Class) -> Result<(), AtRestError> {
        let mut ring = self.lock();
        let mut next = ring.clone();
        let current = next.current(class);
        next.keys.retain(|id, (c, _)| *c != class || *id == current);
        if next.keys.len() == ring.keys.len() {
            return Ok(());
        }
        self.persist(&next, &self.kek.lock().unwrap_or_else(|e| e.into_inner()))?;
        *ring = next;
        Ok(())
    }

    /// Writes `ring` sealed with `kek` to the key file, if the ring has one.
    fn persist(&self, ring: &Ring, kek: &KeyEncryptionKey) -> Result<(), AtRestError> {
        match &self.dir {
            Some(dir) => write(dir, ring, kek),
            None => Ok(()),
        }
    }

    /// The numbers of the keys held (the current two, and any not yet retired).
    pub fn ids(&self) -> Vec<u32> {
        self.lock().keys.keys().copied().collect()
    }

    /// Seals the key file again with `new` instead of the key it was opened with (autolock
    /// turned on or off, the unlock key rotated); the values stay as they are.
    pub fn rewrap(&self, new: &KeyEncryptionKey) -> Result<(), AtRestError> {
        let ring = self.lock();
        self.persist(&ring, new)?;
        *self.kek.lock().unwrap_or_else(|e| e.into_inner()) = new.clone();
        Ok(())
    }
}

/// The key number a sealed value names.
fn key_id(sealed: &[u8]) -> Option<u32> {
    let rest = sealed.strip_prefix(MAGIC)?;
    Some(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?))
}

/// Writes the key file sealed by `kek`: aside, synced, then renamed over the old one, so a
/// crash leaves one whole file or the other.
fn write(dir: &Path, ring: &Ring, kek: &KeyEncryptionKey) -> Result<(), AtRestError> {
    let io = |what, path: &Path| {
        let path = path.display().to_string();
        move |source| AtRestError::Io { what, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let bytes = bincode::serialize(ring).map_err(|e| AtRestError::Io {
        what: "encode",
        path: KEYS_FILE.into(),
        source: std::io::Error::other(e),
    })?;
    let sealed = Aead::new(kek.bytes()).seal(&[&bytes], 0)?;
    let path = dir.join(KEYS_FILE);
    super::replace_file(&path, &sealed).map_err(io("write", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_reveal_nothing() {
        let ring = Keyring::in_memory();
        let secret = b"the root CA key and s3cr3t bytes";
        let a = ring.seal(Class::Log, secret).unwrap();
        let b = ring.seal(Class::Log, secret).unwrap();
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(!a.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(ring.open(&a).unwrap(), secret);
        let other = Keyring::in_memory();
        assert!(other.open(&a).is_err());
        let mut damaged = a.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(ring.open(&damaged).is_err());
        assert!(ring.open(b"SKE2 plain value that starts like one").is_err());
    }

    #[test]
    fn a_retired_key_opens_nothing_and_the_file_follows() {
        let dir = tempfile::tempdir().unwrap();
        let kek = KeyEncryptionKey::generate().unwrap();
        let ring = Keyring::load_or_create(dir.path(), &kek).unwrap();
        let old = ring.seal(Class::Log, b"entry").unwrap();
        let snapshot = ring.seal(Class::Snapshot, b"snapshot").unwrap();
        ring.rotate(Class::Log).unwrap();
        let new = ring.seal(Class::Log, b"entry").unwrap();
        assert_eq!(ring.open(&old).unwrap(), b"entry", "kept until retired");
        ring.retire(Class::Log).unwrap();
        assert!(matches!(ring.open(&old), Err(AtRestError::Retired)));
        assert_eq!(ring.open(&new).unwrap(), b"entry");
        assert_eq!(ring.open(&snapshot).unwrap(), b"snapshot");
        // What is on disk is what is held.
        let again = Keyring::load_or_create(dir.path(), &kek).unwrap();
        assert_eq!(again.ids().len(), 2);
        assert!(again.open(&old).is_err());
        assert_eq!(again.open(&new).unwrap(), b"entry");
    }

    #[test]
    fn the_key_file_opens_only_with_its_kek_and_can_be_rewrapped() {
        let dir = tempfile::tempdir().unwrap();
        let kek = KeyEncryptionKey::generate().unwrap();
        let ring = Keyring::load_or_create(dir.path(), &kek).unwrap();
        let sealed = ring.seal(Class::Log, b"entry").unwrap();
        let other = KeyEncryptionKey::generate().unwrap();
        assert!(matches!(
            Keyring::load_or_create(dir.path(), &other),
            Err(AtRestError::WrongKey)
        ));
        ring.rewrap(&other).unwrap();
        let rewrapped = Keyring::load_or_create(dir.path(), &other).unwrap();
        assert_eq!(rewrapped.open(&sealed).unwrap(), b"entry");
        assert!(Keyring::load_or_create(dir.path(), &kek).is_err());
    }

    #[test]
    fn a_change_of_kek_cut_short_is_finished_by_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (
            KeyEncryptionKey::generate().unwrap(),
            KeyEncryptionKey::generate().unwrap(),
        );
        let sealed = Keyring::load_or_create(dir.path(), &old)
            .unwrap()
            .seal(Class::Log, b"entry")
            .unwrap();
        // Stopped before the key file was re-sealed by the new KEK.
        let ring = Keyring::open_either(dir.path(), &new, Some(&old)).unwrap();
        assert_eq!(ring.open(&sealed).unwrap(), b"entry");
        assert!(
            Keyring::load_or_create(dir.path(), &new).is_ok(),
            "sealed by the new KEK now"
        );
        assert!(matches!(
            Keyring::open_either(dir.path(), &old, None),
            Err(AtRestError::WrongKey)
        ));
    }
}
