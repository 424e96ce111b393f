//! The public suffix list: the names under which anyone may register a domain (`com`,
//! `co.uk`, `github.io`), and so the organizational domain of a name (RFC 7489 §3.2: its
//! public suffix plus one label). DMARC alignment, URIBL lookups and DMARC report
//! addresses ask it.
//!
//! The list is embedded in the binary (the `psl` crate's copy, current when it was
//! built) and can be replaced at run time by a newer copy of the list file
//! (`portcullis psl update` writes one; a running gateway picks it up). Every caller
//! sees the replacement at once.
//!
//! Errors: a text that is not a whole list is a [`ListError`]; a list file that cannot be
//! read or is not a whole list is a [`LoadError`], naming the file.

use psl::Psl;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// The marker line the official list carries after its ICANN section; a download cut
/// short lacks it.
const ICANN_END: &str = "===END ICANN DOMAINS===";

struct Loaded {
    list: Arc<publicsuffix::List>,
    rules: usize,
}

/// The file a newer list is read from, the list read from it (None: the embedded), and
/// the modification time of the file when it was last read (None: there was none), so
/// that a broken copy is reported once, not at every look.
struct State {
    file: Option<PathBuf>,
    loaded: Option<Loaded>,
    read: Option<Option<SystemTime>>,
}

static STATE: RwLock<State> = RwLock::new(State {
    file: None,
    loaded: None,
    read: None,
});

fn state() -> std::sync::RwLockReadGuard<'static, State> {
    // A panic while holding the lock leaves it poisoned; the data is still whole.
    STATE.read().unwrap_or_else(|e| e.into_inner())
}

fn state_mut() -> std::sync::RwLockWriteGuard<'static, State> {
    STATE.write().unwrap_or_else(|e| e.into_inner())
}

fn normalize(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// The registrable domain of `domain` (`mail.example.co.uk` → `example.co.uk`), or None
/// when `domain` is itself a public suffix or not a domain name.
pub fn registrable(domain: &str) -> Option<String> {
    let name = normalize(domain);
    let list = state().loaded.as_ref().map(|l| Arc::clone(&l.list));
    let found = match &list {
        Some(list) => list.domain(name.as_bytes()),
        None => psl::List.domain(name.as_bytes()),
    };
    found.and_then(|d| std::str::from_utf8(d.as_bytes()).ok().map(str::to_string))
}

/// The organizational domain of `domain` (RFC 7489 §3.2): its registrable domain, or the
/// name itself when it has none (a public suffix is its own organizational domain).
pub fn organizational(domain: &str) -> String {
    registrable(domain).unwrap_or_else(|| normalize(domain))
}

/// Why a text is not a (whole) public suffix list.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ListError {
    /// The marker after the ICANN section is missing: a download cut short, or another file.
    #[error("not a whole public suffix list: the \"// {ICANN_END}\" line is missing")]
    Incomplete,
    #[error("not a public suffix list: {0}")]
    Unparsable(publicsuffix::Error),
    /// Every real copy lists `com`.
    #[error("not a public suffix list: it does not list `com`")]
    NoCom,
}

/// Why the list file was not loaded; the list in use stays.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: ListError,
    },
}

/// Parses a list file and checks that it is whole; the list and its number of rules.
pub fn parse(text: &str) -> Result<(publicsuffix::List, usize), ListError> {
    if !text.contains(ICANN_END) {
        return Err(ListError::Incomplete);
    }
    let rules = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count();
    let list: publicsuffix::List = text.parse().map_err(ListError::Unparsable)?;
    // Any real copy lists `com` (not merely by the implicit `*` rule).
    if !list.suffix(b"example.com").is_some_and(|s| s.is_known()) {
        return Err(ListError::NoCom);
    }
    Ok((list, rules))
}

/// Sets the file that a newer list is read from, and reads it when it exists. Ok(None):
/// no such file, the embedded list stays in use.
pub fn use_file(path: &Path) -> Result<Option<usize>, LoadError> {
    state_mut().file = Some(path.to_path_buf());
    reload()
}

