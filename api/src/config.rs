//! The server's configuration, typed, in one place (docs/CONFIGURATION.md):
//! built-in defaults, then a TOML file (`--config FILE` or
//! `CIVIC_LEDGER_CONFIG`), then environment variables
//! `CIVIC_LEDGER_<SECTION>_<KEY>`, then the command line's flags. A key
//! nobody knows, a value of the wrong type or out of its bounds is refused
//! at start-up, naming the key and where it came from: a typo must not
//! silently leave a default in place.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use app::audit::seals::SealPolicy;
use app::ratelimit::SubmissionRates;
use serde::{Deserialize, Serialize};

/// The prefix of every configuration variable in the environment.
pub const ENV_PREFIX: &str = "CIVIC_LEDGER_";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub limits: LimitsConfig,
    pub seals: SealsConfig,
    pub processes: ProcessesConfig,
    pub projections: ProjectionsConfig,
    pub reads: ReadsConfig,
    pub photos: PhotosConfig,
    pub signup: SignupConfig,
}

/// How sign-up codes reach phones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignupConfig {
    /// `log` (the server's log; until a gateway is set up) or `http` (an
    /// SMS gateway).
    pub sender: CodeSenderKind,
    /// The gateway's URL, for `http`.
    pub sms_gateway_url: String,
    /// The body posted for each code: `{phone}` and `{code}` are put in.
    pub sms_body_template: String,
    pub sms_content_type: String,
    /// The `Authorization` header the gateway wants; better set in the
    /// environment than in a file.
    pub sms_authorization: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeSenderKind {
    #[default]
    Log,
    Http,
}

impl Default for SignupConfig {
    fn default() -> Self {
        SignupConfig {
            sender: CodeSenderKind::Log,
            sms_gateway_url: String::new(),
            sms_body_template:
                "{\"phone\":\"{phone}\",\"text\":\"您的验证码是 {code}，10 分钟内有效。\"}"
                    .to_string(),
            sms_content_type: "application/json".to_string(),
            sms_authorization: String::new(),
        }
    }
}

impl SignupConfig {
    /// The code sender this configures.
    pub fn code_sender(&self) -> anyhow::Result<std::sync::Arc<dyn app::signup::CodeSender>> {
        Ok(match self.sender {
            CodeSenderKind::Log => std::sync::Arc::new(app::signup::LogCodeSender),
            CodeSenderKind::Http => std::sync::Arc::new(
                app::signup::HttpCodeSender::new(
                    &self.sms_gateway_url,
                    &self.sms_body_template,
                    &self.sms_content_type,
                    (!self.sms_authorization.is_empty()).then(|| self.sms_authorization.clone()),
                )
                .map_err(|error| anyhow::anyhow!("signup: {error}"))?,
            ),
        })
    }
}

/// Where uploaded photos' bytes live (docs/PHOTOS.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhotosConfig {
    /// `local` (a directory) or `s3` (an S3-compatible bucket; credentials
    /// from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`).
    pub store: PhotoStoreKind,
    /// The directory for `local`; empty is `photos` in the data directory.
    pub directory: String,
    pub s3_bucket: String,
    /// The S3 service's URL; empty for AWS itself.
    pub s3_endpoint: String,
    pub s3_region: String,
    /// Whether `s3_endpoint` may be plain `http`.
    pub s3_allow_http: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhotoStoreKind {
    #[default]
    Local,
    S3,
}

