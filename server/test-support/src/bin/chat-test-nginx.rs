//! A test's nginx for the browser tests (which are not Rust): starts
//! [`chat_test_support::ReverseProxy`] in front of the given upstreams, prints
//! `listening on http://ADDR`, and stops it when stdin closes.
//!
//! `chat-test-nginx [--no-websocket] [--port PORT] UPSTREAM...`

use std::io::Read;

fn main() {
    let mut websocket = true;
    let mut port = None;
    let mut upstreams = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-websocket" => websocket = false,
            "--port" => port = args.next().and_then(|port| port.parse().ok()),
            addr => match addr.parse() {
                Ok(addr) => upstreams.push(addr),
                Err(_) => {
                    eprintln!("usage: chat-test-nginx [--no-websocket] [--port PORT] UPSTREAM...");
                    std::process::exit(2);
                }
            },
        }
    }
    let setup = chat_test_support::ProxySetup { websocket, port, ..Default::default() };
    let nginx = chat_test_support::ReverseProxy::nginx(&upstreams, &setup);
    println!("listening on http://{}", nginx.addr());
    // Until the test lets go of stdin (or dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(nginx);
}
