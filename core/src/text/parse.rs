//! The Tony text parser: one recursive-descent pass over the input bytes,
//! flow and block style together. Positions are byte offsets; they become
//! line and column only when an error is reported.
//!
//! Every recursion goes through a container (or a tag alone on its line) and
//! counts against [`MAX_DEPTH`], so no input can overflow the stack. Byte
//! scanning only ever stops on ASCII bytes, so every slice is on a character
//! boundary.

use crate::lexical;
use crate::node::{Key, Node, Tag, Value};

use super::{MAX_DEPTH, ParseError};

/// An error at a byte offset; turned into a [`ParseError`] at the top.
struct Failure {
    pos: usize,
    message: String,
}

type PResult<T> = Result<T, Failure>;

fn fail<T>(pos: usize, message: impl Into<String>) -> PResult<T> {
    Err(Failure {
        pos,
        message: message.into(),
    })
}

/// What introduced a block value: a `key:`, a `- ` or nothing (a document
/// root or a line of its own).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Key,
    Item,
    Bare,
}

/// How a block literal ends: `|` clip (one newline), `|-` strip, `|+` keep.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Chomp {
    Clip,
    Strip,
    Keep,
}

struct Parser<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
    depth: usize,
}

pub(super) fn parse_one(input: &str) -> Result<Node, ParseError> {
    let mut p = Parser::new(input);
    let mut first = None;
    let r = p.documents(|pos, node| {
        if first.is_some() {
            return fail(pos, "a second document (use parse_documents for a stream)");
        }
        first = Some(node);
        Ok(())
    });
    match r {
        Err(f) => Err(p.error(f)),
        Ok(()) => match first {
            Some(n) => Ok(n),
            None => Err(p.error(Failure {
                pos: p.pos,
                message: "empty document".into(),
            })),
        },
    }
}

pub(super) fn parse_all(input: &str) -> Result<Vec<Node>, ParseError> {
    let mut p = Parser::new(input);
    let mut docs = Vec::new();
    match p.documents(|_, node| {
        docs.push(node);
        Ok(())
    }) {
        Ok(()) => Ok(docs),
        Err(f) => Err(p.error(f)),
    }
}

/// Whether `c` may appear in a tag name (outside its parentheses).
fn is_tag_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"_-/+~$@%=*".contains(&c)
}

/// Which ASCII bytes a literal may hold (per [`lexical::is_literal_char`]).
static LITERAL_ASCII: [bool; 128] = {
    let mut t = [false; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = lexical_ascii(i as u8);
        i += 1;
    }
    t
};

const fn lexical_ascii(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'(' | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'$'
                | b'~'
                | b'@'
                | b':'
                | b'/'
                | b'.'
                | b'_'
                | b'+'
                | b'-'
                | b'\\'
                | b'*'
                | b'%'
                | b'!'
                | b'='
                | b'^'
                | b'<'
                | b'>'
                | b'|'
                | b'`'
        )
}

