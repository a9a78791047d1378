//! A scriptable SIP phone for end-to-end tests, on the project's own sans-IO `sip::Endpoint`
//! over a real UDP socket: register with digest, answer a call, place one (answering the
//! server's 407), send REFER (with or without Replaces) and collect the NOTIFYs, answer BYE.
//! It sends no audio; its SDP points at a port nobody reads (the tests that use it check the
//! audio of the other parties).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::endpoint::{CallAuthConfig, SecurityConfig, SipEvent};
use sip::message::{Headers, Method, Request, Response};
use sip::transaction::TxId;
use sip::{Dialog, Endpoint, EndpointConfig, Flow, Transport};

use super::{demo_password, Server};

pub(crate) struct Ua {
    ep: Endpoint,
    sock: UdpSocket,
    server: SocketAddr,
    pub(crate) user: String,
    addr: SocketAddr,
    seq: u32,
    /// Final answers to our in-dialog requests, by transaction.
    pub(crate) answers: HashMap<TxId, u16>,
    /// sipfrag bodies of the NOTIFYs received.
    pub(crate) notifies: Vec<String>,
    /// Call-IDs of the dialogs the server ended with BYE.
    pub(crate) byes: Vec<String>,
    /// Requests and responses not consumed yet.
    queue: Vec<SipEvent>,
}

fn flow(to: SocketAddr) -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: to,
        conn: None,
    }
}

