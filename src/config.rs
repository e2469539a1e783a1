//! The daemon's configuration file (YAML). Every key is optional; unknown keys and bad values
//! fail with `file:line:col`. The API key is never read from this file: it comes from
//! `SYNTHFLOW_API_KEY` or from `synthflow.api_key_file` (e.g. a systemd credential).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::daemon::DaemonConfig;
use crate::rules::diag::{self, Diagnostic, Diagnostics, Reporter, Severity, SourcePos};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    synthflow: Option<RawSynthflow>,
    rules: Option<String>,
    store: Option<String>,
    admin_listen: Option<Spanned<String>>,
    admin: Option<RawAdmin>,
    dialing: Option<RawDialing>,
    accounts: Option<Vec<RawAccount>>,
    results: Option<RawResults>,
}

/// `results:`: where every call's end and every finished lead are delivered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResults {
    url: Spanned<String>,
    secret_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: Spanned<String>,
    base_url: Option<Spanned<String>>,
    api_key_file: Option<Spanned<String>>,
    attempts_per_second: Option<Spanned<u32>>,
    concurrency: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token_file: Option<String>,
    open_reads: Option<bool>,
    metrics_listen: Option<Spanned<String>>,
    max_connections: Option<Spanned<u32>>,
    per_peer_connections: Option<Spanned<u32>>,
    health_reserve: Option<Spanned<u32>>,
    header_timeout: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSynthflow {
    base_url: Option<Spanned<String>>,
    api_key_file: Option<String>,
    webhook_secret_file: Option<String>,
    allow_unsigned_webhooks: Option<bool>,
    attempts_per_second: Option<Spanned<u32>>,
    concurrency: Option<Spanned<u32>>,
    connect_timeout: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDialing {
    claim_batch: Option<Spanned<u32>>,
    poll_interval: Option<Spanned<String>>,
    pool_refresh: Option<Spanned<String>>,
    retry_base: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
    reconcile_delay: Option<Spanned<String>>,
    absent_after: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
    idle_poll: Option<Spanned<String>>,
    lease: Option<Spanned<String>>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub base_url: String,
    pub api_key_file: Option<PathBuf>,
    pub webhook_secret_file: Option<PathBuf>,
    /// Accept webhooks without a signature when no secret is configured (warned about).
    pub allow_unsigned_webhooks: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub rules: PathBuf,
    pub store: String,
    pub admin_listen: SocketAddr,
    pub admin: AdminConfig,
    pub dialing: DaemonConfig,
    /// Several Synthflow accounts (`accounts:`); empty: the one of `synthflow:`.
    pub accounts: Vec<AccountConfig>,
    /// Where results are delivered (`results.url`); `None`: kept for `results export`.
    pub results_url: Option<String>,
    pub results_secret_file: Option<PathBuf>,
}

/// One Synthflow account (workspace) of `accounts:`.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    pub name: String,
    pub base_url: String,
    /// `None` for the account of `synthflow:` (its key comes as `Config::api_key` says).
    pub api_key_file: Option<PathBuf>,
    pub attempts_per_second: u32,
    pub concurrency: u32,
}

/// How the admin listener protects itself.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// File holding the bearer token that writes (and reads, unless `open_reads`) need.
    pub token_file: Option<PathBuf>,
    /// Status, explain and metrics without the token (writes always need it).
    pub open_reads: bool,
    /// A second listener serving `/metrics` alone, without the token (for Prometheus).
    pub metrics_listen: Option<SocketAddr>,
    pub limits: crate::admin::ServeLimits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_url: "https://api.synthflow.ai/v2".into(),
            api_key_file: None,
            webhook_secret_file: None,
            allow_unsigned_webhooks: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            rules: PathBuf::from("rules"),
            store: "sqlite://callroute.db".into(),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            admin: AdminConfig::default(),
            dialing: DaemonConfig::default(),
            accounts: Vec::new(),
            results_url: None,
            results_secret_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no API key: set SYNTHFLOW_API_KEY or synthflow.api_key_file, or give the service the credential synthflow-api-key"
    )]
    Missing,
    #[error("cannot read the secret file {0}: {1}")]
    Unreadable(PathBuf, std::io::Error),
    #[error("the secret file {0} is empty")]
    Empty(PathBuf),
}

