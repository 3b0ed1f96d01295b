//! Small helpers shared by the commands: parsing arguments into API values,
//! printing nodes and times.

use std::time::SystemTime;

use logd::{KPath, Node};

/// How a node is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One-line wire form (the default).
    Wire,
    /// Block form.
    Block,
    /// JSON.
    Json,
}

/// Parses a path argument; the error names the argument, the text and the offset.
pub fn path(what: &str, text: &str) -> Result<KPath, String> {
    KPath::parse(text).map_err(|e| format!("bad {what}: {e}"))
}

/// Parses Tony (or JSON) text; the error names the argument, line and column.
pub fn tony(what: &str, text: &str) -> Result<Node, String> {
    logd::text::parse(text).map_err(|e| {
        if text.len() <= 80 {
            format!("bad {what} {text:?}: {e}")
        } else {
            format!("bad {what}: {e}")
        }
    })
}

/// Prints a node in the given format (without a trailing newline for block
/// form); JSON in logd's mapping (see [`super::out`]).
pub fn show(node: &Node, format: Format) -> Result<String, super::out::CliError> {
    match format {
        Format::Wire => Ok(node.to_string()),
        Format::Block => Ok(node.to_block_string().trim_end().to_string()),
        Format::Json => super::out::to_json(node),
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T21:10:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2000-02-29T12:34:56.789Z (a leap day).
        let t = UNIX_EPOCH + Duration::from_millis(951_827_696_789);
        assert_eq!(rfc3339(t), "2000-02-29T12:34:56.789Z");
        // 2026-11-23T00:00:00Z
        let t = UNIX_EPOCH + Duration::from_secs(1_795_392_000);
        assert_eq!(rfc3339(t), "2026-11-23T00:00:00.000Z");
    }
}
