//! `logd serve` over the wire: the transcripts of docs/PROTOCOL.md §13
//! (except watch), transactions across connections, pipelining, hostile
//! input and limits, the Rust client, and the binary's lifecycle.
//!
//! Every server binds 127.0.0.1:0 or a Unix socket in a temporary
//! directory; every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use logd::client::{Client, ClientError};
use logd::server::{Config, Server};
use logd::{Node, Options, Storage};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    _dir: tempfile::TempDir,
    storage: Storage,
    server: Server,
}

impl Running {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr().unwrap()
    }

    async fn stop(self) {
        self.server.shutdown().await;
        self.storage.close().await.unwrap();
    }
}

async fn start(config: Config) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path(), Options::default()).await.unwrap();
    let config = Config {
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        unix: Some(dir.path().join("logd.sock")),
        ..config
    };
    let server = Server::start(storage.clone(), config).await.unwrap();
    Running {
        _dir: dir,
        storage,
        server,
    }
}

/// A raw line connection: writes exact bytes, reads exact lines.
struct Raw {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Raw {
            r: BufReader::new(r),
            w,
        }
    }

    async fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).await.unwrap();
    }

    async fn line(&mut self) -> String {
        let mut s = String::new();
        let n = tokio::time::timeout(WAIT, self.r.read_line(&mut s))
            .await
            .expect("no answer in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        s.trim_end_matches('\n').to_string()
    }

    /// C: line, then S: the expected line, byte for byte.
    async fn exchange(&mut self, request: &str, answer: &str) {
        self.send(&format!("{request}\n")).await;
        assert_eq!(self.line().await, answer, "answer to {request}");
    }

    /// Nothing arrives for `d`.
    async fn quiet(&mut self, d: Duration) {
        let mut s = String::new();
        if let Ok(r) = tokio::time::timeout(d, self.r.read_line(&mut s)).await {
            panic!("unexpected {r:?}: {s}");
        }
    }

    /// The server closes the connection (EOF or reset) within WAIT.
    async fn closed(&mut self) {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(WAIT, self.r.read_to_end(&mut buf))
            .await
            .expect("connection not closed in time");
        let _ = r;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcript_13_1_hello_patch_match_and_filter() {
    let s = start(Config::default()).await;
    let mut c = Raw::connect(s.addr()).await;
    c.exchange(
        r#"{hello: {clientId: "test-client"}}"#,
        "{result: {hello: {serverId: tcp-1}}}",
    )
    .await;
    c.exchange(
        r#"{id: "patch-1", patch: {path: "", data: {users: {bob: {name: "Bob"}}}}}"#,
        "{id: patch-1 result: {patch: {commit: 1 data: {users: {bob: {name: Bob}}}}}}",
    )
    .await;
    c.exchange(
        r#"{id: "req-1", match: {body: {path: users}}}"#,
        "{id: req-1 result: {match: {body: {bob: {name: Bob}} commit: 1}}}",
    )
    .await;
    c.exchange(
        r#"{match: {body: {path: "users.bob.name"}}}"#,
        "{result: {match: {body: Bob commit: 1}}}",
    )
    .await;
    s.stop().await;

    let s = start(Config::default()).await;
    let mut c = Raw::connect(s.addr()).await;
    c.exchange(
        r#"{patch: {path: users, data: [{id: "1", name: Alice, active: true} {id: "2", name: Bob, active: false} {id: "3", name: Charlie, active: true}]}}"#,
        r#"{result: {patch: {commit: 1 data: [{id: "1" name: Alice active: true} {id: "2" name: Bob active: false} {id: "3" name: Charlie active: true}]}}}"#,
    )
    .await;
    c.exchange(
        r#"{id: "req-1", match: {body: {path: users, data: {active: true}}}}"#,
        "{id: req-1 result: {match: {body: [{active: true} {active: true}] commit: 1}}}",
    )
    .await;
    c.exchange(
        r#"{id: "req-2", match: {body: {path: users, data: {active: true, name: null}}}}"#,
        "{id: req-2 result: {match: {body: [{active: true name: Alice} {active: true name: Charlie}] commit: 1}}}",
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcript_13_5_errors() {
    let s = start(Config::default()).await;
    let mut c = Raw::connect(s.addr()).await;
    c.exchange(
        r#"{id: "e1", bogus: {}}"#,
        r#"{error: {code: invalid_message message: "no operation specified"} id: e1}"#,
    )
    .await;
    // logd: the id is echoed (D12).
    c.exchange(
        r#"{id: "e2", patch: {path: 42, data: 1}}"#,
        r#"{error: {code: invalid_message message: 'failed to parse request: field "path": expected string, got Number'} id: e2}"#,
    )
    .await;
    // logd: the message is not doubled (D22).
    c.exchange(
        r#"{id: "e3", patch: {txId: 999, path: a, data: 1}}"#,
        r#"{error: {code: tx_not_found message: "transaction 999 not found"} id: e3}"#,
    )
    .await;
    c.exchange(
        r#"{id: "e4", newtx: {participants: 0}}"#,
        r#"{error: {code: invalid_tx message: "participants must be at least 1"} id: e4}"#,
    )
    .await;
    c.send("{id: \"e5\", patch: {path: \"a[\", data: 1}}\n")
        .await;
    assert!(
        c.line()
            .await
            .starts_with("{error: {code: invalid_path message: ")
    );
    c.exchange(
        r#"{id: "e6", patch: {path: a}}"#,
        r#"{error: {code: invalid_diff message: "patch data is required"} id: e6}"#,
    )
    .await;
    // logd: watch is not served yet.
    c.exchange(
        r#"{id: "e7", watch: {path: a}}"#,
        r#"{error: {code: not_supported message: "watch is not supported by this server yet"} id: e7}"#,
    )
    .await;
    c.exchange(
        r#"{id: "e9", unwatch: {path: b}}"#,
        r#"{error: {code: not_supported message: "unwatch is not supported by this server yet"} id: e9}"#,
    )
    .await;
    // Scopes, schema, migrations: a clear code, nothing applied.
    for req in [
        r#"{id: s1, hello: {scope: x}}"#,
        r#"{id: s2, deleteScope: {scopeId: x}}"#,
        r#"{id: s3, schema: {get: {}}}"#,
        r#"{id: s4, migration: complete}"#,
        r#"{id: s5, patch: {path: a, data: 1, migration: true}}"#,
    ] {
        c.send(&format!("{req}\n")).await;
        let l = c.line().await;
        assert!(
            l.starts_with("{error: {code: not_supported "),
            "{req} -> {l}"
        );
    }
    // logd: a block-style line is a document like any other.
    c.exchange(
        "hello: {clientId: x}",
        "{result: {hello: {serverId: tcp-1}}}",
    )
    .await;
    assert_eq!(s.storage.current_commit(), 0, "nothing was applied");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcript_13_2_two_connections_one_transaction() {
    let s = start(Config::default()).await;
    let mut a = Raw::connect(s.addr()).await;
    let mut b = Raw::connect(s.addr()).await;
    a.exchange(
        r#"{id: "t", newtx: {participants: 2}}"#,
        "{id: t result: {newtx: {txId: 1}}}",
    )
    .await;
    a.send("{id: \"p0\", patch: {txId: 1, path: data0, data: {value: 0}}}\n")
        .await;
    a.quiet(Duration::from_millis(200)).await;
    b.exchange(
        r#"{id: "p1", patch: {txId: 1, path: data1, data: {value: 1}}}"#,
        "{id: p1 result: {patch: {commit: 1 data: {value: 1}}}}",
    )
    .await;
    assert_eq!(
        a.line().await,
        "{id: p0 result: {patch: {commit: 1 data: {value: 0}}}}"
    );
    b.exchange(
        r#"{id: "p2", patch: {txId: 1, path: data2, data: {value: 2}}}"#,
        r#"{error: {code: tx_not_found message: "transaction 1 not found"} id: p2}"#,
    )
    .await;
    b.exchange(
        r#"{id: m, match: {body: {path: ""}}}"#,
        "{id: m result: {match: {body: {data0: {value: 0} data1: {value: 1}} commit: 1}}}",
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_and_a_waiting_participant_does_not_block() {
    let s = start(Config::default()).await;
    let mut a = Raw::connect(s.addr()).await;
    // §13.4 without the watch: written at once, answered in order.
    a.send(concat!(
        "{id: \"p\", patch: {path: config, data: {debug: true}}}\n",
        "{id: \"m\", match: {body: {path: \"config.debug\"}}}\n",
        "{id: \"u\", unwatch: {path: nosuch}}\n",
    ))
    .await;
    assert_eq!(
        a.line().await,
        "{id: p result: {patch: {commit: 1 data: {debug: true}}}}"
    );
    assert_eq!(
        a.line().await,
        "{id: m result: {match: {body: true commit: 1}}}"
    );
    assert!(a.line().await.starts_with("{error: {code: not_supported"));
    // A participant waiting for its transaction: the later match on the
    // same connection is answered first (D9), then the join of another
    // connection completes the transaction.
    a.exchange(
        "{id: t, newtx: {participants: 2}}",
        "{id: t result: {newtx: {txId: 2}}}",
    )
    .await;
    a.send(concat!(
        "{id: w, patch: {txId: 2, path: x, data: 1}}\n",
        "{id: m2, match: {body: {path: config}}}\n",
        "{id: w2, patch: {txId: 2, path: y, data: 2}}\n",
    ))
    .await;
    assert_eq!(
        a.line().await,
        "{id: m2 result: {match: {body: {debug: true} commit: 1}}}"
    );
    // One connection can even be both participants now.
    let mut rest = vec![a.line().await, a.line().await];
    rest.sort();
    assert_eq!(
        rest,
        vec![
            "{id: w result: {patch: {commit: 2 data: 1}}}",
            "{id: w2 result: {patch: {commit: 2 data: 2}}}",
        ]
    );
    // An id-less request is answered only after every earlier one.
    a.exchange(
        "{id: t3, newtx: {participants: 2}}",
        "{id: t3 result: {newtx: {txId: 3}}}",
    )
    .await;
    a.send("{id: w3, patch: {txId: 3, path: z, data: 3, timeout: \"150ms\"}}\n")
        .await;
    a.send("{match: {body: {path: x}}}\n").await;
    assert!(
        a.line()
            .await
            .starts_with("{error: {code: timeout message: "),
    );
    assert_eq!(a.line().await, "{result: {match: {body: 1 commit: 2}}}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_connections_join_one_transaction() {
    let s = start(Config::default()).await;
    let first = Client::connect_tcp(s.addr()).await.unwrap();
    let tx = first.new_tx(8).await.unwrap();
    let mut joins = Vec::new();
    for i in 0..8 {
        let c = Client::connect_tcp(s.addr()).await.unwrap();
        joins.push(tokio::spawn(async move {
            c.patch_tx(tx, &format!("p{i}"), Node::int(i), None).await
        }));
    }
    let mut commits = Vec::new();
    for j in joins {
        commits.push(
            tokio::time::timeout(WAIT, j)
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert!(commits.iter().all(|&c| c == commits[0]), "{commits:?}");
    // The oracle: the commit holds every participant's patch.
    let (root, at) = first.get("").await.unwrap();
    assert_eq!(at, commits[0]);
    for i in 0..8 {
        assert_eq!(root.field(&format!("p{i}")), Some(&Node::int(i)));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_disconnecting_or_timing_out_withdraws_its_patch() {
    let s = start(Config::default()).await;
    let c = Client::connect_tcp(s.addr()).await.unwrap();
    // Disconnect: B joins, then closes its connection.
    let tx = c.new_tx(2).await.unwrap();
    let mut b = Raw::connect(s.addr()).await;
    b.send(&format!(
        "{{id: b, patch: {{txId: {tx}, path: b, data: 1}}}}\n"
    ))
    .await;
    b.quiet(Duration::from_millis(100)).await;
    drop(b);
    // Give the server a moment to see the end of B's input (a join that
    // came first would complete the transaction, rightly: B had sent it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = tokio::time::timeout(WAIT, c.patch_tx(tx, "c", Node::int(2), None))
        .await
        .unwrap();
    assert!(
        matches!(&r, Err(ClientError::Server { code, .. }) if code == "tx_abandoned" || code == "tx_not_found"),
        "{r:?}"
    );
    // Own timeout: the patch is withdrawn, never committed later (D10).
    let tx = c.new_tx(2).await.unwrap();
    let r = c
        .patch_tx(tx, "x", Node::int(1), Some(Duration::from_millis(100)))
        .await;
    assert!(
        matches!(&r, Err(ClientError::Server { code, .. }) if code == "timeout"),
        "{r:?}"
    );
    let r = c.patch_tx(tx, "y", Node::int(2), None).await;
    assert!(
        matches!(&r, Err(ClientError::Server { code, .. }) if code == "tx_abandoned" || code == "tx_not_found"),
        "{r:?}"
    );
    assert_eq!(s.storage.current_commit(), 0, "nothing committed");
    s.stop().await;

    // The transaction's own deadline: `timeout`, from newtx (D11).
    let s = start(Config {
        tx_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    })
    .await;
    let c = Client::connect_tcp(s.addr()).await.unwrap();
    let tx = c.new_tx(2).await.unwrap();
    let t0 = std::time::Instant::now();
    let r = tokio::time::timeout(WAIT, c.patch_tx(tx, "x", Node::int(1), None))
        .await
        .unwrap();
    assert!(
        matches!(&r, Err(ClientError::Server { code, .. }) if code == "timeout"),
        "{r:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(s.storage.current_commit(), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_defined_answers_and_the_connection_survives() {
    let s = start(Config::default()).await;
    let mut c = Raw::connect(s.addr()).await;
    let hello = "{result: {hello: {serverId: tcp-1}}}";
    let cases: &[(&str, &str)] = &[
        ("{a: b: c}", "{error: {code: invalid_message message: "),
        ("---", "{error: {code: invalid_message message: "),
        (
            "5",
            "{error: {code: invalid_message message: \"failed to parse request: expected map for SessionRequest, got Number\"}}",
        ),
        (
            "null",
            "{error: {code: invalid_message message: \"no operation specified\"}}",
        ),
        (
            "{}",
            "{error: {code: invalid_message message: \"no operation specified\"}}",
        ),
        ("}", "{error: {code: invalid_message message: "),
        (
            "{id: big, newtx: {participants: 99999999999999999999}}",
            "{error: {code: invalid_message message: ",
        ),
        (
            "{id: \"q\\x\", hello: {}}",
            "{error: {code: invalid_message message: ",
        ),
        ("{hello: {}} # a trailing comment", hello),
        ("{\"hello\": {\"clientId\": \"x\"}}", hello),
        ("{hello: {}}, {hello: {}}", hello),
        (
            "{id: 7, hello: {}}",
            "{error: {code: invalid_message message: ",
        ),
        (
            "{id: two, hello: {}, match: {}}",
            "{error: {code: invalid_message message: \"one operation per request, got hello, match\"} id: two}",
        ),
    ];
    for (req, want) in cases {
        c.send(&format!("{req}\n")).await;
        let got = c.line().await;
        assert!(got.starts_with(want), "{req}: {got}");
        if req.starts_with("{hello: {}}, ") {
            assert_eq!(c.line().await, hello);
        }
    }
    // The id of an unparseable request is echoed where it can be read (D12).
    c.send("{id: \"x1\", patch: {a: b: c}}\n").await;
    assert!(c.line().await.ends_with("id: x1}"));
    // Invalid UTF-8, CRLF, a request over several lines (pretty JSON).
    c.send("\u{0}\n").await;
    assert!(c.line().await.starts_with("{error: {code: invalid_message"));
    c.w.write_all(b"{id: u, hello: {clientId: \xff}}\n")
        .await
        .unwrap();
    assert!(c.line().await.starts_with("{error: {code: invalid_message"));
    c.exchange("{\"hello\": {}}\r", hello).await;
    c.send("{\n  \"id\": \"pj\",\n  \"hello\": {\n    \"clientId\": \"x\"\n  }\n}\n")
        .await;
    assert_eq!(
        c.line().await,
        "{id: pj result: {hello: {serverId: tcp-1}}}"
    );
    // Still alive after all of that.
    c.exchange("{hello: {}}", hello).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_size_connections_idle_and_a_client_that_stops_reading() {
    let s = start(Config {
        max_request_bytes: 1024,
        max_connections: 2,
        idle_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(300),
        output_queue: 4,
        ..Config::default()
    })
    .await;
    // Oversized: an error, then the connection is closed.
    let mut c = Raw::connect(s.addr()).await;
    c.send(&format!(
        "{{hello: {{clientId: \"{}\"}}}}\n",
        "x".repeat(2000)
    ))
    .await;
    assert!(c.line().await.contains("exceeds the maximum of 1024 bytes"));
    c.closed().await;
    drop(c);
    // Also without a newline, ever.
    let mut c = Raw::connect(s.addr()).await;
    c.send(&"y".repeat(4096)).await;
    assert!(c.line().await.contains("exceeds the maximum"));
    c.closed().await;
    drop(c);
    // Idle: closed after the idle timeout.
    let mut c = Raw::connect(s.addr()).await;
    let t0 = std::time::Instant::now();
    c.closed().await;
    assert!(t0.elapsed() >= Duration::from_millis(250));
    drop(c);
    // Connections: the third of three is refused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut one = Raw::connect(s.addr()).await;
    let mut two = Raw::connect(s.addr()).await;
    one.exchange(
        "{id: a, hello: {}}",
        "{id: a result: {hello: {serverId: tcp-4}}}",
    )
    .await;
    two.exchange(
        "{id: a, hello: {}}",
        "{id: a result: {hello: {serverId: tcp-5}}}",
    )
    .await;
    let mut three = Raw::connect(s.addr()).await;
    assert!(
        three
            .line()
            .await
            .starts_with("{error: {code: too_many_connections")
    );
    three.closed().await;
    drop((one, two, three));
    s.stop().await;

    // A client that writes requests and never reads is disconnected.
    let s = start(Config {
        write_timeout: Duration::from_millis(300),
        output_queue: 4,
        idle_timeout: Duration::from_secs(60),
        ..Config::default()
    })
    .await;
    s.storage
        .patch("big", Node::string("z".repeat(256 << 10)))
        .await
        .unwrap();
    let (_r, mut w) = TcpStream::connect(s.addr()).await.unwrap().into_split();
    let t0 = std::time::Instant::now();
    let req = "{id: m, match: {body: {path: big}}}\n".repeat(64);
    let mut cut = false;
    for _ in 0..10_000 {
        match tokio::time::timeout(Duration::from_secs(2), w.write_all(req.as_bytes())).await {
            Ok(Ok(())) => {}
            // An error (reset/pipe) or a write that cannot finish: the
            // server stopped reading and then closed.
            _ => {
                cut = true;
                break;
            }
        }
        if t0.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    assert!(cut, "the server kept a non-reading client");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_over_tcp_and_the_unix_socket_pipelines() {
    let s = start(Config::default()).await;
    let sock = s.server.unix_path().unwrap().to_path_buf();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "the store's umask (022)");
    }
    let t = Client::connect_tcp(s.addr()).await.unwrap();
    let u = Client::connect_unix(&sock).await.unwrap();
    assert_eq!(u.hello("me").await.unwrap(), "unix-1");
    assert_eq!(t.patch("a", "{x: 1}".parse().unwrap()).await.unwrap(), 1);
    assert_eq!(u.get("a.x").await.unwrap(), (Node::int(1), 1));
    assert!(matches!(
        u.get("nothing").await,
        Err(ClientError::Server { code, .. }) if code == "not_found"
    ));
    // Pipelining: many calls in flight on one connection.
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let t = t.clone();
            async move { t.patch(&format!("k{i}"), Node::int(i)).await }
        })
        .collect();
    let mut commits: Vec<u64> = futures_join_all(calls).await;
    commits.sort();
    commits.dedup();
    assert_eq!(commits.len(), 50);
    let (v, _) = u
        .find("", Some("{k7: null}".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(v.to_string(), "{k7: 7}");
    // A transaction joined from both connections.
    let tx = t.new_tx(2).await.unwrap();
    let (a, b) = tokio::join!(
        t.patch_tx(tx, "ta", Node::int(1), None),
        u.patch_tx(tx, "tb", Node::int(2), None)
    );
    assert_eq!(a.unwrap(), b.unwrap());
    s.stop().await;
    assert!(!sock.exists(), "the socket is removed at shutdown");
    assert_eq!(t.get("a").await, Err(ClientError::Closed));
}

/// Awaits every future (spawned, so they run concurrently), in order.
async fn futures_join_all<F>(fs: Vec<F>) -> Vec<u64>
where
    F: std::future::Future<Output = Result<u64, ClientError>> + Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(
            tokio::time::timeout(WAIT, h)
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    out
}

fn logd_serve(dir: &Path, listen: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_logd"))
        .arg("--dir")
        .arg(dir)
        .args(["serve", "--listen", listen])
        .env_remove("LOGD_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Kills the server if the test fails before it stops it: an orphaned
/// server would hold inherited descriptors (and the store) forever.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > WAIT {
            let _ = child.kill();
            panic!("logd serve did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_binary_starts_stops_on_sigterm_and_refuses_a_second_server() {
    use std::io::BufRead;
    let t = tempfile::tempdir().unwrap();
    let mut child = Reap(logd_serve(t.path(), "127.0.0.1:0"));
    let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let addr: SocketAddr = first
        .strip_prefix("listening on ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{first:?}"))
        .parse()
        .unwrap();
    assert!(t.path().join("logd.sock").exists());
    let c = Client::connect_tcp(addr).await.unwrap();
    assert_eq!(c.patch("a", Node::int(1)).await.unwrap(), 1);
    // A second server on the same store: refused, naming the holder.
    let second = logd_serve(t.path(), "127.0.0.1:0")
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(5), "{err}");
    assert!(err.contains(&format!("pid {}", child.0.id())), "{err}");
    // SIGTERM: exit 0, the store closed (it opens again), the data there.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut child.0);
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "stopped\n");
    assert!(!t.path().join("logd.sock").exists());
    let s = Storage::open(t.path(), Options::default()).await.unwrap();
    assert_eq!(s.get("a").await.unwrap(), Some(Node::int(1)));
    s.close().await.unwrap();
    // A non-loopback address is refused with a clear message.
    let o = logd_serve(t.path(), "0.0.0.0:0")
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logd_session_scripted_mode_over_tcp_and_the_socket() {
    let s = start(Config::default()).await;
    let sock = s.server.unix_path().unwrap().to_string_lossy().into_owned();
    for addr in [s.addr().to_string(), sock] {
        let script = concat!(
            "{id: p, patch: {path: a, data: {x: 1}}}\n",
            "# a comment line\n",
            "{id: m, match: {body: {path: a.x}}}\n",
        );
        let out = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_logd"))
                .args(["session", &addr])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            let child = Reap(child);
            let mut child = child;
            let status = wait_exit(&mut child.0);
            let mut out = String::new();
            std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut out).unwrap();
            (status, out)
        })
        .await
        .unwrap();
        assert!(out.0.success(), "{out:?}");
        let commit = s.storage.current_commit();
        assert_eq!(
            out.1,
            format!(
                "{{id: p result: {{patch: {{commit: {commit} data: {{x: 1}}}}}}}}\n\
                 {{id: m result: {{match: {{body: 1 commit: {commit}}}}}}}\n"
            )
        );
    }
    s.stop().await;
}

/// `logd get` (and `ls`, `export`) beside a running `logd serve`: the store
/// is locked, so the CLI reads the current state through the server's Unix
/// socket; a read at a past commit still says the store is locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reads_go_through_the_socket_of_a_running_server() {
    use std::io::BufRead;
    let t = tempfile::tempdir().unwrap();
    let mut child = Reap(logd_serve(t.path(), "127.0.0.1:0"));
    let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("listening on "), "{first:?}");
    let c = Client::connect_unix(t.path().join("logd.sock"))
        .await
        .unwrap();
    c.patch("users.ada", "{name: Ada}".parse().unwrap())
        .await
        .unwrap();
    let dir = t.path().to_path_buf();
    let run = move |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_logd"))
            .arg("--dir")
            .arg(&dir)
            .args(args)
            .env_remove("LOGD_DIR")
            .output()
            .unwrap()
    };
    let got = tokio::task::spawn_blocking({
        let run = run.clone();
        move || {
            (
                run(&["get", "users.ada.name"]),
                run(&["ls", "users"]),
                run(&["get", "users.grace"]),
                run(&["get", "--at", "1", "users.ada"]),
            )
        }
    })
    .await
    .unwrap();
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(got.0.status.code(), Some(0), "{}", err(&got.0));
    assert_eq!(text(&got.0), "Ada\n");
    assert_eq!(text(&got.1), "ada\n", "{}", err(&got.1));
    assert_eq!(got.2.status.code(), Some(4), "absent: {}", err(&got.2));
    assert_eq!(
        got.3.status.code(),
        Some(5),
        "a past commit: {}",
        err(&got.3)
    );
    assert!(err(&got.3).contains("locked"), "{}", err(&got.3));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(wait_exit(&mut child.0).success());
}
