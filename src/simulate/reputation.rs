//! A model of how carriers label caller IDs, for `simulate --reputation`: a *model* to
//! compare policies against, not a claim about any carrier's analytics.
//!
//! * Each call from an unlabelled number may get it labelled ("Spam Likely"). The chance per
//!   call grows with the number's calls that local day above `daily_threshold`, and with its
//!   share of short calls among its recent answered ones.
//! * A labelled number is answered `labelled_answer_factor` times as often.
//! * A label lifts once the number has not been used for `lift_after` (a rest).
//! * Answered calls are short (a quick hang-up) with `short_share`, more when labelled.
//!
//! Draws are seeded from the run's seed, the number and its call count: same inputs, same
//! labels.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::phone::E164;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    /// Calls a day a number makes without raising its risk.
    pub daily_threshold: u32,
    /// Chance per call of a label for each `daily_threshold` calls over it that day.
    pub volume_risk: f64,
    /// Chance per call of a label at a short-call share of 100 %.
    pub short_call_risk: f64,
    pub labelled_answer_factor: f64,
    pub lift_after: Duration,
    pub short_share: f64,
    pub labelled_short_share: f64,
}

impl Default for Model {
    fn default() -> Model {
        Model {
            daily_threshold: 50,
            volume_risk: 0.01,
            short_call_risk: 0.02,
            labelled_answer_factor: 0.3,
            lift_after: Duration::from_secs(48 * 3600),
            short_share: 0.1,
            labelled_short_share: 0.4,
        }
    }
}

/// Each number's standing under the model.
#[derive(Debug, Clone, Default)]
pub struct Reputations {
    numbers: HashMap<E164, Standing>,
    /// When each number was labelled, in order (a number labelled twice appears twice).
    pub labelled: Vec<(E164, DateTime<Utc>)>,
}

#[derive(Debug, Clone, Default)]
struct Standing {
    labelled: bool,
    last_call: Option<DateTime<Utc>>,
    day: Option<chrono::NaiveDate>,
    calls_today: u32,
    calls: u64,
    /// Recent answered calls, and how many of them were short (decayed).
    answered: f64,
    short: f64,
}

/// How one call goes under the model.
pub struct CallDraw {
    pub answered: bool,
    pub short: bool,
}

impl Reputations {
    /// A call from `number` at `at`, in `zone`'s day, whose answer the base rate `answer_rate`
    /// would decide: labels, lifts, and the call's outcome.
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &mut self,
        model: &Model,
        seed: u64,
        number: E164,
        at: DateTime<Utc>,
        zone: chrono_tz::Tz,
        answer_rate: f64,
    ) -> CallDraw {
        let standing = self.numbers.entry(number).or_default();
        let lift = chrono::Duration::from_std(model.lift_after).unwrap_or(chrono::Duration::MAX);
        if standing.labelled && standing.last_call.is_some_and(|last| at - last >= lift) {
            standing.labelled = false;
        }
        let day = at.with_timezone(&zone).date_naive();
        if standing.day != Some(day) {
            standing.day = Some(day);
            standing.calls_today = 0;
        }
        standing.calls_today += 1;
        standing.calls += 1;
        standing.last_call = Some(at);
        let draw = |salt: u64| {
            let hash = xxhash_rust::xxh3::xxh3_64_with_seed(
                &[
                    number.digits().to_le_bytes(),
                    standing.calls.to_le_bytes(),
                    salt.to_le_bytes(),
                ]
                .concat(),
                seed,
            );
            (hash >> 11) as f64 / (1u64 << 53) as f64
        };
        if !standing.labelled {
            let over = standing.calls_today.saturating_sub(model.daily_threshold) as f64
                / f64::from(model.daily_threshold.max(1));
            let short_share = if standing.answered > 0.0 {
                standing.short / standing.answered
            } else {
                0.0
            };
            let risk = (over * model.volume_risk + short_share * model.short_call_risk).min(1.0);
            if draw(1) < risk {
                standing.labelled = true;
                self.labelled.push((number, at));
            }
        }
        let rate = if standing.labelled {
            answer_rate * model.labelled_answer_factor
        } else {
            answer_rate
        };
        let answered = draw(2) < rate;
        let short_share = if standing.labelled {
            model.labelled_short_share
        } else {
            model.short_share
        };
        let short = answered && draw(3) < short_share;
        if answered {
            // A decayed count: the recent calls weigh most.
            standing.answered = standing.answered * 0.98 + 1.0;
            standing.short = standing.short * 0.98 + if short { 1.0 } else { 0.0 };
        }
        CallDraw { answered, short }
    }

    pub fn is_labelled(&self, number: E164) -> bool {
        self.numbers.get(&number).is_some_and(|s| s.labelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_over_the_threshold_gets_a_number_labelled_and_rest_lifts_it() {
        let model = Model::default();
        let mut reputations = Reputations::default();
        let number: E164 = "+14155550100".parse().unwrap();
        let start = DateTime::parse_from_rfc3339("2026-11-30T15:00:00Z")
            .unwrap()
            .to_utc();
        let zone = chrono_tz::America::Los_Angeles;
        // 400 calls in a day: far over 50, labelled at some point.
        for i in 0..400 {
            reputations.call(
                &model,
                1,
                number,
                start + chrono::Duration::seconds(i * 60),
                zone,
                0.5,
            );
        }
        assert!(reputations.is_labelled(number));
        let labelled_at = reputations.labelled[0].1;
        assert!(labelled_at > start + chrono::Duration::minutes(50));
        // Two days unused: the label lifts at the next call.
        let later = start + chrono::Duration::days(3);
        reputations.call(&model, 1, number, later, zone, 0.5);
        assert!(!reputations.is_labelled(number));

        // 40 calls a day never cross the threshold: no label, ever.
        let calm: E164 = "+12125550107".parse().unwrap();
        for day in 0..10 {
            for i in 0..40 {
                let at = start + chrono::Duration::days(day) + chrono::Duration::minutes(i * 10);
                reputations.call(&model, 1, calm, at, zone, 0.5);
            }
        }
        // Short calls alone carry some risk, so allow the rare label; volume is what labels.
        assert!(
            reputations
                .labelled
                .iter()
                .filter(|(n, _)| *n == calm)
                .count()
                <= 1
        );
    }
}