impl Config {
    /// Reads and checks `path`; relative `rules`/`store` paths are kept as written.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                severity: Severity::Error,
                pos: SourcePos::start_of(path),
                message: format!("cannot read configuration: {e}"),
            }])
        })?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, Diagnostics> {
        let raw: RawConfig = match serde_saphyr::from_str::<Option<RawConfig>>(text) {
            Ok(raw) => raw.unwrap_or_default(),
            Err(e) => {
                return Err(Diagnostics(vec![diag::explain_yaml_error(
                    diag::from_yaml_error(path, &e),
                    text,
                )]));
            }
        };
        let mut out = Vec::new();
        let mut r = Reporter {
            file: path,
            out: &mut out,
        };
        let mut config = Config::default();
        let duration = |r: &mut Reporter, value: &Option<Spanned<String>>, default: Duration| {
            value
                .as_ref()
                .and_then(|text| r.duration(text))
                .unwrap_or(default)
        };
        let address = |r: &mut Reporter,
                       value: &Option<Spanned<String>>,
                       key: &str,
                       example_port: u16|
         -> Option<SocketAddr> {
            let listen = value.as_ref()?;
            listen
                .value
                .parse()
                .map_err(|_| {
                    r.error(
                        listen,
                        format!(
                            "{key} `{}` must be IP:PORT, e.g. 127.0.0.1:{example_port}",
                            listen.value
                        ),
                    )
                })
                .ok()
        };
        let positive =
            |r: &mut Reporter, value: &Option<Spanned<u32>>, key: &str, default: u32| match value {
                Some(v) if v.value == 0 => {
                    r.error(v, format!("`{key}` must be at least 1"));
                    default
                }
                Some(v) => v.value,
                None => default,
            };
        if let Some(s) = &raw.synthflow {
            if let Some(url) = &s.base_url {
                if !(url.value.starts_with("https://") || url.value.starts_with("http://")) {
                    r.error(url, format!("base_url `{}` must start with https:// (or http:// for a local simulator)", url.value));
                }
                config.base_url = url.value.trim_end_matches('/').to_string();
            }
            config.api_key_file = s.api_key_file.as_ref().map(PathBuf::from);
            config.webhook_secret_file = s.webhook_secret_file.as_ref().map(PathBuf::from);
            config.allow_unsigned_webhooks = s.allow_unsigned_webhooks.unwrap_or(false);
            config.dialing.attempts_per_second =
                positive(&mut r, &s.attempts_per_second, "attempts_per_second", 1);
            config.dialing.concurrency = positive(&mut r, &s.concurrency, "concurrency", 5);
            config.connect_timeout = duration(&mut r, &s.connect_timeout, config.connect_timeout);
            config.request_timeout = duration(&mut r, &s.request_timeout, config.request_timeout);
        }
        if let Some(results) = &raw.results {
            let url = results.url.value.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                r.error(
                    &results.url,
                    format!(
                        "results.url `{}` must start with https:// (or http:// on a private network)",
                        crate::bounded(url, 60)
                    ),
                );
            }
            config.results_url = Some(url.to_string());
            config.results_secret_file = results.secret_file.as_ref().map(PathBuf::from);
        }
        if let Some(rules) = raw.rules {
            config.rules = PathBuf::from(rules);
        }
        if let Some(store) = raw.store {
            config.store = store;
        }
        if let Some(addr) = address(&mut r, &raw.admin_listen, "admin_listen", 9464) {
            config.admin_listen = addr;
        }
        if let Some(a) = &raw.admin {
            config.admin.token_file = a.token_file.as_ref().map(PathBuf::from);
            config.admin.open_reads = a.open_reads.unwrap_or(false);
            if let Some(addr) = address(&mut r, &a.metrics_listen, "metrics_listen", 9465) {
                config.admin.metrics_listen = Some(addr);
            }
            let l = &mut config.admin.limits;
            l.max_connections = positive(
                &mut r,
                &a.max_connections,
                "max_connections",
                l.max_connections as u32,
            ) as usize;
            l.per_peer = positive(
                &mut r,
                &a.per_peer_connections,
                "per_peer_connections",
                l.per_peer as u32,
            ) as usize;
            l.health_reserve = positive(
                &mut r,
                &a.health_reserve,
                "health_reserve",
                l.health_reserve as u32,
            ) as usize;
            l.header_timeout = duration(&mut r, &a.header_timeout, l.header_timeout);
            l.request_timeout = duration(&mut r, &a.request_timeout, l.request_timeout);
        }
        if let Some(d) = &raw.dialing {
            let c = &mut config.dialing;
            c.claim_batch = positive(&mut r, &d.claim_batch, "claim_batch", c.claim_batch);
            c.poll_interval = duration(&mut r, &d.poll_interval, c.poll_interval);
            c.pool_refresh = duration(&mut r, &d.pool_refresh, c.pool_refresh);
            c.retry_base = duration(&mut r, &d.retry_base, c.retry_base);
            c.retry_max = duration(&mut r, &d.retry_max, c.retry_max);
            c.reconcile_delay = duration(&mut r, &d.reconcile_delay, c.reconcile_delay);
            c.absent_after = duration(&mut r, &d.absent_after, c.absent_after);
            c.drain_timeout = duration(&mut r, &d.drain_timeout, c.drain_timeout);
            c.idle_poll = duration(&mut r, &d.idle_poll, c.idle_poll);
            c.lease = duration(&mut r, &d.lease, c.lease);
            if let Some(lease) = &d.lease
                && c.lease < Duration::from_secs(1)
            {
                r.error(
                    lease,
                    "`lease` must be at least 1s (heartbeats come every third of it)".to_string(),
                );
            }
        }
        for raw in raw.accounts.iter().flatten() {
            let name = raw.name.value.trim().to_string();
            if name.is_empty() {
                r.error(&raw.name, "an account needs a name".to_string());
            } else if config.accounts.iter().any(|a| a.name == name) {
                r.error(&raw.name, format!("account `{name}` is defined twice"));
            }
            let base_url = match &raw.base_url {
                Some(url)
                    if !(url.value.starts_with("https://") || url.value.starts_with("http://")) =>
                {
                    r.error(url, format!("base_url `{}` must start with https:// (or http:// for a local simulator)", url.value));
                    config.base_url.clone()
                }
                Some(url) => url.value.trim_end_matches('/').to_string(),
                None => config.base_url.clone(),
            };
            let Some(key) = &raw.api_key_file else {
                r.error(
                    &raw.name,
                    format!("account `{name}` needs `api_key_file`: each account has its own key"),
                );
                continue;
            };
            config.accounts.push(AccountConfig {
                name,
                base_url,
                api_key_file: Some(PathBuf::from(&key.value)),
                attempts_per_second: positive(
                    &mut r,
                    &raw.attempts_per_second,
                    "attempts_per_second",
                    1,
                ),
                concurrency: positive(&mut r, &raw.concurrency, "concurrency", 5),
            });
        }
        if out.is_empty() {
            Ok(config)
        } else {
            Err(Diagnostics(out))
        }
    }

    /// The API key: `SYNTHFLOW_API_KEY`, else the key file, else the systemd credential
    /// `synthflow-api-key`. Never logged.
    pub fn api_key(&self) -> Result<String, KeyError> {
        secret(
            "SYNTHFLOW_API_KEY",
            self.api_key_file.as_ref(),
            "synthflow-api-key",
        )?
        .ok_or(KeyError::Missing)
    }

    /// The accounts to dial on: those of `accounts:`, or the one of `synthflow:` (named
    /// `default`).
    pub fn account_configs(&self) -> Vec<AccountConfig> {
        if !self.accounts.is_empty() {
            return self.accounts.clone();
        }
        vec![AccountConfig {
            name: crate::store::DEFAULT_ACCOUNT.to_string(),
            base_url: self.base_url.clone(),
            api_key_file: None,
            attempts_per_second: self.dialing.attempts_per_second,
            concurrency: self.dialing.concurrency,
        }]
    }

    /// An account's API key: its key file, or for the account of `synthflow:`, `api_key`.
    pub fn account_key(&self, account: &AccountConfig) -> Result<String, KeyError> {
        match &account.api_key_file {
            None => self.api_key(),
            Some(path) => {
                let value = std::fs::read_to_string(path)
                    .map_err(|e| KeyError::Unreadable(path.clone(), e))?;
                let value = value.trim();
                if value.is_empty() {
                    return Err(KeyError::Empty(path.clone()));
                }
                Ok(value.to_string())
            }
        }
    }

    /// The admin token, if any: `CALLROUTE_ADMIN_TOKEN`, else `admin.token_file`, else the
    /// systemd credential `callroute-admin-token`. Never logged.
    pub fn admin_token(&self) -> Result<Option<String>, KeyError> {
        secret(
            "CALLROUTE_ADMIN_TOKEN",
            self.admin.token_file.as_ref(),
            "callroute-admin-token",
        )
    }

    /// The secret results are signed with, if any: `CALLROUTE_RESULTS_SECRET`, else
    /// `results.secret_file`, else the systemd credential `callroute-results-secret`. A
    /// Standard Webhooks secret: `whsec_` and base64. Never logged.
    pub fn results_secret(&self) -> Result<Option<String>, KeyError> {
        secret(
            "CALLROUTE_RESULTS_SECRET",
            self.results_secret_file.as_ref(),
            "callroute-results-secret",
        )
    }

    /// The webhook secret, if any: `SYNTHFLOW_WEBHOOK_SECRET`, else its file, else the
    /// systemd credential `synthflow-webhook-secret`. Never logged.
    pub fn webhook_secret(&self) -> Result<Option<String>, KeyError> {
        secret(
            "SYNTHFLOW_WEBHOOK_SECRET",
            self.webhook_secret_file.as_ref(),
            "synthflow-webhook-secret",
        )
    }
}

