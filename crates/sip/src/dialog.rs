//! Dialogs (RFC 3261 §12): the state two user agents share after an INVITE is answered, and
//! the in-dialog requests built from it (ACK for a 2xx, BYE, re-INVITE).
//!
//! A back-to-back user agent holds one dialog per leg: a UAS dialog towards the caller
//! ([`Dialog::uas`], built from the INVITE it answered with 2xx) and a UAC dialog towards the
//! agent's phone ([`Dialog::uac`], built from the INVITE it sent and the 2xx it got back).
//! Requests are sent over the dialog's [`Flow`], the one the peer's messages arrived on, so a
//! phone behind NAT is reached the way it reached us.

use crate::header::{CSeq, NameAddr};
use crate::message::{Headers, Method, Request, Response};
use crate::Flow;

/// Why a dialog cannot be built from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    /// A header the dialog needs is missing or malformed.
    #[error("{0} is missing or malformed")]
    BadHeader(&'static str),
}

/// One side's view of a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
    /// Our address (From of our requests), without tag.
    pub local_uri: String,
    /// The peer's address (To of our requests), without tag.
    pub remote_uri: String,
    /// Where in-dialog requests go (the peer's Contact URI).
    pub remote_target: String,
    /// Route set (Record-Route), in the order our requests carry it.
    pub route_set: Vec<String>,
    /// Our CSeq: the last number we used.
    pub local_cseq: u32,
    /// The peer's last CSeq number, once it sent one.
    pub remote_cseq: Option<u32>,
    /// The flow to the peer.
    pub flow: Flow,
}

fn addr_without_tag(value: &str) -> Result<String, DialogError> {
    let a = NameAddr::parse(value).map_err(|_| DialogError::BadHeader("From/To"))?;
    let mut out = match &a.display {
        Some(d) => format!("\"{}\" <{}>", d.replace('"', ""), a.uri_text),
        None => format!("<{}>", a.uri_text),
    };
    for (n, v) in &a.params.0 {
        if n == "tag" {
            continue;
        }
        match v {
            Some(v) => out.push_str(&format!(";{n}={v}")),
            None => out.push_str(&format!(";{n}")),
        }
    }
    Ok(out)
}

fn tag_of(value: &str) -> Option<String> {
    NameAddr::parse(value)
        .ok()
        .and_then(|a| a.tag().map(str::to_owned))
}

fn contact_uri(headers: &Headers) -> Result<String, DialogError> {
    let c = headers
        .get_list("Contact")
        .next()
        .ok_or(DialogError::BadHeader("Contact"))?;
    NameAddr::parse(c)
        .map(|a| a.uri_text)
        .map_err(|_| DialogError::BadHeader("Contact"))
}

fn cseq_of(headers: &Headers) -> Result<CSeq, DialogError> {
    headers
        .get("CSeq")
        .and_then(|c| CSeq::parse(c).ok())
        .ok_or(DialogError::BadHeader("CSeq"))
}

impl Dialog {
    /// The dialog a UAS creates when it answers `invite` with a 2xx carrying `local_tag`.
    pub fn uas(invite: &Request, local_tag: &str, flow: Flow) -> Result<Dialog, DialogError> {
        let h = &invite.headers;
        let from = h.get("From").ok_or(DialogError::BadHeader("From"))?;
        let to = h.get("To").ok_or(DialogError::BadHeader("To"))?;
        Ok(Dialog {
            call_id: h
                .get("Call-ID")
                .ok_or(DialogError::BadHeader("Call-ID"))?
                .to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: tag_of(from).unwrap_or_default(),
            local_uri: addr_without_tag(to)?,
            remote_uri: addr_without_tag(from)?,
            remote_target: contact_uri(h)?,
            route_set: h.get_list("Record-Route").map(str::to_owned).collect(),
            local_cseq: 0,
            remote_cseq: Some(cseq_of(h)?.seq),
            flow,
        })
    }

    /// The dialog a UAC gets from the `invite` it sent and the 2xx `response`.
    pub fn uac(invite: &Request, response: &Response, flow: Flow) -> Result<Dialog, DialogError> {
        let h = &invite.headers;
        let from = h.get("From").ok_or(DialogError::BadHeader("From"))?;
        let to = response
            .headers
            .get("To")
            .ok_or(DialogError::BadHeader("To"))?;
        let mut route_set: Vec<String> = response
            .headers
            .get_list("Record-Route")
            .map(str::to_owned)
            .collect();
        route_set.reverse();
        Ok(Dialog {
            call_id: h
                .get("Call-ID")
                .ok_or(DialogError::BadHeader("Call-ID"))?
                .to_owned(),
            local_tag: tag_of(from).ok_or(DialogError::BadHeader("From tag"))?,
            remote_tag: tag_of(to).ok_or(DialogError::BadHeader("To tag"))?,
            local_uri: addr_without_tag(from)?,
            remote_uri: addr_without_tag(to)?,
            remote_target: contact_uri(&response.headers)?,
            route_set,
            local_cseq: cseq_of(h)?.seq,
            remote_cseq: None,
            flow,
        })
    }

    /// Whether an incoming request belongs to this dialog (Call-ID and both tags).
    pub fn matches(&self, req: &Request) -> bool {
        let h = &req.headers;
        h.get("Call-ID") == Some(self.call_id.as_str())
            && h.get("To").and_then(tag_of).as_deref() == Some(self.local_tag.as_str())
            && h.get("From").and_then(tag_of).unwrap_or_default() == self.remote_tag
    }

