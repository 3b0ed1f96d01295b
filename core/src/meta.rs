//! The `<dir>/meta` file format.
//!
//! This module owns the bytes of the store's meta file: magic, format
//! version, an rmp payload ([`Meta`]) and a CRC32 over everything before it.
//! Layout: `magic[8] | version u32 | len u32 | payload[len] | crc u32`
//! (little-endian). It never touches the file system: the actors write it
//! (temp file, fsync, rename, fsync dir) and read it.

use serde::{Deserialize, Serialize};

/// Magic bytes at the start of the meta file.
pub const META_MAGIC: [u8; 8] = *b"LOGDMETA";
/// The meta format version this build writes and reads.
pub const META_VERSION: u32 = 1;
/// Largest payload accepted (the meta file is tiny; more is corruption).
pub const MAX_META_PAYLOAD: u32 = 1 << 20;

/// The contents of the meta file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The log segment format version the store was created with.
    pub wal_format: u32,
    /// Transaction ids at or below this value may have been handed out.
    pub tx_id_high_water: u64,
}

/// Why meta bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad meta file at offset {offset}: {reason}")]
pub struct MetaError {
    /// Byte offset of the problem.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

fn err(offset: u64, reason: impl Into<String>) -> MetaError {
    MetaError {
        offset,
        reason: reason.into(),
    }
}

/// The bytes of a meta file holding `meta`.
pub fn encode(meta: &Meta) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(&META_MAGIC);
    out.extend_from_slice(&META_VERSION.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    // Encoding a struct of integers into a Vec cannot fail.
    let _ = rmp_serde::encode::write(&mut out, meta);
    let len = (out.len() - 16) as u32;
    out[12..16].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a meta file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Meta, MetaError> {
    if bytes.len() < 20 {
        return Err(err(0, format!("too short ({} bytes)", bytes.len())));
    }
    if bytes[..8] != META_MAGIC {
        return Err(err(0, "wrong magic"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != META_VERSION {
        return Err(err(8, format!("unsupported version {version}")));
    }
    let len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if len > MAX_META_PAYLOAD || 16 + len as usize + 4 != bytes.len() {
        return Err(err(12, format!("bad payload length {len}")));
    }
    let end = 16 + len as usize;
    let stored = u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
    let computed = crc32fast::hash(&bytes[..end]);
    if stored != computed {
        return Err(err(end as u64, "checksum mismatch"));
    }
    rmp_serde::from_slice(&bytes[16..end]).map_err(|e| err(16, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(v in any::<u32>(), hw in any::<u64>()) {
            let m = Meta { wal_format: v, tx_id_high_water: hw };
            prop_assert_eq!(decode(&encode(&m)), Ok(m));
        }

        #[test]
        fn any_flip_is_detected(bit in 0usize..160, hw in any::<u64>()) {
            let m = Meta { wal_format: 1, tx_id_high_water: hw };
            let mut b = encode(&m);
            let bit = bit % (b.len() * 8);
            b[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&b).is_err());
        }
    }

    #[test]
    fn short_input_is_an_error() {
        assert!(decode(&[]).is_err());
        assert!(decode(&encode(&Meta::default())[..10]).is_err());
    }
}
