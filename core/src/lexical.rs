//! Lexical rules shared by Tony text and kinded paths: which characters a
//! literal (unquoted string) may hold, when a string must be quoted, how to
//! quote it, and how to read a quoted string back.
//!
//! It owns exactly these character-level decisions so that the text printer,
//! the text parser and the kpath printer/parser can never disagree. It never
//! builds nodes or paths.

/// ASCII punctuation a literal may contain (besides letters and digits);
/// [`is_literal_char`] spells it out as a `match` for speed.
#[cfg(test)]
const LITERAL_PUNCT: &str = "()[]{}$~@:/._+-\\*%!=^<>|`";

/// Whether `c` may appear inside a literal.
pub fn is_literal_char(c: char) -> bool {
    if c.is_ascii() {
        // Kept in step with LITERAL_PUNCT (checked by a test).
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '(' | ')'
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '$'
                    | '~'
                    | '@'
                    | ':'
                    | '/'
                    | '.'
                    | '_'
                    | '+'
                    | '-'
                    | '\\'
                    | '*'
                    | '%'
                    | '!'
                    | '='
                    // The ASCII symbols (Unicode category S) go-tony's
                    // literals admit besides the list above.
                    | '^'
                    | '<'
                    | '>'
                    | '|'
                    | '`'
            )
    } else {
        !c.is_whitespace() && !c.is_control()
    }
}

/// Whether `c` may start a literal. A byte-order mark (U+FEFF) may not: the
/// text parser skips one at the start of its input. Nor may `<` (the `<<`
/// key), `|` (a block literal) or `>` (refused by go-tony), nor `)`, which
/// closes nothing. (The parser also reads `-x` as a literal, as go-tony does;
/// the printer quotes it.)
pub fn is_literal_start(c: char) -> bool {
    is_literal_char(c) && !c.is_ascii_digit() && !"[]{}):-!<>|\u{feff}".contains(c)
}

/// Whether `s` would be read as a number by the text parser (so it must be
/// quoted to stay a string). Literals never start with a digit or `-`, so this
/// only needs to reject what [`is_literal_start`] lets through.
fn looks_reserved(s: &str) -> bool {
    matches!(s, "true" | "false" | "null") || is_float_word(s)
}

/// Whether `s` is one of the words the text parser reads as a non-finite
/// float: `.nan`, `.inf`, `-.inf`.
pub fn is_float_word(s: &str) -> bool {
    matches!(s, ".nan" | ".inf" | "-.inf")
}

/// Whether brackets in `s` are balanced (every closer closes an opener of the
/// same kind, every opener is closed), so a literal reads back whole.
fn brackets_balanced(s: &str) -> bool {
    let mut stack = Vec::new();
    for c in s.chars() {
        let opener = match c {
            '[' | '{' | '(' => {
                stack.push(c);
                continue;
            }
            ']' => '[',
            '}' => '{',
            ')' => '(',
            _ => continue,
        };
        if stack.pop() != Some(opener) {
            return false;
        }
    }
    stack.is_empty()
}

/// Whether the text printer may print `s` unquoted and read it back as the same string.
pub fn can_be_literal(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    is_literal_start(first)
        && chars.all(is_literal_char)
        && !s.ends_with(':')
        && !looks_reserved(s)
        && brackets_balanced(s)
}

/// Whether a kpath field (or `(key)`) can be printed unquoted: a literal
/// without `. [ ] { } ( )`, not starting with `*` and not `$`.
pub fn can_be_path_field(s: &str) -> bool {
    can_be_literal(s)
        && !s.contains(['.', '[', ']', '{', '}', '(', ')'])
        && !s.starts_with('*')
        && s != "$"
}

/// Appends `s` quoted: with `'` when that needs fewer escapes than `"`, else
/// with `"`. JSON's escape grammar; inside single quotes `\'` replaces `\"`.
pub fn write_quoted(out: &mut String, s: &str) {
    let doubles = s.bytes().filter(|&b| b == b'"').count();
    let singles = s.bytes().filter(|&b| b == b'\'').count();
    let q = if doubles > singles { '\'' } else { '"' };
    out.push(q);
    // Copy runs of characters that need no escape in one go.
    let mut run = 0;
    for (i, c) in s.char_indices() {
        let esc: &str = match c {
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '"' if q == '"' => "\\\"",
            '\'' if q == '\'' => "\\'",
            c if (c as u32) < 0x20 || c == '\u{7f}' => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        run = i + c.len_utf8();
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let v = c as u32;
            out.push_str("\\u00");
            out.push(char::from(HEX[(v >> 4) as usize & 0xf]));
            out.push(char::from(HEX[v as usize & 0xf]));
        } else {
            out.push_str(esc);
        }
    }
    out.push_str(&s[run..]);
    out.push(q);
}

/// Appends `s` as a literal when it can be one, else quoted.
pub fn write_string(out: &mut String, s: &str) {
    if can_be_literal(s) {
        out.push_str(s);
    } else {
        write_quoted(out, s);
    }
}

/// A quoted string could not be read: the byte offset and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteError {
    /// Byte offset in the input where the problem is.
    pub offset: usize,
    /// What was wrong.
    pub message: &'static str,
}

