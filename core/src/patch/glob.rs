//! The shell glob of `!glob`: `*`, `?`, `[...]` (ranges, `!`/`^` negation),
//! `\` escapes. `*`, `?` and `[...]` never match `/`.
//!
//! Owns pattern matching only. Never uses a regex engine and never
//! backtracks exponentially: the pattern and the text are split at their
//! literal `/`s (which only a literal `/` can match), and each segment is
//! matched with the classic single-star backtracking walk, which is
//! `O(pattern × text)` in the worst case.

/// One token of a compiled pattern.
#[derive(Debug, PartialEq)]
enum Tok {
    /// A literal character.
    Lit(char),
    /// `?`
    Any,
    /// `*`
    Star,
    /// `[...]`: inclusive ranges, negated when `neg`.
    Class {
        neg: bool,
        ranges: Vec<(char, char)>,
    },
}

fn compile(pat: &str) -> Vec<Tok> {
    let chars: Vec<char> = pat.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '*' => {
                // Consecutive stars are one star.
                if out.last() != Some(&Tok::Star) {
                    out.push(Tok::Star);
                }
                i += 1;
            }
            '?' => {
                out.push(Tok::Any);
                i += 1;
            }
            '\\' => match chars.get(i + 1) {
                Some(&e) => {
                    out.push(Tok::Lit(e));
                    i += 2;
                }
                None => {
                    out.push(Tok::Lit('\\'));
                    i += 1;
                }
            },
            '[' => match class(&chars, i + 1) {
                Some((tok, next)) => {
                    out.push(tok);
                    i = next;
                }
                None => {
                    out.push(Tok::Lit('['));
                    i += 1;
                }
            },
            c => {
                out.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    out
}

/// Parses a class body starting after `[`; `None` when it is not closed.
fn class(chars: &[char], mut i: usize) -> Option<(Tok, usize)> {
    let neg = matches!(chars.get(i), Some('!' | '^'));
    if neg {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Tok::Class { neg, ranges }, i + 1));
        }
        first = false;
        let (lo, next) = if c == '\\' {
            (*chars.get(i + 1)?, i + 2)
        } else {
            (c, i + 1)
        };
        i = next;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
            let (hi, next) = match chars.get(i + 1) {
                Some('\\') => (*chars.get(i + 2)?, i + 3),
                Some(&h) => (h, i + 2),
                None => return None,
            };
            ranges.push((lo, hi));
            i = next;
        } else {
            ranges.push((lo, lo));
        }
    }
}

fn tok_matches(t: &Tok, c: char) -> bool {
    match t {
        Tok::Lit(l) => *l == c,
        Tok::Any => c != '/',
        Tok::Star => false,
        Tok::Class { neg, ranges } => {
            c != '/' && (ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg)
        }
    }
}

/// Matches one `/`-free segment: the classic walk that backtracks only to
/// the most recent `*`.
fn match_segment(toks: &[Tok], text: &[char]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None; // (token after star, text pos)
    while t < text.len() {
        match (toks.get(p), text.get(t)) {
            (Some(Tok::Star), _) => {
                star = Some((p + 1, t));
                p += 1;
            }
            (Some(tok), Some(&c)) if tok_matches(tok, c) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks.get(p..)
        .is_some_and(|rest| rest.iter().all(|t| *t == Tok::Star))
}

/// Whether `text` matches the shell pattern `pat` (see the module docs).
pub fn glob_match(pat: &str, text: &str) -> bool {
    let toks = compile(pat);
    let pat_segs: Vec<&[Tok]> = toks.split(|t| *t == Tok::Lit('/')).collect();
    let text_chars: Vec<char> = text.chars().collect();
    let text_segs: Vec<&[char]> = text_chars.split(|c| *c == '/').collect();
    pat_segs.len() == text_segs.len()
        && pat_segs
            .iter()
            .zip(&text_segs)
            .all(|(p, t)| match_segment(p, t))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn basics() {
        assert!(glob_match("h*o", "hello"));
        assert!(glob_match("*", ""));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("a/*", "a/b"));
        assert!(!glob_match("a/*", "b/c"));
        assert!(!glob_match("*", "a/b"));
        assert!(!glob_match("a?b", "a/b"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*/*", "a/b"));
        assert!(glob_match("x-*", "x-foo"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[a-c]x", "dx"));
        assert!(glob_match("[!a-c]x", "dx"));
        assert!(glob_match("[^a-c]x", "dx"));
        assert!(!glob_match("[!a-c]x", "ax"));
        assert!(glob_match("[]]", "]"));
        assert!(glob_match("[a-]", "-"));
        assert!(!glob_match("[!x]", "/"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("\\*", "a"));
        assert!(glob_match("[", "["));
        assert!(glob_match("a\\", "a\\"));
        assert!(glob_match("[\\]]", "]"));
        assert!(glob_match("é?", "éü"));
    }

    #[test]
    fn no_exponential_blowup() {
        let text = "a".repeat(5000);
        let pat = format!("{}b", "a*".repeat(50));
        let start = std::time::Instant::now();
        assert!(!glob_match(&pat, &text));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
