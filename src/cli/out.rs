//! What the commands print and how they end: stdout lines that end quietly
//! on a broken pipe, the exit codes, and documents as JSON ([`logd::json`]).
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure (I/O, a damaged store, a patch that does not apply, `check` found problems) |
//! | 2 | usage error or bad input (arguments, DATA, paths, a commit past the current one) |
//! | 3 | the condition did not hold: not matched (`--match`) or stale (`--seq`); nothing was written |
//! | 4 | absent: nothing at the path (at that commit) |
//! | 5 | the store is locked by another process |
//!
//! # JSON
//!
//! Documents print in [`logd::json`]'s mapping (stored key order; tags,
//! non-finite floats and sparse arrays mapped losslessly).

use std::io::Write as _;
use std::process::ExitCode;

use logd::Node;

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 0.
    Ok = 0,
    /// 1.
    Failure = 1,
    /// 2.
    Usage = 2,
    /// 3.
    NotMatched = 3,
    /// 4.
    Absent = 4,
    /// 5.
    Locked = 5,
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> ExitCode {
        ExitCode::from(c as u8)
    }
}

/// A command's error: its exit code and one line for stderr (`None`: end
/// quietly, as on a broken pipe).
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: Code,
    /// The line printed after `logd: `.
    pub message: Option<String>,
}

impl CliError {
    /// Exit 1.
    pub fn failure(message: impl Into<String>) -> CliError {
        CliError {
            code: Code::Failure,
            message: Some(message.into()),
        }
    }

    /// Exit 2.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: Code::Usage,
            message: Some(message.into()),
        }
    }

    /// The store error, with `context` in front, and its exit code.
    pub fn store(context: &str, e: logd::Error) -> CliError {
        let code = match &e {
            logd::Error::Locked { .. } => Code::Locked,
            logd::Error::FutureCommit { .. }
            | logd::Error::Parse { .. }
            | logd::Error::InvalidPath { .. } => Code::Usage,
            _ => Code::Failure,
        };
        let message = if context.is_empty() {
            e.to_string()
        } else {
            format!("{context}: {e}")
        };
        CliError {
            code,
            message: Some(message),
        }
    }
}

impl From<logd::Error> for CliError {
    fn from(e: logd::Error) -> CliError {
        CliError::store("", e)
    }
}

/// Writes one line to stdout; a closed pipe ends the command quietly.
pub fn line(text: &str) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = String::with_capacity(text.len() + 1);
    buf.push_str(text);
    buf.push('\n');
    out.write_all(buf.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                CliError {
                    code: Code::Ok,
                    message: None,
                }
            } else {
                CliError::failure(format!("cannot write to stdout: {e}"))
            }
        })
}

/// `line(format!(...))?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::line(&format!($($arg)*))
    };
}
pub(crate) use out;

/// The node as JSON text (see [`logd::json`]).
pub fn to_json(node: &Node) -> Result<String, CliError> {
    logd::json::to_string(node).map_err(|e| CliError::failure(format!("cannot print as JSON: {e}")))
}
