//! Calls out and carriers, end to end over loopback: the trunk registers to a SIPp carrier
//! that challenges it; an agent on baresip dials a national number, the carrier challenges
//! the INVITE, checks the number sent and the caller ID, answers and echoes, and the agent
//! hears their own voice come back (audio both ways through the relay); the call is
//! recorded and its record names route and trunk; a number the agent may not dial is
//! refused with the reason in the log; and a carrier that authenticates its INVITEs with
//! digest (not by address) reaches the agent as that trunk.

mod common;

use std::time::Duration;

use common::phone::{classify, Phone};
use common::{Server, ServerConfig, SippRun};
use store::CallRow;

/// The agent's tone (the carrier echoes it back).
const AGENT_HZ: f64 = 440.0;

fn var<'a>(r: &'a CallRow, name: &str) -> Option<&'a str> {
    r.variables
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn an_agent_calls_out_through_a_registered_carrier_that_challenges_and_hears_the_far_end() {
    let carrier_port = common::free_port();
    let server = Server::start(&ServerConfig {
        files: vec![
            (
                "queues.toml".into(),
                "[queues.support]\nnumber = \"600\"\n".into(),
            ),
            (
                "routes.toml".into(),
                "[dialing]\nclasses = [\"local\"]\n\n\
             [dialing.users.1001]\nclasses = [\"national\"]\ncaller_id = \"+4930555101\"\n\n\
             [[route]]\nname = \"national\"\npatterns = [\"0Z.\"]\nclass = \"national\"\n\
             strip = 1\nprepend = \"+49\"\ntrunks = [\"carrier\"]\nrecord = \"always\"\n\n\
             [[route]]\nname = \"international\"\npatterns = [\"00Z.\"]\n\
             class = \"international\"\ntrunks = [\"carrier\"]\n"
                    .into(),
            ),
        ],
        extra_toml: format!(
            "[trunks.carrier]\nproxies = [\"127.0.0.1:{carrier_port}\"]\n\
             domain = \"carrier.example\"\nusername = \"acct77\"\npassword = \"s3cret\"\n\
             register = true\nexpires = 600\n\n\
             [trunks.digest]\nnumbers = [\"600\"]\n\
             inbound_username = \"carrier-in\"\ninbound_password = \"pw-in\"\n"
        ),
        ..ServerConfig::default()
    });
    let carrier = SippRun::new(&server, "carrier.xml")
        .listen_port(carrier_port)
        .calls(2)
        .timeout_s(60)
        .arg("-rtp_echo")
        .media_port()
        .spawn();
    server.wait_line(Duration::from_secs(15), |l| l.contains("trunk registered"));

    let mut agent = Phone::start(&server, 1001, AGENT_HZ);
    agent.drain();
    agent.command("dial", "0301234567");
    agent.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    agent.command("hangup", "");
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let done = carrier.wait();
    assert_eq!(
        done.successful(),
        2,
        "registered and called with the right digest, number and caller ID: {}\n{}",
        done.diagnostics(),
        server.log()
    );
    let heard = classify(&agent.last_heard(), &[AGENT_HZ, 1000.0]);
    let echo = heard.iter().filter(|w| **w == Some(AGENT_HZ)).count();
    assert!(
        echo >= 15,
        "the agent's voice came back from the far end in {echo} windows of 100 ms\n{}",
        server.log()
    );
    let rows = common::call_rows(&server, 1);
    let r = &rows[0];
    assert_eq!(
        (r.outcome.as_str(), r.source.as_str(), r.dialed.as_str()),
        ("answered", "user:1001", "0301234567")
    );
    assert_eq!(var(r, "route"), Some("national"));
    assert_eq!(var(r, "trunk"), Some("carrier"));
    assert_eq!(var(r, "sent"), Some("+49301234567"));
    assert!(r.recorded, "{r:?}");

    // International is not 1001's to dial: refused, nothing goes out, the reason is logged.
    agent.drain();
    agent.command("dial", "0044207946000");
    let closed = agent.wait_event("CALL_CLOSED", Duration::from_secs(10));
    assert!(closed.to_string().contains("403"), "{closed}");
    let refused = server.wait_line(Duration::from_secs(5), |l| {
        l.contains("outbound call refused")
    });
    assert!(
        refused.contains("class not allowed") && refused.contains("user=\"1001\""),
        "{refused}"
    );

    // A carrier that authenticates with digest, from an address no trunk lists, reaches
    // the queue as trunk "digest".
    let out = SippRun::new(&server, "caller_auth.xml")
        .calls(1)
        .timeout_s(30)
        .arg("-s")
        .arg("600")
        .arg("-au")
        .arg("carrier-in")
        .arg("-ap")
        .arg("pw-in")
        .arg("-d")
        .arg("500")
        .media_port()
        .run();
    assert_eq!(
        out.successful(),
        1,
        "{}\n{}",
        out.diagnostics(),
        server.log()
    );
    let rows = common::call_rows(&server, 2);
    assert!(
        rows.iter()
            .any(|r| r.source == "trunk:digest" && r.queue.as_deref() == Some("support")),
        "{rows:?}"
    );
}
