//! One hand-written history per anomaly, each the smallest that shows it, and clean
//! histories that must pass. Keys are partitions; values are unique per key.

use serde_json::{json, Value};
use strand_jepsen::check::{check, Options, Report};
use strand_jepsen::history::Op;

/// Builds a history from (process, type, f, value) rows, one per completion; times are
/// one second apart.
fn history(rows: &[(Value, &str, &str, Value)]) -> Vec<Op> {
    rows.iter()
        .enumerate()
        .map(|(i, (process, kind, f, value))| {
            serde_json::from_value(json!({
                "index": i, "time": i as u64 * 1_000_000_000, "process": process,
                "type": kind, "f": f, "value": value,
            }))
            .unwrap()
        })
        .collect()
}

fn send(key: u64, offset: i64, value: i64) -> Value {
    json!([["send", key, [offset, value]]])
}

fn poll(key: u64, reads: &[(i64, i64)]) -> Value {
    let pairs: Vec<Value> = reads.iter().map(|(o, v)| json!([o, v])).collect();
    json!([["poll", [[key, pairs]]]])
}

fn run(rows: &[(Value, &str, &str, Value)]) -> Report {
    check(&history(rows), Options::default()).unwrap()
}

fn only_bad(report: &Report, name: &str) {
    assert_eq!(report.bad, [name], "{report:#?}");
    assert!(!report.valid);
}

#[test]
fn a_clean_history_is_valid() {
    let r = run(&[
        (json!(0), "ok", "send", send(1, 0, 10)),
        (json!(0), "ok", "send", send(1, 1, 11)),
        (json!(1), "ok", "poll", poll(1, &[(0, 10), (1, 11)])),
        (json!(0), "fail", "send", json!([["send", 1, 12]])),
        (json!(1), "ok", "poll", poll(1, &[])),
    ]);
    assert!(r.valid, "{r:#?}");
    assert_eq!(r.acknowledged_sends, 2);
    assert!(r.anomalies.is_empty());
}

#[test]
fn lost_write_a_later_value_read_an_earlier_acknowledged_one_not() {
    let r = run(&[
        (json!(0), "ok", "send", send(1, 0, 10)),
        (json!(0), "ok", "send", send(1, 1, 11)),
        (json!(0), "ok", "send", send(1, 2, 12)),
        (json!(1), "ok", "poll", poll(1, &[(0, 10)])),
        (json!(2), "ok", "poll", poll(1, &[(2, 12)])),
    ]);
    // Offset 1 held 11, acknowledged, below what was read, never read: lost.
    assert_eq!(r.anomalies["lost-write"].count, 1);
    assert_eq!(r.anomalies["lost-write"].examples[0]["value"], 11);
    assert!(r.bad.contains(&"lost-write".to_string()));
}

#[test]
fn lost_write_counts_an_info_send_that_someone_read_as_committed() {
    let r = run(&[
        (
            json!(0),
            "info",
            "txn",
            json!([["send", 1, [0, 10]], ["send", 1, [1, 11]]]),
        ),
        (json!(0), "ok", "send", send(1, 2, 12)),
        (json!(1), "ok", "poll", poll(1, &[(0, 10), (2, 12)])),
    ]);
    // 10 was read, so the info txn committed, so 11 must be visible too.
    assert_eq!(r.anomalies["lost-write"].examples[0]["value"], 11);
}

#[test]
fn an_info_send_nobody_read_is_not_lost() {
    let r = run(&[
        (json!(0), "info", "send", send(1, 0, 10)),
        (json!(0), "ok", "send", send(1, 1, 11)),
        (json!(1), "ok", "poll", poll(1, &[(1, 11)])),
    ]);
    assert!(r.valid, "{r:#?}");
}

