//! IPC body compression codecs, by the names the control messages carry.

// Peer input (ARCHITECTURE.md invariant 6): no indexing or slicing that a
// peer-chosen offset could make panic. Use `get`, patterns or iterators.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use serde::{Deserialize, Serialize};

/// An IPC body compression codec (Arrow's `BodyCompression`), by its wire
/// name. Codec names travel as strings in the messages so that a name this
/// version does not know is ignored, not refused (forward compatibility);
/// [`Codec::from_name`] reads one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// `lz4`: Arrow's `LZ4_FRAME` (each buffer one LZ4 frame).
    Lz4,
    /// `zstd`: Arrow's `ZSTD` (each buffer one Zstandard frame).
    Zstd,
}

impl Codec {
    /// Every codec this version knows.
    pub const ALL: [Codec; 2] = [Codec::Zstd, Codec::Lz4];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// The codec a wire name denotes; `None` for a name this version does not know.
    pub fn from_name(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|codec| codec.as_str() == name)
    }

    /// The known codecs among `names`, in their order, each once.
    pub fn known(names: &[String]) -> Vec<Codec> {
        let mut out: Vec<Codec> = Vec::with_capacity(Codec::ALL.len());
        for codec in names.iter().filter_map(|name| Codec::from_name(name)) {
            if !out.contains(&codec) {
                out.push(codec);
            }
        }
        out
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names_are_read_and_unknown_ones_ignored() {
        let names: Vec<String> = ["lz4", "brotli", "zstd", "lz4"].iter().map(|n| (*n).to_owned()).collect();
        assert_eq!(Codec::known(&names), [Codec::Lz4, Codec::Zstd]);
        for codec in Codec::ALL {
            assert_eq!(Codec::from_name(codec.as_str()), Some(codec));
            assert_eq!(serde_json::to_value(codec).unwrap(), serde_json::json!(codec.as_str()));
        }
        assert_eq!(Codec::from_name("LZ4"), None, "names are exact");
    }
}
