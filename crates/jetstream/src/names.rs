//! Stream, subject and consumer names of one campaign under one namespace.
//!
//! WARNING: persisted — a running deployment's stream and consumers are found by these names;
//! changing the scheme orphans them (and their undelivered messages).

use crate::JetStreamError;

/// Longest namespace, campaign id or game id accepted in a name (JetStream names stay well
/// under its 255-character limit even with all three).
pub const NAME_MAX_LEN: usize = 64;

/// The names of one campaign's stream, subjects and consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    namespace: String,
    campaign: String,
    games: Vec<String>,
}

impl Names {
    /// Names for `campaign`'s `games` (in the campaign's game order) under `namespace`. Each
    /// part must be 1..=[`NAME_MAX_LEN`] characters of `[A-Za-z0-9_-]`: no `.` (a subject's
    /// token separator), no wildcard, nothing a stream name forbids.
    pub fn new(namespace: &str, campaign: &str, games: &[String]) -> Result<Names, JetStreamError> {
        check("namespace", namespace)?;
        check("campaign id", campaign)?;
        for game in games {
            check("game id", game)?;
        }
        if games.is_empty() {
            return Err(JetStreamError::InvalidConfig("a campaign without games".into()));
        }
        Ok(Names { namespace: namespace.into(), campaign: campaign.into(), games: games.to_vec() })
    }

    /// `<ns>_<campaign>`.
    pub fn stream(&self) -> String {
        format!("{}_{}", self.namespace, self.campaign)
    }

    /// Every game's subject lives under `<ns>.<campaign>.deliver.`.
    pub fn subjects(&self) -> String {
        format!("{}.{}.deliver.*", self.namespace, self.campaign)
    }

    /// `<ns>.<campaign>.deliver.<game>`; `None` for a game index the campaign does not have.
    pub fn subject(&self, game: usize) -> Option<String> {
        let id = self.games.get(game)?;
        Some(format!("{}.{}.deliver.{id}", self.namespace, self.campaign))
    }

    /// The game's durable consumer: `deliver_<game>`.
    pub fn consumer(&self, game: usize) -> Option<String> {
        self.games.get(game).map(|id| format!("deliver_{id}"))
    }

    pub fn games(&self) -> usize {
        self.games.len()
    }
}

fn check(what: &str, part: &str) -> Result<(), JetStreamError> {
    let ok = (1..=NAME_MAX_LEN).contains(&part.len())
        && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(JetStreamError::InvalidConfig(format!(
            "{what} `{part}` must be 1..={NAME_MAX_LEN} characters of [A-Za-z0-9_-]"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_from_namespace_campaign_and_game() {
        let n = Names::new("hb-1", "spring", &["g1".into(), "g2".into()]).unwrap();
        assert_eq!(n.stream(), "hb-1_spring");
        assert_eq!(n.subjects(), "hb-1.spring.deliver.*");
        assert_eq!(n.subject(1).as_deref(), Some("hb-1.spring.deliver.g2"));
        assert_eq!(n.consumer(0).as_deref(), Some("deliver_g1"));
        assert_eq!(n.subject(2), None);
    }

    #[test]
    fn parts_that_would_break_a_subject_or_a_name_are_refused() {
        for bad in ["", "a.b", "a*", "a>", "a b", "a/b", &"x".repeat(65)] {
            assert!(Names::new(bad, "c", &["g".into()]).is_err(), "{bad:?}");
            assert!(Names::new("ns", "c", &[bad.into()]).is_err(), "{bad:?}");
        }
        assert!(Names::new("ns", "c", &[]).is_err());
    }
}
