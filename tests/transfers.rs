//! Transfers over the wire: an agent's SIPp phone answers a caller and transfers them blind
//! with REFER to another queue, whose agent (baresip) answers; the caller (baresip) and the
//! new agent hear each other, checked on the audio each phone decoded.

mod common;

use std::time::Duration;

use common::phone::{self, classify, Phone};
use common::{Server, ServerConfig};

const CALLER_HZ: f64 = 1200.0;
const SALES_HZ: f64 = 440.0;

#[test]
fn a_blind_transfer_to_another_queue_connects_the_caller_to_its_agent_both_ways() {
    let server = Server::start(&ServerConfig {
        files: vec![
            (
                "queues.toml".into(),
                "[queues.support]\nnumber = \"600\"\n\n[queues.sales]\nnumber = \"601\"\n".into(),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nqueues = [\"support\"]\nlogin_on_start = true\n\n\
                 [agents.1002]\nuser = \"1002\"\nqueues = [\"sales\"]\nlogin_on_start = true\n"
                    .into(),
            ),
        ],
        ..ServerConfig::default()
    });
    // Sales' agent, then support's agent (a SIPp phone that transfers to 601 after 1 s).
    let mut sales = Phone::start(&server, 1002, SALES_HZ);
    let support = common::agent_phones(
        &server,
        1001..=1001,
        "agent_refer.xml",
        1,
        &["-key", "target", "601"],
    );
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    caller.drain();
    sales.drain();
    caller.command("dial", "600");
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    // The transfer: sales rings.
    sales.wait_event("CALL_INCOMING", Duration::from_secs(10));
    sales.command("accept", "");
    sales.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(2500));
    phone::hang_up(&mut caller, &mut sales);
    let done = support.wait();
    assert_eq!(
        done.successful(),
        1,
        "the support agent transferred and was let go: {}\n{}",
        done.diagnostics(),
        server.log()
    );
    let tones = [CALLER_HZ, SALES_HZ];
    let heard = classify(&caller.last_heard(), &tones);
    let from_sales = heard.iter().filter(|w| **w == Some(SALES_HZ)).count();
    let heard = classify(&sales.last_heard(), &tones);
    let from_caller = heard.iter().filter(|w| **w == Some(CALLER_HZ)).count();
    assert!(
        from_sales >= 15 && from_caller >= 15,
        "after the transfer the caller heard sales in {from_sales} windows of 100 ms and sales \
         heard the caller in {from_caller}\n{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("blind transfer"), "{log}");
}
