//! The server's secret keys: one signs bearer tokens, one keys the hash that
//! finds a resident's profile by phone number, one signs seals. From the environment when
//! set; otherwise generated once into the data directory (mode 0600), so
//! `serve` and `token issue` on one machine agree without set-up.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use rand::RngCore;

/// Keys shorter than this are refused: HMAC-SHA256 wants 32 bytes.
const KEY_BYTES_MIN: usize = 32;

#[derive(Clone)]
pub struct Secrets {
    pub token_key: Vec<u8>,
    pub phone_key: Vec<u8>,
    /// The seed of the Ed25519 key that signs seals (its SHA-256).
    pub seal_key: Vec<u8>,
}

impl Secrets {
    pub fn load(data_dir: &Path) -> anyhow::Result<Secrets> {
        Ok(Secrets {
            token_key: key(
                "CIVIC_LEDGER_TOKEN_SECRET",
                &data_dir.join("secrets/token.key"),
            )?,
            phone_key: key(
                "CIVIC_LEDGER_PHONE_KEY",
                &data_dir.join("secrets/phone.key"),
            )?,
            seal_key: key("CIVIC_LEDGER_SEAL_KEY", &data_dir.join("secrets/seal.key"))?,
        })
    }

    /// Fresh random keys, for tests.
    pub fn random() -> Secrets {
        Secrets {
            token_key: random_key(),
            phone_key: random_key(),
            seal_key: random_key(),
        }
    }
}

fn random_key() -> Vec<u8> {
    let mut key = vec![0_u8; KEY_BYTES_MIN];
    rand::thread_rng().fill_bytes(&mut key);
    key
}

fn key(variable: &str, file: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(value) = std::env::var(variable) {
        anyhow::ensure!(
            value.len() >= KEY_BYTES_MIN,
            "{variable} must be at least {KEY_BYTES_MIN} bytes"
        );
        return Ok(value.into_bytes());
    }
    match std::fs::read(file) {
        Ok(key) if key.len() >= KEY_BYTES_MIN => return Ok(key),
        Ok(_) => anyhow::bail!("{} is shorter than {KEY_BYTES_MIN} bytes", file.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("could not read {}", file.display()))
        }
    }
    let dir = file.parent().context("a key file has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let key = random_key();
    // create_new: two processes starting at once must not overwrite each
    // other's key; the loser reads the winner's.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(mut out) => {
            out.write_all(&key)?;
            out.sync_all()?;
            Ok(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read(file)?),
        Err(error) => Err(error).with_context(|| format!("could not write {}", file.display())),
    }
}