#[test]
fn duplicate_one_value_at_two_offsets() {
    let r = run(&[
        (json!(0), "ok", "send", send(1, 0, 10)),
        (json!(1), "ok", "poll", poll(1, &[(0, 10), (1, 10)])),
    ]);
    assert_eq!(r.anomalies["duplicate"].count, 1);
    assert!(r.bad.contains(&"duplicate".to_string()));
}

#[test]
fn inconsistent_offsets_two_values_at_one_offset() {
    let r = run(&[
        (json!(0), "ok", "send", send(1, 0, 10)),
        (json!(0), "ok", "send", send(1, 0, 11)),
        (json!(1), "ok", "poll", poll(1, &[(0, 10)])),
    ]);
    assert_eq!(r.anomalies["inconsistent-offsets"].count, 1);
    assert!(r.bad.contains(&"inconsistent-offsets".to_string()));
}

#[test]
fn unseen_an_acknowledged_send_no_poll_read() {
    let r = run(&[
        (json!(0), "ok", "send", send(1, 0, 10)),
        (json!(0), "ok", "send", send(1, 1, 11)),
        (json!(1), "ok", "poll", poll(1, &[(0, 10)])),
    ]);
    only_bad(&r, "unseen");
    assert_eq!(r.anomalies["unseen"].examples[0]["value"], 11);
}

#[test]
fn final_read_gap_a_record_the_final_reads_miss_between_start_and_end() {
    let rows = |final_reads: &[(i64, i64)]| {
        vec![
            (json!(0), "ok", "send", send(1, 0, 10)),
            (json!(0), "ok", "send", send(1, 1, 11)),
            (json!(0), "ok", "send", send(1, 2, 12)),
            (
                json!(1),
                "ok",
                "poll",
                poll(1, &[(0, 10), (1, 11), (2, 12)]),
            ),
            // Offset 0 was deleted: the log starts at 1.
            (json!(9), "ok", "ends", json!([["ends", [[1, 1, 3]]]])),
            (json!(9), "ok", "poll", poll(1, final_reads)),
        ]
    };
    assert!(run(&rows(&[(1, 11), (2, 12)])).valid);
    let r = run(&rows(&[(2, 12)]));
    only_bad(&r, "final-read-gap");
    assert_eq!(r.anomalies["final-read-gap"].examples[0]["offset"], 1);
}

#[test]
fn unserved_partition_an_acknowledged_send_to_a_partition_the_final_reads_cannot_find() {
    let r = run(&[
        (json!(0), "ok", "send", send(1, 0, 10)),
        (json!(0), "ok", "send", send(2, 0, 20)),
        (json!(1), "ok", "poll", poll(1, &[(0, 10)])),
        (json!(1), "ok", "poll", poll(2, &[(0, 20)])),
        // Partition 2 was read during the run, then lost with the topic.
        (json!(9), "ok", "ends", json!([["ends", [[1, 0, 1]]]])),
        (json!(9), "ok", "poll", poll(1, &[(0, 10)])),
    ]);
    only_bad(&r, "unserved-partition");
    assert_eq!(r.anomalies["unserved-partition"].examples[0]["key"], 2);
}

#[test]
fn g1a_reading_what_a_failed_send_wrote() {
    let r = run(&[
        (json!(0), "fail", "send", send(1, 0, 10)),
        (json!(1), "ok", "poll", poll(1, &[(0, 10)])),
    ]);
    only_bad(&r, "G1a");
}

type Row = (Value, &'static str, &'static str, Value);

/// Key 1 holds 10, 11 and 12 at offsets 0..=2, and process 2 has read them all.
fn three_values_read_by_process_2() -> Vec<Row> {
    vec![
        (json!(0), "ok", "send", send(1, 0, 10)),
        (json!(0), "ok", "send", send(1, 1, 11)),
        (json!(0), "ok", "send", send(1, 2, 12)),
        (
            json!(2),
            "ok",
            "poll",
            poll(1, &[(0, 10), (1, 11), (2, 12)]),
        ),
    ]
}

