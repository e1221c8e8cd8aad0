//! Encryption at rest of the Raft store: every log entry and snapshot a manager writes is
//! sealed with a data key, so the CA key, join tokens and secrets are never plain text on
//! disk (Docker's promise for its Raft logs).
//!
//! Two keys, as Docker's: the [`DataKey`] (DEK) seals the data with ChaCha20-Poly1305
//! (`ring::aead`, the AEAD rustls already brings), a fresh random nonce per value; it is
//! kept in the Raft directory ([`DEK_FILE`]) sealed in turn by a [`KeyEncryptionKey`] (KEK)
//! the daemon keeps beside the node's TLS key, or, with autolock, derives from the unlock
//! key and never writes. Changing the KEK (autolock on or off, a rotated unlock key) re-wraps
//! the small DEK file only; the data stays as it is.
//!
//! A sealed value is `MAGIC | nonce | ciphertext+tag`. A Raft directory written before
//! encryption existed holds plain values and no [`SEALED_MARK`]: [`prepare`] copies it,
//! sealed, into a fresh store that takes its place before the log and state machine open
//! it.
//!
//! What is not sealed: the vote, the commit and purge points (Raft bookkeeping, no data).

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The first bytes of every sealed value (and of the DEK file), with the format version.
const MAGIC: &[u8; 4] = b"SKE1";
/// The file in the Raft directory holding the DEK, sealed by the KEK.
pub const DEK_FILE: &str = "dek";
/// The key of the meta tree that says every value of this directory is sealed.
pub const SEALED_MARK: &[u8] = b"sealed";
/// Key length of both keys.
pub const KEY_LEN: usize = 32;

/// Why a sealed value or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    /// The value is not sealed, or was sealed with another key, or was changed.
    #[error(
        "a stored value cannot be decrypted: it was sealed with another key or has been damaged"
    )]
    Open,
    /// The DEK file does not open with the given KEK.
    #[error("the Raft store's data key does not open with this node's key-encryption key: the unlock key is wrong, or the node's key file belongs to another data directory")]
    WrongKey,
    /// Reading or writing the DEK file failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The system's random generator failed (never on Linux in practice).
    #[error("the system's random number generator failed")]
    Random,
}

/// A 256-bit ChaCha20-Poly1305 key with the sealing both keys share.
struct Aead {
    key: LessSafeKey,
}

impl Aead {
    fn new(bytes: &[u8; KEY_LEN]) -> Self {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte key");
        Self {
            key: LessSafeKey::new(key),
        }
    }

    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| AtRestError::Random)?;
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(MAGIC),
                &mut body,
            )
            .map_err(|_| AtRestError::Open)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let rest = sealed.strip_prefix(MAGIC).ok_or(AtRestError::Open)?;
        if rest.len() < NONCE_LEN {
            return Err(AtRestError::Open);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| AtRestError::Open)?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(MAGIC), &mut body)
            .map_err(|_| AtRestError::Open)?;
        let len = plain.len();
        body.truncate(len);
        Ok(body)
    }
}

/// The key that seals the Raft store's values.
pub struct DataKey {
    aead: Aead,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self {
            aead: Aead::new(bytes),
        }
    }

    /// A fresh random key kept nowhere: for tests' throwaway stores.
    #[cfg(test)]
    pub(crate) fn random() -> Self {
        Self::from_bytes(&random_key().expect("random"))
    }

    /// `plaintext` sealed: magic, nonce, ciphertext and tag.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, AtRestError> {
        self.aead.seal(plaintext)
    }

    /// The plaintext of a value [`DataKey::seal`] made with this key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AtRestError> {
        self.aead.open(sealed)
    }
}

/// The key that seals the [`DataKey`] on disk.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEncryptionKey([u8; KEY_LEN]);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

impl KeyEncryptionKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, AtRestError> {
        random_key().map(Self)
    }

    /// The key with these bytes (read back from where the daemon keeps it).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key's bytes, for the daemon to keep.
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

fn random_key() -> Result<[u8; KEY_LEN], AtRestError> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| AtRestError::Random)?;
    Ok(key)
}

