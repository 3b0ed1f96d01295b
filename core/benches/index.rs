//! Benchmarks of the path index and planned reads, in the shape of `docs/DESIGN.md` §7:
//! 5,000 W1 commits (`users.u{i % 500}` = `{name, n, tags}`), then a leaf
//! read (W5 shape: plan + fold of the records, from memory) and a root read
//! (W4 shape without a snapshot: a fold of every commit).

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use logd_core::index::PathIndex;
use logd_core::kpath::KPath;
use logd_core::node::Node;
use logd_core::read::read_state_at;
use logd_core::wal::Location;

fn w1(i: u64) -> Node {
    Node::object([(
        "users",
        Node::object([(
            format!("u{}", i % 500),
            Node::object([
                ("name", Node::string(format!("user-{i}"))),
                ("n", Node::int(i as i64)),
                ("tags", Node::array([Node::string("a"), Node::string("b")])),
            ]),
        )]),
    )])
}

fn loc(c: u64) -> Location {
    Location {
        segment: 1,
        offset: c * 128,
        len: 128,
    }
}

fn bench(c: &mut Criterion) {
    let records: Vec<Node> = (1..=5000).map(w1).collect();
    c.bench_function("index 5000 W1 commits", |b| {
        b.iter(|| {
            let mut idx = PathIndex::new();
            for (i, r) in records.iter().enumerate() {
                let _ = idx.insert_patch(i as u64 + 1, r, loc(i as u64 + 1));
            }
            black_box(idx)
        })
    });
    let mut idx = PathIndex::new();
    for (i, r) in records.iter().enumerate() {
        let _ = idx.insert_patch(i as u64 + 1, r, loc(i as u64 + 1));
    }
    let fetch = |c: u64, _: Location| -> Result<&Node, Infallible> { Ok(&records[c as usize - 1]) };
    let leaf = KPath::parse("users.u42").unwrap_or_default();
    let users = KPath::parse("users").unwrap_or_default();
    c.bench_function("plan leaf users.u42 @5000", |b| {
        b.iter(|| black_box(idx.plan(&leaf, 0, 5000)))
    });
    c.bench_function("read leaf users.u42 @5000 (plan + fold)", |b| {
        b.iter(|| black_box(read_state_at(&idx, &leaf, 5000, fetch)))
    });
    c.bench_function("plan users @5000", |b| {
        b.iter(|| black_box(idx.plan(&users, 0, 5000)))
    });
    c.bench_function("read root @5000 (fold of 5000 commits)", |b| {
        b.iter(|| black_box(read_state_at(&idx, &KPath::root(), 5000, fetch)))
    });
    eprintln!("index stats after 5000 W1 commits: {:?}", idx.stats());
}

criterion_group!(benches, bench);
criterion_main!(benches);
