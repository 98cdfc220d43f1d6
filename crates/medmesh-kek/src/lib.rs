//! Key-encryption-key (KEK) providers, behind the [`medmesh_store::KekProvider`] port.
//!
//! [`KeyFile`] keeps the KEKs in one local file, mode 0600, created at first start. The
//! first key in the file wraps new data keys; older ones stay until `medmesh keys rotate`
//! has re-wrapped everything under the new one, and are then removed.
//!
//! File format, one key per line (comments start with `#`):
//!
//! ```text
//! medmesh-kek v1 <kek id> <base64 key>
//! ```

pub mod kms;
pub use kms::{KmsKek, KmsSettings};

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use medmesh_crypto::{DataKey, Kek, KeyId, Random};
use medmesh_store::{KekError, KekProvider};

const LINE_TAG: &str = "medmesh-kek v1";
const HEADER: &str = "# medmesh key-encryption keys. Keep this file secret, and back it up apart from the\n# database: either alone reveals nothing, both together reveal everything.\n# The first key wraps new data keys; the others are kept until nothing is wrapped under them.\n";

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It cannot be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Other users may read it.
    #[error("key file {0} is readable by other users; run: chmod 600 {0}")]
    Permissions(PathBuf),
    /// A line is not a key.
    #[error("key file {path}: line {line} is not a key")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
    },
    /// It holds no key.
    #[error("key file {0} holds no key")]
    Empty(PathBuf),
}

/// KEKs from a local file.
pub struct KeyFile {
    path: PathBuf,
    keks: RwLock<Vec<Kek>>,
    modified: RwLock<Option<std::time::SystemTime>>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .field("keks", &self.ids())
            .finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_keys(path: &Path) -> Result<Vec<Kek>, KeyFileError> {
    check_permissions(path)?;
    let text = fs::read_to_string(path).map_err(io(path))?;
    let mut keks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = || KeyFileError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
        };
        let rest = line.strip_prefix(LINE_TAG).ok_or_else(malformed)?;
        let mut parts = rest.split_whitespace();
        let (Some(id), Some(b64), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed());
        };
        let bytes: [u8; 32] = STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(malformed)?;
        let kek = Kek::from_bytes(bytes);
        // The id is a digest of the key: a mismatch means a damaged or edited line.
        if kek.id().0 != id {
            return Err(malformed());
        }
        keks.push(kek);
    }
    if keks.is_empty() {
        return Err(KeyFileError::Empty(path.to_path_buf()));
    }
    Ok(keks)
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions(path.to_path_buf()));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path) -> Result<(), KeyFileError> {
    Ok(())
}

/// Writes the keys to a temporary file (mode 0600) beside `path`, syncs it, and renames it
/// over `path`: a crash leaves the old file or the new one, never half of one.
fn write_keys(path: &Path, keks: &[Kek]) -> Result<(), KeyFileError> {
    let mut text = HEADER.to_string();
    for k in keks {
        text.push_str(&format!(
            "{LINE_TAG} {} {}\n",
            k.id(),
            STANDARD.encode(k.expose_bytes())
        ));
    }
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp).map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = fs::File::open(dir)
    {
        // Makes the rename durable; not every platform can sync a directory.
        let _ = d.sync_all();
    }
    Ok(())
}

impl KeyFile {
    /// Opens the key file, creating it with one fresh key if it does not exist.
    ///
    /// # Errors
    /// When it cannot be read or created, is readable by others, or is malformed.
    pub fn open_or_create(path: &Path, random: &dyn Random) -> Result<Self, KeyFileError> {
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(io(dir))?;
            }
            write_keys(path, &[Kek::random(random)])?;
            tracing::info!(path = %path.display(), "created a new key-encryption key file");
        }
        Self::open(path)
    }

    /// Opens an existing key file.
    ///
    /// # Errors
    /// When it cannot be read, is readable by others, or is malformed.
    pub fn open(path: &Path) -> Result<Self, KeyFileError> {
        Ok(Self {
            path: path.to_path_buf(),
            keks: RwLock::new(read_keys(path)?),
            modified: RwLock::new(modified(path)),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ids of the keys, current first.
    pub fn ids(&self) -> Vec<String> {
        self.keks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|k| k.id().0.clone())
            .collect()
    }

    /// Adds a fresh key in front: it wraps new data keys from now on. The file is
    /// rewritten atomically before the change is visible here.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn add_current(&self, random: &dyn Random) -> Result<String, KeyFileError> {
        let mut keks = self.keks.write().unwrap_or_else(PoisonError::into_inner);
        let fresh = Kek::random(random);
        let id = fresh.id().0.clone();
        let mut next = vec![fresh];
        next.extend(keks.iter().cloned());
        write_keys(&self.path, &next)?;
        *keks = next;
        *self
            .modified
            .write()
            .unwrap_or_else(PoisonError::into_inner) = modified(&self.path);
        Ok(id)
    }

    /// Removes every key but the current one.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn retire_old(&self) -> Result<Vec<String>, KeyFileError> {
        let mut keks = self.keks.write().unwrap_or_else(PoisonError::into_inner);
        let removed: Vec<String> = keks.iter().skip(1).map(|k| k.id().0.clone()).collect();
        let next: Vec<Kek> = keks.iter().take(1).cloned().collect();
        write_keys(&self.path, &next)?;
        *keks = next;
        *self
            .modified
            .write()
            .unwrap_or_else(PoisonError::into_inner) = modified(&self.path);
        Ok(removed)
    }

    /// Re-reads the file (another process rotated the key).
    ///
    /// # Errors
    /// When it cannot be read.
    pub fn reload(&self) -> Result<(), KeyFileError> {
        let stamp = modified(&self.path);
        let fresh = read_keys(&self.path)?;
        *self.keks.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        *self
            .modified
            .write()
            .unwrap_or_else(PoisonError::into_inner) = stamp;
        Ok(())
    }

    /// Re-reads the file if it changed since it was read: before wrapping a new data key,
    /// so a node never wraps under a key that `medmesh keys rotate` is retiring.
    ///
    /// # Errors
    /// When it changed and cannot be read.
    pub fn reload_if_changed(&self) -> Result<(), KeyFileError> {
        let now = modified(&self.path);
        if now != *self.modified.read().unwrap_or_else(PoisonError::into_inner) {
            self.reload()?;
        }
        Ok(())
    }

    fn find(&self, id: &str) -> Option<Kek> {
        self.keks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|k| k.id().0 == id)
            .cloned()
    }

    fn current(&self) -> Option<Kek> {
        self.keks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .first()
            .cloned()
    }
}

