//! The wire: cutting the input into request documents, decoding a request,
//! encoding a response (docs/PROTOCOL.md §2–§3).
//!
//! This module is pure: no I/O, no store. It owns three decisions:
//!
//! - **Framing** ([`Framer`]): the input is read line by line (LF; a CR
//!   before it is dropped). A document that starts with `{` or `[` ends
//!   where its brackets balance, so `{..} {..}` on one line is two
//!   requests and a request may span lines while a bracket is open
//!   (pretty-printed JSON works, unlike in the Go server, D12). A
//!   document that starts with anything else (`5`, `null`,
//!   `hello: {clientId: x}`) ends at the end of its line (or, with a
//!   bracket open, where they balance at a line end). `#` outside quotes
//!   starts a comment to the end of the line, also after content. Blank
//!   lines and commas between documents are skipped. An unbalanced
//!   closing bracket is an error for that line only: framing restarts at
//!   the next line, so no malformed input closes the connection; only an
//!   oversized request does (the server cannot know where it ends).
//! - **Decoding** ([`decode`]): a parsed document onto a [`Request`] with
//!   the §2.5 rules (unknown keys ignored, `null` = absent for optional
//!   fields, type violations are `invalid_message`). Unlike the Go server
//!   the id is echoed on every decodable-enough failure (D12), and a
//!   request naming two operations is refused instead of running the
//!   first (D22).
//! - **Encoding** ([`result`], [`error`]): one line per message, protocol
//!   keys sorted, one space between elements, strings bare where
//!   Appendix A allows (§2.4), application data in its stored key order.
//!   Integral floats keep their `.0` (D18).

use logd_core::lexical;
use logd_core::node::{Key, Kind, Node, Value};

/// One error answer: a §10 code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WireError {
    /// The code (stable): `invalid_message`, `tx_not_found`, ...
    pub(crate) code: &'static str,
    /// The message (not a stable interface).
    pub(crate) message: String,
}

impl WireError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
        }
    }
}

/// The error code for operations this server does not implement yet
/// (scopes, schema, migrations, watch): a logd addition to §10.
pub(crate) const NOT_SUPPORTED: &str = "not_supported";

// ---------------------------------------------------------------- framing

/// What the framer cut from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The text of one document.
    Doc(String),
    /// A line that cannot be framed (an unbalanced closing bracket): answer
    /// `invalid_message` (with the id if [`sniff_id`] finds one) and go on.
    Bad { text: String, message: String },
}

/// Cuts lines into documents; see the module doc for the rules. Keeps the
/// text of a document whose brackets are still open across lines.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    pending: String,
    depth: usize,
    started: bool,
    bracketed: bool,
}

impl Framer {
    /// The bytes held for a document still open (for the size limit).
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether a document is open (EOF now would cut it).
    pub(crate) fn is_open(&self) -> bool {
        self.started
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.depth = 0;
        self.started = false;
        self.bracketed = false;
    }

    /// Feeds one line (without its LF) and returns the frames it completes.
    pub(crate) fn push_line(&mut self, line: &str) -> Vec<Frame> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut frames = Vec::new();
        let mut seg = 0; // start of the part of `line` not yet copied into `pending`
        let mut quote: Option<char> = None;
        let mut escaped = false;
        let mut end = line.len();
        for (i, c) in line.char_indices() {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '#' => {
                    end = i;
                    break;
                }
                '"' | '\'' => {
                    self.start(&mut seg, i, false);
                    quote = Some(c);
                }
                '{' | '[' => {
                    self.start(&mut seg, i, true);
                    self.depth += 1;
                }
                '}' | ']' => {
                    if self.depth == 0 {
                        let mut text = std::mem::take(&mut self.pending);
                        text.push_str(&line[seg..]);
                        self.reset();
                        frames.push(Frame::Bad {
                            text,
                            message: format!("unbalanced closing bracket {c:?}"),
                        });
                        return frames;
                    }
                    self.depth -= 1;
                    if self.depth == 0 && self.bracketed {
                        self.pending.push_str(&line[seg..=i]);
                        seg = i + 1;
                        frames.push(Frame::Doc(std::mem::take(&mut self.pending)));
                        self.reset();
                    }
                }
                ',' if !self.started => seg = i + 1,
                c if c.is_whitespace() => {
                    if !self.started {
                        seg = i + c.len_utf8();
                    }
                }
                _ => self.start(&mut seg, i, false),
            }
        }
        if self.started {
            self.pending.push_str(&line[seg..end]);
            if self.depth == 0 {
                frames.push(Frame::Doc(std::mem::take(&mut self.pending)));
                self.reset();
            } else {
                self.pending.push('\n');
            }
        }
        frames
    }

    fn start(&mut self, seg: &mut usize, i: usize, bracket: bool) {
        if !self.started {
            self.started = true;
            self.bracketed = bracket;
            *seg = i;
        }
    }
}

