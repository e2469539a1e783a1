//! Picking the caller ID: the local-presence tiers of the matched route, in order; in each,
//! the numbers attached, under every limit window and usable now; the strategy chooses.

use super::*;

/// Sticky assignment first, then each local-presence tier in order.
#[allow(clippy::too_many_arguments)]
pub(super) fn pick_number(
    rules: &RuleSet,
    campaign: &Campaign,
    route: &Route,
    lead: &Lead,
    pool: &PoolState,
    now: DateTime<Utc>,
    constraints: &[(Window, Tz)],
    trace: &mut Trace,
) -> Decision {
    let dial = |number: E164, by: PickedBy| Decision::Dial {
        from_phone_number: number,
        agent: campaign.agent.clone(),
        model_id: campaign.model_id.clone(),
        route: route.name.to_string(),
        tier: by,
    };
    let usable = |info: &NumberInfo| -> Result<(), String> {
        if !pool.is_attached(&campaign.model_id, info.number) {
            return Err(format!("not attached to agent `{}`", campaign.agent));
        }
        if let Some(rest) = pool.rest_of(info.number, now) {
            return Err(format!(
                "resting until {}: {}",
                rfc3339(rest.until),
                rest.reason
            ));
        }
        let hits = limit_hits(route, info, pool, now);
        if hits.is_empty() {
            Ok(())
        } else {
            Err(hits
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "))
        }
    };

    // A redial of a cadence: `same` keeps the last caller ID while it is usable; `different`
    // avoids every one the lead saw while another is eligible (and outranks `sticky`).
    let history = pool.lead_history(&lead.key).filter(|h| h.total() > 0);
    let redial = campaign.cadence_for(Some(route)).zip(history);
    let mut avoid: Vec<E164> = Vec::new();
    if let Some((cadence, history)) = redial {
        let attempt = format!(
            "attempt {} of {} (cadence at {})",
            history.total() + 1,
            cadence.max_attempts,
            cadence.defined_at
        );
        trace.cadence = Some(match cadence.caller_id {
            CallerIdPolicy::Any => format!("{attempt}; caller ID as the route picks"),
            CallerIdPolicy::Different => {
                avoid = history.shown();
                let shown: Vec<String> = avoid.iter().map(ToString::to_string).collect();
                format!(
                    "{attempt}; caller ID different from {} while another is eligible",
                    shown.join(", ")
                )
            }
            CallerIdPolicy::Same => match history.last() {
                None => format!("{attempt}; caller ID as the route picks (none shown yet)"),
                Some((number, at)) => {
                    let member = rules
                        .number(number)
                        .filter(|info| route.selection.member_set.contains(&id_of(rules, info)));
                    match member.map(|info| (info, usable(info))) {
                        Some((_, Ok(()))) => {
                            trace.picked = Some(Pick {
                                number,
                                by: PickedBy::Sticky,
                                strategy: None,
                                why: format!(
                                    "the same caller ID as the call at {} (caller_id: same)",
                                    rfc3339(at)
                                ),
                            });
                            trace.cadence = Some(format!("{attempt}; the same caller ID"));
                            return dial(number, PickedBy::Sticky);
                        }
                        Some((_, Err(why))) => {
                            format!("{attempt}; {number} (the last shown) unavailable: {why}")
                        }
                        None => format!(
                            "{attempt}; {number} (the last shown) is no longer selected by route `{}`",
                            route.name
                        ),
                    }
                }
            },
        });
    }

    if let Some(ttl) = route.sticky.filter(|_| avoid.is_empty()) {
        trace.sticky = Some(match pool.lead_history(&lead.key).and_then(|h| h.last()) {
            None => "no earlier call to this lead".to_string(),
            Some((number, at)) => {
                let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
                let member = rules
                    .number(number)
                    .filter(|info| route.selection.member_set.contains(&id_of(rules, info)));
                match member {
                    _ if now - at >= ttl => format!("{number} expired (last used {})", rfc3339(at)),
                    None => format!("{number} is no longer selected by route `{}`", route.name),
                    Some(info) => match usable(info) {
                        Ok(()) => {
                            trace.picked = Some(Pick {
                                number,
                                by: PickedBy::Sticky,
                                strategy: None,
                                why: format!("kept from the call at {}", rfc3339(at)),
                            });
                            return dial(number, PickedBy::Sticky);
                        }
                        Err(why) => format!("{number} unavailable: {why}"),
                    },
                }
            }
        });
    }

    let mut seen: HashSet<NumberId> = HashSet::default();
    // Tiers whose only eligible numbers were ones to avoid: used if no tier has another.
    let mut reusable: Vec<(Tier, Vec<&NumberInfo>, Vec<&NumberInfo>)> = Vec::new();
    let mut earliest_free: Option<DateTime<Utc>> = None;
    let mut resting_until: Option<DateTime<Utc>> = None;
    let mut any_candidate = false;
    for &tier in &route.tiers {
        let candidates = tier_candidates(rules, route, tier, lead, now);
        let mut eligible = Vec::new();
        let mut attached = Vec::new();
        let mut count = 0;
        for id in candidates {
            if !seen.insert(id) {
                continue;
            }
            count += 1;
            let info = &rules.numbers[id as usize];
            if !pool.is_attached(&campaign.model_id, info.number) {
                trace.excluded.push(Exclusion {
                    number: info.number,
                    tier,
                    reason: format!("not attached to agent `{}`", campaign.agent),
                    windows: Vec::new(),
                });
                continue;
            }
            if let Some(rest) = pool.rest_of(info.number, now) {
                trace.excluded.push(Exclusion {
                    number: info.number,
                    tier,
                    reason: format!("resting until {}: {}", rfc3339(rest.until), rest.reason),
                    windows: Vec::new(),
                });
                resting_until = Some(resting_until.map_or(rest.until, |t| t.min(rest.until)));
                continue;
            }
            attached.push(info);
            let hits = limit_hits(route, info, pool, now);
            if hits.is_empty() {
                eligible.push(info);
            } else {
                if let Some(free) = all_free_at(&hits) {
                    earliest_free = Some(earliest_free.map_or(free, |e| e.min(free)));
                }
                trace.excluded.push(Exclusion {
                    number: info.number,
                    tier,
                    reason: hits
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    windows: hits.iter().map(|h| h.window).collect(),
                });
            }
        }
        any_candidate |= count > 0;
        trace.tiers.push(TierCheck {
            tier,
            candidates: count,
            eligible: eligible.len(),
        });
        let (shown, fresh): (Vec<&NumberInfo>, Vec<&NumberInfo>) = eligible
            .into_iter()
            .partition(|info| avoid.contains(&info.number));
        if let Some((info, why)) = choose(route.strategy, &fresh, &attached, lead, pool, now) {
            trace.picked = Some(Pick {
                number: info.number,
                by: tier.into(),
                strategy: Some(route.strategy),
                why,
            });
            return dial(info.number, tier.into());
        }
        if !shown.is_empty() {
            reusable.push((tier, shown, attached));
        }
    }
    for (tier, shown, attached) in reusable {
        if let Some((info, why)) = choose(route.strategy, &shown, &attached, lead, pool, now) {
            trace.picked = Some(Pick {
                number: info.number,
                by: tier.into(),
                strategy: Some(route.strategy),
                why: format!(
                    "{why}; shown to this lead before: no other eligible number (caller_id: different)"
                ),
            });
            return dial(info.number, tier.into());
        }
    }

    // The lead waits for the first number to come free, moved into its calling window.
    let wait_until = |at: DateTime<Utc>, code: ReasonCode, message: String| Decision::Defer {
        until: next_open_all(constraints, at).unwrap_or(at),
        reason: reason(code, message),
    };
    // A rest ends by itself: the lead waits for it like for a limit.
    if let Some(rest_ends) = resting_until
        && earliest_free.is_none_or(|free| rest_ends < free)
    {
        return wait_until(
            rest_ends,
            ReasonCode::NumbersResting,
            format!(
                "every other number of route `{}` is at a limit or not attached, and its resting numbers rest until {} at the earliest",
                route.name,
                rfc3339(rest_ends)
            ),
        );
    }
    if let Some(free) = earliest_free {
        return wait_until(
            free,
            ReasonCode::AllNumbersAtLimit,
            format!(
                "every eligible number of route `{}` is at a limit; the first frees {}",
                route.name,
                rfc3339(free)
            ),
        );
    }
    if !any_candidate {
        let tiers: Vec<&str> = route
            .tiers
            .iter()
            .map(|t| Tier::NAMES[*t as usize])
            .collect();
        return Decision::Hold {
            reason: reason(
                ReasonCode::NoLocalNumber,
                format!(
                    "route `{}` has no number in the lead's {} (add `any` to local_presence to fall back)",
                    route.name,
                    tiers.join("/")
                ),
            ),
        };
    }
    Decision::Hold {
        reason: reason(
            ReasonCode::NoAttachedNumber,
            format!(
                "none of the numbers route `{}` selects is attached to agent `{}`",
                route.name, campaign.agent
            ),
        ),
    }
}

fn id_of(rules: &RuleSet, info: &NumberInfo) -> NumberId {
    rules.number_ids[&info.number]
}

fn limit_hits(
    route: &Route,
    info: &NumberInfo,
    pool: &PoolState,
    now: DateTime<Utc>,
) -> Vec<LimitHit> {
    pool.hits(info, &route.limits_for(info), now)
}

/// The route's numbers that share `tier` with the lead, from the route's indexes.
fn tier_candidates(
    rules: &RuleSet,
    route: &Route,
    tier: Tier,
    lead: &Lead,
    now: DateTime<Utc>,
) -> Vec<NumberId> {
    let selection = &route.selection;
    let found: Vec<NumberId> = match tier {
        Tier::AreaCode => lead
            .area_code
            .and_then(|code| selection.by_area_code.get(&code))
            .cloned()
            .unwrap_or_default(),
        Tier::State => lead
            .states
            .iter()
            .filter_map(|s| selection.by_state.get(s))
            .flatten()
            .copied()
            .collect(),
        Tier::Timezone => {
            // "Same time zone" means the same clock now: America/Detroit is New York's zone.
            let offsets: Vec<i32> = lead.zones.iter().map(|z| utc_offset(*z, now)).collect();
            let mut ids: Vec<NumberId> = selection
                .by_zone
                .iter()
                .filter(|(zone, _)| offsets.contains(&utc_offset(**zone, now)))
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        }
        Tier::Country => lead
            .country
            .as_ref()
            .and_then(|c| selection.by_country.get(c))
            .cloned()
            .unwrap_or_default(),
        Tier::Any => selection.members.clone(),
    };
    debug_assert!(found.iter().all(|&id| (id as usize) < rules.numbers.len()));
    found
}

fn utc_offset(zone: Tz, now: DateTime<Utc>) -> i32 {
    now.with_timezone(&zone).offset().fix().local_minus_utc()
}
