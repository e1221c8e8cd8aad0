//! Encryption at rest of the Raft store: every log entry and snapshot a manager writes is
//! sealed, so the CA key, join tokens and secrets are never plain text on disk (Docker's
//! promise for its Raft logs), and what is left on disk of a removed secret after the next
//! snapshot and purge no longer opens with any key.
//!
//! Two levels of keys, as Docker's: data keys ([`Keyring`], ChaCha20-Poly1305 from
//! `ring::aead`, the AEAD rustls already brings, a fresh random nonce per value) seal the
//! values and are retired as the values they sealed go; they are kept in the Raft directory
//! sealed in turn by a [`KeyEncryptionKey`] (KEK) the daemon keeps beside the node's TLS
//! key, or, with autolock, derives from the unlock key and never writes. Changing the KEK
//! (autolock on or off, a rotated unlock key) re-seals the small key file only.
//!
//! A sealed value is `MAGIC | key number | nonce | ciphertext+tag`. A Raft directory
//! written before encryption existed holds plain values and no [`SEALED_MARK`]: [`prepare`]
//! copies it, sealed, into a fresh store that takes its place before the log and state
//! machine open it.
//!
//! What is not sealed: the vote, the commit and purge points (Raft bookkeeping, no data).

mod keyring;

pub use keyring::{Class, Keyring, KEYS_FILE};

use std::ops::Range;
use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The first bytes of every sealed value (and of the key file), with the format version.
const MAGIC: &[u8; 4] = b"SKE2";
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
    /// The key file does not open with the given KEK.
    #[error("the Raft store's keys do not open with this node's key-encryption key: the unlock key is wrong, or the node's key file belongs to another data directory")]
    WrongKey,
    /// The value was sealed with a key retired since (it belongs to a purged entry or a
    /// replaced snapshot).
    #[error("a stored value was sealed with a key that has been retired")]
    Retired,
    /// Reading or writing the key file failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// What was given as an unlock key is not one.
    #[error("that is not an unlock key: it starts with SKUNLOCK-1- and comes from `skiff swarm unlock-key` on a manager")]
    BadUnlockKey,
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

    /// The concatenation of `parts` sealed, naming key number `id` (authenticated with it).
    fn seal(&self, parts: &[&[u8]], id: u32) -> Result<Vec<u8>, AtRestError> {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        let mut out = Vec::with_capacity(SEALED_PREFIX + len + self.key.algorithm().tag_len());
        out.resize(SEALED_PREFIX, 0);
        for part in parts {
            out.extend_from_slice(part);
        }
        self.seal_in_place(&mut out, id)?;
        Ok(out)
    }

    /// Seals `buf[SEALED_PREFIX..]` where it lies, naming key number `id`: the prefix
    /// becomes the header and the nonce and the tag is appended, so `buf` ends up holding
    /// the sealed value. A snapshot of a million tasks is ~190 MB, and a sealed copy beside
    /// its plaintext was that much more of the manager's memory while it was saved.
    fn seal_in_place(&self, buf: &mut Vec<u8>, id: u32) -> Result<(), AtRestError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| AtRestError::Random)?;
        let header = header(id);
        let prefix = buf.get_mut(..SEALED_PREFIX).ok_or(AtRestError::Open)?;
        prefix[..header.len()].copy_from_slice(&header);
        prefix[header.len()..].copy_from_slice(&nonce);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header),
                &mut buf[SEALED_PREFIX..],
            )
            .map_err(|_| AtRestError::Open)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// The plaintext of a value sealed naming key number `id`: only the body is copied
    /// (every log entry read is opened here).
    fn open(&self, sealed: &[u8], id: u32) -> Result<Vec<u8>, AtRestError> {
        let prefix = sealed.get(..SEALED_PREFIX).ok_or(AtRestError::Open)?;
        let mut body = sealed[SEALED_PREFIX..].to_vec();
        let len = self.open_body(prefix, &mut body, id)?;
        body.truncate(len);
        Ok(body)
    }

    /// Opens a value sealed naming key number `id` where it lies: the plaintext is left at
    /// the range returned.
    fn open_in_place(&self, sealed: &mut [u8], id: u32) -> Result<Range<usize>, AtRestError> {
        if sealed.len() < SEALED_PREFIX {
            return Err(AtRestError::Open);
        }
        let (prefix, body) = sealed.split_at_mut(SEALED_PREFIX);
        let len = self.open_body(prefix, body, id)?;
        Ok(SEALED_PREFIX..SEALED_PREFIX + len)
    }

    /// Opens `body` in place, sealed naming key number `id` behind `prefix` (the header and
    /// the nonce); returns the plaintext's length at its front.
    fn open_body(&self, prefix: &[u8], body: &mut [u8], id: u32) -> Result<usize, AtRestError> {
        let header = header(id);
        let nonce = prefix
            .strip_prefix(header.as_slice())
            .ok_or(AtRestError::Open)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| AtRestError::Open)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(&header), body)
            .map_err(|_| AtRestError::Open)?;
        Ok(plain.len())
    }
}