#[test]
fn int_poll_skip_and_int_nonmonotonic_poll_inside_one_poll() {
    let sends = three_values_read_by_process_2();
    let mut skip = sends.clone();
    skip.push((json!(1), "ok", "poll", poll(1, &[(0, 10), (2, 12)])));
    only_bad(&run(&skip), "int-poll-skip");

    let mut back = sends.clone();
    back.push((json!(1), "ok", "poll", poll(1, &[(1, 11), (0, 10)])));
    only_bad(&run(&back), "int-nonmonotonic-poll");
}

#[test]
fn a_rebalance_during_the_poll_excuses_its_jumps() {
    let mut ops = history(&[
        (json!(0), "ok", "send", send(1, 0, 10)),
        (json!(0), "ok", "send", send(1, 1, 11)),
        (json!(2), "ok", "poll", poll(1, &[(0, 10), (1, 11)])),
        (json!(1), "ok", "poll", poll(1, &[(1, 11), (0, 10)])),
    ]);
    ops[3].rebalance_log = vec![1];
    assert!(check(&ops, Options::default()).unwrap().valid);
}

#[test]
fn poll_skip_and_nonmonotonic_poll_across_polls_of_one_process() {
    let mut sends = three_values_read_by_process_2();
    sends.push((json!(1), "ok", "poll", poll(1, &[(0, 10)])));
    let mut skip = sends.clone();
    skip.push((json!(1), "ok", "poll", poll(1, &[(2, 12)])));
    only_bad(&run(&skip), "poll-skip");

    let mut again = sends.clone();
    again.push((json!(1), "ok", "poll", poll(1, &[(0, 10)])));
    only_bad(&run(&again), "nonmonotonic-poll");

    // Under subscribe a rebalance may move the position: reported, not bad.
    let r = check(&history(&skip), Options { subscribe: true }).unwrap();
    assert!(r.valid && r.anomalies.contains_key("poll-skip"), "{r:#?}");

    // A process that logged a subscribe is a group member: its skip is reported under
    // its own name and allowed, while the same skip by an assigning process is not.
    let mut member = sends.clone();
    member.insert(0, (json!(1), "ok", "subscribe", json!([1])));
    member.push((json!(1), "ok", "poll", poll(1, &[(2, 12)])));
    let r = run(&member);
    assert!(
        r.valid && r.anomalies.contains_key("subscribe-poll-skip"),
        "{r:#?}"
    );
    member.push((json!(2), "ok", "poll", poll(1, &[(0, 10)])));
    only_bad(&run(&member), "nonmonotonic-poll");

    // An assign that drops the key resets what the process is expected to read next.
    let mut reassigned = sends.clone();
    reassigned.push((json!(1), "ok", "assign", json!([2])));
    reassigned.push((json!(1), "ok", "poll", poll(1, &[(2, 12)])));
    assert!(run(&reassigned).valid);
}

#[test]
fn int_nonmonotonic_send_inside_one_txn() {
    let r = run(&[
        (
            json!(0),
            "ok",
            "txn",
            json!([["send", 1, [1, 11]], ["send", 1, [0, 10]]]),
        ),
        (json!(1), "ok", "poll", poll(1, &[(0, 10), (1, 11)])),
    ]);
    only_bad(&r, "int-nonmonotonic-send");
}

#[test]
fn nonmonotonic_send_across_sends_of_one_process() {
    let r = run(&[
        (json!(0), "ok", "send", send(1, 1, 11)),
        (json!(0), "ok", "send", send(1, 0, 10)),
        (json!(1), "ok", "poll", poll(1, &[(0, 10), (1, 11)])),
    ]);
    only_bad(&r, "nonmonotonic-send");
}