    /// Record the CSeq of an incoming in-dialog request. Returns false when it is lower than
    /// or equal to one already seen (an out-of-order request: answer 500, §12.2.2).
    pub fn accept_remote_cseq(&mut self, req: &Request) -> bool {
        let Ok(c) = cseq_of(&req.headers) else {
            return false;
        };
        if req.method == Method::Ack || req.method == Method::Cancel {
            return true;
        }
        match self.remote_cseq {
            Some(prev) if c.seq <= prev => false,
            _ => {
                self.remote_cseq = Some(c.seq);
                true
            }
        }
    }

    fn base_request(&self, method: Method, cseq: u32) -> Request {
        let mut h = Headers::default();
        for r in &self.route_set {
            h.push("Route", r.clone());
        }
        h.push("From", format!("{};tag={}", self.local_uri, self.local_tag));
        let to = if self.remote_tag.is_empty() {
            self.remote_uri.clone()
        } else {
            format!("{};tag={}", self.remote_uri, self.remote_tag)
        };
        h.push("To", to);
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", format!("{cseq} {method}"));
        Request {
            method,
            uri: self.remote_target.clone(),
            headers: h,
            body: bytes::Bytes::new(),
        }
    }

    /// A new in-dialog request (BYE, re-INVITE, INFO …) with the next CSeq. The transaction
    /// layer adds Via and Max-Forwards.
    pub fn request(&mut self, method: Method) -> Request {
        self.local_cseq += 1;
        self.base_request(method, self.local_cseq)
    }

    /// The ACK for a 2xx to the INVITE with CSeq number `invite_cseq` (§13.2.2.4): it is a
    /// request of its own, sent outside any transaction, with the INVITE's CSeq number.
    pub fn ack(&self, invite_cseq: u32) -> Request {
        self.base_request(Method::Ack, invite_cseq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_message;
    use crate::Transport;

    fn flow() -> Flow {
        Flow {
            transport: Transport::Udp,
            remote: "192.0.2.7:5062".parse().unwrap(),
            conn: None,
        }
    }

    fn invite() -> Request {
        let text = "INVITE sip:600@pbx SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKa\r\n\
            Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\n\
            From: \"Ann\" <sip:1006@pbx>;tag=abc\r\n\
            To: <sip:600@pbx>\r\n\
            Call-ID: c1@192.0.2.7\r\n\
            CSeq: 7 INVITE\r\n\
            Contact: <sip:1006@192.0.2.7:5062>\r\n\
            Content-Length: 0\r\n\r\n";
        match parse_message(text.as_bytes(), 65_535).unwrap() {
            crate::message::Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn uas_dialog_builds_bye_towards_the_caller() {
        let inv = invite();
        let mut d = Dialog::uas(&inv, "srv1", flow()).unwrap();
        assert_eq!(d.remote_tag, "abc");
        assert_eq!(d.remote_cseq, Some(7));
        let bye = d.request(Method::Bye);
        assert_eq!(bye.uri, "sip:1006@192.0.2.7:5062");
        assert_eq!(bye.headers.get("From"), Some("<sip:600@pbx>;tag=srv1"));
        assert_eq!(
            bye.headers.get("To"),
            Some("\"Ann\" <sip:1006@pbx>;tag=abc")
        );
        assert_eq!(bye.headers.get("CSeq"), Some("1 BYE"));
        let routes: Vec<_> = bye.headers.get_all("Route").collect();
        assert_eq!(routes, vec!["<sip:p1;lr>", "<sip:p2;lr>"]);
        // The caller's own BYE matches the dialog; a stale CSeq does not pass.
        let mut their_bye = inv.clone();
        their_bye.method = Method::Bye;
        their_bye.headers.remove("To");
        their_bye.headers.push("To", "<sip:600@pbx>;tag=srv1");
        their_bye.headers.remove("CSeq");
        their_bye.headers.push("CSeq", "8 BYE");
        assert!(d.matches(&their_bye));
        assert!(d.accept_remote_cseq(&their_bye));
        assert!(!d.accept_remote_cseq(&their_bye));
    }

    #[test]
    fn uac_dialog_acks_with_the_invite_cseq_and_reverses_routes() {
        let inv = invite();
        let mut ok = Response::new(200);
        ok.headers.push("Record-Route", "<sip:p2;lr>");
        ok.headers.push("Record-Route", "<sip:p1;lr>");
        ok.headers.push("To", "<sip:600@pbx>;tag=xyz");
        ok.headers
            .push("Contact", "<sip:agent@198.51.100.2:5060;transport=udp>");
        let mut d = Dialog::uac(&inv, &ok, flow()).unwrap();
        let ack = d.ack(7);
        assert_eq!(ack.uri, "sip:agent@198.51.100.2:5060;transport=udp");
        assert_eq!(ack.headers.get("CSeq"), Some("7 ACK"));
        assert_eq!(ack.headers.get("To"), Some("<sip:600@pbx>;tag=xyz"));
        let routes: Vec<_> = ack.headers.get_all("Route").collect();
        assert_eq!(routes, vec!["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(d.request(Method::Bye).headers.get("CSeq"), Some("8 BYE"));
        let mut no_contact = ok.clone();
        no_contact.headers.remove("Contact");
        assert_eq!(
            Dialog::uac(&inv, &no_contact, flow()),
            Err(DialogError::BadHeader("Contact"))
        );
    }
}
