//! Whether an agent can take a queue call, from what their phones are doing (the "device
//! state" of other call centers): an agent with no registered phone, or whose phone is busy
//! with a call of its own (placing a call, ringing or talking on an extension call), is kept
//! out of the rotation with a reason code the queue log and the agent's state show, and
//! returns by itself when the phone registers or the call ends.
//!
//! Only the parking done here is undone here: an agent who paused themselves, or whom the
//! ACD auto-paused, keeps that pause.

use acd::AgentState;

/// Reason code while no phone of the agent is registered.
pub const NO_PHONE: &str = "no-phone";
/// Reason code while the agent's phone is busy with a call that is not a queue offer.
pub const IN_USE: &str = "in-use";

/// What to tell the ACD about an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Not ready, with this reason.
    Park(&'static str),
    /// Ready again.
    Unpark,
}

/// The change an agent in `state` needs, given whether a phone of theirs is registered and
/// whether it is busy with a call; `None` when the state is right as it is.
pub fn reconcile(state: &AgentState, has_phone: bool, in_use: bool) -> Option<Change> {
    let wanted = if !has_phone {
        Some(NO_PHONE)
    } else if in_use {
        Some(IN_USE)
    } else {
        None
    };
    match state {
        AgentState::Ready => wanted.map(Change::Park),
        AgentState::NotReady(r) if &*r.0 == NO_PHONE || &*r.0 == IN_USE => match wanted {
            None => Some(Change::Unpark),
            Some(w) if w != &*r.0 => Some(Change::Park(w)),
            Some(_) => None,
        },
        // Offered: the offer decides (no phone: it is withdrawn without counting as a ring
        // with no answer). On a call or in wrap-up: checked again when the agent is Ready.
        // Paused by themselves or by the ACD, or logged out: theirs to change.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acd::ReasonCode;

    fn paused(r: &str) -> AgentState {
        AgentState::NotReady(ReasonCode::new(r))
    }

    #[test]
    fn a_ready_agent_without_a_phone_or_with_a_busy_one_is_parked() {
        assert_eq!(
            reconcile(&AgentState::Ready, false, false),
            Some(Change::Park(NO_PHONE))
        );
        assert_eq!(
            reconcile(&AgentState::Ready, true, true),
            Some(Change::Park(IN_USE))
        );
        assert_eq!(reconcile(&AgentState::Ready, true, false), None);
    }

    #[test]
    fn parked_agents_come_back_when_the_reason_goes() {
        assert_eq!(
            reconcile(&paused(NO_PHONE), true, false),
            Some(Change::Unpark)
        );
        assert_eq!(
            reconcile(&paused(IN_USE), true, false),
            Some(Change::Unpark)
        );
        assert_eq!(
            reconcile(&paused(NO_PHONE), true, true),
            Some(Change::Park(IN_USE))
        );
        assert_eq!(reconcile(&paused(NO_PHONE), false, false), None);
    }

    #[test]
    fn pauses_that_are_not_ours_are_left_alone() {
        for s in [
            paused("lunch"),
            paused("no-answer"),
            AgentState::LoggedOut,
            AgentState::OnCall(acd::CallId(1)),
        ] {
            for (phone, busy) in [(false, false), (true, false), (true, true)] {
                assert_eq!(reconcile(&s, phone, busy), None, "{s:?}");
            }
        }
    }
}