/// Reads the list file again (after `portcullis psl update`). Ok(None) when there is no
/// file; on an error the list in use stays.
pub fn reload() -> Result<Option<usize>, LoadError> {
    let Some(path) = state().file.clone() else {
        return Ok(None);
    };
    let modified = match std::fs::metadata(&path) {
        Ok(m) => m.modified().ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut s = state_mut();
            s.loaded = None;
            s.read = None;
            return Ok(None);
        }
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    state_mut().read = Some(modified);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    let (list, rules) = match parse(&text) {
        Ok(parsed) => parsed,
        Err(source) => return Err(LoadError::Invalid { path, source }),
    };
    state_mut().loaded = Some(Loaded {
        list: Arc::new(list),
        rules,
    });
    Ok(Some(rules))
}

/// Reads the list file again when it changed since it was read (or appeared or went).
/// None when nothing changed.
pub fn reload_if_changed() -> Option<Result<Option<usize>, LoadError>> {
    let (path, seen) = {
        let s = state();
        (s.file.clone()?, s.read)
    };
    let now = std::fs::metadata(&path).ok().map(|m| m.modified().ok());
    if now == seen {
        return None;
    }
    Some(reload())
}

/// Which list is in use, for logs and `portcullis psl show`.
pub fn source() -> String {
    let s = state();
    match (&s.loaded, &s.file) {
        (Some(l), Some(path)) => format!("{} ({} rules)", path.display(), l.rules),
        _ => "the list embedded in the binary".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the list in use is the process's, and tests run in parallel.
    #[test]
    fn embedded_list_then_a_file_that_replaces_it_then_the_embedded_again() {
        assert_eq!(
            registrable("mail.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(registrable("Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(registrable("co.uk"), None);
        assert_eq!(organizational("co.uk"), "co.uk");
        assert_eq!(organizational("a.b.example.org"), "example.org");
        // Unlisted top-level names are suffixes by the list's implicit `*` rule.
        assert_eq!(
            registrable("x.example.test").as_deref(),
            Some("example.test")
        );

        let dir = std::env::temp_dir().join(format!("pc-psl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("list.dat");
        // Not there yet: the embedded list.
        assert!(matches!(use_file(&file), Ok(None)));
        assert_eq!(
            registrable("a.example.test").as_deref(),
            Some("example.test")
        );

        std::fs::write(
            &file,
            "// ===BEGIN ICANN DOMAINS===\ncom\ntest\nexample.test\n// ===END ICANN DOMAINS===\n",
        )
        .unwrap();
        assert!(matches!(reload_if_changed(), Some(Ok(Some(3)))));
        assert!(reload_if_changed().is_none());
        assert_eq!(
            registrable("a.example.test").as_deref(),
            Some("a.example.test")
        );
        assert!(source().contains("3 rules"), "{}", source());

        // A broken copy is refused (once) and the one in use stays.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, "com\ntest\n").unwrap();
        let err = reload_if_changed().unwrap().unwrap_err().to_string();
        assert!(err.contains("END ICANN DOMAINS"), "{err}");
        assert!(reload_if_changed().is_none());
        assert_eq!(
            registrable("a.example.test").as_deref(),
            Some("a.example.test")
        );

        std::fs::remove_file(&file).unwrap();
        assert!(matches!(reload_if_changed(), Some(Ok(None))));
        assert_eq!(
            registrable("a.example.test").as_deref(),
            Some("example.test")
        );
        state_mut().file = None;
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_list_without_com_is_refused() {
        let err =
            parse("// ===BEGIN ICANN DOMAINS===\nnet\n// ===END ICANN DOMAINS===\n").unwrap_err();
        assert!(matches!(err, ListError::NoCom), "{err}");
        assert!(err.to_string().contains("com"), "{err}");
    }
}