/// Finds a top-level `id: <string>` in text that did not parse, so that
/// even an unparseable request gets its id back where it can be read (D12).
pub(crate) fn sniff_id(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => {
                let (s, next) = lexical::read_quoted(text, i).ok()?;
                if depth == 1
                    && s == "id"
                    && let Some(v) = value_after_colon(text, next)
                {
                    return Some(v);
                }
                i = next;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'i' if depth == 1
                && text[i..].starts_with("id")
                && (i == 0 || matches!(bytes[i - 1], b'{' | b',' | b' ' | b'\t' | b'\n')) =>
            {
                if let Some(v) = value_after_colon(text, i + 2) {
                    return Some(v);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The string value after `:` at `at` (a quoted string or a literal).
fn value_after_colon(text: &str, at: usize) -> Option<String> {
    let rest = text.get(at..)?.strip_prefix(':')?;
    let trimmed = rest.trim_start();
    let start = text.len() - trimmed.len();
    match trimmed.chars().next()? {
        '"' | '\'' => lexical::read_quoted(text, start).ok().map(|(s, _)| s),
        c if lexical::is_literal_start(c) => {
            let lit: String = trimmed
                .chars()
                .take_while(|&c| lexical::is_literal_char(c) && c != '}' && c != ']')
                .collect();
            let lit = lit.trim_end_matches([':', ',']).to_string();
            (!lit.is_empty()).then_some(lit)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- decoding

/// One decoded request: its optional id and its operation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Request {
    pub(crate) id: Option<String>,
    pub(crate) op: Op,
}

/// The operations of §3.1.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    Hello {
        client_id: String,
        scope: Option<String>,
        use_pending: bool,
    },
    Match {
        path: String,
        data: Option<Node>,
    },
    Patch {
        path: String,
        data: Option<Node>,
        tx_id: Option<i64>,
        timeout: Option<String>,
        migration: bool,
    },
    NewTx {
        participants: i64,
    },
    /// watch, unwatch, deleteScope, schema, migration: named, not served yet.
    Unsupported(&'static str),
}

/// The operation keys, in the order of the §3.1 table.
const OPS: [&str; 9] = [
    "hello",
    "match",
    "patch",
    "newtx",
    "watch",
    "unwatch",
    "deleteScope",
    "schema",
    "migration",
];

/// Go's name for a node kind, as its decoder prints it.
fn kind_name(n: &Node) -> &'static str {
    match n.kind() {
        Kind::Null => "Null",
        Kind::Bool => "Bool",
        Kind::Int | Kind::Float => "Number",
        Kind::String => "String",
        Kind::Array => "Array",
        Kind::Object => "Object",
        #[allow(unreachable_patterns)]
        _ => "Node",
    }
}

fn bad(detail: String) -> WireError {
    WireError::new(
        "invalid_message",
        format!("failed to parse request: {detail}"),
    )
}

/// The fields of an object node (empty for `null`, which counts as present
/// with every field at its default, §2.5).
fn fields<'a>(name: &str, n: &'a Node) -> Result<&'a [(Key, Node)], WireError> {
    match &n.value {
        Value::Object(kv) => Ok(kv),
        Value::Null => Ok(&[]),
        _ => Err(bad(format!(
            "field {name:?}: expected map, got {}",
            kind_name(n)
        ))),
    }
}

fn get<'a>(kv: &'a [(Key, Node)], name: &str) -> Option<&'a Node> {
    kv.iter()
        .rev()
        .find(|(k, _)| matches!(k, Key::Field(f) if f == name))
        .map(|(_, v)| v)
}

fn opt_str(kv: &[(Key, Node)], name: &str) -> Result<Option<String>, WireError> {
    match get(kv, name).map(|n| &n.value) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(type_err(kv, name, "string")),
    }
}

fn opt_int(kv: &[(Key, Node)], name: &str) -> Result<Option<i64>, WireError> {
    match get(kv, name).map(|n| &n.value) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Int(i)) => Ok(Some(*i)),
        Some(_) => Err(type_err(kv, name, "integer")),
    }
}

