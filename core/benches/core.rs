//! Benchmarks of the data layer (parse, print, apply, match on a ~1 MB document).
//!
//! The document is built in code and is the same on every run: an object
//! `{users: {u00000: {...}, u00001: {...}, ...}}` of [`RECORDS`] user records,
//! each with literal and quoted strings, ints, floats, a bool, a nested
//! object and a small array. Every parse/print benchmark reports throughput
//! in bytes of the text form it reads or writes; apply and match report the
//! bytes of the document's wire form, so the MB/s columns compare.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-shared cargo bench -p logd-core --bench core`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use logd_core::text::parse;
use logd_core::{Node, Value, patch};

/// Number of user records; about 200 bytes of wire form each, so ~1 MB.
const RECORDS: usize = 5_000;

const CITIES: [&str; 8] = [
    "Berlin", "Lisbon", "Osaka", "Nairobi", "Quito", "Oslo", "Hanoi", "Perth",
];
const TAGS: [&str; 6] = ["admin", "beta", "ops", "billing", "eu", "legacy"];

/// A cheap deterministic mixer (splitmix64 finaliser), so no rand crate.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn float(f: f64) -> Node {
    Node::new(Value::Float(f))
}

fn record(i: usize) -> Node {
    let h = mix(i as u64);
    let city = CITIES[(h % CITIES.len() as u64) as usize];
    let ntags = 1 + (h >> 8) as usize % 3;
    let tags = (0..ntags).map(|t| Node::string(TAGS[(i + t * 5) % TAGS.len()]));
    Node::object([
        ("id", Node::int(i as i64)),
        ("name", Node::string(format!("user{i:05}"))),
        ("email", Node::string(format!("user{i:05}@example.org"))),
        ("age", Node::int(18 + (h >> 16) as i64 % 60)),
        ("score", float(((h >> 24) % 100_000) as f64 / 100.0 + 0.25)),
        ("active", Node::new(Value::Bool(h & 1 == 0))),
        (
            "address",
            Node::object([
                (
                    "street",
                    Node::string(format!("{} Elm St, apt {}", (h >> 32) % 999, i % 40)),
                ),
                ("city", Node::string(city)),
                ("zip", Node::string(format!("{:05}", (h >> 40) % 100_000))),
                ("lat", float(((h >> 20) % 18_000) as f64 / 100.0 - 90.0)),
            ]),
        ),
        ("tags", Node::array(tags)),
        (
            "note",
            Node::string("likes \"quotes\", commas: and #hashes"),
        ),
    ])
}

fn document() -> Node {
    let users = (0..RECORDS).map(|i| (format!("u{i:05}"), record(i)));
    Node::object([(
        "users",
        Node::object(users.map(|(k, v)| (logd_core::Key::Field(k), v))),
    )])
}

fn parsed(text: &str) -> Node {
    match parse(text) {
        Ok(n) => n,
        Err(e) => panic!("bench input does not parse: {e}"),
    }
}

fn quick(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group("core");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

fn benches(c: &mut Criterion) {
    let doc = document();
    let wire = doc.to_string();
    let json_value = match doc.to_json() {
        Ok(v) => v,
        Err(e) => panic!("bench document has no JSON form: {e}"),
    };
    let json = json_value.to_string();
    let block = doc.to_block_string();
    // The three forms must read back to the document, or the numbers lie
    // (`assert!`, not `assert_eq!`: a 1 MB `Debug` dump helps nobody).
    // serde_json's map sorts keys, so the JSON form reads back to the same
    // document with its keys in sorted order.
    assert!(parsed(&wire) == doc, "wire form round-trips");
    assert!(
        parsed(&json) == Node::from(json_value),
        "JSON form round-trips"
    );
    assert!(parsed(&block) == doc, "block form round-trips");
    let wire_len = wire.len() as u64;
    eprintln!(
        "document: {RECORDS} records; wire {} B, JSON {} B, block {} B",
        wire.len(),
        json.len(),
        block.len()
    );

    let mut g = quick(c);

    g.throughput(Throughput::Bytes(wire_len));
    g.bench_function("parse/wire", |b| b.iter(|| parse(black_box(&wire))));
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("parse/json", |b| b.iter(|| parse(black_box(&json))));
    g.throughput(Throughput::Bytes(block.len() as u64));
    g.bench_function("parse/block", |b| b.iter(|| parse(black_box(&block))));

    g.throughput(Throughput::Bytes(wire_len));
    g.bench_function("print/wire to_string", |b| {
        b.iter(|| black_box(&doc).to_string())
    });
    let mut buf = String::with_capacity(wire.len());
    g.bench_function("print/wire write_wire reused buf", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&doc).write_wire(&mut buf);
            buf.len()
        })
    });
    g.throughput(Throughput::Bytes(block.len() as u64));
    g.bench_function("print/block", |b| {
        b.iter(|| black_box(&doc).to_block_string())
    });

    // Apply and match: throughput is the document's wire size.
    g.throughput(Throughput::Bytes(wire_len));

    // Baseline for the two below: one deep clone of the document (what
    // `apply` pays up front, and what (a) keeps out of its timing).
    g.bench_function("clone (baseline)", |b| b.iter(|| black_box(&doc).clone()));

    // (a) A small patch touching one record, on an owned document (the
    // clone is made outside the timed part).
    let one = parsed(r#"{users: {u01234: {age: 41, address: {city: "Lisbon"}}}}"#);
    let patched = patch::apply(Some(&doc), &one).ok().flatten();
    assert_eq!(
        patched
            .as_ref()
            .and_then(|d| d.field("users"))
            .and_then(|u| u.field("u01234"))
            .and_then(|r| r.field("address"))
            .and_then(|a| a.field("city")),
        Some(&Node::string("Lisbon")),
        "the one-record patch lands"
    );
    g.bench_function("apply_owned/one record", |b| {
        b.iter_batched(
            || doc.clone(),
            |d| patch::apply_owned(Some(d), black_box(&one)),
            BatchSize::LargeInput,
        )
    });

    // (b) A patch touching every record (`apply` clones once inside).
    let all = parsed("{users: !all {active: true, address: {country: XX}}}");
    let applied = match patch::apply(Some(&doc), &all) {
        Ok(Some(d)) => d,
        other => panic!("!all patch failed: {other:?}"),
    };
    assert_eq!(
        applied
            .field("users")
            .and_then(|u| u.field("u04999"))
            .and_then(|r| r.field("active")),
        Some(&Node::new(Value::Bool(true))),
        "the !all patch lands"
    );
    g.bench_function("apply/!all every record", |b| {
        b.iter(|| patch::apply(Some(black_box(&doc)), black_box(&all)))
    });

    // (c) A pattern that walks the whole document and matches nothing.
    let pat = parsed(r#"{users: !subtree {city: !glob "Z*", zip: !glob "9?9*"}}"#);
    assert_eq!(
        patch::matches(Some(&doc), &pat),
        Ok(false),
        "nothing matches"
    );
    let hit = parsed(r#"!subtree {email: !glob "user04999@*"}"#);
    assert_eq!(patch::matches(Some(&doc), &hit), Ok(true), "a glob hit");
    g.bench_function("matches/!subtree !glob whole doc", |b| {
        b.iter(|| patch::matches(Some(black_box(&doc)), black_box(&pat)))
    });

    g.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
