//! Voicemail: callers leave messages (recorded by the recorder, the message's mailbox in its
//! sidecar), owners listen to them from their phone after a PIN, and phones learn that
//! messages wait from `message-summary` NOTIFYs (RFC 3842): in their subscription (RFC 6665
//! SUBSCRIBE) when they hold one, otherwise unsolicited, sent when a mailbox's counts change
//! and when a phone of one of its users registers.
//!
//! Call control keeps an index of the messages (the binary loads it from the store at start
//! and reports each message stored); loading a message's audio is the service's job
//! ([`VoicemailRequest::Load`], answered with [`VoicemailInput::Loaded`]).

use super::*;
use crate::config::{Mailbox, Message};

/// Keys while a message plays.
const DELETE: char = '7';
const SAVE: char = '9';
const NEXT: char = '6';
const REPLAY: char = '4';

/// Wrong PINs before the caller is hung up on.
const PIN_TRIES: u32 = 3;
/// Time for the PIN (and for a key after a message).
const KEY_TIMEOUT: Duration = Duration::from_secs(8);

/// What call control asks of the voicemail side of the service and the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoicemailRequest {
    /// Read a message's audio for call `call`; answered with [`VoicemailInput::Loaded`].
    Load {
        /// The call that listens.
        call: u64,
        /// The message.
        message: u64,
        /// Its file.
        file: std::path::PathBuf,
    },
    /// A message was listened to and kept (no longer new), or deleted.
    Status {
        /// The message.
        message: u64,
        /// Deleted (`true`) or kept as an old message.
        deleted: bool,
    },
}

/// What the service and the store tell call control about messages.
#[derive(Debug, Clone)]
pub enum VoicemailInput {
    /// A message's audio (`None`: the file could not be read).
    Loaded {
        /// The call that asked.
        call: u64,
        /// The message.
        message: u64,
        /// Its audio.
        audio: Option<Prompt>,
    },
    /// A message was stored (after its recording finished).
    Stored(Message),
}

/// Where a call is in voicemail.
#[derive(Debug)]
pub(super) enum VmState {
    /// Leaving a message: the greeting plays, then (`recording`) the message is recorded.
    Deposit {
        mailbox: String,
        recording: bool,
        round: u64,
    },
    /// The owner enters the PIN.
    Pin {
        mailbox: String,
        digits: String,
        tries: u32,
        round: u64,
    },
    /// The owner listens: the session's messages (new ones first), the one at `at`.
    Listen {
        list: Vec<u64>,
        at: usize,
        /// Its audio is being loaded.
        loading: bool,
        /// Played before the next message (the summary, "message deleted").
        intro: Vec<Prompt>,
        round: u64,
    },
    /// The last prompt plays; then the call ends.
    Ending { round: u64 },
}

impl VmState {
    fn round(&self) -> u64 {
        match self {
            VmState::Deposit { round, .. }
            | VmState::Pin { round, .. }
            | VmState::Listen { round, .. }
            | VmState::Ending { round } => *round,
        }
    }

    fn bump(&mut self) -> u64 {
        let r = match self {
            VmState::Deposit { round, .. }
            | VmState::Pin { round, .. }
            | VmState::Listen { round, .. }
            | VmState::Ending { round } => round,
        };
        *r += 1;
        *r
    }
}

fn length(prompts: &[Prompt]) -> Duration {
    prompts.iter().map(Prompt::duration).sum()
}

impl CallControl {
    pub(super) fn mailbox(&self, name: &str) -> Option<&Mailbox> {
        self.cfg
            .voicemail
            .as_ref()?
            .mailboxes
            .iter()
            .find(|m| m.name == name)
    }

    /// The mailbox a dialled number opens for listening, for this caller: the voicemail
    /// number opens the caller's own, an access number its mailbox.
    pub(super) fn mailbox_for(&self, number: &str, caller: &Caller) -> Option<String> {
        let vm = self.cfg.voicemail.as_ref()?;
        if number == vm.number {
            let Caller::User(u) = caller else {
                return None;
            };
            return vm
                .mailboxes
                .iter()
                .find(|m| &m.name == u)
                .map(|m| m.name.clone());
        }
        vm.mailboxes
            .iter()
            .find(|m| m.access.as_deref() == Some(number))
            .map(|m| m.name.clone())
    }

