//! `callroute run` assembled: store, Synthflow client, daemon, admin listener(s), rules
//! watcher and SIGHUP, all stopped by one shutdown signal passed in.

use std::future::Future;
use std::sync::Arc;

use crate::config::Config;
use crate::daemon::AccountSetup;
use crate::daemon::{Daemon, DaemonError};
use crate::rules::RuleSet;
use crate::store::StoreError;
use crate::store::any::AnyStore;
use crate::synthflow::{Client, ClientConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Something the configuration says is wrong (a secret, the store, an address, the key
    /// or an agent Synthflow refuses): restarting will not help.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn config_error(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Config(error.to_string())
}

/// Waits a second before a start-up step is tried again; true if `shutdown` came first.
async fn stopped_within_a_second(shutdown: &mut (impl Future<Output = ()> + Unpin)) -> bool {
    tokio::select! {
        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => false,
        () = shutdown => true,
    }
}

/// Runs the service until `shutdown` resolves; returns once it has drained.
/// `warned`: the rules' warnings already logged (a reload logs only new ones).
pub async fn run(
    config: Config,
    rules: RuleSet,
    warned: Vec<String>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServiceError> {
    let mut accounts = Vec::new();
    for account in config.account_configs() {
        let api_key = config
            .account_key(&account)
            .map_err(|e| config_error(format!("account `{}`: {e}", account.name)))?;
        let client = Client::new(&ClientConfig {
            base_url: account.base_url.clone(),
            api_key,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
        })
        .map_err(config_error)?;
        accounts.push(AccountSetup {
            name: account.name,
            client,
            attempts_per_second: account.attempts_per_second,
            concurrency: account.concurrency,
        });
    }
    let webhook_secret = config.webhook_secret().map_err(config_error)?;
    let mut config = config;
    if let Some(url) = &config.results_url {
        let secret = config
            .results_secret()
            .map_err(config_error)?
            .ok_or_else(|| config_error(format!(
                "results.url {url} is set but no secret signs the results: set results.secret_file (or CALLROUTE_RESULTS_SECRET, or the credential callroute-results-secret) to a Standard Webhooks secret (whsec_ and base64)"
            )))?;
        if let Err(e) = standardwebhooks::Webhook::new(&secret) {
            return Err(config_error(format!(
                "the results secret is not a Standard Webhooks secret (whsec_ and base64): {e}"
            )));
        }
        config.dialing.results = Some(crate::daemon::ResultsTarget {
            url: url.clone(),
            secret,
        });
    }
    let admin_token = config.admin_token().map_err(config_error)?;
    let risks = config.setup_risks(admin_token.is_some());
    for warning in &risks.warnings {
        tracing::warn!("UNSAFE SET-UP: {warning}");
    }
    if !risks.refusals.is_empty() {
        return Err(config_error(risks.refusals.join("; ")));
    }
    // A PostgreSQL server away (restarting, failing over, a connection cut while migrating)
    // is not configuration: wait for it, saying so. A SQLite path that cannot be opened,
    // a bad URL or a schema newer than this binary are.
    let mut shutdown = std::pin::pin!(shutdown);
    let store = loop {
        match AnyStore::open(&config.store).await {
            Ok(store) => break store,
            Err(e @ StoreError::Database(_))
                if crate::store::postgres::is_postgres_url(&config.store) =>
            {
                tracing::warn!(
                    "cannot open the store {} ({e}); trying again in 1 s",
                    redacted(&config.store)
                );
                if stopped_within_a_second(&mut shutdown).await {
                    return Ok(());
                }
            }
            Err(e) => {
                return Err(config_error(format!(
                    "cannot open the store {}: {e}",
                    redacted(&config.store)
                )));
            }
        }
    };
    crate::metrics::install();
    metrics::gauge!("callroute_rules_reload_success").set(1.0);
    // Anything `open` refuses (an agent naming no account, a store newer than this binary)
    // is configuration; a database error (a fail-over, a connection cut while the ledger is
    // read) is not: systemd must not be told never to restart for it, so it is tried again.
    let rules = Arc::new(rules);
    let daemon = loop {
        let opened = Daemon::open_with_accounts(
            store.clone(),
            rules.clone(),
            accounts.clone(),
            config.dialing.clone(),
        )
        .await;
        match opened {
            Ok(daemon) => break Arc::new(daemon),
            Err(DaemonError::Store(e @ StoreError::Database(_))) => {
                tracing::warn!("the store failed while starting ({e}); trying again in 1 s");
                if stopped_within_a_second(&mut shutdown).await {
                    return Ok(());
                }
            }
            Err(e) => return Err(config_error(e)),
        }
    };
    daemon.set_rules_dir(config.rules.clone());
    daemon.set_warned(warned);
    let listener = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .map_err(|e| {
            config_error(format!(
                "cannot listen on admin_listen {}: {e}",
                config.admin_listen
            ))
        })?;
    let metrics_listener = match config.admin.metrics_listen {
        None => None,
        Some(address) => Some(tokio::net::TcpListener::bind(address).await.map_err(|e| {
            config_error(format!(
                "cannot listen on admin.metrics_listen {address}: {e}"
            ))
        })?),
    };
    if admin_token.is_none() {
        tracing::warn!(
            "no admin token: POST /v1/leads and /v1/reload are refused (reload with SIGHUP or the file watcher)"
        );
    }
    tracing::info!(admin = %listener.local_addr()?, "callroute running");

    // The one shutdown signal, fanned out to everything that runs beside the daemon.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let webhooks = match webhook_secret {
        Some(secret) => crate::admin::Webhooks::Signed(secret),
        None if config.allow_unsigned_webhooks => {
            tracing::warn!(
                "allow_unsigned_webhooks: true and no webhook secret: anyone who can reach the admin listener can post webhooks (each is confirmed with GET /v2/calls before it is acted on); set synthflow.webhook_secret_file"
            );
            crate::admin::Webhooks::Unsigned
        }
        None => {
            tracing::info!(
                "no webhook secret: post-call webhooks are refused (401) and calls are followed by polling; set synthflow.webhook_secret_file"
            );
            crate::admin::Webhooks::Refused
        }
    };
    let router = crate::admin::router(
        daemon.clone(),
        webhooks,
        crate::admin::Access {
            token: admin_token,
            open_reads: config.admin.open_reads,
        },
    );
    let admin = tokio::spawn(crate::admin::serve(
        listener,
        router,
        config.admin.limits,
        until_stopped(),
    ));
    if let Some(listener) = metrics_listener {
        tokio::spawn(crate::admin::serve(
            listener,
            crate::admin::metrics_router(daemon.clone()),
            config.admin.limits,
            until_stopped(),
        ));
    }
    tokio::spawn(crate::reload::watch(
        daemon.clone(),
        config.rules.clone(),
        crate::reload::WatchConfig::default(),
        until_stopped(),
    ));
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let on_hangup = daemon.clone();
    let hangups = until_stopped();
    tokio::spawn(async move {
        tokio::pin!(hangups);
        loop {
            tokio::select! {
                () = &mut hangups => return,
                Some(()) = hangup.recv() => { on_hangup.reload("SIGHUP").await; }
            }
        }
    });
    // Up (listening, the watchdog fed) before Synthflow is asked anything: a hung API must
    // not keep the service silent, unready to systemd or slow to stop.
    crate::systemd::ready(&format!(
        "rules {}; reading the agents' pools",
        crate::rules::hash_text(daemon.rules_hash())
    ));
    let signal = shutdown;
    let work = async {
        let first_read = tokio::select! {
            read = daemon.read_pools_at_start() => Some(read),
            () = until_stopped() => None,
        };
        if let Some(Err(e)) = first_read {
            return Err(config_error(e));
        }
        daemon.run(until_stopped()).await?;
        Ok(())
    };
    tokio::pin!(signal, work);
    let result = tokio::select! {
        result = &mut work => result,
        () = &mut signal => {
            let _ = stop.send(true);
            work.await
        }
    };
    // Stopped, or refused at start: the listeners stop too.
    let _ = stop.send(true);
    let _ = admin.await;
    result
}

/// A store URL fit for logs: a password in it is replaced by `***`.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_kept_out_of_logs() {
        assert_eq!(
            super::redacted("postgres://app:s3cret@db:5432/calls"),
            "postgres://app:***@db:5432/calls"
        );
        assert_eq!(
            super::redacted("postgres://app@db/calls"),
            "postgres://app@db/calls"
        );
        assert_eq!(super::redacted("sqlite://q.db"), "sqlite://q.db");
    }
}
