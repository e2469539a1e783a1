//! Rotation strategies among eligible numbers: round robin, least recently used, weighted,
//! seeded random, and weighted rendezvous hashing for sticky routes.

use super::*;

/// A stable 64-bit hash of (lead, number), the same on every machine and run.
fn lead_number_hash(seed: u64, lead: &Lead, number: E164, salt: u64) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::with_seed(seed);
    hasher.update(lead.key.as_bytes());
    hasher.update(&number.digits().to_le_bytes());
    hasher.update(&salt.to_le_bytes());
    hasher.digest()
}

/// Seed of the rendezvous hash: fixed, so sticky choices survive restarts and reseeding.
const RENDEZVOUS_SEED: u64 = 0x6361_6c6c_726f_7574;

/// Weighted rendezvous (highest random weight) score: each number's share of first picks is
/// proportional to its weight, and removing a number only moves the leads it had.
pub fn rendezvous_score(lead: &Lead, info: &NumberInfo) -> f64 {
    let hash = lead_number_hash(RENDEZVOUS_SEED, lead, info.number, 0);
    // Map to (0, 1): never 0, so ln is finite.
    let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(info.weight as f64) / unit.ln()
}

pub(super) fn choose<'a>(
    strategy: Strategy,
    eligible: &[&'a NumberInfo],
    attached: &[&'a NumberInfo],
    lead: &Lead,
    pool: &PoolState,
    now: DateTime<Utc>,
) -> Option<(&'a NumberInfo, String)> {
    if eligible.is_empty() {
        return None;
    }
    let last_used = |info: &NumberInfo| pool.number_usage(info.number).and_then(|u| u.last_used());
    let tie = |info: &NumberInfo| lead_number_hash(RENDEZVOUS_SEED, lead, info.number, 1);
    let picked = match strategy {
        Strategy::LeastRecentlyUsed => {
            let info = *eligible.iter().min_by_key(|i| (last_used(i), tie(i)))?;
            let why = match last_used(info) {
                Some(t) => format!(
                    "least recently used of {} (last used {})",
                    eligible.len(),
                    rfc3339(t)
                ),
                None => format!("never used, of {} eligible", eligible.len()),
            };
            (info, why)
        }
        Strategy::RoundRobin => {
            // The rotation continues after the number of this tier used most recently.
            let previous = attached
                .iter()
                .filter(|i| last_used(i).is_some())
                .max_by_key(|i| last_used(i))
                .map(|i| i.number);
            let mut ordered: Vec<&&NumberInfo> = eligible.iter().collect();
            ordered.sort_by_key(|i| i.number);
            let info = match previous {
                Some(prev) => ordered.iter().find(|i| i.number > prev).or(ordered.first()),
                None => ordered.first(),
            };
            let info = **info?;
            let why = match previous {
                Some(prev) => format!("next in rotation after {prev}"),
                None => "first in rotation".to_string(),
            };
            (info, why)
        }
        Strategy::Weighted => {
            let load = |info: &NumberInfo| {
                let used = pool
                    .number_usage(info.number)
                    .map_or(0, |u| u.uses_24h(now));
                used as f64 / info.weight as f64
            };
            let info = *eligible.iter().min_by(|a, b| {
                load(a)
                    .total_cmp(&load(b))
                    .then_with(|| last_used(a).cmp(&last_used(b)))
                    .then_with(|| tie(a).cmp(&tie(b)))
            })?;
            (
                info,
                format!(
                    "lowest calls per weight in 24 h ({:.2}, weight {})",
                    load(info),
                    info.weight
                ),
            )
        }
        Strategy::Random => {
            let salt = now.timestamp_millis() as u64;
            let info = *eligible
                .iter()
                .max_by_key(|i| lead_number_hash(pool.seed(), lead, i.number, salt))?;
            (info, format!("seeded random pick among {}", eligible.len()))
        }
        Strategy::Rendezvous => {
            let info = *eligible
                .iter()
                .max_by(|a, b| rendezvous_score(lead, a).total_cmp(&rendezvous_score(lead, b)))?;
            (
                info,
                format!(
                    "rendezvous hash of the lead over {} eligible",
                    eligible.len()
                ),
            )
        }
    };
    Some(picked)
}