/// Whether a literal may hold the ASCII byte `c` (`c < 0x80`).
fn is_literal_ascii(c: u8) -> bool {
    LITERAL_ASCII[usize::from(c & 0x7f)]
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Parser<'a> {
        let src = input.strip_prefix('\u{feff}').unwrap_or(input);
        Parser {
            src,
            b: src.as_bytes(),
            pos: 0,
            depth: 0,
        }
    }

    fn error(&self, f: Failure) -> ParseError {
        let mut pos = f.pos.min(self.src.len());
        while !self.src.is_char_boundary(pos) {
            pos -= 1;
        }
        let before = &self.src[..pos];
        let line = before.bytes().filter(|&c| c == b'\n').count() + 1;
        let ls = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[ls..].chars().count() + 1;
        ParseError {
            line,
            column,
            message: f.message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    /// A short description of what is at `pos`, for error messages.
    fn found(&self, pos: usize) -> String {
        match self.src.get(pos..).and_then(|s| s.chars().next()) {
            None => "end of input".into(),
            Some('\n') => "end of line".into(),
            Some(c) => format!("{c:?}"),
        }
    }

    /// `"{what}, found …"` at `pos`. Kept out of line so that the recursive
    /// functions' stack frames stay small.
    #[cold]
    #[inline(never)]
    fn expected<T>(&self, what: &str, pos: usize) -> PResult<T> {
        fail(pos, format!("{what}, found {}", self.found(pos)))
    }

    fn enter(&mut self, pos: usize) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return fail(pos, format!("nesting deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // ---- documents ----------------------------------------------------

    fn documents(&mut self, mut each: impl FnMut(usize, Node) -> PResult<()>) -> PResult<()> {
        loop {
            match self.next_content_line()? {
                None => {
                    if self.pos < self.b.len() {
                        // At a `---` separator line.
                        self.pos += 3;
                        self.end_line()?;
                        continue;
                    }
                    return Ok(());
                }
                Some(indent) => {
                    let start = self.pos;
                    let node = self.block_node(indent)?;
                    if self.next_content_line()?.is_some() {
                        return self.expected("expected end of document", self.pos);
                    }
                    each(start, node)?;
                }
            }
        }
    }

    // ---- lines ------------------------------------------------------------

    fn line_start(&self, pos: usize) -> usize {
        self.b[..pos]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |i| i + 1)
    }

    /// Moves to the first character of the next line holding content (not
    /// blank, not only a comment) and returns its indentation; `None` at the
    /// end of input or at a `---` separator (left unconsumed). Must be called
    /// at a line start, within indentation, or at the content start of a line
    /// it returned before.
    fn next_content_line(&mut self) -> PResult<Option<usize>> {
        let mut ls = self.line_start(self.pos);
        if !self.b[ls..self.pos]
            .iter()
            .all(|&c| c == b' ' || c == b'\t')
        {
            // Past content on this line (only at the end of input): the
            // rest of the line has been consumed by `end_line`.
            match self.b[self.pos..].iter().position(|&c| c == b'\n') {
                Some(i) => ls = self.pos + i + 1,
                None => {
                    self.pos = self.b.len();
                    return Ok(None);
                }
            }
        }
        loop {
            let mut p = ls;
            let mut tab = None;
            while let Some(c @ (b' ' | b'\t')) = self.peek_at(p) {
                if c == b'\t' && tab.is_none() {
                    tab = Some(p);
                }
                p += 1;
            }
            match self.peek_at(p) {
                None => {
                    self.pos = p;
                    return Ok(None);
                }
                Some(b'\n') => ls = p + 1,
                Some(b'\r') if self.peek_at(p + 1) == Some(b'\n') => ls = p + 2,
                Some(b'#') => match self.b[p..].iter().position(|&c| c == b'\n') {
                    Some(i) => ls = p + i + 1,
                    None => {
                        self.pos = self.b.len();
                        return Ok(None);
                    }
                },
                Some(c) => {
                    if let Some(t) = tab
                        && !matches!(c, b'{' | b'[')
                    {
                        return fail(t, "tab in indentation");
                    }
                    if p == ls && self.b[p..].starts_with(b"---") {
                        let after = self.peek_at(p + 3);
                        if matches!(after, None | Some(b' ' | b'\t' | b'\n' | b'\r' | b'#')) {
                            self.pos = p;
                            return Ok(None);
                        }
                    }
                    self.pos = p;
                    return Ok(Some(p - ls));
                }
            }
        }
    }

    fn skip_inline_ws(&mut self) {
        while let Some(b' ' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// Whether only blanks and maybe a comment remain on this line.
    fn at_line_end(&self) -> bool {
        let mut p = self.pos;
        while let Some(b' ' | b'\t') = self.peek_at(p) {
            p += 1;
        }
        match self.peek_at(p) {
            None | Some(b'\n' | b'#') => true,
            Some(b'\r') => self.peek_at(p + 1) == Some(b'\n'),
            _ => false,
        }
    }

    /// Requires the rest of the line to be blank or a comment and moves past
    /// its newline.
    fn end_line(&mut self) -> PResult<()> {
        self.skip_inline_ws();
        if self.peek() == Some(b'#') {
            match self.b[self.pos..].iter().position(|&c| c == b'\n') {
                Some(i) => self.pos += i,
                None => self.pos = self.b.len(),
            }
        }
        match self.peek() {
            None => Ok(()),
            Some(b'\n') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'\r') if self.peek_at(self.pos + 1) == Some(b'\n') => {
                self.pos += 2;
                Ok(())
            }
            _ => self.expected("expected end of line", self.pos),
        }
    }

    /// Whether a `- ` sequence dash is at `pos`.
    fn at_dash(&self) -> bool {
        self.peek() == Some(b'-')
            && match self.peek_at(self.pos + 1) {
                None | Some(b' ' | b'\t' | b'\n') => true,
                Some(b'\r') => self.peek_at(self.pos + 2) == Some(b'\n'),
                _ => false,
            }
    }

    // ---- block style --------------------------------------------------------

    /// A node starting at the content of a line indented `indent`.
    fn block_node(&mut self, indent: usize) -> PResult<Node> {
        if self.at_dash() {
            return self.block_seq(indent);
        }
        if let Some(key) = self.try_block_key()? {
            return self.block_map(indent, key);
        }
        self.value_after_marker(indent, Ctx::Bare)
    }

    /// The value after `key:` or `-` (or of a bare line), `owner` being the
    /// column of the key, dash or line.
    fn value_after_marker(&mut self, owner: usize, ctx: Ctx) -> PResult<Node> {
        self.skip_inline_ws();
        if ctx == Ctx::Item && !self.at_line_end() {
            let col = self.pos - self.line_start(self.pos);
            if self.at_dash() {
                return self.block_seq(col);
            }
            if let Some(key) = self.try_block_key()? {
                return self.block_map(col, key);
            }
        }
        let tag_pos = self.pos;
        let tag = if self.peek() == Some(b'!') {
            let t = self.read_tag()?;
            self.skip_inline_ws();
            Some(t)
        } else {
            None
        };
        let mut node = if self.at_line_end() {
            self.end_line()?;
            // Only a tag alone on its line recurses without a container.
            let counted = tag.is_some();
            if counted {
                self.enter(tag_pos)?;
            }
            let next = self.next_content_line()?;
            let node = match next {
                Some(i) if i > owner || (ctx == Ctx::Bare && i == owner) => self.block_node(i)?,
                Some(i) if i == owner && ctx == Ctx::Key && self.at_dash() => self.block_seq(i)?,
                _ => Node::null(),
            };
            if counted {
                self.leave();
            }
            node
        } else if self.peek() == Some(b'|') {
            self.block_literal(owner)?
        } else {
            let node = self.flow_untagged()?;
            self.end_line()?;
            node
        };
        if let Some(t) = tag {
            if node.tag.is_some() {
                return fail(tag_pos, "a value takes only one tag");
            }
            node.tag = Some(t);
        }
        Ok(node)
    }

    /// A block sequence whose dashes are at column `col`; `pos` is at the first dash.
    fn block_seq(&mut self, col: usize) -> PResult<Node> {
        self.enter(self.pos)?;
        let mut items = Vec::new();
        loop {
            self.pos += 1; // the dash
            items.push(self.value_after_marker(col, Ctx::Item)?);
            match self.next_content_line()? {
                Some(i) if i == col && self.at_dash() => {}
                Some(i) if i > col => return fail(self.pos, "unexpected indentation"),
                _ => break,
            }
        }
        self.leave();
        Ok(Node::new(Value::Array(items)))
    }

    /// A block mapping whose keys are at column `col`; the first key (and its
    /// `:`) has been read.
    fn block_map(&mut self, col: usize, first: (Key, usize)) -> PResult<Node> {
        self.enter(first.1)?;
        let mut entries = Vec::new();
        let mut positions = Vec::new();
        let (mut key, mut key_pos) = first;
        loop {
            check_key_kind(&entries, &key, key_pos)?;
            let value = self.value_after_marker(col, Ctx::Key)?;
            entries.push((key, value));
            positions.push(key_pos);
            match self.next_content_line()? {
                Some(i) if i == col => {
                    key_pos = self.pos;
                    match self.try_block_key()? {
                        Some((k, _)) => key = k,
                        None => {
                            return self.expected("expected a key", self.pos);
                        }
                    }
                }
                Some(i) if i > col => return fail(self.pos, "unexpected indentation"),
                _ => break,
            }
        }
        check_duplicates(&entries, &positions)?;
        self.leave();
        Ok(Node::new(Value::Object(entries)))
    }

    /// Reads `key:` when the line continues with one (a key followed by `:`
    /// and a blank or end of line; quoted keys may be followed by `:`
    /// directly); otherwise reads nothing and returns `None`.
    fn try_block_key(&mut self) -> PResult<Option<(Key, usize)>> {
        let start = self.pos;
        let key = match self.peek() {
            Some(b'"' | b'\'') => {
                let (s, end) = lexical::read_quoted(self.src, start).map_err(|e| Failure {
                    pos: e.offset,
                    message: e.message.into(),
                })?;
                self.pos = end;
                self.skip_inline_ws();
                if self.peek() != Some(b':') {
                    self.pos = start;
                    return Ok(None);
                }
                self.pos += 1;
                return Ok(Some((Key::Field(s), start)));
            }
            Some(c) if c.is_ascii_digit() => {
                let end = start
                    + self.b[start..]
                        .iter()
                        .position(|c| !c.is_ascii_digit())
                        .unwrap_or(self.b.len() - start);
                self.pos = end;
                match self.index_key(start, end) {
                    Ok(k) => k,
                    Err(_) if !self.colon_ends_key() => {
                        self.pos = start;
                        return Ok(None);
                    }
                    Err(f) => return Err(f),
                }
            }
            Some(_) if self.merge_key_end(start).is_some() => {
                self.pos = start + 2;
                Key::Field("<<".to_owned())
            }
            Some(_) => {
                let end = self.scan_literal(start);
                if end == start {
                    return Ok(None);
                }
                let end = if self.b[end - 1] == b':' {
                    end - 1
                } else {
                    end
                };
                self.pos = end;
                Key::Field(self.src[start..end].to_owned())
            }
            None => return Ok(None),
        };
        self.skip_inline_ws();
        if self.colon_ends_key() {
            self.pos += 1;
            Ok(Some((key, start)))
        } else {
            self.pos = start;
            Ok(None)
        }
    }

    /// Whether `pos` holds a `:` followed by a blank, a comment or end of line.
    fn colon_ends_key(&self) -> bool {
        self.peek() == Some(b':')
            && matches!(
                self.peek_at(self.pos + 1),
                None | Some(b' ' | b'\t' | b'\n' | b'\r' | b'#')
            )
    }

    fn index_key(&self, start: usize, end: usize) -> PResult<Key> {
        match self.src[start..end].parse::<u32>() {
            Ok(i) => Ok(Key::Index(i)),
            Err(_) => fail(
                start,
                format!("sparse index out of range (max {})", u32::MAX),
            ),
        }
    }

    /// A `|` or `|-` block literal; `pos` is at the `|`. Content lines are
    /// indented `owner + 2`.
    fn block_literal(&mut self, owner: usize) -> PResult<Node> {
        self.pos += 1;
        // `|` keeps one final newline ("clip"), `|-` none ("strip"), `|+`
        // every trailing newline ("keep").
        let chomp = match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                Chomp::Strip
            }
            Some(b'+') => {
                self.pos += 1;
                Chomp::Keep
            }
            _ => Chomp::Clip,
        };
        self.end_line()?;
        let indent = owner + 2;
        let mut lines: Vec<&str> = Vec::new();
        while self.pos < self.b.len() {
            let rest = &self.src[self.pos..];
            let (line, next) = match rest.find('\n') {
                Some(i) => (&rest[..i], self.pos + i + 1),
                None => (rest, self.b.len()),
            };
            let line = line.strip_suffix('\r').unwrap_or(line);
            let spaces = line.bytes().take_while(|&c| c == b' ').count();
            if spaces >= indent {
                lines.push(&line[indent..]);
            } else if spaces == line.len() {
                lines.push("");
            } else {
                break;
            }
            self.pos = next;
        }
        if chomp == Chomp::Keep {
            let mut s = String::new();
            for line in &lines {
                s.push_str(line);
                s.push('\n');
            }
            return Ok(Node::string(s));
        }
        while lines.last() == Some(&"") {
            lines.pop();
        }
        let mut s = lines.join("\n");
        if chomp == Chomp::Clip && !lines.is_empty() {
            s.push('\n');
        }
        Ok(Node::string(s))
    }

    // ---- flow style ---------------------------------------------------------

    /// Skips blanks, newlines and comments.
    fn skip_flow_ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'#' => match self.b[self.pos..].iter().position(|&c| c == b'\n') {
                    Some(i) => self.pos += i + 1,
                    None => self.pos = self.b.len(),
                },
                _ => break,
            }
        }
    }

    /// A tag at `pos` (which holds `!`).
    fn read_tag(&mut self) -> PResult<Tag> {
        let start = self.pos;
        self.pos += 1;
        loop {
            let name_start = self.pos;
            while self.peek().is_some_and(is_tag_name_byte) {
                self.pos += 1;
            }
            if self.pos == name_start {
                return fail(self.pos, "expected a tag name");
            }
            if self.peek() == Some(b'(') {
                let open = self.pos;
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        Some(b'(') => depth += 1,
                        Some(b')') => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                break;
                            }
                        }
                        None | Some(b'\n') => return fail(open, "unclosed '(' in tag"),
                        _ => {}
                    }
                    self.pos += 1;
                }
            }
            if self.peek() == Some(b'.') && self.peek_at(self.pos + 1).is_some_and(is_tag_name_byte)
            {
                self.pos += 1;
                continue;
            }
            break;
        }
        match self.peek() {
            None | Some(b' ' | b'\t' | b'\n' | b'\r' | b'#' | b',' | b']' | b'}') => {
                Ok(Tag::new(&self.src[start + 1..self.pos]))
            }
            _ => fail(
                self.pos,
                format!(
                    "expected a blank after the tag, found {}",
                    self.found(self.pos)
                ),
            ),
        }
    }

    /// A flow value, maybe tagged.
    fn flow_value(&mut self) -> PResult<Node> {
        if self.peek() != Some(b'!') {
            return self.flow_untagged();
        }
        let tag = self.read_tag()?;
        self.skip_flow_ws();
        let mut node = match self.peek() {
            None | Some(b',' | b']' | b'}') => Node::null(),
            _ => self.flow_untagged()?,
        };
        node.tag = Some(tag);
        Ok(node)
    }

    /// A flow value without a tag.
    fn flow_untagged(&mut self) -> PResult<Node> {
        let start = self.pos;
        match self.peek() {
            Some(b'{') => self.flow_object(),
            Some(b'[') => self.flow_array(),
            Some(b'"' | b'\'') => {
                let mut s = self.quoted()?;
                self.fold_strings(start, &mut s)?;
                Ok(Node::string(s))
            }
            Some(b'-') if self.dash_literal(start) && !self.b[start..].starts_with(b"-.inf") => {
                self.literal_value(start)
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'!') => fail(start, "a value takes only one tag"),
            Some(_) => self.literal_value(start),
            None => fail(start, "expected a value, found end of input"),
        }
    }

    /// A literal value (or `null`, `true`, `false`, `.nan`, `.inf`) at `start`.
    fn literal_value(&mut self, start: usize) -> PResult<Node> {
        let end = self.scan_literal(start);
        if end == start {
            if self.b[start..].starts_with(b"<<") {
                return fail(start, "'<<' is only a key");
            }
            return self.expected("expected a value", start);
        }
        let end = if self.b[end - 1] == b':' {
            end - 1
        } else {
            end
        };
        self.pos = end;
        let text = &self.src[start..end];
        Ok(Node::new(match text {
            "null" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            ".nan" => Value::Float(f64::NAN),
            ".inf" => Value::Float(f64::INFINITY),
            _ => Value::String(text.to_owned()),
        }))
    }

    /// Folded strings: a quoted string that is the first thing on its line
    /// and ends it (blanks and a comment may follow) is continued by a quoted
    /// string starting the next content line at the same indentation, and so
    /// on; the parts are joined with nothing between them. `start` is where
    /// the first string began, `s` holds it and `pos` is just past it.
    fn fold_strings(&mut self, start: usize, s: &mut String) -> PResult<()> {
        // Only blanks before it on its line? Looks back over the blanks
        // alone: a string inside a long flow line (a one-line JSON document)
        // must not rescan the line (that made such input quadratic).
        let blanks = self.b[..start]
            .iter()
            .rev()
            .take_while(|&&c| c == b' ')
            .count();
        if !(start == blanks || self.b[start - blanks - 1] == b'\n') {
            return Ok(());
        }
        let indent = blanks;
        loop {
            // The rest of this line: blanks and maybe a comment.
            let mut p = self.pos;
            while let Some(b' ' | b'\t') = self.peek_at(p) {
                p += 1;
            }
            if self.peek_at(p) == Some(b'#') {
                p += self.b[p..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .unwrap_or(self.b.len() - p);
            }
            if self.peek_at(p) == Some(b'\r') {
                p += 1;
            }
            if self.peek_at(p) != Some(b'\n') {
                return Ok(());
            }
            p += 1;
            // The next line holding more than blanks and comments.
            let q = loop {
                let mut q = p;
                while self.peek_at(q) == Some(b' ') {
                    q += 1;
                }
                match self.peek_at(q) {
                    Some(b'\n') => p = q + 1,
                    Some(b'\r') if self.peek_at(q + 1) == Some(b'\n') => p = q + 2,
                    Some(b'#') => match self.b[q..].iter().position(|&c| c == b'\n') {
                        Some(i) => p = q + i + 1,
                        None => return Ok(()),
                    },
                    Some(b'"' | b'\'') if q - p == indent => break q,
                    _ => return Ok(()),
                }
            };
            self.pos = q;
            let part = self.quoted()?;
            s.push_str(&part);
        }
    }

    fn quoted(&mut self) -> PResult<String> {
        let (s, end) = lexical::read_quoted(self.src, self.pos).map_err(|e| Failure {
            pos: e.offset,
            message: e.message.into(),
        })?;
        self.pos = end;
        Ok(s)
    }

    /// Whether a literal starting with `-` starts at `start`: go-tony reads
    /// `-x` as a literal when the dash is followed by a literal character
    /// other than a digit, `:` or a closer (`-1` is a number, `- x` a
    /// sequence item, `[-]` an error).
    fn dash_literal(&self, start: usize) -> bool {
        self.peek_at(start) == Some(b'-')
            && self.src[start + 1..].chars().next().is_some_and(|c| {
                lexical::is_literal_char(c)
                    && !c.is_ascii_digit()
                    && !matches!(c, ':' | ']' | '}' | ')')
            })
    }

    /// The end of a `<<` key at `start` (go-tony's merge key, read here as
    /// the ordinary field `<<`), when one is there: `<<` followed by `:` or
    /// a blank.
    fn merge_key_end(&self, start: usize) -> Option<usize> {
        (self.b[start..].starts_with(b"<<")
            && matches!(
                self.peek_at(start + 2),
                Some(b':' | b' ' | b'\t' | b'\n' | b'\r' | b',' | b'}')
            ))
        .then_some(start + 2)
    }

    /// The end of the literal starting at `start` (== `start` when none
    /// starts there). A `]` or `}` the literal did not open ends it; a
    /// trailing `:` is included (callers drop it).
    fn scan_literal(&self, start: usize) -> usize {
        let first = match self.src.get(start..).and_then(|s| s.chars().next()) {
            Some(c) => c,
            None => return start,
        };
        if !lexical::is_literal_start(first) && !self.dash_literal(start) {
            return start;
        }
        let mut stack: Vec<u8> = Vec::new();
        let mut p = start;
        while p < self.b.len() {
            let c = self.b[p];
            if c < 0x80 {
                if !is_literal_ascii(c) {
                    break;
                }
                match c {
                    b'[' | b'{' | b'(' => stack.push(c),
                    b']' | b'}' | b')' => {
                        let opener = match c {
                            b']' => b'[',
                            b'}' => b'{',
                            _ => b'(',
                        };
                        if stack.last() == Some(&opener) {
                            stack.pop();
                        } else if c != b')' {
                            break;
                        }
                    }
                    _ => {}
                }
                p += 1;
            } else {
                match self.src[p..].chars().next() {
                    Some(ch) if lexical::is_literal_char(ch) => p += ch.len_utf8(),
                    _ => break,
                }
            }
        }
        p
    }

    fn number(&mut self) -> PResult<Node> {
        let start = self.pos;
        let mut p = start;
        if self.peek_at(p) == Some(b'-') {
            p += 1;
            if self.b[p..].starts_with(b".inf") {
                self.pos = p + 4;
                self.after_number(start)?;
                return Ok(Node::new(Value::Float(f64::NEG_INFINITY)));
            }
        }
        let digits = |p: usize| {
            self.b[p..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(self.b.len() - p)
        };
        let n = digits(p);
        if n == 0 {
            return self.expected("expected a value", start);
        }
        p += n;
        let mut float = false;
        if self.peek_at(p) == Some(b'.') {
            let n = digits(p + 1);
            if n == 0 {
                return fail(p + 1, "expected digits after '.'");
            }
            p += 1 + n;
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek_at(p) {
            p += 1;
            if let Some(b'+' | b'-') = self.peek_at(p) {
                p += 1;
            }
            let n = digits(p);
            if n == 0 {
                return fail(p, "expected digits in the exponent");
            }
            p += n;
            float = true;
        }
        self.pos = p;
        self.after_number(start)?;
        let text = &self.src[start..p];
        if float {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Node::new(Value::Float(f))),
                _ => fail(start, "float out of range"),
            }
        } else {
            match text.parse::<i64>() {
                Ok(i) => Ok(Node::int(i)),
                Err(_) => fail(
                    start,
                    "integer out of range for i64 (write a float like 1e20, or quote it)",
                ),
            }
        }
    }

    /// A number must be followed by a delimiter.
    fn after_number(&self, start: usize) -> PResult<()> {
        match self.peek() {
            None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}' | b':' | b'#') => Ok(()),
            _ => fail(
                start,
                format!(
                    "invalid number: {} after it (quote strings that start with a digit or '-')",
                    self.found(self.pos)
                ),
            ),
        }
    }

    /// At the next item of a flow container closed by `close`: skips blank
    /// space and comments, consumes `close` and returns `true` at the end,
    /// `false` before an item, and fails at the end of input or on a stray
    /// `,` (`what` names the expected item).
    fn flow_close(&mut self, close: u8, what: &str) -> PResult<bool> {
        self.skip_flow_ws();
        let close_ch = close as char;
        match self.peek() {
            Some(c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            None => fail(
                self.pos,
                format!("expected '{close_ch}', found end of input"),
            ),
            Some(b',') => fail(
                self.pos,
                format!("expected {what} or '{close_ch}', found ','"),
            ),
            _ => Ok(false),
        }
    }

    fn flow_array(&mut self) -> PResult<Node> {
        self.enter(self.pos)?;
        self.pos += 1;
        let mut items = Vec::new();
        while !self.flow_close(b']', "a value")? {
            items.push(self.flow_value()?);
            self.skip_flow_ws();
            if self.peek() == Some(b',') {
                self.pos += 1;
            }
        }
        self.leave();
        Ok(Node::new(Value::Array(items)))
    }

    /// A key in a flow object: a quoted string, an unsigned integer or a literal.
    fn flow_key(&mut self) -> PResult<Key> {
        let start = self.pos;
        match self.peek() {
            Some(b'"' | b'\'') => Ok(Key::Field(self.quoted()?)),
            Some(b'0'..=b'9') => {
                let end = start
                    + self.b[start..]
                        .iter()
                        .position(|c| !c.is_ascii_digit())
                        .unwrap_or(self.b.len() - start);
                self.pos = end;
                match self.peek() {
                    None
                    | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b'}' | b':' | b'#' | b'!') => {
                        self.index_key(start, end)
                    }
                    _ => fail(start, "keys are strings or unsigned integers"),
                }
            }
            _ => {
                if let Some(end) = self.merge_key_end(start) {
                    self.pos = end;
                    return Ok(Key::Field("<<".to_owned()));
                }
                let end = self.scan_literal(start);
                if end == start {
                    return self.expected("expected a key", start);
                }
                let end = if self.b[end - 1] == b':' {
                    end - 1
                } else {
                    end
                };
                self.pos = end;
                Ok(Key::Field(self.src[start..end].to_owned()))
            }
        }
    }

    fn flow_object(&mut self) -> PResult<Node> {
        self.enter(self.pos)?;
        self.pos += 1;
        let mut entries = Vec::new();
        let mut positions = Vec::new();
        while !self.flow_close(b'}', "a key")? {
            let key_pos = self.pos;
            let key = self.flow_key()?;
            check_key_kind(&entries, &key, key_pos)?;
            self.skip_flow_ws();
            let value = match self.peek() {
                Some(b':') => {
                    self.pos += 1;
                    self.skip_flow_ws();
                    self.flow_value()?
                }
                // A key set: `{a !t b}` is `{a: !t null, b: null}`.
                Some(b'!') => {
                    let tag = self.read_tag()?;
                    Node::null().with_tag(Some(tag))
                }
                _ => Node::null(),
            };
            entries.push((key, value));
            positions.push(key_pos);
            self.skip_flow_ws();
            if self.peek() == Some(b',') {
                self.pos += 1;
            }
        }
        check_duplicates(&entries, &positions)?;
        self.leave();
        Ok(Node::new(Value::Object(entries)))
    }
}