fn flag(kv: &[(Key, Node)], name: &str) -> Result<bool, WireError> {
    match get(kv, name).map(|n| &n.value) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(type_err(kv, name, "bool")),
    }
}

fn type_err(kv: &[(Key, Node)], name: &str, want: &str) -> WireError {
    let got = get(kv, name).map(kind_name).unwrap_or("nothing");
    bad(format!("field {name:?}: expected {want}, got {got}"))
}

/// Decodes a parsed request. The error carries the id when the request
/// had a readable string `id`.
pub(crate) fn decode(doc: &Node) -> Result<Request, (Option<String>, WireError)> {
    let Value::Object(top) = &doc.value else {
        if doc.is_null() {
            return Err((
                None,
                WireError::new("invalid_message", "no operation specified"),
            ));
        }
        return Err((
            None,
            bad(format!(
                "expected map for SessionRequest, got {}",
                kind_name(doc)
            )),
        ));
    };
    let id = opt_str(top, "id").map_err(|e| (None, e))?;
    decode_op(top)
        .map(|op| Request { id: id.clone(), op })
        .map_err(|e| (id, e))
}

fn decode_op(top: &[(Key, Node)]) -> Result<Op, WireError> {
    let present: Vec<&str> = OPS
        .iter()
        .copied()
        .filter(|op| get(top, op).is_some())
        .collect();
    let name = match present.as_slice() {
        [] => return Err(WireError::new("invalid_message", "no operation specified")),
        [one] => *one,
        many => {
            return Err(WireError::new(
                "invalid_message",
                format!("one operation per request, got {}", many.join(", ")),
            ));
        }
    };
    let null = Node::null();
    let body = get(top, name).unwrap_or(&null);
    match name {
        "hello" => {
            let kv = fields(name, body)?;
            Ok(Op::Hello {
                client_id: opt_str(kv, "clientId")?.unwrap_or_default(),
                scope: opt_str(kv, "scope")?,
                use_pending: flag(kv, "usePending")?,
            })
        }
        "match" => {
            let kv = fields(name, body)?;
            let (path, data) = match get(kv, "body") {
                None => (String::new(), None),
                Some(b) => {
                    let bkv = fields("body", b)?;
                    let data = get(bkv, "data").filter(|d| !d.is_null()).cloned();
                    (opt_str(bkv, "path")?.unwrap_or_default(), data)
                }
            };
            Ok(Op::Match { path, data })
        }
        "patch" => {
            let kv = fields(name, body)?;
            Ok(Op::Patch {
                path: opt_str(kv, "path")?.unwrap_or_default(),
                data: get(kv, "data").cloned(),
                tx_id: opt_int(kv, "txId")?,
                timeout: opt_str(kv, "timeout")?,
                migration: flag(kv, "migration")?,
            })
        }
        "newtx" => {
            let kv = fields(name, body)?;
            Ok(Op::NewTx {
                participants: opt_int(kv, "participants")?.unwrap_or(0),
            })
        }
        "watch" => Ok(Op::Unsupported("watch")),
        "unwatch" => Ok(Op::Unsupported("unwatch")),
        "deleteScope" => Ok(Op::Unsupported("deleteScope")),
        "schema" => Ok(Op::Unsupported("schema")),
        _ => Ok(Op::Unsupported("migration")),
    }
}

// ---------------------------------------------------------------- encoding

/// An object node with its keys sorted byte-wise, as the Go encoder writes
/// protocol structures (§2.4 rule 1).
pub(crate) fn sorted(mut pairs: Vec<(&str, Node)>) -> Node {
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Node::object(pairs)
}

fn line(envelope: Node) -> String {
    let mut out = String::new();
    envelope.write_wire_spaced(&mut out);
    out.push('\n');
    out
}

