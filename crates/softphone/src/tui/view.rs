//! How the [`App`] looks: a header (who, which server, registered or not), the agent's
//! state, the call panel or the SIP messages, a status line (or the prompt) and the keys
//! that work now. Laid out for 80×24; wider or taller terminals get more room.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::{clock, AgentState, App, CallView, Phase, PromptKind, Registration};
use crate::station::TracedMessage;

/// The width of the labels in the call panel.
const LABEL: usize = 10;

fn bold(style: Style) -> Style {
    style.add_modifier(Modifier::BOLD)
}

fn fg(color: Color) -> Style {
    Style::new().fg(color)
}

/// A flag such as ON HOLD: dark text on a coloured field.
fn flag(text: &str, color: Color) -> Span<'static> {
    Span::styled(
        format!(" {text} "),
        bold(Style::new().fg(Color::Black).bg(color)),
    )
}

fn field(label: &str, value: impl Into<String>) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!(" {label:<LABEL$}"), fg(Color::DarkGray)),
        Span::raw(value.into()),
    ])
}

/// UTC time of day, `hh:mm:ss.mmm`.
fn time_of_day(at: SystemTime) -> String {
    let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()) % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

impl App {
    /// Draw the screen as it is at `now` (the call timer).
    pub fn draw(&self, frame: &mut Frame, now: Instant) {
        let [header, agent, main, status, help] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        frame.render_widget(Paragraph::new(self.header_line()), header);
        frame.render_widget(Paragraph::new(self.agent_line()), agent);
        if self.sip_view {
            let [summary, log] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(2)]).areas(main);
            frame.render_widget(Paragraph::new(self.call_summary(now)), summary);
            self.draw_sip(frame, log);
        } else {
            self.draw_call(frame, main, now);
        }
        self.draw_status(frame, status);
        frame.render_widget(Paragraph::new(self.help_line()), help);
    }

    fn header_line(&self) -> Line<'static> {
        let s = &self.settings;
        let reg = match &self.registration {
            Registration::Registering => Span::styled("registering…", fg(Color::Yellow)),
            Registration::Registered => Span::styled("registered", bold(fg(Color::Green))),
            Registration::Failed(why) => {
                Span::styled(format!("NOT REGISTERED: {why}"), bold(fg(Color::Red)))
            }
            Registration::Unregistered => Span::styled("unregistered", fg(Color::DarkGray)),
        };
        let api = match (&self.web_login, s.api) {
            (Some(login), _) => format!("  web: {login}"),
            (None, true) => "  web: logging in…".to_owned(),
            (None, false) => String::new(),
        };
        Line::from(vec![
            Span::styled(
                " Switchboard ",
                bold(Style::new().fg(Color::Black).bg(Color::Cyan)),
            ),
            Span::raw(format!(" {}@{}  SIP ", s.user, s.server)),
            reg,
            Span::styled(api, fg(Color::DarkGray)),
        ])
    }

    fn agent_line(&self) -> Line<'static> {
        let mut spans = vec![Span::raw(match &self.agent_name {
            Some(name) => format!(" Agent {name}  "),
            None => " Agent  ".to_owned(),
        })];
        if !self.settings.api {
            spans.push(Span::styled(
                "state not shown: no agent API (--api)",
                fg(Color::DarkGray),
            ));
        } else if let Some(call) = self.wrap_up {
            spans.push(Span::styled("WRAP-UP", bold(fg(Color::Magenta))));
            spans.push(Span::styled(
                format!("  disposition for call {call}"),
                fg(Color::Magenta),
            ));
        } else {
            spans.push(match &self.agent {
                AgentState::Unknown => {
                    Span::styled("state not known yet (r: ready)", fg(Color::DarkGray))
                }
                AgentState::Ready => Span::styled("READY", bold(fg(Color::Green))),
                AgentState::Paused(r) => {
                    Span::styled(format!("PAUSED ({r})"), bold(fg(Color::Yellow)))
                }
                AgentState::LoggedOut => Span::styled("LOGGED OUT", bold(fg(Color::Red))),
                AgentState::WrapUp => Span::styled("WRAP-UP", bold(fg(Color::Magenta))),
            });
        }
        if self.call.is_some() {
            spans.push(Span::styled("  · on a call", fg(Color::DarkGray)));
        }
        Line::from(spans)
    }

    fn who(&self) -> String {
        self.call
            .as_ref()
            .map(|c| self.who_of(c))
            .unwrap_or_default()
    }

    fn who_of(&self, c: &CallView) -> String {
        match &c.info.display {
            Some(d) if !d.is_empty() => format!("{d} <{}>", c.info.remote),
            _ => c.info.remote.clone(),
        }
    }

    /// The held call in one field: who, and their queue.
    fn held_line(&self, h: &CallView) -> String {
        match &h.info.queue {
            Some(q) => format!("{} · {q}", self.who_of(h)),
            None => self.who_of(h),
        }
    }

    /// The call in one line, above the SIP messages.
    fn call_summary(&self, now: Instant) -> Line<'static> {
        let Some(c) = &self.call else {
            let mut spans = vec![Span::styled(" No call", fg(Color::DarkGray))];
            if self.muted {
                spans.extend([Span::raw("  "), flag("MUTED", Color::Red)]);
            }
            return Line::from(spans);
        };
        let mut spans = vec![Span::raw(format!(" {}", self.who()))];
        if let Some(q) = &c.info.queue {
            spans.push(Span::raw(format!(" · {q}")));
        }
        spans.push(Span::raw("  "));
        spans.push(match c.phase {
            Phase::Ringing => Span::styled("RINGING", bold(fg(Color::Yellow))),
            Phase::Calling | Phase::Alerting => Span::styled("CALLING", bold(fg(Color::Cyan))),
            Phase::Up { since } => Span::styled(
                format!("CONNECTED {}", clock(now.saturating_duration_since(since))),
                bold(fg(Color::Green)),
            ),
        });
        if c.held {
            spans.extend([Span::raw(" "), flag("ON HOLD", Color::Yellow)]);
        }
        if self.muted {
            spans.extend([Span::raw(" "), flag("MUTED", Color::Red)]);
        }
        Line::from(spans)
    }

    fn draw_call(&self, frame: &mut Frame, area: Rect, now: Instant) {
        let Some(c) = &self.call else {
            let mut lines = vec![
                Line::default(),
                Line::styled(" Waiting for calls.", fg(Color::DarkGray)),
                Line::default(),
            ];
            if let Some(h) = &self.held_call {
                lines.push(field("On hold", self.held_line(h)));
            }
            if let Some(audio) = &self.settings.audio {
                lines.push(field("Audio", audio.clone()));
            }
            if let Some(last) = &self.last {
                let mut what = last.info.remote.clone();
                if let Some(q) = &last.info.queue {
                    what.push_str(&format!(" ({q})"));
                }
                lines.push(field("Last call", format!("{what}: {}", last.how)));
                if let Some(id) = last.info.record {
                    lines.push(field("Call id", id.to_string()));
                }
            }
            if self.muted {
                lines.push(Line::default());
                lines.push(Line::from(vec![Span::raw(" "), flag("MUTED", Color::Red)]));
            }
            let block = Block::bordered()
                .title(Span::styled(" No call ", fg(Color::DarkGray)))
                .border_style(fg(Color::DarkGray));
            frame.render_widget(Paragraph::new(lines).block(block), area);
            return;
        };
        let (title, colour) = match c.phase {
            Phase::Ringing => (" INCOMING CALL · ringing ".to_owned(), Color::Yellow),
            Phase::Calling => (" CALLING ".to_owned(), Color::Cyan),
            Phase::Alerting => (
                " CALLING · ringing at the other end ".to_owned(),
                Color::Cyan,
            ),
            Phase::Up { since } => (
                format!(
                    " CONNECTED · {} ",
                    clock(now.saturating_duration_since(since))
                ),
                Color::Green,
            ),
        };
        let title_style = if c.phase == Phase::Ringing {
            bold(Style::new().fg(Color::Black).bg(Color::Yellow))
        } else {
            bold(fg(colour))
        };
        let block = Block::bordered()
            .title(Span::styled(title, title_style))
            .border_style(fg(colour));
        let mut lines = vec![Line::default()];
        let label = if c.info.incoming { "Caller" } else { "Number" };
        lines.push(Line::from(vec![
            Span::styled(format!(" {label:<LABEL$}"), fg(Color::DarkGray)),
            Span::styled(self.who(), Style::new().add_modifier(Modifier::BOLD)),
        ]));
        if let Some(q) = &c.info.queue {
            lines.push(field("Queue", q.clone()));
        }
        if let Some(w) = c.info.waited_s {
            lines.push(field("Waited", clock(std::time::Duration::from_secs(w))));
        }
        if let Some(e) = c.info.entered.as_deref().filter(|e| !e.is_empty()) {
            lines.push(field("Entered", e.replace(';', "  ")));
        }
        if let Some(id) = c.info.record {
            lines.push(field("Call id", id.to_string()));
        }
        if !c.keyed.is_empty() {
            lines.push(field("Keyed", c.keyed.clone()));
        }
        if let Some(h) = &self.held_call {
            lines.push(field("On hold", self.held_line(h)));
        }
        lines.push(Line::default());
        match c.phase {
            Phase::Ringing => lines.push(Line::styled(
                " Ringing…  a answers, h declines",
                bold(fg(Color::Yellow)),
            )),
            Phase::Calling => lines.push(Line::styled(" Calling…", fg(Color::Cyan))),
            Phase::Alerting => {
                lines.push(Line::styled(" Ringing at the other end…", fg(Color::Cyan)))
            }
            Phase::Up { since } => {
                let mut spans = vec![
                    Span::styled(format!(" {:<LABEL$}", "Talking"), fg(Color::DarkGray)),
                    Span::styled(
                        clock(now.saturating_duration_since(since)),
                        bold(fg(Color::Green)),
                    ),
                ];
                if c.held {
                    spans.extend([Span::raw("   "), flag("ON HOLD", Color::Yellow)]);
                }
                if self.muted {
                    spans.extend([Span::raw("   "), flag("MUTED", Color::Red)]);
                }
                lines.push(Line::from(spans));
            }
        }
        if self.muted && !matches!(c.phase, Phase::Up { .. }) {
            lines.push(Line::from(vec![Span::raw(" "), flag("MUTED", Color::Red)]));
        }
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn draw_sip(&self, frame: &mut Frame, area: Rect) {
        let block = Block::bordered()
            .title(format!(
                " SIP messages ({}, UTC) · ↑↓ PgUp PgDn Home End ←→ · s closes ",
                self.sip.len()
            ))
            .border_style(fg(Color::Blue));
        let inner = block.inner(area);
        let height = usize::from(inner.height);
        let total = self.sip_lines;
        let top = total
            .saturating_sub(height)
            .saturating_sub(self.sip_scroll.min(total));
        let mut lines = Vec::with_capacity(height);
        let mut at = 0;
        'messages: for m in &self.sip {
            let n = super::lines_of(m);
            if at + n <= top {
                at += n;
                continue;
            }
            for (i, line) in std::iter::once(None)
                .chain(m.text.trim_end().lines().map(Some))
                .enumerate()
            {
                if at + i < top {
                    continue;
                }
                if lines.len() == height {
                    break 'messages;
                }
                lines.push(match line {
                    None => self.sip_heading(m),
                    Some(l) => Line::raw(l.trim_end_matches('\r').to_owned()),
                });
            }
            at += n;
        }
        if self.sip.is_empty() {
            lines.push(Line::styled(" No SIP messages yet.", fg(Color::DarkGray)));
        }
        frame.render_widget(
            Paragraph::new(lines)
                .block(block)
                .scroll((0, self.sip_shift)),
            area,
        );
    }

    fn sip_heading(&self, m: &TracedMessage) -> Line<'static> {
        let (way, colour) = if m.sent {
            ("sent to", Color::Cyan)
        } else {
            ("received from", Color::Yellow)
        };
        Line::styled(
            format!("── {} {way} {} ──", time_of_day(m.at), m.peer),
            bold(fg(colour)),
        )
    }

    fn draw_status(&self, frame: &mut Frame, area: Rect) {
        if let Some(p) = &self.prompt {
            let label = match p.kind {
                PromptKind::Dial => " Call number: ".to_owned(),
                PromptKind::Transfer => " Transfer to: ".to_owned(),
                PromptKind::Consult => " Consult (caller on hold): ".to_owned(),
                PromptKind::Pause => " Pause reason: ".to_owned(),
                PromptKind::Disposition { call } => format!(" Disposition code (call {call}): "),
            };
            let x = area.x + (label.chars().count() + p.text.chars().count()) as u16;
            let line = Line::from(vec![
                Span::styled(label, bold(fg(Color::Cyan))),
                Span::raw(p.text.clone()),
            ]);
            frame.render_widget(Paragraph::new(line), area);
            frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
            return;
        }
        if let Some(n) = &self.notice {
            let style = if n.error {
                bold(fg(Color::Red))
            } else {
                fg(Color::Green)
            };
            frame.render_widget(
                Paragraph::new(Line::styled(format!(" {}", n.text), style)),
                area,
            );
        }
    }

    fn help_line(&self) -> Line<'static> {
        let held = self.call.as_ref().is_some_and(|c| c.held);
        let keys: Vec<(&str, &str)> = if let Some(p) = &self.prompt {
            match p.kind {
                PromptKind::Disposition { .. } => vec![("Enter", "save"), ("Esc", "skip")],
                PromptKind::Dial => vec![("Enter", "call"), ("Esc", "cancel")],
                PromptKind::Transfer => vec![("Enter", "transfer"), ("Esc", "cancel")],
                PromptKind::Consult => vec![("Enter", "consult"), ("Esc", "cancel")],
                PromptKind::Pause => vec![("Enter", "pause"), ("Esc", "cancel")],
            }
        } else {
            match self.call.as_ref().map(|c| c.phase) {
                Some(Phase::Ringing) => vec![
                    ("a", "answer"),
                    ("h", "decline"),
                    ("m", "mute"),
                    ("s", "SIP"),
                    ("q", "quit"),
                ],
                Some(Phase::Calling | Phase::Alerting) => {
                    vec![("h", "give up"), ("m", "mute"), ("s", "SIP"), ("q", "quit")]
                }
                Some(Phase::Up { .. }) if self.held_call.is_some() => vec![
                    ("x", "hand the caller over"),
                    ("h", "end consultation"),
                    ("m", if self.muted { "unmute" } else { "mute" }),
                    ("0-9*#", "keys"),
                    ("s", "SIP"),
                    ("q", "quit"),
                ],
                Some(Phase::Up { .. }) => vec![
                    ("h", "hang up"),
                    ("o", if held { "resume" } else { "hold" }),
                    ("m", if self.muted { "unmute" } else { "mute" }),
                    ("0-9*#", "keys"),
                    ("t", "transfer"),
                    ("x", "consult"),
                    ("q", "quit"),
                ],
                None if self.held_call.is_some() => vec![
                    ("b", "back to the caller"),
                    ("h", "hang up the caller"),
                    ("s", "SIP"),
                    ("q", "quit"),
                ],
                None => vec![
                    ("c", "call"),
                    ("r", "ready"),
                    ("p", "pause"),
                    ("l", "log out"),
                    ("d", "disposition"),
                    ("m", if self.muted { "unmute" } else { "mute" }),
                    ("s", "SIP"),
                    ("q", "quit"),
                ],
            }
        };
        let mut spans = vec![Span::raw(" ")];
        for (key, what) in keys {
            spans.push(Span::styled(
                key.to_owned(),
                bold(Style::new().fg(Color::Black).bg(Color::Gray)),
            ));
            spans.push(Span::raw(format!(" {what}  ")));
        }
        // The prompt takes the status line: what there is to say goes here meanwhile.
        if let (Some(_), Some(n)) = (&self.prompt, &self.notice) {
            let style = if n.error {
                bold(fg(Color::Red))
            } else {
                fg(Color::Green)
            };
            spans.push(Span::styled(n.text.clone(), style));
        }
        Line::from(spans)
    }
}