/// How many bytes a sealed value holds before its plaintext's: the header naming the key,
/// then the nonce. A value sealed in place keeps this much room in front of its plaintext.
pub const SEALED_PREFIX: usize = 8 + NONCE_LEN;

/// The start of a value sealed with key number `id`.
fn header(id: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(MAGIC);
    h[4..].copy_from_slice(&id.to_be_bytes());
    h
}

/// The key that seals the [`Keyring`] on disk.
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

/// How unlock keys begin (with the format's version), so one is recognised when pasted.
pub const UNLOCK_KEY_PREFIX: &str = "SKUNLOCK-1-";

/// A fresh unlock key for an autolocked cluster: 256 random bits.
pub fn generate_unlock_key() -> Result<String, AtRestError> {
    Ok(format!("{UNLOCK_KEY_PREFIX}{}", hex::encode(random_key()?)))
}

impl KeyEncryptionKey {
    /// The KEK an unlock key gives (HKDF-SHA256; the key is 256 random bits already, so no
    /// slow derivation is needed against guessing). Refuses what is not an unlock key.
    pub fn from_unlock_key(unlock_key: &str) -> Result<Self, AtRestError> {
        use ring::hkdf;
        let raw = unlock_key
            .trim()
            .strip_prefix(UNLOCK_KEY_PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() == KEY_LEN)
            .ok_or(AtRestError::BadUnlockKey)?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"skiff autolock v1").extract(&raw);
        let mut kek = [0u8; KEY_LEN];
        prk.expand(&[b"raft key-encryption key"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut kek))
            .map_err(|_| AtRestError::BadUnlockKey)?;
        Ok(Self(kek))
    }

    /// `plaintext` sealed with this key (the node's TLS key, under autolock).
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, AtRestError> {
        Aead::new(&self.0).seal(&[plaintext], 0)
    }

    /// The plaintext of what [`KeyEncryptionKey::seal`] made with this key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AtRestError> {
        Aead::new(&self.0)
            .open(sealed, 0)
            .map_err(|_| AtRestError::WrongKey)
    }
}

fn random_key() -> Result<[u8; KEY_LEN], AtRestError> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| AtRestError::Random)?;
    Ok(key)
}

/// The tree of the Raft log's entries (sealed with the log key).
pub const LOG_TREE: &str = "raft_log";
/// The tree of the state machine's snapshot (sealed with the snapshot key).
pub const SNAPSHOT_TREE: &str = "state_machine";
/// The trees of a Raft store whose every value is data, sealed.
pub const SEALED_TREES: [&str; 2] = [LOG_TREE, SNAPSHOT_TREE];
/// The tree that holds the [`SEALED_MARK`].
pub const META_TREE: &str = "raft_meta";

/// What sled may keep of the Raft store in memory. Its default, 1 GiB, it fills: the log
/// between two snapshots (10,000 entries of up to 1,000 tasks each) and the last snapshot
/// stay in memory (550 MiB for ten times the 100,000-task bench's log, BENCHMARKS.md "bytes
/// per task"). What is read back is the newest entries (apply, replication), which stay
/// cached; a follower far behind or a snapshot sent reads from the files.
pub const SLED_CACHE_BYTES: u64 = 64 << 20;

/// How sled is configured for the Raft store in `dir` (the log, the vote and the last
/// snapshot): every opening of it goes through here, and so does the bytes-per-task
/// measurement (`manager/benches/task_bytes.rs`).
pub fn sled_config(dir: &Path) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .cache_capacity(SLED_CACHE_BYTES)
}

/// Opens the Raft store in `dir` with its data key, which `kek` opens (both made for a new
/// store). A store an older release wrote plain is first copied, every data value sealed,
/// into a fresh store beside it that then takes its place: sealing values in place would
/// leave the plain ones in sled's files until it happened to rewrite them. A crash at any
/// point leaves either the old store or the new one whole (see [`recover`]).
pub fn prepare(
    dir: &Path,
    kek: &KeyEncryptionKey,
    fallback: Option<&KeyEncryptionKey>,
) -> Result<(sled::Db, std::sync::Arc<Keyring>), String> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        format!("cannot {what} the Raft store in {}: {e}", dir.display())
    };
    recover(dir).map_err(|e| failed("recover", &e))?;
    let db = sled_config(dir).open().map_err(|e| failed("open", &e))?;
    let marked = db
        .open_tree(META_TREE)
        .and_then(|m| m.contains_key(SEALED_MARK))
        .map_err(|e| failed("open", &e))?;
    let fresh = db
        .tree_names()
        .iter()
        .all(|name| db.open_tree(name).map(|t| t.is_empty()).unwrap_or(false));
    if marked || fresh {
        let key = Keyring::open_either(dir, kek, fallback).map_err(|e| e.to_string())?;
        if !marked {
            mark(&db).map_err(|e| failed("write", &e))?;
        }
        return Ok((db, std::sync::Arc::new(key)));
    }
    // Written before encryption at rest: copy it sealed, then swap.
    let new = sibling(dir, "new");
    let copied = {
        let key = Keyring::load_or_create(&new, kek).map_err(|e| e.to_string())?;
        let target = sled_config(&new).open().map_err(|e| failed("create", &e))?;
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
    let db = sled_config(dir).open().map_err(|e| failed("open", &e))?;
    let key = Keyring::load_or_create(dir, kek).map_err(|e| e.to_string())?;
    Ok((db, std::sync::Arc::new(key)))
}

