//! Where PostgreSQL comes from: `DATABASE_URL` when it is set, otherwise a
//! private server in the data directory, run with the machine's `initdb` and
//! `pg_ctl` on a Unix socket and stopped when its owner is done with it.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::canonical::sha256;
use crate::error::StoreError;

/// The superuser the private server is created with.
pub const PRIVATE_SUPERUSER: &str = "civic_ledger";
/// The database the application uses on the private server.
pub const PRIVATE_DATABASE: &str = "civic_ledger";
const PRIVATE_PORT: u16 = 5432;
/// Unix socket paths are limited to 107 bytes on Linux.
const SOCKET_PATH_BYTES_MAX: usize = 100;
const START_TIMEOUT_S: u32 = 60;

/// A PostgreSQL server of this process's own, in a data directory.
#[derive(Debug)]
pub struct PrivatePostgres {
    cluster_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    /// Whether this value started the server (and so must stop it).
    started_here: bool,
}

impl PrivatePostgres {
    /// Starts (creating on first use) the server in `data_dir`, or attaches
    /// to the one already running there. Blocks while `pg_ctl` works.
    pub fn start(data_dir: &Path) -> Result<PrivatePostgres, StoreError> {
        let bin_dir = find_server_programs()?;
        fs::create_dir_all(data_dir).map_err(|e| io_error("create", data_dir, e))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| io_error("resolve", data_dir, e))?;
        let cluster_dir = data_dir.join("postgres");
        let socket_dir = socket_dir_for(&data_dir);
        let run_as = unprivileged_owner()?;
        let mut server = PrivatePostgres {
            cluster_dir,
            socket_dir,
            bin_dir,
            run_as,
            started_here: false,
        };
        server.prepare_dirs(&data_dir)?;
        if !server.cluster_dir.join("PG_VERSION").exists() {
            server.init_cluster()?;
        }
        if !server.is_running() {
            server.start_server(&data_dir)?;
            server.started_here = true;
        }
        Ok(server)
    }

    /// Connection settings for a database on this server.
    pub fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(PRIVATE_PORT)
            .user(PRIVATE_SUPERUSER)
            .dbname(dbname);
        config
    }

    /// A URL for tools such as `psql` (`host` is the socket directory).
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{PRIVATE_SUPERUSER}@/{dbname}?host={}&port={PRIVATE_PORT}",
            self.socket_dir.display()
        )
    }

    /// Stops the server if this value started it. Idempotent.
    pub fn stop(&mut self) -> Result<(), StoreError> {
        if !self.started_here {
            return Ok(());
        }
        self.started_here = false;
        let output = self.pg_ctl(&["stop", "-m", "fast", "-w"])?;
        if !output.status.success() && self.is_running() {
            return Err(command_failed("pg_ctl stop", &output));
        }
        tracing::info!(cluster = %self.cluster_dir.display(), "private PostgreSQL stopped");
        Ok(())
    }

    /// Leaves the server running after this value is dropped.
    pub fn detach(mut self) {
        self.started_here = false;
    }

    fn prepare_dirs(&self, data_dir: &Path) -> Result<(), StoreError> {
        fs::create_dir_all(&self.socket_dir)
            .map_err(|e| io_error("create", &self.socket_dir, e))?;
        // The socket directory is the only guard of a trust-auth server.
        set_mode(&self.socket_dir, 0o700)?;
        if let Some((uid, gid)) = self.run_as {
            // PostgreSQL refuses to run as root, so the server runs as an
            // unprivileged user who must own its files and reach them.
            set_mode(data_dir, 0o755)?;
            for dir in [&self.socket_dir, &self.cluster_dir] {
                if dir.exists() {
                    chown(dir, Some(uid), Some(gid)).map_err(|e| io_error("chown", dir, e))?;
                }
            }
        }
        Ok(())
    }

    fn init_cluster(&self) -> Result<(), StoreError> {
        tracing::info!(cluster = %self.cluster_dir.display(), "creating a private PostgreSQL cluster");
        if let Some((uid, gid)) = self.run_as {
            fs::create_dir_all(&self.cluster_dir)
                .map_err(|e| io_error("create", &self.cluster_dir, e))?;
            chown(&self.cluster_dir, Some(uid), Some(gid))
                .map_err(|e| io_error("chown", &self.cluster_dir, e))?;
        }
        let cluster = self.cluster_dir.to_string_lossy().into_owned();
        let output = self.run(
            "initdb",
            &[
                "-D",
                &cluster,
                "-U",
                PRIVATE_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ],
        )?;
        if !output.status.success() {
            return Err(command_failed("initdb", &output));
        }
        Ok(())
    }

    fn start_server(&self, data_dir: &Path) -> Result<(), StoreError> {
        let socket = self.socket_dir.to_string_lossy();
        if socket.contains('\'') {
            return Err(StoreError::Provision(format!(
                "the socket directory {socket} contains a quote; choose another --data-dir"
            )));
        }
        let log_file = data_dir.join("postgres.log");
        if let Some((uid, gid)) = self.run_as {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_file)
                .map_err(|e| io_error("create", &log_file, e))?;
            chown(&log_file, Some(uid), Some(gid)).map_err(|e| io_error("chown", &log_file, e))?;
        }
        let options = format!("-c listen_addresses='' -k '{socket}' -p {PRIVATE_PORT}");
        let timeout = START_TIMEOUT_S.to_string();
        let log = log_file.to_string_lossy().into_owned();
        let output = self.pg_ctl(&["start", "-w", "-t", &timeout, "-l", &log, "-o", &options])?;
        if !output.status.success() {
            let tail = fs::read_to_string(&log_file).unwrap_or_default();
            let tail: String = tail.lines().rev().take(15).collect::<Vec<_>>().join("\n");
            return Err(StoreError::Provision(format!(
                "{}\nlast lines of {}:\n{tail}",
                command_failed("pg_ctl start", &output),
                log_file.display()
            )));
        }
        tracing::info!(cluster = %self.cluster_dir.display(), socket = %socket, "private PostgreSQL started");
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.pg_ctl(&["status"])
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, StoreError> {
        let cluster = self.cluster_dir.to_string_lossy().into_owned();
        let mut all = vec!["-D", cluster.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, StoreError> {
        let path = self.bin_dir.join(program);
        let mut command = Command::new(&path);
        command.args(args).env("LC_ALL", "C").env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid).current_dir("/");
        }
        command.output().map_err(|e| io_error("run", &path, e))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::error!(%error, "could not stop the private PostgreSQL");
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`, or an error that says what
/// to install. `CIVIC_LEDGER_PG_BINDIR`, when set, is the only place looked in
/// (to choose among several installed versions).
pub fn find_server_programs() -> Result<PathBuf, StoreError> {
    if let Some(dir) = std::env::var_os("CIVIC_LEDGER_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
            Ok(dir)
        } else {
            Err(missing_server_programs(&format!(
                "CIVIC_LEDGER_PG_BINDIR={}",
                dir.display()
            )))
        };
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        if output.status.success() {
            let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
            candidates.push(PathBuf::from(dir));
        }
    }
    // Debian and Ubuntu keep the server programs off PATH, one folder per major version.
    let mut versioned: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versioned.sort_by_key(|p| {
        let major = p
            .parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str());
        std::cmp::Reverse(major.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0))
    });
    candidates.extend(versioned);
    candidates.extend(
        [
            "/usr/local/pgsql/bin",
            "/opt/homebrew/bin",
            "/usr/pgsql/bin",
        ]
        .map(PathBuf::from),
    );
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .ok_or_else(|| {
            missing_server_programs("PATH, `pg_config --bindir` and /usr/lib/postgresql/*/bin")
        })
}

fn missing_server_programs(looked_in: &str) -> StoreError {
    StoreError::Provision(format!(
        "DATABASE_URL is not set and the PostgreSQL server programs `initdb` and `pg_ctl` \
         were not found (looked in {looked_in}). Install the PostgreSQL server, version 13 \
         or newer (Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install \
         postgresql-server`; macOS: `brew install postgresql@15`), or set \
         DATABASE_URL=postgres://USER@HOST/DATABASE to use a server you run."
    ))
}