impl Ua {
    /// A phone for `user` (password `demo<user>`) on a free loopback port.
    pub(crate) fn new(server: &Server, user: u32) -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(10)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let cfg = EndpointConfig {
            via_host: addr.to_string(),
            security: SecurityConfig {
                rate_limit: None,
                ..Default::default()
            },
            calls: CallAuthConfig {
                trunks: Vec::new(),
                challenge: false,
            },
            accept_notify: true,
            seed: u64::from(user),
            ..Default::default()
        };
        Ua {
            ep: Endpoint::new(cfg, HashMap::new(), Instant::now()),
            sock,
            server: server.udp,
            user: user.to_string(),
            addr,
            seq: 0,
            answers: HashMap::new(),
            notifies: Vec::new(),
            byes: Vec::new(),
            queue: Vec::new(),
        }
    }

    fn token(&mut self) -> String {
        self.seq += 1;
        format!("ua{}x{}", self.user, self.seq)
    }

    /// Move the endpoint along for up to `d`: datagrams in and out, timers, and the
    /// requests that need no decision (BYE, NOTIFY: 200).
    fn pump(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut buf = vec![0u8; 65_535];
        loop {
            let now = Instant::now();
            if self.ep.poll_timeout().is_some_and(|t| t <= now) {
                self.ep.handle_timeout(now);
            }
            while let Some(t) = self.ep.poll_transmit() {
                let _ = self.sock.send_to(&t.payload, t.flow.remote);
            }
            while let Some(ev) = self.ep.poll_event() {
                self.on_event(ev);
            }
            if Instant::now() >= end {
                return;
            }
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                self.ep
                    .handle_message(Instant::now(), flow(from), &buf[..n]);
            }
        }
    }

    fn on_event(&mut self, ev: SipEvent) {
        let now = Instant::now();
        match ev {
            SipEvent::Request { tx, request, .. }
                if matches!(request.method, Method::Bye | Method::Notify) =>
            {
                if request.method == Method::Notify {
                    self.notifies
                        .push(String::from_utf8_lossy(&request.body).trim().to_owned());
                } else {
                    self.byes.push(
                        request
                            .headers
                            .get("Call-ID")
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                let _ =
                    self.ep
                        .respond_tagged(now, tx, 200, None, Headers::default(), Bytes::new());
            }
            SipEvent::Response { tx, response } if self.answers.contains_key(&tx) => {
                if response.status >= 200 {
                    self.answers.insert(tx, response.status);
                }
            }
            other => self.queue.push(other),
        }
    }

    /// Pump until an event satisfies `f` (which takes it), up to `within`.
    fn wait<T>(
        &mut self,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&SipEvent) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.queue.iter().position(|e| f(e).is_some()) {
                let ev = self.queue.remove(i);
                return f(&ev).expect("matched");
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {within:?}",
                self.user
            );
            self.pump(Duration::from_millis(20));
        }
    }

    /// Wait for the final response to client transaction `tx`.
    fn final_response(&mut self, tx: TxId, what: &str) -> Response {
        self.wait(Duration::from_secs(10), what, |e| match e {
            SipEvent::Response { tx: t, response } if *t == tx && response.status >= 200 => {
                Some(response.clone())
            }
            _ => None,
        })
    }

    fn sdp(&self) -> String {
        // Audio goes to a port nobody reads (this phone only signals).
        format!(
            "v=0\r\no=ua 1 1 IN IP4 127.0.0.1\r\ns=ua\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
            self.addr.port() + 2
        )
    }

    fn answer_challenge(&mut self, req: &mut Request, resp: &Response, cseq: u32) {
        let (ask, answer) = if resp.status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let ch = resp
            .headers
            .get_all(ask)
            .find_map(|v| sip::digest::parse_challenge(v).ok())
            .expect("a digest challenge");
        let pw = demo_password(self.user.parse().expect("numeric user"));
        let method = req.method.as_str().to_owned();
        let value =
            sip::digest::authorization(&ch, &self.user, &pw, &method, &req.uri, "0a4f113b", 1);
        req.headers.remove("CSeq");
        req.headers.push("CSeq", format!("{cseq} {method}"));
        req.headers.push(answer, value);
    }

    /// REGISTER with digest; panics unless the server says 200.
    pub(crate) fn register(&mut self) {
        let tag = self.token();
        let mut h = Headers::default();
        h.push("From", format!("<sip:{}@switchboard>;tag={tag}", self.user));
        h.push("To", format!("<sip:{}@switchboard>", self.user));
        h.push("Call-ID", format!("reg-{}-{}", self.user, self.addr));
        h.push("CSeq", "1 REGISTER");
        h.push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        h.push("Expires", "300");
        let mut req = Request {
            method: Method::Register,
            uri: "sip:switchboard".into(),
            headers: h,
            body: Bytes::new(),
        };
        let tx = self
            .ep
            .send_request(Instant::now(), flow(self.server), req.clone())
            .expect("REGISTER");
        let resp = self.final_response(tx, "answer to REGISTER");
        assert_eq!(resp.status, 401, "{resp:?}");
        self.answer_challenge(&mut req, &resp, 2);
        let tx = self
            .ep
            .send_request(Instant::now(), flow(self.server), req)
            .expect("REGISTER");
        let resp = self.final_response(tx, "answer to the authorised REGISTER");
        assert_eq!(resp.status, 200, "{resp:?}");
    }

    /// Answer the next INVITE from the server; its dialog.
    pub(crate) fn answer(&mut self) -> Dialog {
        let (tx, invite, from) = self.wait(Duration::from_secs(10), "INVITE", |e| match e {
            SipEvent::Request {
                tx, request, flow, ..
            } if request.method == Method::Invite => Some((*tx, request.clone(), *flow)),
            _ => None,
        });
        let tag = self.token();
        let mut h = Headers::default();
        h.push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        h.push("Content-Type", "application/sdp");
        let body = Bytes::from(self.sdp());
        self.ep
            .respond_tagged(Instant::now(), tx, 200, Some(&tag), h, body)
            .expect("200");
        self.wait(Duration::from_secs(5), "ACK", |e| {
            matches!(e, SipEvent::Ack { .. }).then_some(())
        });
        Dialog::uas(&invite, &tag, from).expect("dialog")
    }

    /// Call `number` (answering the server's 407); the dialog once answered.
    pub(crate) fn call(&mut self, number: &str) -> Dialog {
        let tag = self.token();
        let call_id = format!("{}@{}", self.token(), self.addr);
        let mut h = Headers::default();
        h.push("From", format!("<sip:{}@switchboard>;tag={tag}", self.user));
        h.push("To", format!("<sip:{number}@switchboard>"));
        h.push("Call-ID", call_id);
        h.push("CSeq", "1 INVITE");
        h.push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        h.push("Content-Type", "application/sdp");
        let mut invite = Request {
            method: Method::Invite,
            uri: format!("sip:{number}@switchboard"),
            headers: h,
            body: Bytes::from(self.sdp()),
        };
        let tx = self
            .ep
            .send_request(Instant::now(), flow(self.server), invite.clone())
            .expect("INVITE");
        let mut resp = self.final_response(tx, "answer to INVITE");
        if resp.status == 407 {
            self.answer_challenge(&mut invite, &resp, 2);
            let tx = self
                .ep
                .send_request(Instant::now(), flow(self.server), invite.clone())
                .expect("INVITE");
            resp = self.final_response(tx, "answer to the authorised INVITE");
        }
        assert_eq!(resp.status, 200, "{resp:?}");
        let d = Dialog::uac(&invite, &resp, flow(self.server)).expect("dialog");
        let ack = d.ack(super_cseq(&invite));
        self.ep
            .send_stateless_request(Instant::now(), flow(self.server), ack);
        self.pump(Duration::from_millis(50));
        d
    }

    /// Send REFER with `refer_to` in dialog `d`; the final answer.
    pub(crate) fn refer(&mut self, d: &mut Dialog, refer_to: &str) -> u16 {
        let mut req = d.request(Method::Refer);
        req.headers.push("Refer-To", refer_to.to_owned());
        req.headers
            .push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        let tx = self
            .ep
            .send_request(Instant::now(), d.flow, req)
            .expect("REFER");
        self.answers.insert(tx, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.answers[&tx] == 0 {
            assert!(Instant::now() < deadline, "no answer to REFER");
            self.pump(Duration::from_millis(20));
        }
        self.answers[&tx]
    }

    /// Keep the phone answering for up to `within`, until `cond` holds.
    pub(crate) fn until(&mut self, within: Duration, what: &str, cond: impl Fn(&Ua) -> bool) {
        let deadline = Instant::now() + within;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "{}: {what} did not happen within {within:?}",
                self.user
            );
            self.pump(Duration::from_millis(20));
        }
    }
}

fn super_cseq(req: &Request) -> u32 {
    req.headers
        .get("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The Refer-To of an attended transfer to `number`, replacing dialog `d` (as this side
/// knows it).
pub(crate) fn replacing(number: &str, d: &Dialog, server: SocketAddr) -> String {
    let esc = |s: &str| s.replace('@', "%40");
    format!(
        "<sip:{number}@{server}?Replaces={}%3Bto-tag%3D{}%3Bfrom-tag%3D{}>",
        esc(&d.call_id),
        d.remote_tag,
        d.local_tag
    )
}