impl PhotosConfig {
    /// The photo store this configures; `data_dir` holds the local one
    /// unless a directory is named.
    pub fn photo_store(&self, data_dir: &Path) -> anyhow::Result<app::photos::PhotoStore> {
        let store = match self.store {
            PhotoStoreKind::Local => {
                let directory = if self.directory.is_empty() {
                    data_dir.join("photos")
                } else {
                    Path::new(&self.directory).to_path_buf()
                };
                app::photos::PhotoStore::local(&directory)
            }
            PhotoStoreKind::S3 => app::photos::PhotoStore::s3(&app::photos::S3Bucket {
                bucket: self.s3_bucket.clone(),
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                allow_http: self.s3_allow_http,
                keys: None,
            }),
        };
        store.map_err(|error| anyhow::anyhow!("photos: {error}"))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers name
    /// the client: comma-separated addresses and networks.
    pub trusted_proxies: String,
    /// How long a read with `atLeast` waits for the read models, seconds.
    pub freshness_timeout_seconds: u64,
    /// Where residents reach this server (`https://civic.example.org`):
    /// what each site's QR code encodes. Empty is `http://` and the
    /// address it listens on, for trying it out.
    pub public_base_url: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Connections the event store may hold open.
    pub pool_size_max: usize,
    /// The longest one statement may run, milliseconds.
    pub statement_timeout_ms: u64,
}

/// Token buckets: a burst, then so many per minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Reports and suggestions per anonymous address in a community.
    pub anonymous_burst: u32,
    pub anonymous_per_minute: u32,
    /// All anonymous submissions to one community together.
    pub anonymous_community_burst: u32,
    pub anonymous_community_per_minute: u32,
    /// Per signed-in caller in a community.
    pub member_burst: u32,
    pub member_per_minute: u32,
    /// Sign-up code requests and attempts per address.
    pub signup_burst: u32,
    pub signup_per_minute: u32,
}

/// When the sealer signs a community's chain head: after so many new
/// events, or after so many minutes with any new event, whichever first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SealsConfig {
    pub every_events: i64,
    pub every_minutes: u64,
}

/// How often each background process looks, seconds; 0 runs none (another
/// process, or a test, does the work).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessesConfig {
    pub deadline_interval_seconds: u64,
    pub points_sweep_interval_seconds: u64,
    pub seal_interval_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectionsConfig {
    /// Events folded per transaction while following the log.
    pub batch_size: i64,
    /// Events folded per transaction when filling a generation from zero.
    pub replay_batch_size: i64,
}

/// Answers of repeated reads kept in memory while nothing they rest on has
/// changed (ADR 0013).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadsConfig {
    /// Answers kept at most; 0 keeps none.
    pub cache_entries_max: usize,
    /// Rows kept at most, across every answer.
    pub cache_rows_max: usize,
    /// How long one answer is kept at most, milliseconds.
    pub cache_age_max_ms: u64,
}

impl Default for ReadsConfig {
    fn default() -> Self {
        let limits = projections::CacheLimits::default();
        ReadsConfig {
            cache_entries_max: limits.entries_max,
            cache_rows_max: limits.rows_max,
            cache_age_max_ms: limits.age_max.as_millis() as u64,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_string(),
            trusted_proxies: String::new(),
            freshness_timeout_seconds: 5,
            public_base_url: String::new(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        let store = store::StoreConfig::default();
        DatabaseConfig {
            pool_size_max: store.pool_size_max,
            statement_timeout_ms: store.statement_timeout_ms,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let rates = SubmissionRates::default();
        LimitsConfig {
            anonymous_burst: rates.anonymous_burst,
            anonymous_per_minute: rates.anonymous_per_minute,
            anonymous_community_burst: rates.anonymous_community_burst,
            anonymous_community_per_minute: rates.anonymous_community_per_minute,
            member_burst: rates.member_burst,
            member_per_minute: rates.member_per_minute,
            signup_burst: 20,
            signup_per_minute: 10,
        }
    }
}

impl Default for SealsConfig {
    fn default() -> Self {
        let policy = SealPolicy::default();
        SealsConfig {
            every_events: policy.every_events,
            every_minutes: policy.every.as_secs() / 60,
        }
    }
}

impl Default for ProcessesConfig {
    fn default() -> Self {
        ProcessesConfig {
            deadline_interval_seconds: 60,
            points_sweep_interval_seconds: 20,
            seal_interval_seconds: 30,
        }
    }
}

impl Default for ProjectionsConfig {
    fn default() -> Self {
        let runner = projections::RunnerConfig::default();
        ProjectionsConfig {
            batch_size: runner.batch_size,
            replay_batch_size: runner.replay_batch_size,
        }
    }
}

impl Config {
    /// Defaults, then `file` if given, then the environment's
    /// `CIVIC_LEDGER_<SECTION>_<KEY>` variables; checked.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut tree = toml::Table::try_from(Config::default()).context("the defaults")?;
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("could not read the configuration {}", file.display()))?;
            let from_file: toml::Table = text
                .parse()
                .with_context(|| format!("{} is not TOML", file.display()))?;
            merge(&mut tree, from_file, &file.display().to_string())?;
        }
        for (name, value) in environment {
            set_from_environment(&mut tree, &name, &value)?;
        }
        let config: Config = toml::Value::Table(tree)
            .try_into()
            .context("the configuration")?;
        config.check()?;
        Ok(config)
    }

