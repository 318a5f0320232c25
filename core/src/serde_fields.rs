//! Field encodings that differ between JSON and the binary codec.
//!
//! JSON has no NaN, and NaN carries meaning here (missing sample, not evaluated), so in
//! human-readable formats a NaN float is written as `null` and `null` reads back as NaN. In the
//! binary codec (postcard, not human-readable) float blocks are one raw little-endian f32 byte
//! string, which decodes with a single bounds check instead of per-element parsing.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Refuse binary matrices with more rows than this before allocating anything: an empty row
/// costs no payload bytes, so without it a tiny input could ask for billions of rows.
const MAX_ROWS: usize = 4096;

/// A float that is `null` in JSON when NaN.
#[derive(Clone, Copy)]
struct NullableF32(f32);

impl Serialize for NullableF32 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_nan() {
            serializer.serialize_none()
        } else {
            serializer.serialize_f32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for NullableF32 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(NullableF32(
            Option::<f32>::deserialize(deserializer)?.unwrap_or(f32::NAN),
        ))
    }
}

struct JsonRow<'a>(&'a [f32]);

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for &x in self.0 {
            seq.serialize_element(&NullableF32(x))?;
        }
        seq.end()
    }
}

fn json_row_from<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
    let row: Vec<NullableF32> = Vec::deserialize(deserializer)?;
    Ok(row.into_iter().map(|x| x.0).collect())
}

fn f32_block(rows: &[&[f32]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.len() * 4).sum());
    for row in rows {
        for x in *row {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}

fn f32s_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Accepts a byte string in any of serde's three forms.
struct ByteVisitor;

impl<'de> Visitor<'de> for ByteVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(v.to_vec())
    }
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(v)
    }
}

/// `f32`: `null` for NaN in JSON; binary: the plain little-endian f32.
pub mod scalar {
    use super::*;

    /// Serializes a float.
    pub fn serialize<S: Serializer>(v: &f32, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            NullableF32(*v).serialize(serializer)
        } else {
            serializer.serialize_f32(*v)
        }
    }

    /// Deserializes a float.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f32, D::Error> {
        if deserializer.is_human_readable() {
            Ok(NullableF32::deserialize(deserializer)?.0)
        } else {
            f32::deserialize(deserializer)
        }
    }
}

/// `Vec<f32>`: JSON array with `null` for NaN; binary: raw little-endian f32 bytes.
pub mod vector {
    use super::*;

    /// Serializes a float vector.
    pub fn serialize<S: Serializer>(v: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            JsonRow(v).serialize(serializer)
        } else {
            serializer.serialize_bytes(&f32_block(&[v]))
        }
    }

    /// Deserializes a float vector.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
        if deserializer.is_human_readable() {
            json_row_from(deserializer)
        } else {
            let bytes = deserializer.deserialize_bytes(ByteVisitor)?;
            if bytes.len() % 4 != 0 {
                return Err(de::Error::custom(format!(
                    "float block of {} bytes is not a whole number of f32",
                    bytes.len()
                )));
            }
            Ok(f32s_from_le(&bytes))
        }
    }
}

/// `Vec<Vec<f32>>` (row-major rows, e.g. channel-major samples): JSON array of arrays with
/// `null` for NaN; binary: `(rows, cols, bytes)` with one raw little-endian f32 block, so rows
/// are equal-length by construction.
pub mod matrix {
    use super::*;

    /// Serializes a matrix. Rows of unequal length cannot be represented in the binary form
    /// and are refused (validation refuses them anyway).
    pub fn serialize<S: Serializer>(m: &[Vec<f32>], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let mut seq = serializer.serialize_seq(Some(m.len()))?;
            for row in m {
                seq.serialize_element(&JsonRow(row))?;
            }
            seq.end()
        } else {
            let cols = m.first().map_or(0, Vec::len);
            if m.iter().any(|row| row.len() != cols) {
                return Err(serde::ser::Error::custom("matrix rows differ in length"));
            }
            let rows: Vec<&[f32]> = m.iter().map(Vec::as_slice).collect();
            let block = Block(f32_block(&rows));
            (m.len() as u32, cols as u32, block).serialize(serializer)
        }
    }

    struct Block(Vec<u8>);

    impl Serialize for Block {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Block {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_bytes(ByteVisitor).map(Block)
        }
    }

    struct JsonMatrix(Vec<Vec<f32>>);

    impl<'de> Deserialize<'de> for JsonMatrix {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Rows;
            impl<'de> Visitor<'de> for Rows {
                type Value = Vec<Vec<f32>>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an array of arrays of numbers or null")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                    let mut rows = Vec::new();
                    while let Some(row) = seq.next_element::<JsonRowOwned>()? {
                        if rows.len() == MAX_ROWS {
                            return Err(de::Error::custom(format!("more than {MAX_ROWS} rows")));
                        }
                        rows.push(row.0);
                    }
                    Ok(rows)
                }
            }
            deserializer.deserialize_seq(Rows).map(JsonMatrix)
        }
    }

    struct JsonRowOwned(Vec<f32>);

    impl<'de> Deserialize<'de> for JsonRowOwned {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            json_row_from(deserializer).map(JsonRowOwned)
        }
    }

    /// Deserializes a matrix, checking the binary block against its declared shape before
    /// allocating rows.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<f32>>, D::Error> {
        if deserializer.is_human_readable() {
            return JsonMatrix::deserialize(deserializer).map(|m| m.0);
        }
        let (rows, cols, block) = <(u32, u32, Block)>::deserialize(deserializer)?;
        let (rows, cols) = (rows as usize, cols as usize);
        if rows > MAX_ROWS {
            return Err(de::Error::custom(format!("{rows} rows exceed {MAX_ROWS}")));
        }
        let expected = rows.checked_mul(cols).and_then(|n| n.checked_mul(4));
        if expected != Some(block.0.len()) {
            return Err(de::Error::custom(format!(
                "float block of {} bytes does not hold {rows} x {cols} f32",
                block.0.len()
            )));
        }
        if cols == 0 {
            return Ok(vec![Vec::new(); rows]);
        }
        Ok(block.0.chunks_exact(cols * 4).map(f32s_from_le).collect())
    }
}

/// `Vec<u8>`: lowercase hex string in JSON; one byte string in binary.
pub mod bytes {
    use super::*;

    /// Serializes bytes.
    pub fn serialize<S: Serializer>(v: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(v))
        } else {
            serializer.serialize_bytes(v)
        }
    }

    /// Deserializes bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            hex::decode(text).map_err(de::Error::custom)
        } else {
            deserializer.deserialize_bytes(ByteVisitor)
        }
    }
}