/// The data key of the Raft directory `dir`, opened with `kek`; made (and written sealed by
/// `kek`) if the directory has none yet.
pub fn load_or_create_data_key(dir: &Path, kek: &KeyEncryptionKey) -> Result<DataKey, AtRestError> {
    let path = dir.join(DEK_FILE);
    match std::fs::read(&path) {
        Ok(sealed) => {
            let bytes = Aead::new(&kek.0)
                .open(&sealed)
                .map_err(|_| AtRestError::WrongKey)?;
            let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| AtRestError::WrongKey)?;
            Ok(DataKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = random_key()?;
            write_wrapped(dir, &bytes, kek)?;
            Ok(DataKey::from_bytes(&bytes))
        }
        Err(source) => Err(AtRestError::Io {
            what: "read",
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Seals the data key of `dir` again, with `new` instead of `old` (autolock turned on or
/// off, the unlock key rotated). The data stays sealed by the same data key.
pub fn rewrap_data_key(
    dir: &Path,
    old: &KeyEncryptionKey,
    new: &KeyEncryptionKey,
) -> Result<(), AtRestError> {
    let path = dir.join(DEK_FILE);
    let sealed = std::fs::read(&path).map_err(|source| AtRestError::Io {
        what: "read",
        path: path.display().to_string(),
        source,
    })?;
    let bytes = Aead::new(&old.0)
        .open(&sealed)
        .map_err(|_| AtRestError::WrongKey)?;
    let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| AtRestError::WrongKey)?;
    write_wrapped(dir, &bytes, new)
}

/// Writes the data key sealed by `kek`: aside, synced, then renamed over the old file, so
/// a crash leaves one whole key file or the other.
fn write_wrapped(
    dir: &Path,
    dek: &[u8; KEY_LEN],
    kek: &KeyEncryptionKey,
) -> Result<(), AtRestError> {
    use std::io::Write as _;
    let io = |what, path: &Path| {
        let path = path.display().to_string();
        move |source| AtRestError::Io { what, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let sealed = Aead::new(&kek.0).seal(dek)?;
    let tmp = dir.join(format!("{DEK_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io("write", &tmp))?;
    file.write_all(&sealed)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    let path = dir.join(DEK_FILE);
    std::fs::rename(&tmp, &path).map_err(io("write", &path))?;
    Ok(())
}

/// The trees of a Raft store whose every value is data, sealed.
pub const SEALED_TREES: [&str; 2] = ["raft_log", "state_machine"];
/// The tree that holds the [`SEALED_MARK`].
pub const META_TREE: &str = "raft_meta";

/// Opens the Raft store in `dir` with its data key, which `kek` opens (both made for a new
/// store). A store an older release wrote plain is first copied, every data value sealed,
/// into a fresh store beside it that then takes its place: sealing values in place would
/// leave the plain ones in sled's files until it happened to rewrite them. A crash at any
/// point leaves either the old store or the new one whole (see [`recover`]).
pub fn prepare(
    dir: &Path,
    kek: &KeyEncryptionKey,
) -> Result<(sled::Db, std::sync::Arc<DataKey>), String> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        format!("cannot {what} the Raft store in {}: {e}", dir.display())
    };
    recover(dir).map_err(|e| failed("recover", &e))?;
    let db = sled::open(dir).map_err(|e| failed("open", &e))?;
    let marked = db
        .open_tree(META_TREE)
        .and_then(|m| m.contains_key(SEALED_MARK))
        .map_err(|e| failed("open", &e))?;
    let fresh = db
        .tree_names()
        .iter()
        .all(|name| db.open_tree(name).map(|t| t.is_empty()).unwrap_or(false));
    if marked || fresh {
        let key = load_or_create_data_key(dir, kek).map_err(|e| e.to_string())?;
        if !marked {
            mark(&db).map_err(|e| failed("write", &e))?;
        }
        return Ok((db, std::sync::Arc::new(key)));
    }
    // Written before encryption at rest: copy it sealed, then swap.
    let new = sibling(dir, "new");
    let copied = {
        let key = load_or_create_data_key(&new, kek).map_err(|e| e.to_string())?;
        let target = sled::open(&new).map_err(|e| failed("create", &e))?;
        let copied = copy_sealed(&db, &target, &key).map_err(|e| failed("encrypt", &e))?;
        mark(&target).map_err(|e| failed("encrypt", &e))?;
        copied
    };
    drop(db);
    let old = sibling(dir, "old");
    std::fs::rename(dir, &old)
        .and_then(|()| std::fs::rename(&new, dir))
        .and_then(|()| std::fs::remove_dir_all(&old))
        .map_err(|e| failed("replace", &e))?;
    tracing::info!(
        values = copied,
        "encrypted at rest the Raft store an older skiff wrote"
    );
    let db = sled::open(dir).map_err(|e| failed("open", &e))?;
    let key = load_or_create_data_key(dir, kek).map_err(|e| e.to_string())?;
    Ok((db, std::sync::Arc::new(key)))
}

/// `dir` with a suffix: where the sealed copy is made, and where the old store waits to go.
fn sibling(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// Finishes or undoes a copy that a crash interrupted: an unfinished copy goes (it is made
/// again); a store moved aside whose copy took its place goes; a store moved aside with
/// nothing in its place comes back.
fn recover(dir: &Path) -> std::io::Result<()> {
    let (new, old) = (sibling(dir, "new"), sibling(dir, "old"));
    if old.exists() {
        if dir.exists() {
            std::fs::remove_dir_all(&old)?;
        } else {
            std::fs::rename(&old, dir)?;
        }
    }
    if new.exists() {
        std::fs::remove_dir_all(&new)?;
    }
    Ok(())
}

/// Marks a store as sealed throughout, durably.
fn mark(db: &sled::Db) -> sled::Result<()> {
    db.open_tree(META_TREE)?
        .insert(SEALED_MARK, b"1".as_slice())?;
    db.flush()?;
    Ok(())
}

/// Copies every tree of `from` into `to`, sealing the values of [`SEALED_TREES`] with
/// `key`; returns how many values it sealed.
fn copy_sealed(from: &sled::Db, to: &sled::Db, key: &DataKey) -> Result<usize, String> {
    let mut sealed = 0;
    for name in from.tree_names() {
        let (source, target) = (
            from.open_tree(&name).map_err(|e| e.to_string())?,
            to.open_tree(&name).map_err(|e| e.to_string())?,
        );
        let seal = SEALED_TREES.iter().any(|t| t.as_bytes() == name.as_ref());
        let mut batch = sled::Batch::default();
        for item in source.iter() {
            let (k, v) = item.map_err(|e| e.to_string())?;
            if seal {
                batch.insert(k, key.seal(&v).map_err(|e| e.to_string())?);
                sealed += 1;
            } else {
                batch.insert(k, v);
            }
        }
        target.apply_batch(batch).map_err(|e| e.to_string())?;
    }
    to.flush().map_err(|e| e.to_string())?;
    Ok(sealed)
}

/// Turns the Raft store in `dir`, which `kek` opens, back into what a skiff release before
/// encryption at rest wrote: every value plain, no data key, no mark. For upgrade tests,
/// which need such a store and build it from one the current code wrote.
#[cfg(any(test, feature = "test-util"))]
pub fn write_as_before_encryption(dir: &Path, kek: &KeyEncryptionKey) -> Result<(), String> {
    let (db, key) = prepare(dir, kek)?;
    for name in SEALED_TREES {
        let tree = db.open_tree(name).map_err(|e| e.to_string())?;
        let mut batch = sled::Batch::default();
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| e.to_string())?;
            batch.insert(k, key.open(&v).map_err(|e| e.to_string())?);
        }
        tree.apply_batch(batch).map_err(|e| e.to_string())?;
    }
    db.open_tree(META_TREE)
        .and_then(|m| m.remove(SEALED_MARK))
        .map_err(|e| e.to_string())?;
    db.flush().map_err(|e| e.to_string())?;
    std::fs::remove_file(dir.join(DEK_FILE)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_reveal_nothing() {
        let key = DataKey::random();
        let secret = b"the root CA key and s3cr3t bytes";
        let a = key.seal(secret).unwrap();
        let b = key.seal(secret).unwrap();
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(!a.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(key.open(&a).unwrap(), secret);
        // Another key, a changed byte, a plain value: all refused.
        let other = DataKey::random();
        assert!(other.open(&a).is_err());
        let mut damaged = a.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(key.open(&damaged).is_err());
        assert!(key.open(b"SKE1 plain value that starts like one").is_err());
    }

    #[test]
    fn the_data_key_is_kept_sealed_and_opens_only_with_its_kek() {
        let dir = tempfile::tempdir().unwrap();
        let kek = KeyEncryptionKey::generate().unwrap();
        let first = load_or_create_data_key(dir.path(), &kek).unwrap();
        let sealed = first.seal(b"entry").unwrap();
        let again = load_or_create_data_key(dir.path(), &kek).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"entry");
        let wrong = KeyEncryptionKey::generate().unwrap();
        assert!(matches!(
            load_or_create_data_key(dir.path(), &wrong),
            Err(AtRestError::WrongKey)
        ));
        // Re-wrapped: the new KEK opens the same data key, the old one no longer does.
        rewrap_data_key(dir.path(), &kek, &wrong).unwrap();
        let rewrapped = load_or_create_data_key(dir.path(), &wrong).unwrap();
        assert_eq!(rewrapped.open(&sealed).unwrap(), b"entry");
        assert!(load_or_create_data_key(dir.path(), &kek).is_err());
    }

    #[test]
    fn a_store_written_before_encryption_is_copied_sealed_and_leaves_no_plain_byte() {
        let dir = tempfile::tempdir().unwrap();
        let raft = dir.path().join("raft");
        let kek = KeyEncryptionKey::generate().unwrap();
        {
            let (db, key) = prepare(&raft, &kek).unwrap();
            db.open_tree("raft_log")
                .unwrap()
                .insert(1u64.to_be_bytes(), key.seal(b"entry with s3cr3t").unwrap())
                .unwrap();
            db.open_tree("state_machine")
                .unwrap()
                .insert(b"snapshot", key.seal(b"snapshot with s3cr3t").unwrap())
                .unwrap();
            db.open_tree(META_TREE)
                .unwrap()
                .insert(b"vote", b"v".as_slice())
                .unwrap();
            db.flush().unwrap();
        }
        write_as_before_encryption(&raft, &kek).unwrap();
        let plain_somewhere = |path: &Path| {
            walk(path)
                .iter()
                .any(|f| std::fs::read(f).unwrap().windows(6).any(|w| w == b"s3cr3t"))
        };
        assert!(plain_somewhere(&raft), "the fixture is plain");
        // A crash left a half-made copy: it is made again.
        std::fs::create_dir_all(sibling(&raft, "new")).unwrap();
        let (db, key) = prepare(&raft, &kek).unwrap();
        let value = |tree: &str, k: &[u8]| db.open_tree(tree).unwrap().get(k).unwrap().unwrap();
        assert_eq!(
            key.open(&value("raft_log", &1u64.to_be_bytes())).unwrap(),
            b"entry with s3cr3t"
        );
        assert_eq!(
            key.open(&value("state_machine", b"snapshot")).unwrap(),
            b"snapshot with s3cr3t"
        );
        assert_eq!(value(META_TREE, b"vote").as_ref(), b"v");
        drop(db);
        assert!(!plain_somewhere(&raft), "no plain byte left after the copy");
        assert!(!sibling(&raft, "new").exists() && !sibling(&raft, "old").exists());
    }

    #[test]
    fn a_store_moved_aside_with_nothing_in_its_place_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let raft = dir.path().join("raft");
        std::fs::create_dir_all(sibling(&raft, "old")).unwrap();
        std::fs::write(sibling(&raft, "old").join("db"), b"x").unwrap();
        recover(&raft).unwrap();
        assert!(raft.join("db").exists());
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