    /// Every value within its bounds, or an error naming the key.
    pub fn check(&self) -> anyhow::Result<()> {
        fn within<T: PartialOrd + std::fmt::Display>(
            key: &str,
            value: T,
            low: T,
            high: T,
        ) -> anyhow::Result<()> {
            if value < low || value > high {
                bail!("{key} = {value}: must be {low} to {high}");
            }
            Ok(())
        }
        const DAY_SECONDS: u64 = 24 * 3600;
        within(
            "server.freshness_timeout_seconds",
            self.server.freshness_timeout_seconds,
            0,
            60,
        )?;
        crate::clients::TrustedProxies::parse(&self.server.trusted_proxies)
            .map_err(|error| anyhow::anyhow!("server.trusted_proxies: {error}"))?;
        within(
            "database.pool_size_max",
            self.database.pool_size_max,
            2,
            1_000,
        )?;
        within(
            "database.statement_timeout_ms",
            self.database.statement_timeout_ms,
            100,
            3_600_000,
        )?;
        let limits = &self.limits;
        for (key, value) in [
            ("limits.anonymous_burst", limits.anonymous_burst),
            ("limits.anonymous_per_minute", limits.anonymous_per_minute),
            (
                "limits.anonymous_community_burst",
                limits.anonymous_community_burst,
            ),
            (
                "limits.anonymous_community_per_minute",
                limits.anonymous_community_per_minute,
            ),
            ("limits.member_burst", limits.member_burst),
            ("limits.member_per_minute", limits.member_per_minute),
            ("limits.signup_burst", limits.signup_burst),
            ("limits.signup_per_minute", limits.signup_per_minute),
        ] {
            within(key, value, 1, 1_000_000)?;
        }
        within(
            "seals.every_events",
            self.seals.every_events,
            1,
            100_000_000,
        )?;
        within(
            "seals.every_minutes",
            self.seals.every_minutes,
            1,
            7 * 24 * 60,
        )?;
        let processes = &self.processes;
        for (key, value) in [
            (
                "processes.deadline_interval_seconds",
                processes.deadline_interval_seconds,
            ),
            (
                "processes.points_sweep_interval_seconds",
                processes.points_sweep_interval_seconds,
            ),
            (
                "processes.seal_interval_seconds",
                processes.seal_interval_seconds,
            ),
        ] {
            within(key, value, 0, DAY_SECONDS)?;
        }
        within(
            "projections.batch_size",
            self.projections.batch_size,
            1,
            100_000,
        )?;
        within(
            "projections.replay_batch_size",
            self.projections.replay_batch_size,
            1,
            1_000_000,
        )?;
        within(
            "reads.cache_entries_max",
            self.reads.cache_entries_max,
            0,
            1_000_000,
        )?;
        within(
            "reads.cache_rows_max",
            self.reads.cache_rows_max,
            1,
            100_000_000,
        )?;
        let base = &self.server.public_base_url;
        if !(base.is_empty() || base.starts_with("http://") || base.starts_with("https://")) {
            bail!("server.public_base_url = {base:?}: must start with http:// or https://");
        }
        if self.signup.sender == CodeSenderKind::Http {
            self.signup.code_sender()?;
        }
        if self.photos.store == PhotoStoreKind::S3 && self.photos.s3_bucket.is_empty() {
            bail!("photos.s3_bucket: must be set when photos.store = \"s3\"");
        }
        within(
            "reads.cache_age_max_ms",
            self.reads.cache_age_max_ms,
            1,
            3_600_000,
        )?;
        Ok(())
    }

