//! Facts derived from the ledger: releases per environment, a build's history.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ledger::{Entry, Filter, Ledger, LedgerError, kind};

/// An environment's release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Release {
    /// The build.
    pub build: String,
    /// Since when.
    pub since: String,
    /// The `release.recorded` entry.
    pub seq: u64,
}

fn release_of(e: &Entry) -> Option<(String, Release)> {
    Some((
        e.env.clone()?,
        Release {
            build: e.build.clone()?,
            since: e.time.clone(),
            seq: e.seq,
        },
    ))
}

/// The current release of every environment that has one.
pub fn current_releases(ledger: &Ledger) -> Result<BTreeMap<String, Release>, LedgerError> {
    let entries = ledger.select(&Filter {
        kinds: vec![kind::RELEASE_RECORDED.to_owned()],
        ..Filter::default()
    })?;
    Ok(entries.iter().filter_map(release_of).collect())
}

/// Every release of one environment, oldest first.
pub fn releases(ledger: &Ledger, env: &str) -> Result<Vec<Release>, LedgerError> {
    let entries = ledger.select(&Filter {
        kinds: vec![kind::RELEASE_RECORDED.to_owned()],
        env: Some(env.to_owned()),
        ..Filter::default()
    })?;
    Ok(entries
        .iter()
        .filter_map(release_of)
        .map(|(_, r)| r)
        .collect())
}

/// The builds that have ever been the release of `env`.
pub fn released_in(ledger: &Ledger, env: &str) -> Result<Vec<String>, LedgerError> {
    Ok(releases(ledger, env)?
        .into_iter()
        .map(|r| r.build)
        .collect())
}

/// One line of history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryItem {
    /// Ledger position.
    pub seq: u64,
    /// When.
    pub time: String,
    /// What.
    pub kind: String,
    /// Where.
    pub env: Option<String>,
    /// Which build.
    pub build: Option<String>,
    /// Who.
    pub actor: String,
    /// The entry's body.
    pub body: serde_json::Value,
}

impl From<Entry> for HistoryItem {
    fn from(e: Entry) -> Self {
        HistoryItem {
            seq: e.seq,
            time: e.time,
            kind: e.kind,
            env: e.env,
            build: e.build,
            actor: e.actor.id,
            body: e.body,
        }
    }
}

/// Everything the ledger says about one build.
pub fn build_history(ledger: &Ledger, build: &str) -> Result<Vec<HistoryItem>, LedgerError> {
    Ok(ledger
        .select(&Filter {
            build: Some(build.to_owned()),
            ..Filter::default()
        })?
        .into_iter()
        .map(HistoryItem::from)
        .collect())
}