/// What a set-up risks that it should not, found at start: `refusals` stop the service
/// (exit 78), `warnings` are logged loudly.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetupRisks {
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

impl Config {
    /// Weak set-ups: an admin listener off loopback that anyone could read without a
    /// token, or with reads left open; secret files that every user of the host can read.
    pub fn setup_risks(&self, admin_token_set: bool) -> SetupRisks {
        let mut risks = SetupRisks::default();
        let exposed = !self.admin_listen.ip().is_loopback();
        if exposed && !admin_token_set {
            risks.refusals.push(format!(
                "admin_listen {} is reachable from the network and no admin token is set: anyone could read the status, decisions and leads' numbers; set an admin token (CALLROUTE_ADMIN_TOKEN, admin.token_file or the credential callroute-admin-token) or listen on 127.0.0.1",
                self.admin_listen
            ));
        } else if exposed && self.admin.open_reads {
            risks.warnings.push(format!(
                "admin_listen {} is reachable from the network with admin.open_reads: true: the status, decisions and leads' numbers are readable without the token",
                self.admin_listen
            ));
        }
        let files = [
            ("synthflow.api_key_file", self.api_key_file.as_ref()),
            (
                "synthflow.webhook_secret_file",
                self.webhook_secret_file.as_ref(),
            ),
            ("admin.token_file", self.admin.token_file.as_ref()),
            ("results.secret_file", self.results_secret_file.as_ref()),
        ]
        .into_iter()
        .chain(
            self.accounts
                .iter()
                .map(|a| ("accounts[].api_key_file", a.api_key_file.as_ref())),
        );
        for (what, path) in files {
            let Some(path) = path else { continue };
            if let Some(mode) = world_readable(path) {
                risks.warnings.push(format!(
                    "{what} {} can be read by every user of this host (mode {mode:o}): chmod 600 it (or 640 for a group), or use systemd's LoadCredential=",
                    path.display()
                ));
            }
        }
        risks
    }
}