    fn vm_play(&mut self, id: u64, prompts: Vec<Prompt>, then: Option<Prompt>) {
        self.out.push_back(media_cmd(
            id,
            SessionCommand::Play {
                leg: Leg::Caller,
                prompts,
                then,
            },
        ));
    }

    /// The wait of the current voicemail step ends `after` from now.
    fn vm_timer(&mut self, now: Instant, id: u64, after: Duration) {
        let Some(vm) = self.calls.get_mut(&id).and_then(|c| c.vm.as_mut()) else {
            return;
        };
        let round = vm.bump();
        self.timers
            .retain(|_, t| !matches!(t, Timer::Voicemail(c, _) if *c == id));
        self.timer(now + after, Timer::Voicemail(id, round));
    }

    /// Call `id` (answered, or answered now) leaves a message in `mailbox`.
    pub(super) fn deposit(&mut self, now: Instant, id: u64, mailbox: &str) {
        let Some(vm) = &self.cfg.voicemail else {
            return self.end_call(now, id, EndReason::Failed, None);
        };
        let span = self.calls.get(&id).map(|c| c.span.clone());
        if self.mailbox(mailbox).is_none() || !self.recorder {
            warn!(parent: span.as_ref().and_then(|s| s.id()), mailbox, recorder = self.recorder, "no such mailbox, or no recorder to take the message");
            return self.end_call(now, id, EndReason::Failed, None);
        }
        let prompts = vec![
            Prompt::silence(Duration::from_millis(200)),
            vm.prompts.leave.clone(),
            self.beep.clone(),
        ];
        let wait = length(&prompts);
        // Phones still ringing for the call (an extension that did not answer) stop.
        if let Some(mut call) = self.calls.remove(&id) {
            self.cancel_attempts(now, &mut call);
            self.calls.insert(id, call);
        }
        self.timers
            .retain(|_, t| !matches!(t, Timer::RingTimeout(c) | Timer::Announce(c) if *c == id));
        self.answer_caller(id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // A callee who did not answer is free again.
        if let Route::Extension(user) = &call.route {
            let user = user.clone();
            call.busy_users.retain(|u| *u != user);
            self.release_busy(std::slice::from_ref(&user));
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        info!(parent: &call.span, mailbox, "voicemail: leaving a message");
        call.phase = Phase::Waiting;
        call.ivr = None;
        call.route = Route::Voicemail(mailbox.to_owned());
        call.vm = Some(VmState::Deposit {
            mailbox: mailbox.to_owned(),
            recording: false,
            round: 0,
        });
        self.vm_play(id, prompts, None);
        self.vm_timer(now, id, wait);
    }

    /// An extension call nobody answered (`reason`: no answer or busy): the callee's
    /// mailbox takes a message if there is one; otherwise the call ends.
    pub(super) fn no_answer_or_voicemail(&mut self, now: Instant, id: u64, reason: EndReason) {
        if self.transfer_failed(now, id) {
            return;
        }
        let mailbox = match self.calls.get(&id).map(|c| &c.route) {
            Some(Route::Extension(user)) => self.mailbox(user).map(|m| m.name.clone()),
            _ => None,
        };
        match mailbox {
            Some(m) if self.recorder => {
                if let Some(call) = self.calls.get(&id) {
                    info!(parent: &call.span, reason = reason.as_str(), "to the callee's voicemail");
                }
                self.deposit(now, id, &m);
            }
            _ => self.end_call(now, id, reason, None),
        }
    }

    /// Call `id` opens `mailbox` to listen: first the PIN.
    pub(super) fn open_mailbox(&mut self, now: Instant, id: u64, mailbox: String) {
        let Some(vm) = &self.cfg.voicemail else {
            return;
        };
        let prompt = vm.prompts.enter_pin.clone();
        self.answer_caller(id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        info!(parent: &call.span, mailbox = %mailbox, "voicemail: mailbox opened");
        call.phase = Phase::Waiting;
        call.vm = Some(VmState::Pin {
            mailbox,
            digits: String::new(),
            tries: 0,
            round: 0,
        });
        let prompts = vec![Prompt::silence(Duration::from_millis(200)), prompt];
        let wait = length(&prompts) + KEY_TIMEOUT;
        self.vm_play(id, prompts, None);
        self.vm_timer(now, id, wait);
    }

    /// A caller's key while in voicemail; `false` when the call is not in voicemail.
    pub(super) fn voicemail_key(&mut self, now: Instant, id: u64, digit: char) -> bool {
        enum Do {
            Nothing,
            Finish,
            Pin,
            PinDigit,
            Done(u64, bool),
            Heard(u64),
            Replay,
            Quit,
        }
        let Some(vm) = self.calls.get_mut(&id).and_then(|c| c.vm.as_mut()) else {
            return false;
        };
        let action = match vm {
            VmState::Deposit {
                recording: true, ..
            } if digit == '#' => Do::Finish,
            VmState::Deposit { .. } | VmState::Ending { .. } => Do::Nothing,
            VmState::Pin { digits, .. } => {
                if digit == '#' || digits.len() >= 16 {
                    Do::Pin
                } else {
                    digits.push(digit);
                    Do::PinDigit
                }
            }
            VmState::Listen { loading: true, .. } => Do::Nothing,
            VmState::Listen { list, at, .. } => match (digit, list.get(*at).copied()) {
                (DELETE, Some(m)) => Do::Done(m, true),
                (SAVE, Some(m)) => Do::Done(m, false),
                (NEXT | '#', Some(m)) => Do::Heard(m),
                (REPLAY, Some(_)) => Do::Replay,
                ('*', _) => Do::Quit,
                _ => Do::Nothing,
            },
        };
        match action {
            Do::Nothing => {}
            Do::Finish => self.deposit_done(now, id),
            Do::Pin => self.check_pin(now, id),
            Do::PinDigit => self.vm_timer(now, id, KEY_TIMEOUT),
            Do::Done(m, deleted) => self.message_done(now, id, m, deleted),
            Do::Heard(m) => {
                self.mark_heard(now, m);
                self.next_message(now, id, false);
            }
            Do::Replay => self.next_message(now, id, true),
            Do::Quit => self.vm_end(now, id, Vec::new()),
        }
        true
    }

    /// A voicemail wait of round `round` is over.
    pub(super) fn voicemail_timeout(&mut self, now: Instant, id: u64, round: u64) {
        enum Do {
            Record,
            Finish,
            Pin,
            Heard(Option<u64>),
            End,
        }
        let Some(vm) = self.calls.get_mut(&id).and_then(|c| c.vm.as_mut()) else {
            return;
        };
        if vm.round() != round {
            return;
        }
        let action = match vm {
            VmState::Deposit {
                recording: false, ..
            } => Do::Record,
            VmState::Deposit { .. } => Do::Finish,
            VmState::Pin { .. } => Do::Pin,
            VmState::Listen { list, at, .. } => Do::Heard(list.get(*at).copied()),
            VmState::Ending { .. } => Do::End,
        };
        match action {
            Do::Record => self.start_message(now, id),
            Do::Finish => self.deposit_done(now, id),
            Do::Pin => self.check_pin(now, id),
            Do::Heard(m) => {
                // No key after the message and its options: it counts as heard.
                if let Some(m) = m {
                    self.mark_heard(now, m);
                }
                self.next_message(now, id, false);
            }
            Do::End => self.end_call(now, id, EndReason::VoicemailDone, None),
        }
    }

    /// After the beep: record the caller.
    fn start_message(&mut self, now: Instant, id: u64) {
        let max = self
            .cfg
            .voicemail
            .as_ref()
            .map_or(Duration::from_secs(120), |v| v.max_length);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(VmState::Deposit {
            mailbox, recording, ..
        }) = call.vm.as_mut()
        else {
            return;
        };
        *recording = true;
        let mailbox = mailbox.clone();
        self.start_recording(
            now,
            id,
            String::new(),
            "",
            "left: caller, right: silence",
            Some(mailbox),
        );
        self.vm_timer(now, id, max);
    }

    /// `#` or the maximum length: the message is complete.
    fn deposit_done(&mut self, now: Instant, id: u64) {
        self.stop_recording(now, id);
        let prompt = self
            .cfg
            .voicemail
            .as_ref()
            .map(|v| v.prompts.recorded.clone());
        self.vm_end(now, id, prompt.into_iter().collect());
    }

    fn stop_recording(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if std::mem::take(&mut call.recording) {
            self.out
                .push_back(Output::Recording(RecordingRequest::Stop {
                    call: id,
                    at: now,
                    end: self.wall,
                }));
            self.out
                .push_back(Output::Media(SessionId(id), MediaRequest::Tap(false)));
        }
    }

    /// Play `prompts`, then hang up.
    fn vm_end(&mut self, now: Instant, id: u64, prompts: Vec<Prompt>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let round = call.vm.as_ref().map_or(0, VmState::round);
        call.vm = Some(VmState::Ending { round });
        let wait = length(&prompts) + Duration::from_millis(500);
        self.vm_play(id, prompts, None);
        self.vm_timer(now, id, wait);
    }

    fn check_pin(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(VmState::Pin {
            mailbox,
            digits,
            tries,
            ..
        }) = call.vm.as_mut()
        else {
            return;
        };
        let entered = std::mem::take(digits);
        *tries += 1;
        let (mailbox, tries) = (mailbox.clone(), *tries);
        let span = call.span.clone();
        let Some(vm) = self.cfg.voicemail.clone() else {
            return;
        };
        let right = self.mailbox(&mailbox).is_some_and(|m| m.pin == entered);
        if right {
            info!(parent: &span, mailbox = %mailbox, "voicemail: PIN accepted");
            return self.listen(now, id, &mailbox);
        }
        info!(parent: &span, mailbox = %mailbox, tries, "voicemail: wrong PIN");
        if tries >= PIN_TRIES {
            return self.vm_end(now, id, vec![vm.prompts.wrong_pin]);
        }
        let prompts = vec![vm.prompts.wrong_pin, vm.prompts.enter_pin];
        let wait = length(&prompts) + KEY_TIMEOUT;
        self.vm_play(id, prompts, None);
        self.vm_timer(now, id, wait);
    }

    /// The owner is in: how many new messages, then the first one.
    fn listen(&mut self, now: Instant, id: u64, mailbox: &str) {
        let mut list: Vec<&Message> = self
            .messages
            .values()
            .filter(|m| m.mailbox == mailbox)
            .collect();
        // New messages first, each group oldest first.
        list.sort_by_key(|m| (!m.new, m.received, m.id));
        let new = list.iter().filter(|m| m.new).count();
        let list: Vec<u64> = list.iter().map(|m| m.id).collect();
        let Some(vm) = &self.cfg.voicemail else {
            return;
        };
        let mut prompts = vec![vm.prompts.you_have.clone()];
        match self.cfg.announcements.numbers.get(new) {
            Some(n) => prompts.push(n.clone()),
            None => prompts.extend(self.cfg.announcements.numbers.last().cloned()),
        }
        prompts.push(vm.prompts.new_messages.clone());
        let round = self
            .calls
            .get(&id)
            .and_then(|c| c.vm.as_ref())
            .map_or(0, VmState::round);
        if let Some(call) = self.calls.get_mut(&id) {
            call.vm = Some(VmState::Listen {
                list,
                at: 0,
                loading: false,
                intro: prompts,
                round,
            });
        }
        self.load_current(now, id);
    }

    /// Ask for the current message's audio, or say there are no more and hang up.
    fn load_current(&mut self, now: Instant, id: u64) {
        let no_more = self
            .cfg
            .voicemail
            .as_ref()
            .map(|v| v.prompts.no_more.clone());
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(VmState::Listen {
            list,
            at,
            loading,
            intro,
            round,
        }) = call.vm.as_mut()
        else {
            return;
        };
        // Messages deleted meanwhile (from another phone) are passed over.
        while list
            .get(*at)
            .is_some_and(|m| !self.messages.contains_key(m))
        {
            *at += 1;
        }
        match list.get(*at).and_then(|m| self.messages.get(m)) {
            Some(m) => {
                *loading = true;
                // No earlier wait may end while the message loads (it would count the
                // message as heard before it is played).
                *round += 1;
                self.out
                    .push_back(Output::Voicemail(VoicemailRequest::Load {
                        call: id,
                        message: m.id,
                        file: m.file.clone(),
                    }));
                // The caller hears the intro while the message loads; it plays again in
                // front of the message (a Play replaces what plays).
                let intro = intro.clone();
                self.vm_play(id, intro, None);
            }
            None => {
                let mut prompts = std::mem::take(intro);
                prompts.extend(no_more);
                self.vm_end(now, id, prompts);
            }
        }
    }

    /// Next (or, with `replay`, the same) message.
    fn next_message(&mut self, now: Instant, id: u64, replay: bool) {
        if let Some(VmState::Listen { at, .. }) =
            self.calls.get_mut(&id).and_then(|c| c.vm.as_mut())
        {
            if !replay {
                *at += 1;
            }
        }
        self.load_current(now, id);
    }

    /// The service read a message (or could not).
    pub fn on_voicemail(&mut self, now: Now, input: VoicemailInput) {
        let now = self.at(now);
        match input {
            VoicemailInput::Stored(m) => {
                let mailbox = m.mailbox.clone();
                self.messages.insert(m.id, m);
                self.notify_mailbox(now, &mailbox);
            }
            VoicemailInput::Loaded {
                call,
                message,
                audio,
            } => {
                let options = self
                    .cfg
                    .voicemail
                    .as_ref()
                    .map(|v| v.prompts.options.clone());
                let Some(VmState::Listen {
                    list,
                    at,
                    loading,
                    intro,
                    ..
                }) = self.calls.get_mut(&call).and_then(|c| c.vm.as_mut())
                else {
                    return;
                };
                if !*loading || list.get(*at) != Some(&message) {
                    return;
                }
                *loading = false;
                let Some(audio) = audio else {
                    warn!(message, "voicemail message could not be read: skipped");
                    return self.next_message(now, call, false);
                };
                let mut prompts = std::mem::take(intro);
                prompts.push(Prompt::silence(Duration::from_millis(300)));
                prompts.push(audio);
                prompts.extend(options);
                let wait = length(&prompts) + KEY_TIMEOUT;
                self.vm_play(call, prompts, None);
                self.vm_timer(now, call, wait);
            }
        }
    }

    /// The owner kept (`deleted` false) or deleted message `m`.
    fn message_done(&mut self, now: Instant, id: u64, m: u64, deleted: bool) {
        let Some(vm) = self.cfg.voicemail.clone() else {
            return;
        };
        let mailbox = self.messages.get(&m).map(|x| x.mailbox.clone());
        if deleted {
            self.messages.remove(&m);
        } else if let Some(x) = self.messages.get_mut(&m) {
            x.new = false;
        }
        self.out
            .push_back(Output::Voicemail(VoicemailRequest::Status {
                message: m,
                deleted,
            }));
        if let Some(mb) = mailbox {
            self.notify_mailbox(now, &mb);
        }
        let said = if deleted {
            vm.prompts.deleted
        } else {
            vm.prompts.saved
        };
        if let Some(VmState::Listen { intro, .. }) =
            self.calls.get_mut(&id).and_then(|c| c.vm.as_mut())
        {
            intro.push(said);
        }
        self.next_message(now, id, false);
    }

    /// Message `m` was heard: no longer new.
    fn mark_heard(&mut self, now: Instant, m: u64) {
        let Some(x) = self.messages.get_mut(&m) else {
            return;
        };
        if !x.new {
            return;
        }
        x.new = false;
        let mailbox = x.mailbox.clone();
        self.out
            .push_back(Output::Voicemail(VoicemailRequest::Status {
                message: m,
                deleted: false,
            }));
        self.notify_mailbox(now, &mailbox);
    }

    /// New and old messages of a mailbox.
    pub(super) fn counts(&self, mailbox: &str) -> (usize, usize) {
        self.messages
            .values()
            .filter(|m| m.mailbox == mailbox)
            .fold(
                (0, 0),
                |(n, o), m| if m.new { (n + 1, o) } else { (n, o + 1) },
            )
    }

    /// Tell every phone of the mailbox's users how many messages wait.
    pub(super) fn notify_mailbox(&mut self, now: Instant, mailbox: &str) {
        let Some(mb) = self.mailbox(mailbox).cloned() else {
            return;
        };
        for user in &mb.notify {
            self.notify_user(now, user);
        }
    }

    /// The message summary (RFC 3842) of the mailboxes `user` watches: their new and old
    /// messages together, the account being the user's own mailbox (the voicemail number)
    /// or the first watched mailbox's access number. `None` when the user watches none.
    fn summary(&self, user: &str) -> Option<String> {
        let vm = self.cfg.voicemail.as_ref()?;
        let boxes: Vec<&Mailbox> = vm
            .mailboxes
            .iter()
            .filter(|m| m.notify.iter().any(|u| u == user))
            .collect();
        let first = boxes.first()?;
        let (new, old) = boxes.iter().fold((0, 0), |(n, o), m| {
            let (a, b) = self.counts(&m.name);
            (n + a, o + b)
        });
        let number = if boxes.iter().any(|m| m.name == user) {
            vm.number.clone()
        } else {
            first.access.clone().unwrap_or_else(|| vm.number.clone())
        };
        Some(format!(
            "Messages-Waiting: {}\r\nMessage-Account: sip:{number}@{}\r\nVoice-Message: {new}/{old} (0/0)\r\n",
            if new > 0 { "yes" } else { "no" },
            self.host
        ))
    }

    /// Tell `user`'s phones how many messages wait: in their subscriptions, and unsolicited
    /// to registered phones that hold none.
    pub(super) fn notify_user(&mut self, now: Instant, user: &str) {
        let Some(body) = self.summary(user) else {
            return;
        };
        let subs: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.user == user)
            .map(|(id, _)| *id)
            .collect();
        for sid in &subs {
            self.sub_notify(now, *sid, None);
        }
        if !subs.is_empty() {
            return;
        }
        let contacts = self
            .locations
            .get(user)
            .map(|b| b.value().clone())
            .unwrap_or_default();
        for b in contacts {
            let tag = self.token();
            let call_id = format!("{}@{}", self.token(), self.host);
            let mut h = Headers::default();
            h.push("From", format!("<sip:{user}@{}>;tag={tag}", self.host));
            h.push("To", format!("<sip:{user}@{}>", self.host));
            h.push("Call-ID", call_id);
            h.push("CSeq", "1 NOTIFY");
            h.push("Contact", self.contact(&b.flow, "switchboard"));
            h.push("Event", "message-summary");
            h.push("Subscription-State", "active;expires=3600");
            h.push("Content-Type", "application/simple-message-summary");
            let notify = Request {
                method: Method::Notify,
                uri: b.uri_text.clone(),
                headers: h,
                body: Bytes::from(body.clone()),
            };
            debug!(user, "message-waiting NOTIFY");
            self.send(b.flow, notify, Role::Fire);
        }
    }

    /// A SUBSCRIBE (RFC 6665) for `message-summary`: a new subscription, a refresh, or an
    /// unsubscribe (`Expires: 0`).
    pub(super) fn on_subscribe(
        &mut self,
        now: Instant,
        tx: TxId,
        req: Request,
        flow: Flow,
        caller: Caller,
    ) {
        let event = req
            .headers
            .get("Event")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if event != "message-summary" || self.cfg.voicemail.is_none() {
            let mut h = Headers::default();
            h.push("Allow-Events", "message-summary");
            return self.respond(tx, 489, None, h, Bytes::new());
        }
        let expires = req
            .headers
            .get("Expires")
            .and_then(|e| e.trim().parse::<u64>().ok())
            .unwrap_or(SUB_DEFAULT.as_secs())
            .min(SUB_MAX.as_secs());
        if expires > 0 && expires < SUB_MIN.as_secs() {
            let mut h = Headers::default();
            h.push("Min-Expires", SUB_MIN.as_secs().to_string());
            return self.respond(tx, 423, None, h, Bytes::new());
        }
        let sid = match to_tag(&req.headers) {
            Some(tag) => {
                let key = (
                    req.headers.get("Call-ID").unwrap_or_default().to_owned(),
                    tag,
                );
                let Some(&sid) = self.by_sub.get(&key) else {
                    return self.plain(tx, 481);
                };
                let Some(sub) = self.subs.get_mut(&sid) else {
                    return self.plain(tx, 481);
                };
                if !sub.dialog.accept_remote_cseq(&req) {
                    return self.plain(tx, 500);
                }
                let mut h = Headers::default();
                h.push("Expires", expires.to_string());
                self.respond(tx, 200, None, h, Bytes::new());
                sid
            }
            None => {
                // Whose light: the account that authenticated (or, unchallenged, the From).
                let user = match caller {
                    Caller::User(u) => u,
                    Caller::Anonymous => req
                        .headers
                        .get("From")
                        .and_then(user_of)
                        .unwrap_or_default(),
                    Caller::Trunk(_) => return self.plain(tx, 403),
                };
                if self.summary(&user).is_none() {
                    // Watches no mailbox.
                    return self.plain(tx, 404);
                }
                let tag = self.token();
                let dialog = match Dialog::uas(&req, &tag, flow) {
                    Ok(d) => d,
                    Err(_) => return self.plain(tx, 400),
                };
                let sid = self.next_sub;
                self.next_sub += 1;
                self.by_sub
                    .insert((dialog.call_id.clone(), tag.clone()), sid);
                let mut h = Headers::default();
                h.push("Expires", expires.to_string());
                h.push("Contact", self.contact(&flow, "switchboard"));
                self.respond(tx, 200, Some(tag), h, Bytes::new());
                debug!(user = %user, expires, "message-summary subscription");
                self.subs.insert(
                    sid,
                    Subscription {
                        user,
                        dialog,
                        expires: now,
                        round: 0,
                    },
                );
                sid
            }
        };
        let Some(sub) = self.subs.get_mut(&sid) else {
            return;
        };
        sub.expires = now + Duration::from_secs(expires);
        sub.round += 1;
        let round = sub.round;
        self.timers
            .retain(|_, t| !matches!(t, Timer::Subscription(s, _) if *s == sid));
        if expires == 0 {
            // Unsubscribed: a bare "terminated" (a reason of timeout would invite the phone
            // to subscribe again, RFC 6665 §4.1.3).
            self.sub_notify(now, sid, Some("terminated"));
            self.drop_sub(sid);
        } else {
            self.timer(
                now + Duration::from_secs(expires),
                Timer::Subscription(sid, round),
            );
            self.sub_notify(now, sid, None);
        }
    }

    /// A subscription ran out without a refresh.
    pub(super) fn subscription_expired(&mut self, now: Instant, sid: u64, round: u64) {
        if self.subs.get(&sid).is_some_and(|s| s.round == round) {
            self.sub_notify(now, sid, Some("terminated;reason=timeout"));
            self.drop_sub(sid);
        }
    }

    /// The NOTIFY of subscription `sid` (the last one, with this Subscription-State, when
    /// `terminated`).
    fn sub_notify(&mut self, now: Instant, sid: u64, terminated: Option<&str>) {
        let Some(sub) = self.subs.get(&sid) else {
            return;
        };
        let body = self.summary(&sub.user).unwrap_or_default();
        let left = sub.expires.saturating_duration_since(now).as_secs();
        let flow = sub.dialog.flow;
        let contact = self.contact(&flow, "switchboard");
        let Some(sub) = self.subs.get_mut(&sid) else {
            return;
        };
        let mut req = sub.dialog.request(Method::Notify);
        req.headers.push("Contact", contact);
        req.headers.push("Event", "message-summary");
        req.headers.push(
            "Subscription-State",
            match terminated {
                Some(state) => state.to_owned(),
                None => format!("active;expires={left}"),
            },
        );
        req.headers
            .push("Content-Type", "application/simple-message-summary");
        req.body = Bytes::from(body);
        let role = if terminated.is_some() {
            Role::Fire
        } else {
            Role::Notify(sid)
        };
        self.send(flow, req, role);
    }

    /// Forget subscription `sid`.
    pub(super) fn drop_sub(&mut self, sid: u64) {
        if let Some(sub) = self.subs.remove(&sid) {
            self.by_sub
                .remove(&(sub.dialog.call_id.clone(), sub.dialog.local_tag.clone()));
        }
        self.timers
            .retain(|_, t| !matches!(t, Timer::Subscription(s, _) if *s == sid));
    }
}

/// A phone's `message-summary` subscription.
#[derive(Debug)]
pub(super) struct Subscription {
    /// Whose messages it watches.
    user: String,
    dialog: Dialog,
    expires: Instant,
    /// Bumped on each refresh: an expiry timer of an earlier round is stale.
    round: u64,
}

/// Subscription lengths: asked-for expiries are cut to the maximum; shorter than the minimum
/// is refused (423); no Expires header means the default.
const SUB_DEFAULT: Duration = Duration::from_secs(3600);
const SUB_MAX: Duration = Duration::from_secs(3600);
const SUB_MIN: Duration = Duration::from_secs(60);