    pub fn submission_rates(&self) -> SubmissionRates {
        let limits = &self.limits;
        SubmissionRates {
            anonymous_burst: limits.anonymous_burst,
            anonymous_per_minute: limits.anonymous_per_minute,
            anonymous_community_burst: limits.anonymous_community_burst,
            anonymous_community_per_minute: limits.anonymous_community_per_minute,
            member_burst: limits.member_burst,
            member_per_minute: limits.member_per_minute,
        }
    }

    pub fn read_cache(&self) -> projections::CacheLimits {
        projections::CacheLimits {
            entries_max: self.reads.cache_entries_max,
            rows_max: self.reads.cache_rows_max,
            age_max: Duration::from_millis(self.reads.cache_age_max_ms),
        }
    }

    pub fn seal_policy(&self) -> SealPolicy {
        SealPolicy {
            every_events: self.seals.every_events,
            every: Duration::from_secs(self.seals.every_minutes * 60),
        }
    }

    pub fn store(&self) -> store::StoreConfig {
        store::StoreConfig {
            pool_size_max: self.database.pool_size_max,
            statement_timeout_ms: self.database.statement_timeout_ms,
            ..store::StoreConfig::default()
        }
    }

    pub fn runner(&self) -> projections::RunnerConfig {
        projections::RunnerConfig {
            batch_size: self.projections.batch_size,
            replay_batch_size: self.projections.replay_batch_size,
            ..projections::RunnerConfig::default()
        }
    }
}