/// The file's mode when others may read it.
fn world_readable(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o004 != 0).then_some(mode)
}

fn secret(
    variable: &str,
    file: Option<&PathBuf>,
    credential: &str,
) -> Result<Option<String>, KeyError> {
    if let Ok(value) = std::env::var(variable)
        && !value.trim().is_empty()
    {
        return Ok(Some(value.trim().to_string()));
    }
    // systemd's LoadCredential= puts secrets in $CREDENTIALS_DIRECTORY.
    let from_systemd = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join(credential))
        .filter(|path| path.exists());
    let Some(path) = file.cloned().or(from_systemd) else {
        return Ok(None);
    };
    let value =
        std::fs::read_to_string(&path).map_err(|e| KeyError::Unreadable(path.clone(), e))?;
    let value = value.trim();
    if value.is_empty() {
        return Err(KeyError::Empty(path));
    }
    Ok(Some(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let config = Config::parse(Path::new("c.yaml"), "synthflow: { attempts_per_second: 20, request_timeout: 10s }\nstore: sqlite:///tmp/q.db\n").unwrap();
        assert_eq!(config.dialing.attempts_per_second, 20);
        assert_eq!(config.dialing.concurrency, 5);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.base_url, "https://api.synthflow.ai/v2");
        assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9464");
    }

    #[test]
    fn weak_setups_are_refused_or_warned() {
        let exposed = Config::parse(Path::new("c.yaml"), "admin_listen: 0.0.0.0:9464\n").unwrap();
        let risks = exposed.setup_risks(false);
        assert_eq!(risks.refusals.len(), 1, "{risks:?}");
        assert!(risks.refusals[0].contains("no admin token"));
        assert_eq!(exposed.setup_risks(true), SetupRisks::default());
        let loopback = Config::parse(Path::new("c.yaml"), "store: sqlite:///tmp/q.db\n").unwrap();
        assert_eq!(loopback.setup_risks(false), SetupRisks::default());

        use std::os::unix::fs::PermissionsExt;
        let key = std::env::temp_dir().join(format!("callroute-key-{}", std::process::id()));
        std::fs::write(&key, "secret\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!("synthflow: {{ api_key_file: {} }}\n", key.display());
        let config = Config::parse(Path::new("c.yaml"), &text).unwrap();
        let risks = config.setup_risks(true);
        assert_eq!(risks.warnings.len(), 1, "{risks:?}");
        assert!(risks.warnings[0].contains("mode 644"), "{risks:?}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(config.setup_risks(true).warnings.is_empty());
        let _ = std::fs::remove_file(&key);
    }

    #[test]
    fn every_bad_value_is_located() {
        let text = "synthflow:\n  base_url: ftp://x\n  concurrency: 0\nadmin_listen: localhost\ndialing: { retry_base: soon }\n";
        let errors = Config::parse(Path::new("c.yaml"), text)
            .unwrap_err()
            .to_string();
        for expected in [
            "c.yaml:2:13: base_url",
            "c.yaml:3:16: `concurrency` must be at least 1",
            "c.yaml:4:15: admin_listen",
            "c.yaml:5:24: bad duration `soon`",
        ] {
            assert!(errors.contains(expected), "missing {expected} in\n{errors}");
        }
        let unknown = Config::parse(Path::new("c.yaml"), "synthflow:\n  api_key: secret\n")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("c.yaml:2:3: unknown field `api_key`"),
            "{unknown}"
        );
    }
}