/// How much of a file [`replace_file`] writes before it syncs what it wrote.
const SYNC_EVERY: usize = 4 << 20;

/// Puts `bytes` at `path` whole or not at all, durably: written beside it, synced, renamed
/// over it, and the directory synced (the key file, the last snapshot).
///
/// A large file is synced every [`SYNC_EVERY`] bytes as it is written, not once at the end:
/// on ext4 (ordered data) a sync of the Raft log waits for the journal, and the journal for
/// every dirty block written before it, so one sync of a ~180 MB snapshot would hold the
/// manager's log appends, and with them its answers to the leader, behind all of it.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut file = std::fs::File::create(&tmp)?;
    for chunk in bytes.chunks(SYNC_EVERY) {
        file.write_all(chunk)?;
        file.sync_data()?;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
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
/// `key`'s current key for each; returns how many values it sealed.
fn copy_sealed(from: &sled::Db, to: &sled::Db, key: &Keyring) -> Result<usize, String> {
    let mut sealed = 0;
    for name in from.tree_names() {
        let (source, target) = (
            from.open_tree(&name).map_err(|e| e.to_string())?,
            to.open_tree(&name).map_err(|e| e.to_string())?,
        );
        let class = match name.as_ref() {
            n if n == LOG_TREE.as_bytes() => Some(Class::Log),
            n if n == SNAPSHOT_TREE.as_bytes() => Some(Class::Snapshot),
            _ => None,
        };
        let mut batch = sled::Batch::default();
        for item in source.iter() {
            let (k, v) = item.map_err(|e| e.to_string())?;
            if let Some(class) = class {
                batch.insert(k, key.seal(class, &v).map_err(|e| e.to_string())?);
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
    let (db, key) = prepare(dir, kek, None)?;
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
    std::fs::remove_file(dir.join(KEYS_FILE)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written in several synced pieces holds exactly the bytes given, and replaces
    /// the one before whole, with nothing left aside.
    #[test]
    fn a_file_replaced_in_synced_pieces_holds_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        std::fs::write(&path, b"the file before").unwrap();
        let bytes: Vec<u8> = (0..2 * SYNC_EVERY + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        replace_file(&path, &bytes).unwrap();
        assert!(std::fs::read(&path).unwrap() == bytes);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "nothing left aside");
    }

    #[test]
    fn unlock_keys_give_the_same_kek_every_time_and_only_real_ones_are_taken() {
        let key = generate_unlock_key().unwrap();
        assert!(key.starts_with(UNLOCK_KEY_PREFIX) && key.len() == UNLOCK_KEY_PREFIX.len() + 64);
        let kek = KeyEncryptionKey::from_unlock_key(&key).unwrap();
        assert_eq!(
            kek,
            KeyEncryptionKey::from_unlock_key(&format!(" {key}\n")).unwrap()
        );
        let other = KeyEncryptionKey::from_unlock_key(&generate_unlock_key().unwrap()).unwrap();
        assert_ne!(kek, other);
        let sealed = kek.seal(b"tls key").unwrap();
        assert_eq!(kek.open(&sealed).unwrap(), b"tls key");
        assert!(matches!(other.open(&sealed), Err(AtRestError::WrongKey)));
        for bad in ["", "SKUNLOCK-1-abc", "SWMKEY-1-xyz", &key[..key.len() - 2]] {
            assert!(matches!(
                KeyEncryptionKey::from_unlock_key(bad),
                Err(AtRestError::BadUnlockKey)
            ));
        }
    }

    #[test]
    fn a_store_written_before_encryption_is_copied_sealed_and_leaves_no_plain_byte() {
        let dir = tempfile::tempdir().unwrap();
        let raft = dir.path().join("raft");
        let kek = KeyEncryptionKey::generate().unwrap();
        {
            let (db, key) = prepare(&raft, &kek, None).unwrap();
            db.open_tree("raft_log")
                .unwrap()
                .insert(
                    1u64.to_be_bytes(),
                    key.seal(Class::Log, b"entry with s3cr3t").unwrap(),
                )
                .unwrap();
            db.open_tree("state_machine")
                .unwrap()
                .insert(
                    b"snapshot",
                    key.seal(Class::Snapshot, b"snapshot with s3cr3t").unwrap(),
                )
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
        let (db, key) = prepare(&raft, &kek, None).unwrap();
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