/// Integer and string keys may not be mixed in one object.
fn check_key_kind(entries: &[(Key, Node)], key: &Key, pos: usize) -> PResult<()> {
    match entries.first() {
        Some((first, _)) if matches!(first, Key::Index(_)) != matches!(key, Key::Index(_)) => {
            fail(pos, "an object cannot mix integer and string keys")
        }
        _ => Ok(()),
    }
}

/// Keys must be unique; reports the later of two equal keys.
fn check_duplicates(entries: &[(Key, Node)], positions: &[usize]) -> PResult<()> {
    let dup = |j: usize| {
        let shown = match &entries[j].0 {
            Key::Field(s) => format!("{s:?}"),
            Key::Index(i) => i.to_string(),
        };
        fail(positions[j], format!("duplicate key {shown}"))
    };
    if entries.len() <= 16 {
        for j in 1..entries.len() {
            if entries[..j].iter().any(|(k, _)| *k == entries[j].0) {
                return dup(j);
            }
        }
        return Ok(());
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&x, &y| entries[x].0.cmp(&entries[y].0).then(x.cmp(&y)));
    let mut found: Option<usize> = None;
    for w in order.windows(2) {
        if entries[w[0]].0 == entries[w[1]].0 {
            found = Some(found.map_or(w[1], |f| f.min(w[1])));
        }
    }
    match found {
        Some(j) => dup(j),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_table_agrees_with_lexical() {
        for b in 0u8..0x80 {
            assert_eq!(
                is_literal_ascii(b),
                lexical::is_literal_char(char::from(b)),
                "{b}"
            );
        }
    }
}
