//! `chat bench` against the real server: it runs, and its arithmetic holds.
//! (Timings are never asserted; the targets are checked by running it.)

use std::process::Command;

use chat_test_support::*;
use serde_json::Value;

/// Benchmarks run one at a time: each loads the machine on purpose, and
/// some check what only happens at full speed (slow consumers filling
/// their queue), which another run beside them could keep from happening.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A server that lets the bench go fast.
fn server() -> (Proc, String) {
    server_with(&[
        "--messages-per-sec",
        "10000",
        "--messages-burst",
        "10000",
        // Quiet connections are pinged every 100 ms: the bench must
        // answer, or they are closed as dead.
        "--ping-interval",
        "100ms",
        "--frames-per-sec",
        "100000",
        "--frames-burst",
        "100000",
    ])
}

fn bench(url: &str, args: &[&str]) -> Value {
    let output = Command::new(bin("chat"))
        .args(["bench", "--server", url, "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn fan_out_over_two_rooms_adds_up() {
    let _turn = one_at_a_time();
    let (server, url) = server();
    let pid = server.child.id().to_string();
    let report = bench(
        &url,
        &[
            "--connections",
            "10",
            "--rooms",
            "2",
            "--senders",
            "2",
            "--rate",
            "40",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
            "--server-pid",
            &pid,
        ],
    );
    let n = |key: &str| report[key].as_u64().unwrap();
    assert_eq!(n("connections"), 10);
    assert!(n("sent") > 0, "{report}");
    // Each room has 5 members, the sender included: every message owes 5.
    assert_eq!(n("expected"), n("sent") * 5, "{report}");
    assert_eq!(n("received"), n("expected"), "nothing lost: {report}");
    assert_eq!(n("lost"), 0);
    assert_eq!(n("errors"), 0);
    let latency = &report["latency_ms"];
    assert_eq!(latency["samples"].as_u64(), Some(n("received")));
    let q = |key: &str| latency[key].as_f64().unwrap();
    assert!(0.0 < q("p50") && q("p50") <= q("p99") && q("p99") <= q("max"), "{report}");
    let delivered = report["deliveries_per_sec"].as_f64().unwrap();
    assert!((delivered - n("received") as f64 / 0.5).abs() < 1e-6, "{report}");
    assert!(report["server"]["rss_bytes"].as_u64().is_some_and(|rss| rss > 0), "{report}");
    assert!(report["server"]["cpu_seconds"].as_f64().is_some_and(|cpu| cpu >= 0.0), "{report}");
    assert!(report["bench_cpu_percent"].as_f64().is_some(), "{report}");
}

#[test]
fn idle_connections_send_nothing_and_are_held_for_the_duration() {
    let _turn = one_at_a_time();
    let (_server, url) = server();
    let started = std::time::Instant::now();
    let report = bench(
        &url,
        &["--connections", "30", "--senders", "0", "--duration", "1.5", "--warmup", "0"],
    );
    // A lower bound, not a timing target: an idle-memory run must keep its
    // connections open for as long as it was asked to.
    assert!(started.elapsed().as_secs_f64() >= 1.5, "{report}");
    assert_eq!(report["closed_by_server"], 0, "the bench answers pings: {report}");
    assert_eq!(report["connections"], 30);
    assert_eq!(report["sent"], 0);
    assert_eq!(report["expected"], 0);
    assert_eq!(report["received"], 0);
}

#[test]
fn over_the_http_fallback_fan_out_adds_up_and_idle_streams_answer_pings() {
    let _turn = one_at_a_time();
    let (_server, url) = server();
    let report = bench(
        &url,
        &[
            "--transport",
            "http",
            "--connections",
            "8",
            "--rooms",
            "2",
            "--senders",
            "2",
            "--rate",
            "20",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ],
    );
    let n = |key: &str| report[key].as_u64().unwrap();
    assert!(n("sent") > 0, "{report}");
    assert_eq!(n("expected"), n("sent") * 4, "{report}");
    assert_eq!(n("received"), n("expected"), "nothing lost: {report}");
    assert_eq!((n("errors"), n("closed_by_server")), (0, 0), "pings answered by posts: {report}");
}

#[test]
fn bad_arguments_are_refused() {
    let output = Command::new(bin("chat"))
        .args(["bench", "--server", "ws://127.0.0.1:9/ws", "--connections", "2", "--senders", "3"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no more senders than connections"));
}

#[test]
fn slow_consumers_are_cut_off_and_the_others_lose_nothing() {
    let _turn = one_at_a_time();
    let (_server, url) = server();
    // 8 KB messages, fast: far more than socket buffers and the 8 MiB
    // queue hold for the two connections that never read (64 MB in 4 s,
    // so a loaded machine still sends enough).
    let report = bench(
        &url,
        &[
            "--connections",
            "6",
            "--slow",
            "2",
            "--senders",
            "1",
            "--rate",
            "2000",
            "--size",
            "8000",
            "--duration",
            "4",
            "--warmup",
            "0.1",
        ],
    );
    let n = |key: &str| report[key].as_u64().unwrap();
    assert_eq!(n("slow"), 2);
    assert_eq!(n("slow_cut_off"), 2, "{report}");
    // The four readers (the sender included) owe and get every message
    // (but those a loaded server refused for now, which a real client
    // sends again).
    assert_eq!(n("expected"), (n("sent") - n("refused")) * 4, "{report}");
    assert_eq!(n("received"), n("expected"), "{report}");
    assert!(n("refused") < n("sent"), "{report}");
}

#[test]
fn a_join_storm_into_one_room_costs_each_member_a_frame_an_interval() {
    let _turn = one_at_a_time();
    // (Pings at their usual interval: until all are connected, those
    // connected first read nothing, so they could not answer fast ones.)
    let (_server, url) = server_with(&[
        "--member-page-max",
        "20",
        "--presence-interval",
        "200ms",
        "--max-connections-per-ip",
        "1000",
    ]);
    let started = std::time::Instant::now();
    let report = bench(
        &url,
        &[
            "--join-storm",
            "--connections",
            "300",
            "--rooms",
            "1",
            "--senders",
            "0",
            "--duration",
            "0.5",
            "--warmup",
            "0",
        ],
    );
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(report["join_storm"], true, "{report}");
    assert!(report["joins_per_sec"].as_f64().is_some_and(|rate| rate > 0.0), "{report}");
    // One presence frame per join to every member would be 150 per join
    // on average; batches make it one per member per interval.
    let frames = report["presence_frames"].as_u64().unwrap();
    let intervals = (elapsed / 0.2).ceil() as u64 + 1;
    assert!(frames > 0, "{report}");
    assert!(frames <= 300 * intervals, "{frames} frames in {intervals} intervals: {report}");
    let per_join = report["presence_frames_per_join"].as_f64().unwrap();
    assert!((per_join - frames as f64 / 300.0).abs() < 1e-9, "{report}");
}

#[test]
fn messages_an_overloaded_server_refuses_are_counted_and_owe_nothing() {
    let _turn = one_at_a_time();
    // Messages that wait over a millisecond are refused: under this load,
    // some always do.
    let (_server, url) = server_with(&[
        "--messages-per-sec",
        "100000",
        "--messages-burst",
        "100000",
        "--frames-per-sec",
        "100000",
        "--frames-burst",
        "100000",
        "--ping-interval",
        "100ms",
        "--max-input-wait",
        "1ms",
    ]);
    let report = bench(
        &url,
        &[
            "--connections",
            "60",
            "--senders",
            "4",
            "--rate",
            "1000",
            "--duration",
            "1",
            "--warmup",
            "0.1",
        ],
    );
    let n = |key: &str| report[key].as_u64().unwrap();
    assert!(n("refused") > 0, "{report}");
    assert!(n("refused") < n("sent"), "{report}");
    // The others are delivered to all 60, and only they are owed.
    assert_eq!(n("expected"), (n("sent") - n("refused")) * 60, "{report}");
    assert_eq!(n("received"), n("expected"), "{report}");
    assert_eq!(n("errors"), 0, "a refusal for now is not an error: {report}");
    assert_eq!(n("closed_by_server"), 0, "{report}");
}

/// Two nodes of a cluster on `redis` that let the bench go fast.
fn two_nodes(redis: &Redis) -> Vec<(Proc, String)> {
    let url = redis.url();
    ["a", "b"]
        .iter()
        .map(|name| {
            server_with(&[
                "--redis",
                &url,
                "--node-id",
                name,
                "--messages-per-sec",
                "10000",
                "--messages-burst",
                "10000",
                "--frames-per-sec",
                "100000",
                "--frames-burst",
                "100000",
            ])
        })
        .collect()
}

#[test]
fn spread_over_two_nodes_of_a_cluster_every_message_reaches_every_member() {
    let _turn = one_at_a_time();
    let redis = Redis::start();
    let nodes = two_nodes(&redis);
    let pids: Vec<String> = nodes.iter().map(|(node, _)| node.child.id().to_string()).collect();
    let report = bench(
        &nodes[0].1,
        &[
            "--also",
            &nodes[1].1,
            "--connections",
            "10",
            "--senders",
            "2",
            "--rate",
            "40",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
            "--server-pid",
            &pids[0],
            "--server-pid",
            &pids[1],
        ],
    );
    let n = |key: &str| report[key].as_u64().unwrap();
    assert!(n("sent") > 0, "{report}");
    // One room of 10, five members on each node: every message owes 10.
    assert_eq!(n("expected"), n("sent") * 10, "{report}");
    assert_eq!(n("received"), n("expected"), "nothing lost across nodes: {report}");
    assert_eq!(n("errors"), 0);
    // Both nodes' memory, added up.
    let rss: Vec<u64> = pids
        .iter()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
            kb.split_whitespace().next().unwrap().parse::<u64>().unwrap() * 1024
        })
        .collect();
    let (largest, sum) = (*rss.iter().max().unwrap(), rss.iter().sum::<u64>());
    let reported = report["server"]["rss_bytes"].as_u64().unwrap();
    assert!(
        reported * 2 > largest * 3 && reported < sum * 2,
        "{reported} against {rss:?}: {report}"
    );
}

#[test]
fn redis_killed_and_restarted_under_load_loses_no_acknowledged_message() {
    let _turn = one_at_a_time();
    let mut redis = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let nodes = two_nodes(&redis);
    let chat = Command::new(bin("chat"))
        .args(["bench", "--server", &nodes[0].1, "--also", &nodes[1].1, "--json"])
        .args(["--connections", "40", "--senders", "8", "--rooms", "2", "--rate", "50"])
        .args(["--duration", "2.5", "--warmup", "0.2", "--drain", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the rooms have messages (under load, then), Redis dies with no
    // warning and comes back with what its append-only file holds.
    until_appended(&redis, &["bench-0", "bench-1"], 40);
    redis.restart();
    let output = chat.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let n = |key: &str| report[key].as_u64().unwrap();
    assert!(n("sent") > 0, "{report}");
    assert_eq!(n("errors"), 0, "{report}");
    assert_eq!(n("lost"), 0, "every message the nodes took reached every member: {report}");
    // A message refused while Redis was away owes nothing; one whose append
    // Redis kept but never answered is delivered all the same (at most a
    // room's worth each).
    assert!(n("received") <= n("expected") + n("refused") * 20, "{report}");
}

/// Waits until `rooms`' logs in `redis` hold `count` messages between them.
fn until_appended(redis: &Redis, rooms: &[&str], count: u64) {
    let port = redis.url().trim_end_matches('/').rsplit(':').next().unwrap().to_owned();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let held: u64 = rooms
            .iter()
            .map(|room| {
                let key = format!("chat:{{{room}}}:log");
                let out = Command::new("redis-cli").args(["-p", &port, "XLEN", &key]).output();
                let out = out.unwrap();
                String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().unwrap_or(0)
            })
            .sum();
        if held >= count {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{held} messages appended in time");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