/// A [`KeyFile`] with the randomness for wrapping: the provider the node uses.
pub struct LocalKek {
    file: KeyFile,
    random: std::sync::Arc<dyn Random>,
}

impl std::fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.file.fmt(f)
    }
}

impl LocalKek {
    /// A provider over a key file.
    pub fn new(file: KeyFile, random: std::sync::Arc<dyn Random>) -> Self {
        Self { file, random }
    }

    /// The key file.
    pub fn file(&self) -> &KeyFile {
        &self.file
    }
}

#[async_trait]
impl KekProvider for LocalKek {
    fn current_kek(&self) -> String {
        self.file
            .current()
            .map(|k| k.id().0.clone())
            .unwrap_or_default()
    }

    async fn wrap(
        &self,
        key: &DataKey,
        key_id: &KeyId,
        owner: &str,
    ) -> Result<(String, Vec<u8>), KekError> {
        self.file.reload_if_changed().map_err(KekError::service)?;
        let kek = self
            .file
            .current()
            .ok_or_else(|| KekError::service("no key-encryption key"))?;
        Ok((
            kek.id().0.clone(),
            kek.wrap(key, key_id, owner, self.random.as_ref()),
        ))
    }

    async fn unwrap(
        &self,
        kek_id: &str,
        wrapped: &[u8],
        key_id: &KeyId,
        owner: &str,
    ) -> Result<DataKey, KekError> {
        let kek = match self.file.find(kek_id) {
            Some(k) => k,
            None => {
                // Another process may have rotated: the new key is in the file by now.
                self.file.reload().map_err(KekError::service)?;
                self.file
                    .find(kek_id)
                    .ok_or_else(|| KekError::Unknown(kek_id.to_string()))?
            }
        };
        kek.unwrap(wrapped, key_id, owner)
            .map_err(|_| KekError::Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_crypto::OsRandom;

    #[test]
    fn creates_a_private_file_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("master.key");
        let f = KeyFile::open_or_create(&path, &OsRandom).unwrap();
        let ids = f.ids();
        assert_eq!(ids.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(KeyFile::open(&path).unwrap().ids(), ids);
        assert_eq!(
            KeyFile::open_or_create(&path, &OsRandom).unwrap().ids(),
            ids
        );
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        KeyFile::open_or_create(&path, &OsRandom).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            KeyFile::open(&path),
            Err(KeyFileError::Permissions(_))
        ));
    }

    #[test]
    fn refuses_damaged_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        KeyFile::open_or_create(&path, &OsRandom).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let damaged = text.replace("medmesh-kek v1 ", "medmesh-kek v1 00");
        fs::write(&path, damaged).unwrap();
        assert!(matches!(
            KeyFile::open(&path),
            Err(KeyFileError::Malformed { .. })
        ));
    }

    #[tokio::test]
    async fn rotation_keeps_old_keys_until_retired_and_other_processes_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let random: std::sync::Arc<dyn Random> = std::sync::Arc::new(OsRandom);
        let node = LocalKek::new(
            KeyFile::open_or_create(&path, &OsRandom).unwrap(),
            random.clone(),
        );
        let dek = DataKey::random(&OsRandom);
        let id = KeyId::random(&OsRandom);
        let (old_kek, wrapped) = node.wrap(&dek, &id, "p1").await.unwrap();

        // Another process (the CLI) rotates the file.
        let cli = LocalKek::new(KeyFile::open(&path).unwrap(), random);
        let new_kek = cli.file().add_current(&OsRandom).unwrap();
        let (kek2, rewrapped) = cli.wrap(&dek, &id, "p1").await.unwrap();
        assert_eq!(kek2, new_kek);
        // The serving node has never seen the new key: it reloads the file on demand.
        let back = node.unwrap(&new_kek, &rewrapped, &id, "p1").await.unwrap();
        assert_eq!(back.expose_bytes(), dek.expose_bytes());
        assert_eq!(node.current_kek(), new_kek);
        // The old wrapping opens until the old key is retired.
        assert!(node.unwrap(&old_kek, &wrapped, &id, "p1").await.is_ok());
        cli.file().retire_old().unwrap();
        node.file().reload().unwrap();
        assert!(matches!(
            node.unwrap(&old_kek, &wrapped, &id, "p1").await,
            Err(KekError::Unknown(_))
        ));
    }
}