#[test]
fn fault_windows_count_what_succeeded_inside_them_and_the_recovery() {
    let r = run(&[
        (json!(0), "ok", "send", send(1, 0, 10)),
        (
            json!("nemesis"),
            "info",
            "start-kill",
            json!({"targets": ["n1"]}),
        ),
        (json!(0), "ok", "send", send(1, 1, 11)),
        (json!("nemesis"), "info", "stop-kill", json!({})),
        (json!(1), "ok", "poll", poll(1, &[(0, 10), (1, 11)])),
        (json!(0), "ok", "send", send(1, 2, 12)),
        (json!(1), "ok", "poll", poll(1, &[(2, 12)])),
    ]);
    assert!(r.valid, "{r:#?}");
    assert_eq!(r.faults, 1);
    let window = &r.liveness.windows[0];
    assert_eq!(window.kind, "kill");
    assert_eq!((window.stop - window.start, window.ok_ops), (2.0, 1));
    assert!(window.majority_healthy);
    assert_eq!(window.recovery_seconds, Some(2.0));
    assert_eq!(r.liveness.recovery_seconds, Some(2.0));
    assert_eq!(r.liveness.by_kind["kill"].count, 1);
    // Outside the window: 4 acknowledged operations in 4 of the 6 seconds; inside, 1 in 2.
    assert_eq!(r.liveness.ok_per_second_outside_faults, 1.0);
    assert_eq!(r.liveness.by_kind["kill"].median_rate_kept, 0.5);
}

#[test]
fn a_killed_majority_is_a_window_the_cluster_may_stop_in() {
    for (fault, why) in [
        ("pause", "majority"),
        ("lose-unsynced", "all"),
        ("kill", "all"),
    ] {
        let r = run(&[
            (json!(0), "ok", "send", send(1, 0, 10)),
            (
                json!("nemesis"),
                "info",
                &format!("start-{fault}"),
                json!({"targets": [1, 2], "why": why}),
            ),
            (
                json!("nemesis"),
                "info",
                &format!("stop-{fault}"),
                json!({}),
            ),
            (json!(0), "ok", "send", send(1, 1, 11)),
            (json!(1), "ok", "poll", poll(1, &[(0, 10), (1, 11)])),
        ]);
        let window = &r.liveness.windows[0];
        assert_eq!(window.kind, format!("{fault}-{why}"));
        assert_eq!(window.ok_ops, 0);
        assert!(!window.majority_healthy, "{fault}-{why}");
        assert_eq!(window.recovery_seconds, Some(1.0));
    }
}

#[test]
fn a_fault_the_nemesis_could_not_carry_out_is_reported_beside_a_valid_history() {
    let r = run(&[
        (json!(0), "ok", "send", send(1, 0, 10)),
        (
            json!("nemesis"),
            "info",
            "start-membership",
            json!({"targets": [2], "why": "one"}),
        ),
        (
            json!("nemesis"),
            "info",
            "error",
            json!({"error": "membership failed: node 4 did not start serving"}),
        ),
        (json!("nemesis"), "info", "stop-membership", json!({})),
        (json!(1), "ok", "poll", poll(1, &[(0, 10)])),
    ]);
    assert!(r.valid, "{r:#?}");
    assert_eq!(r.faults, 1);
    assert_eq!(
        r.nemesis_errors,
        ["membership failed: node 4 did not start serving"]
    );
}

#[test]
fn an_invalid_run_is_explained_with_the_client_notices_just_before_it() {
    let mut rows = three_values_read_by_process_2();
    rows.push((json!(1), "ok", "poll", poll(1, &[(1, 11), (0, 10)])));
    let mut ops = history(&rows);
    // Late enough in the run for a notice older than the look-back.
    for op in &mut ops {
        op.time += 20_000_000_000;
    }
    let report = check(&ops, Options::default()).unwrap();
    let at = ops.last().unwrap().time;
    let clients_log = format!(
        "{} 1 Debug SEEK Seek before the look-back\n{} 1 Debug SEEK Seek to offset 0\n\
         {} 2 Warning another process\n{} 1 Warning after the poll\n",
        at - 11_000_000_000,
        at - 1,
        at - 1,
        at + 1
    );
    let text = strand_jepsen::report::explain(&ops, &report, &clients_log);
    assert!(text.contains("int-nonmonotonic-poll: 1 in all"), "{text}");
    assert!(text.contains("key 1 read [[1,11],[0,10]]"), "{text}");
    assert!(text.contains("Seek to offset 0"), "{text}");
    for absent in ["before the look-back", "another process", "after the poll"] {
        assert!(!text.contains(absent), "{absent} in {text}");
    }
}