/// A process's interval: 0 runs none.
pub fn interval(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Lays `from` over `into`, refusing keys and sections `into` lacks.
fn merge(into: &mut toml::Table, from: toml::Table, source: &str) -> anyhow::Result<()> {
    for (section, values) in from {
        let Some(toml::Value::Table(known)) = into.get_mut(&section) else {
            bail!("{source}: unknown section [{section}]");
        };
        let toml::Value::Table(values) = values else {
            bail!("{source}: {section} must be a section ([{section}])");
        };
        for (key, value) in values {
            let Some(default) = known.get(&key) else {
                bail!("{source}: unknown key {section}.{key}");
            };
            if default.type_str() != value.type_str() {
                bail!(
                    "{source}: {section}.{key} must be a {}, not a {}",
                    default.type_str(),
                    value.type_str()
                );
            }
            known.insert(key, value);
        }
    }
    Ok(())
}

/// `CIVIC_LEDGER_<SECTION>_<KEY>=value` sets `<section>.<key>`, typed as
/// its default is. Variables of the prefix that name no key are left to
/// whoever reads them (the secrets, the database URL).
fn set_from_environment(tree: &mut toml::Table, name: &str, value: &str) -> anyhow::Result<()> {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    let rest = rest.to_ascii_lowercase();
    for (section, values) in tree.iter_mut() {
        let Some(key) = rest.strip_prefix(&format!("{section}_")) else {
            continue;
        };
        let toml::Value::Table(values) = values else {
            continue;
        };
        let Some(default) = values.get(key) else {
            continue;
        };
        let parsed = match default {
            toml::Value::String(_) => toml::Value::String(value.to_string()),
            toml::Value::Integer(_) => {
                toml::Value::Integer(value.trim().parse().with_context(|| {
                    format!("{name}={value}: {section}.{key} must be a whole number")
                })?)
            }
            toml::Value::Boolean(_) => {
                toml::Value::Boolean(value.trim().parse().with_context(|| {
                    format!("{name}={value}: {section}.{key} must be true or false")
                })?)
            }
            other => bail!("{name}: {section}.{key} is a {}", other.type_str()),
        };
        values.insert(key.to_string(), parsed);
        return Ok(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/CONFIGURATION.md shows the whole default file; it must be the
    /// defaults the server runs with.
    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let doc = include_str!("../../docs/CONFIGURATION.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("the block ends");
        let documented: Config = toml::from_str(&doc[start..end]).expect("the block parses");
        assert_eq!(documented, Config::default());
        let every_key = toml::Table::try_from(Config::default()).expect("a table");
        for (section, keys) in every_key {
            let toml::Value::Table(keys) = keys else {
                continue;
            };
            for key in keys.keys() {
                let variable = format!("{ENV_PREFIX}{section}_{key}").to_ascii_uppercase();
                assert!(doc.contains(&variable), "{variable} is not documented");
            }
        }
    }

    fn load(file: Option<&str>, environment: &[(&str, &str)]) -> anyhow::Result<Config> {
        let written = file.map(|text| {
            let file = tempfile::NamedTempFile::new().expect("a temp file");
            std::fs::write(file.path(), text).expect("written");
            file
        });
        let environment = environment
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(written.as_ref().map(|f| f.path()), environment)
    }

    #[test]
    fn the_defaults_are_the_values_the_parts_default_to() {
        let config = load(None, &[]).expect("defaults load");
        assert_eq!(config, Config::default());
        assert_eq!(config.submission_rates(), SubmissionRates::default());
        assert_eq!(config.seal_policy(), SealPolicy::default());
        assert_eq!(
            config.store().pool_size_max,
            store::StoreConfig::default().pool_size_max
        );
    }

    #[test]
    fn a_file_then_the_environment_set_values() {
        let config = load(
            Some("[seals]\nevery_events = 50\nevery_minutes = 5\n[server]\nlisten = \"0.0.0.0:9000\"\n"),
            &[
                ("CIVIC_LEDGER_SEALS_EVERY_EVENTS", "70"),
                ("CIVIC_LEDGER_LIMITS_MEMBER_BURST", "3"),
                ("CIVIC_LEDGER_TOKEN_SECRET", "not a configuration key"),
                ("PATH", "/bin"),
            ],
        )
        .expect("loads");
        assert_eq!(
            config.seals.every_events, 70,
            "the environment wins over the file"
        );
        assert_eq!(config.seals.every_minutes, 5);
        assert_eq!(config.server.listen, "0.0.0.0:9000");
        assert_eq!(config.limits.member_burst, 3);
        assert_eq!(config.seal_policy().every, Duration::from_secs(300));
    }

    /// A careless operator's configuration is refused, naming what is
    /// wrong, instead of running on defaults they did not mean.
    #[test]
    fn bad_configurations_are_refused_naming_the_key() {
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                Some("[seals]\nevery_event = 5\n"),
                &[],
                "unknown key seals.every_event",
            ),
            (
                Some("[seal]\nevery_events = 5\n"),
                &[],
                "unknown section [seal]",
            ),
            (
                Some("[seals]\nevery_events = \"5\"\n"),
                &[],
                "must be a integer",
            ),
            (
                Some("[seals]\nevery_events = 0\n"),
                &[],
                "seals.every_events = 0",
            ),
            (Some("not toml ["), &[], "is not TOML"),
            (
                None,
                &[("CIVIC_LEDGER_SEALS_EVERY_MINUTES", "soon")],
                "whole number",
            ),
            (
                None,
                &[("CIVIC_LEDGER_DATABASE_POOL_SIZE_MAX", "99999999999")],
                "database.pool_size_max",
            ),
            (
                None,
                &[("CIVIC_LEDGER_LIMITS_SIGNUP_BURST", "0")],
                "limits.signup_burst = 0",
            ),
            (
                None,
                &[("CIVIC_LEDGER_SERVER_TRUSTED_PROXIES", "not-an-address")],
                "server.trusted_proxies",
            ),
            (
                None,
                &[("CIVIC_LEDGER_PROCESSES_SEAL_INTERVAL_SECONDS", "-1")],
                "processes.seal_interval_seconds",
            ),
            (
                None,
                &[("CIVIC_LEDGER_PHOTOS_STORE", "s3")],
                "photos.s3_bucket",
            ),
            (None, &[("CIVIC_LEDGER_PHOTOS_STORE", "ftp")], "ftp"),
            (
                None,
                &[("CIVIC_LEDGER_PHOTOS_S3_ALLOW_HTTP", "yes")],
                "photos.s3_allow_http must be true or false",
            ),
        ];
        for (file, environment, expected) in cases {
            let error = load(*file, environment).expect_err(expected);
            let message = format!("{error:#}");
            assert!(
                message.contains(expected),
                "{expected:?} not in {message:?}"
            );
        }
    }
}
