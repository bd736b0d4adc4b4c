//! Where the database comes from: `DATABASE_URL`, or a private PostgreSQL
//! server in the data directory (docs/DESIGN.md §4).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use store::migrate::ensure_database;
use store::provision::PRIVATE_DATABASE;
use store::PrivatePostgres;

pub struct Database {
    pub pg_config: store::tokio_postgres::Config,
    private: Option<PrivatePostgres>,
}

impl Database {
    /// Uses `database_url` when given; otherwise starts (or attaches to) the
    /// private server in `data_dir`, creating its database on first use.
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> anyhow::Result<Database> {
        if let Some(url) = database_url {
            let pg_config = store::tokio_postgres::Config::from_str(url)
                .context("DATABASE_URL is not a valid PostgreSQL URL")?;
            return Ok(Database {
                pg_config,
                private: None,
            });
        }
        let dir: PathBuf = data_dir.to_path_buf();
        let private = tokio::task::spawn_blocking(move || PrivatePostgres::start(&dir))
            .await
            .context("the provisioning task failed")??;
        ensure_database(&private.pg_config("postgres"), PRIVATE_DATABASE)
            .await
            .context("could not create the database on the private PostgreSQL")?;
        Ok(Database {
            pg_config: private.pg_config(PRIVATE_DATABASE),
            private: Some(private),
        })
    }

    /// The private server, when this process runs one.
    pub fn private(&self) -> Option<&PrivatePostgres> {
        self.private.as_ref()
    }

    /// Stops the private server if this process started it.
    pub async fn close(mut self) -> anyhow::Result<()> {
        if let Some(mut private) = self.private.take() {
            tokio::task::spawn_blocking(move || private.stop())
                .await
                .context("the shutdown task failed")??;
        }
        Ok(())
    }
}