#[test]
fn node_notices_quote_the_position_answers_for_one_partition_without_colours() {
    let line = |partition: u32, message: &str| {
        format!(
            "\u{1b}[2m2026-11-23T16:12:52Z\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m {message} \
             \u{1b}[3mpartition\u{1b}[0m\u{1b}[2m=\u{1b}[0m{partition} \u{1b}[3mend\u{1b}[0m=7"
        )
    };
    let text = [
        line(1, "offset for leader epoch"),
        line(13, "offset for leader epoch"),
        line(1, "fetch offset out of range"),
        line(1, "something else"),
    ]
    .join("\n");
    // The run started 2.5 s before the lines (1795450372 s is 2026-11-23T16:12:52Z).
    let started = Some(1_795_450_369.5);
    let notices = strand_jepsen::report::node_notices(&[("n2".to_string(), text)], 1, started);
    assert_eq!(
        notices,
        "    n2 2.500 s 2026-11-23T16:12:52Z DEBUG offset for leader epoch partition=1 end=7\n    \
         n2 2.500 s 2026-11-23T16:12:52Z DEBUG fetch offset out of range partition=1 end=7\n"
    );
}

#[test]
fn on_a_compacted_topic_a_record_may_vanish_only_behind_a_later_one_of_its_register() {
    // Two registers: the odd values 11 and 13 share one; the even values 10 and 12 have
    // keys of their own. The cleaner may remove 11 (13 follows it), nothing else.
    let rows = |final_reads: &[(i64, i64)], skipping: &[(i64, i64)]| {
        vec![
            (json!(8), "ok", "registers", json!(2)),
            (json!(0), "ok", "send", send(1, 0, 10)),
            (json!(0), "ok", "send", send(1, 1, 11)),
            (json!(0), "ok", "send", send(1, 2, 12)),
            (json!(0), "ok", "send", send(1, 3, 13)),
            (json!(1), "ok", "poll", poll(1, &[(0, 10)])),
            (json!(1), "ok", "poll", poll(1, skipping)),
            (json!(9), "ok", "ends", json!([["ends", [[1, 0, 4]]]])),
            (json!(9), "ok", "poll", poll(1, final_reads)),
        ]
    };
    let all = [(0, 10), (2, 12), (3, 13)];
    let r = run(&rows(&all, &[(2, 12), (3, 13)]));
    assert!(r.valid && r.anomalies.is_empty(), "{r:#?}");
    // The last record of a register is lost: the final reads miss it, and nobody read it.
    let r = run(&rows(&[(0, 10), (2, 12)], &[(2, 12)]));
    assert_eq!(r.bad, ["final-read-gap", "unseen"], "{r:#?}");
    // A record with a key of its own must stay, however late it is read.
    let r = run(&rows(&[(2, 12), (3, 13)], &[(2, 12), (3, 13)]));
    only_bad(&r, "final-read-gap");
    // A reader stepping over a record no later one supersedes skipped it.
    let r = run(&rows(&all, &[(3, 13)]));
    only_bad(&r, "poll-skip");
    // Without the registers operation the topic is not compacted: nothing may vanish.
    let mut plain = rows(&all, &[(2, 12), (3, 13)]);
    plain.remove(0);
    let r = run(&plain);
    assert_eq!(
        r.bad,
        [
            "final-read-gap",
            "int-poll-skip",
            "lost-write",
            "poll-skip",
            "unseen"
        ],
        "{r:#?}"
    );
}