/// PostgreSQL will not run as root; then the server runs as the user named
/// by `CIVIC_LEDGER_PG_OS_USER`, by default `postgres`.
fn unprivileged_owner() -> Result<Option<(u32, u32)>, StoreError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let name = std::env::var("CIVIC_LEDGER_PG_OS_USER").unwrap_or_else(|_| "postgres".into());
    match nix::unistd::User::from_name(&name) {
        Ok(Some(user)) => Ok(Some((user.uid.as_raw(), user.gid.as_raw()))),
        _ => Err(StoreError::Provision(format!(
            "running as root, and PostgreSQL refuses to run as root: create the user `{name}` \
             (`useradd --system {name}`), set CIVIC_LEDGER_PG_OS_USER to another unprivileged \
             user, run as a normal user, or set DATABASE_URL"
        ))),
    }
}

fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let inside = data_dir.join("run");
    let socket_file_len = "/.s.PGSQL.5432".len();
    if inside.as_os_str().len() + socket_file_len <= SOCKET_PATH_BYTES_MAX {
        return inside;
    }
    // A deep data directory: keep the socket in a short, per-directory place.
    let digest = sha256(data_dir.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!("civic-ledger-{}", hex::encode(&digest[..8])))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| io_error("chmod", path, e))
}

fn io_error(action: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Provision(format!("could not {action} {}: {error}", path.display()))
}

fn command_failed(what: &str, output: &Output) -> StoreError {
    StoreError::Provision(format!(
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}