/// Reads the quoted string that starts at byte `start` of `input` (which must
/// hold `"` or `'`). Returns the string and the byte offset just past the
/// closing quote.
pub fn read_quoted(input: &str, start: usize) -> Result<(String, usize), QuoteError> {
    let bytes = input.as_bytes();
    let q = match bytes.get(start) {
        Some(&b'"') => '"',
        Some(&b'\'') => '\'',
        _ => {
            return Err(QuoteError {
                offset: start,
                message: "expected a quote",
            });
        }
    };
    // Fast path: no escape before the closing quote, one copy.
    let body = &bytes[start + 1..];
    let stop = body.iter().position(|&b| b == q as u8 || b == b'\\');
    if let Some(i) = stop
        && body[i] == q as u8
    {
        return Ok((input[start + 1..start + 1 + i].to_owned(), start + 2 + i));
    }
    let base = start + 1 + stop.unwrap_or(body.len());
    let mut out = String::with_capacity(base - start + 16);
    out.push_str(&input[start + 1..base]);
    let mut iter = input[base..].char_indices();
    // Where `iter` started (it restarts after a line continuation).
    let mut base_shift = base;
    while let Some((i, c)) = iter.next() {
        let at = base_shift + i;
        match c {
            c if c == q => return Ok((out, at + 1)),
            '\\' => {
                let Some((_, e)) = iter.next() else {
                    return Err(QuoteError {
                        offset: at,
                        message: "unterminated escape",
                    });
                };
                match e {
                    // A line continuation (double quotes only): the
                    // backslash, the line break and the next line's leading
                    // blanks are dropped.
                    '\n' | '\r' if q == '"' => {
                        let rest = &input[at + 1..];
                        let skip = rest
                            .strip_prefix("\r\n")
                            .or_else(|| rest.strip_prefix('\n'));
                        let Some(after) = skip.filter(|_| e == '\n' || rest.starts_with("\r\n"))
                        else {
                            return Err(QuoteError {
                                offset: at,
                                message: "unknown escape",
                            });
                        };
                        let blanks = after.len() - after.trim_start_matches([' ', '\t']).len();
                        let resume = input.len() - after.len() + blanks;
                        iter = input[resume..].char_indices();
                        base_shift = resume;
                        continue;
                    }
                    '"' if q == '"' => out.push('"'),
                    '\'' if q == '\'' => out.push('\''),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hi = read_hex4(input, &mut iter, at)?;
                        if (0xD800..0xDC00).contains(&hi) {
                            // A surrogate pair: the low half must follow as `\uXXXX`.
                            let (Some((_, '\\')), Some((_, 'u'))) = (iter.next(), iter.next())
                            else {
                                return Err(QuoteError {
                                    offset: at,
                                    message: "unpaired surrogate in \\u escape",
                                });
                            };
                            let lo = read_hex4(input, &mut iter, at)?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return Err(QuoteError {
                                    offset: at,
                                    message: "invalid low surrogate in \\u escape",
                                });
                            }
                            let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            match char::from_u32(cp) {
                                Some(c) => out.push(c),
                                None => {
                                    return Err(QuoteError {
                                        offset: at,
                                        message: "invalid \\u escape",
                                    });
                                }
                            }
                        } else {
                            match char::from_u32(hi) {
                                Some(c) => out.push(c),
                                None => {
                                    return Err(QuoteError {
                                        offset: at,
                                        message: "unpaired surrogate in \\u escape",
                                    });
                                }
                            }
                        }
                    }
                    _ => {
                        return Err(QuoteError {
                            offset: at,
                            message: "unknown escape",
                        });
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(QuoteError {
        offset: start,
        message: "unterminated string",
    })
}

fn read_hex4(
    _input: &str,
    iter: &mut std::str::CharIndices<'_>,
    at: usize,
) -> Result<u32, QuoteError> {
    let mut v = 0u32;
    for _ in 0..4 {
        let d = iter
            .next()
            .and_then(|(_, c)| c.to_digit(16))
            .ok_or(QuoteError {
                offset: at,
                message: "\\u escape needs four hex digits",
            })?;
        v = v * 16 + d;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_char_table_matches_punctuation_list() {
        for b in 0u8..0x80 {
            let c = char::from(b);
            assert_eq!(
                is_literal_char(c),
                c.is_ascii_alphanumeric() || LITERAL_PUNCT.contains(c),
                "{c:?}"
            );
        }
    }

    #[test]
    fn literal_rules() {
        assert!(can_be_literal("hello"));
        assert!(can_be_literal("a/b"));
        assert!(can_be_literal("a:b"));
        assert!(!can_be_literal("a:"));
        assert!(!can_be_literal("1a"));
        assert!(!can_be_literal("-a"));
        assert!(!can_be_literal("true"));
        assert!(!can_be_literal("x y"));
        assert!(!can_be_literal("a]"));
        assert!(!can_be_literal(""));
        assert!(can_be_path_field("user_1"));
        assert!(!can_be_path_field("a.b"));
    }

    #[test]
    fn quoting_round_trips() {
        for s in ["a'b", "a\"b", "x\ny", "\u{1}", "'\"'\"'", "é😀", "\\"] {
            let mut out = String::new();
            write_quoted(&mut out, s);
            let (back, end) = read_quoted(&out, 0).expect("read back");
            assert_eq!(back, s);
            assert_eq!(end, out.len());
        }
        assert_eq!(
            read_quoted("\"\\ud83d\\ude00\"", 0).map(|r| r.0),
            Ok("😀".into())
        );
        assert!(read_quoted("\"abc", 0).is_err());
        assert!(read_quoted("'a\\\"'", 0).is_err());
    }
}