fn with_id(id: Option<&str>, mut pairs: Vec<(&'static str, Node)>) -> Node {
    if let Some(id) = id {
        pairs.push(("id", Node::string(id)));
    }
    sorted(pairs)
}

/// `{id: .. result: {<op>: <body>}}` and its LF.
pub(crate) fn result(id: Option<&str>, op: &str, body: Node) -> String {
    line(with_id(id, vec![("result", sorted(vec![(op, body)]))]))
}

/// `{error: {code: .. message: ..} id: ..}` and its LF.
pub(crate) fn error(id: Option<&str>, e: &WireError) -> String {
    let body = sorted(vec![
        ("code", Node::string(e.code)),
        ("message", Node::string(e.message.clone())),
    ]);
    line(with_id(id, vec![("error", body)]))
}

// ---------------------------------------------------------------- durations

/// Parses a Go duration (`500ms`, `1.5s`, `2m30s`, `-1s`, `0`); `None` when
/// it does not parse. Negative and zero give `Some(None)`: no limit.
pub(crate) fn go_duration(s: &str) -> Option<Option<std::time::Duration>> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(None);
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        nanos += value * scale;
    }
    if !nanos.is_finite() || nanos > 9.2e18 {
        return None;
    }
    if neg || nanos < 1.0 {
        return Some(None);
    }
    Some(Some(std::time::Duration::from_nanos(nanos as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn docs(lines: &[&str]) -> Vec<Frame> {
        let mut f = Framer::default();
        lines.iter().flat_map(|l| f.push_line(l)).collect()
    }

    fn doc(s: &str) -> Frame {
        Frame::Doc(s.to_string())
    }

    #[test]
    fn framing_cuts_documents() {
        assert_eq!(docs(&["{a: 1} {b: 2}"]), vec![doc("{a: 1}"), doc("{b: 2}")]);
        assert_eq!(docs(&["", "  ", "# c", "{a: 1} # hi"]), vec![doc("{a: 1}")]);
        assert_eq!(
            docs(&["{\"a\": \"}#\"},{b: 2}\r"]),
            vec![doc("{\"a\": \"}#\"}"), doc("{b: 2}")]
        );
        assert_eq!(
            docs(&["{", "  \"hello\": {}", "}"]),
            vec![doc("{\n  \"hello\": {}\n}")]
        );
        assert_eq!(
            docs(&["5", "hello: {clientId: x}"]),
            vec![doc("5"), doc("hello: {clientId: x}")]
        );
        let f = docs(&["}", "{a: 1}"]);
        assert!(matches!(&f[0], Frame::Bad { .. }));
        assert_eq!(f[1], doc("{a: 1}"));
        let mut open = Framer::default();
        assert!(open.push_line("{a: [1,").is_empty());
        assert!(open.is_open());
    }

    #[test]
    fn ids_are_sniffed_from_broken_text() {
        assert_eq!(
            sniff_id("{id: \"x1\", patch: {a: b: c}}"),
            Some("x1".into())
        );
        assert_eq!(sniff_id("{id: x-2 match: {]}"), Some("x-2".into()));
        assert_eq!(sniff_id("{\"id\": 'q' bad"), Some("q".into()));
        assert_eq!(sniff_id("{patch: {id: no}}"), None);
    }

    #[test]
    fn decode_and_encode() {
        let p = |s: &str| logd_core::text::parse(s).unwrap();
        let r = decode(&p("{id: \"7\", patch: {path: a, data: {x: 1}, txId: 3}}")).unwrap();
        assert_eq!(r.id.as_deref(), Some("7"));
        assert!(matches!(r.op, Op::Patch { tx_id: Some(3), .. }));
        let e = decode(&p("{id: e2, patch: {path: 42}}")).unwrap_err();
        assert_eq!(e.0.as_deref(), Some("e2"));
        assert_eq!(
            e.1.message,
            "failed to parse request: field \"path\": expected string, got Number"
        );
        assert_eq!(
            decode(&p("{}")).unwrap_err().1.message,
            "no operation specified"
        );
        assert_eq!(
            decode(&p("{hello: null}")).unwrap().op,
            Op::Hello {
                client_id: String::new(),
                scope: None,
                use_pending: false
            }
        );
        assert_eq!(
            error(
                Some("u"),
                &WireError::new("not_watching", "not watching \"x\"")
            ),
            "{error: {code: not_watching message: 'not watching \"x\"'} id: u}\n"
        );
        assert_eq!(
            result(
                Some("7"),
                "match",
                sorted(vec![("commit", Node::int(1)), ("body", p("{b: 2.0}"))])
            ),
            "{id: \"7\" result: {match: {body: {b: 2.0} commit: 1}}}\n"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("500ms"), Some(Some(Duration::from_millis(500))));
        assert_eq!(go_duration("2m30s"), Some(Some(Duration::from_secs(150))));
        assert_eq!(go_duration("1.5s"), Some(Some(Duration::from_millis(1500))));
        assert_eq!(go_duration("0"), Some(None));
        assert_eq!(go_duration("-1s"), Some(None));
        assert_eq!(go_duration("x"), None);
        assert_eq!(go_duration("5"), None);
        assert_eq!(go_duration(""), None);
    }
}
