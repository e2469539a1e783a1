//! A Synthflow that does not answer: after `SILENT_AFTER` call requests of an account in a
//! row got no answer (timed out, refused connection, 5xx), the account is *silent*: its
//! loop sends no new calls (each would be one more attempt in doubt), asks the API every
//! few seconds with a harmless read, and dials again at the first answer. Meanwhile the
//! status, `/readyz` and systemd's STATUS say so; requests still out are counted apart from
//! live calls.

use super::*;

/// Call requests in a row without an answer before an account counts as silent.
pub(super) const SILENT_AFTER: u32 = 3;

/// Why and since when an account's API has stopped answering.
#[derive(Debug, Clone)]
pub(super) struct Silence {
    pub since: DateTime<Utc>,
    pub last_error: String,
}

impl Account {
    /// The answer (any HTTP answer: a call placed, a 4xx, a 429) or its absence, for one
    /// request. Returns the silence that just began, if this made the account silent.
    pub(super) fn note_answer(&self, error: Option<&ApiError>) -> Option<Silence> {
        let unanswered = matches!(
            error,
            Some(ApiError::Ambiguous(_) | ApiError::Connect(_) | ApiError::Server { .. })
        );
        if !unanswered {
            self.unanswered_in_a_row.store(0, Ordering::SeqCst);
            if lock(&self.silent).take().is_some() {
                tracing::info!(account = %self.name, "Synthflow answers again; dialing resumes");
                metrics::gauge!("callroute_api_answering", "account" => self.name.clone()).set(1.0);
            }
            return None;
        }
        let in_a_row = self.unanswered_in_a_row.fetch_add(1, Ordering::SeqCst) + 1;
        let mut silent = lock(&self.silent);
        if in_a_row < SILENT_AFTER || silent.is_some() {
            if let Some(silence) = silent.as_mut() {
                silence.last_error = error.map(ToString::to_string).unwrap_or_default();
            }
            return None;
        }
        let silence = Silence {
            since: Utc::now(),
            last_error: error.map(ToString::to_string).unwrap_or_default(),
        };
        *silent = Some(silence.clone());
        metrics::gauge!("callroute_api_answering", "account" => self.name.clone()).set(0.0);
        Some(silence)
    }

    pub(super) fn silence(&self) -> Option<Silence> {
        lock(&self.silent).clone()
    }

    /// The account's silence as people read it.
    pub(super) fn silence_text(&self) -> Option<String> {
        self.silence().map(|s| {
            format!(
                "Synthflow has not answered account `{}` since {} ({SILENT_AFTER}+ requests in a row; last: {}); new calls paused, asking again every few seconds",
                self.name,
                crate::format_instant(s.since),
                s.last_error
            )
        })
    }

    /// Requests sent and not answered yet.
    pub(super) fn awaiting(&self) -> usize {
        self.awaiting.load(Ordering::SeqCst)
    }
}

impl<S: Store> Shared<S> {
    /// Sends `request` on `account`, counting it as awaiting an answer meanwhile, and notes
    /// whether the API answered.
    pub(super) async fn send_call(
        &self,
        account: &Account,
        request: &CallRequest,
    ) -> Result<String, ApiError> {
        account.awaiting.fetch_add(1, Ordering::SeqCst);
        let result = account.client.create_call(request).await;
        account.awaiting.fetch_sub(1, Ordering::SeqCst);
        if let Some(silence) = account.note_answer(result.as_ref().err()) {
            tracing::error!(
                account = %account.name,
                "Synthflow is not answering: {SILENT_AFTER} call requests in a row got no answer (last: {}); new calls paused until it answers, leads kept",
                silence.last_error
            );
        }
        result
    }

    /// While `account` is silent: waits a little, then asks the API something harmless (an
    /// agent of the account's pool). An answer, whatever it says, ends the silence.
    pub(super) async fn probe_silent(&self, account: &Account) {
        self.alive_while(self.sleep_or_stop(self.config.retry_max.min(Duration::from_secs(5))))
            .await;
        if self.stopping() {
            return;
        }
        let rules = self.rules.load();
        let model = rules
            .agents()
            .find(|a| self.account_of_model(&rules, &a.model_id).name == account.name)
            .map(|a| a.model_id.clone());
        let Some(model) = model else {
            // No agent on this account now: nothing to dial, nothing to ask.
            account.note_answer(None);
            return;
        };
        let answer = self
            .alive_while(async {
                tokio::select! {
                    answer = account.client.attached_numbers(&model) => Some(answer),
                    () = self.sleep_or_stop(Duration::from_secs(3600)) => None,
                }
            })
            .await;
        if let Some(answer) = answer {
            account.note_answer(answer.as_ref().err());
        }
    }
}
