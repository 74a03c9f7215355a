//! A submitted workspace: files with safe relative paths, within limits. Every rule a path or the workspace can
//! break is checked here, before any price is given, and the error names the file and the rule.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{HashMap, HashSet};

pub const MAX_FILES: usize = 100;
pub const MAX_WORKSPACE_BYTES: usize = 10 * 1024 * 1024;
/// Most path components a file may have (`a/b/c/d/e` is the deepest).
pub const MAX_PATH_DEPTH: usize = 5;
/// Longest file path (bytes): what the executor writes without surprises on any filesystem.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest single path component (bytes): `NAME_MAX` of the usual Linux filesystems, so a path accepted here
/// can always be written by the executor (a job must never fail after payment for a name we let through).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// The file a submitted `script` becomes inside a workspace (and the executor's script file for script jobs).
pub const SCRIPT_FILE: &str = "job";
/// The file that turns a workspace into an image build.
pub const DOCKERFILE: &str = "Dockerfile";

/// One file of a workspace. On the executor wire the content travels as standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceFile {
    pub path: String,
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub content: Vec<u8>,
}

fn to_base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(bytes))
}

fn from_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    STANDARD.decode(text).map_err(serde::de::Error::custom)
}

/// How a submitted file's `content` is written in the submit body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The content is the file's text (the default).
    Utf8,
    /// The content is standard base64 of the file's raw bytes (wheels, archives, anything binary).
    Base64,
}

impl Encoding {
    pub const NAMES: [&'static str; 2] = ["utf-8", "base64"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "utf-8" => Some(Encoding::Utf8),
            "base64" => Some(Encoding::Base64),
            _ => None,
        }
    }

    /// The file's bytes. Base64 may be wrapped over lines (the `base64` tool wraps at 76 columns), so ASCII
    /// whitespace is skipped; the alphabet and the padding are otherwise strict.
    pub fn decode(self, content: &str) -> Result<Vec<u8>, base64::DecodeError> {
        match self {
            Encoding::Utf8 => Ok(content.as_bytes().to_vec()),
            Encoding::Base64 => {
                let compact: Vec<u8> = content.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                STANDARD.decode(compact)
            }
        }
    }
}

/// The rule a file path breaks. The `Display` text is the rule; callers put the path in front of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("is empty")]
    Empty,
    #[error("contains a NUL character")]
    Nul,
    #[error("is {bytes} bytes long; at most {MAX_PATH_BYTES} are allowed")]
    TooLong { bytes: usize },
    #[error("contains {0:?}; only letters, digits, `.`, `_`, `-`, space and `/` are allowed")]
    Character(char),
    #[error("is absolute; paths must be relative (no leading `/`)")]
    Absolute,
    #[error("ends with `/`; a path names a file, not a directory")]
    TrailingSlash,
    #[error("has an empty component (`//`)")]
    EmptyComponent,
    #[error("has a `.` component; write the path without it")]
    DotComponent,
    #[error("has a `..` component; paths must stay inside the workspace")]
    ParentComponent,
    #[error("has a depth of {depth} components; at most {MAX_PATH_DEPTH} are allowed")]
    TooDeep { depth: usize },
    #[error("has a component of {bytes} bytes; at most {MAX_COMPONENT_BYTES} are allowed")]
    ComponentTooLong { bytes: usize },
}

/// Whether a character may appear in a path: `[A-Za-z0-9._/ -]`. Nothing a shell, a glob or a Dockerfile
/// would read specially, so a path means the same thing everywhere it is used.
pub fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ' ' | '-')
}

/// Checks one file path against every path rule (the first broken rule is the answer).
pub fn check_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    // NUL first: it is the one character no layer below can carry, so it gets its own reason.
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong { bytes: path.len() });
    }
    if let Some(c) = path.chars().find(|c| !is_path_char(*c)) {
        return Err(PathError::Character(c));
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if path.ends_with('/') {
        return Err(PathError::TrailingSlash);
    }
    let components: Vec<&str> = path.split('/').collect();
    for c in &components {
        match *c {
            "" => return Err(PathError::EmptyComponent),
            "." => return Err(PathError::DotComponent),
            ".." => return Err(PathError::ParentComponent),
            _ => {}
        }
    }
    if components.len() > MAX_PATH_DEPTH {
        return Err(PathError::TooDeep { depth: components.len() });
    }
    if let Some(c) = components.iter().find(|c| c.len() > MAX_COMPONENT_BYTES) {
        return Err(PathError::ComponentTooLong { bytes: c.len() });
    }
    Ok(())
}

/// A path as it appears in a message: quoted, escaped, and cut short so a hostile path cannot bloat the error.
pub fn shown(path: &str) -> String {
    const MAX_SHOWN_CHARS: usize = 120;
    if path.chars().count() <= MAX_SHOWN_CHARS {
        format!("{path:?}")
    } else {
        let head: String = path.chars().take(MAX_SHOWN_CHARS).collect();
        format!("{head:?}…")
    }
}

/// What makes a workspace unacceptable. `index` is the file's position in the submitted `files` array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    #[error("has {count} files; at most {MAX_FILES} are allowed")]
    TooManyFiles { count: usize },
    #[error("hold {bytes} bytes in total once decoded; at most {MAX_WORKSPACE_BYTES} (10 MiB) are allowed")]
    TooLarge { bytes: usize },
    #[error("path {} {error}", shown(path))]
    Path { index: usize, path: String, error: PathError },
    #[error("path {} is also files[{first}].path; each path may appear once", shown(path))]
    Duplicate { index: usize, path: String, first: usize },
    #[error("path {} is inside {}, which is a submitted file", shown(path), shown(file))]
    InsideFile { index: usize, path: String, file: String },
    #[error(
        "path {} is where the `script` goes (the file {SCRIPT_FILE:?}); rename the file or drop `script`",
        shown(path)
    )]
    ScriptClash { index: usize, path: String },
}

impl WorkspaceError {
    /// The submit-body field the error is about: `files` for the whole workspace, else `files[i].path`.
    pub fn field(&self) -> String {
        match self {
            WorkspaceError::TooManyFiles { .. } | WorkspaceError::TooLarge { .. } => "files".to_string(),
            WorkspaceError::Path { index, .. }
            | WorkspaceError::Duplicate { index, .. }
            | WorkspaceError::InsideFile { index, .. }
            | WorkspaceError::ScriptClash { index, .. } => format!("files[{index}].path"),
        }
    }
}

/// Checks a whole workspace, in submitted order: the limits, every path, no path twice, no file where another
/// needs a directory, and (when the submission has a `script`) nothing in the place of [`SCRIPT_FILE`].
pub fn check_files(files: &[WorkspaceFile], with_script: bool) -> Result<(), WorkspaceError> {
    if files.len() > MAX_FILES {
        return Err(WorkspaceError::TooManyFiles { count: files.len() });
    }
    let bytes: usize = files.iter().map(|f| f.content.len()).sum();
    if bytes > MAX_WORKSPACE_BYTES {
        return Err(WorkspaceError::TooLarge { bytes });
    }
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (index, f) in files.iter().enumerate() {
        check_path(&f.path).map_err(|error| WorkspaceError::Path { index, path: f.path.clone(), error })?;
        if let Some(&first) = first_index.get(f.path.as_str()) {
            return Err(WorkspaceError::Duplicate { index, path: f.path.clone(), first });
        }
        first_index.insert(&f.path, index);
    }
    let paths: HashSet<&str> = first_index.keys().copied().collect();
    for (index, f) in files.iter().enumerate() {
        let is_script_spot = |p: &str| with_script && p == SCRIPT_FILE;
        if is_script_spot(&f.path) {
            return Err(WorkspaceError::ScriptClash { index, path: f.path.clone() });
        }
        for parent in parents(&f.path) {
            if is_script_spot(parent) {
                return Err(WorkspaceError::ScriptClash { index, path: f.path.clone() });
            }
            if paths.contains(parent) {
                return Err(WorkspaceError::InsideFile { index, path: f.path.clone(), file: parent.to_string() });
            }
        }
    }
    Ok(())
}

/// The directories above a path, shortest first: `a/b/c` → `a`, `a/b`.
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Whether `path` is `dir` itself or lies under it (`dir` is a normalised relative path; `.` is everything).
pub fn is_within(path: &str, dir: &str) -> bool {
    dir == "." || path == dir || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

/// Everything the job's directory (and an image build's context) holds: the submitted files plus, when there is
/// a script, the script as [`SCRIPT_FILE`], sorted by path. Files must have passed [`check_files`].
pub fn with_script(files: &[WorkspaceFile], script: &str) -> Vec<WorkspaceFile> {
    let mut all = files.to_vec();
    if !script.is_empty() {
        all.push(WorkspaceFile { path: SCRIPT_FILE.to_string(), content: script.as_bytes().to_vec() });
    }
    all.sort_by(|a, b| a.path.cmp(&b.path));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &[u8]) -> WorkspaceFile {
        WorkspaceFile { path: path.to_string(), content: content.to_vec() }
    }

    #[test]
    fn good_paths_pass() {
        for p in ["main.py", "a/b/c/d/e", "src/my file-1_2.txt", "...", ".hidden", "a/.b", "x".repeat(255).as_str()] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn each_path_rule_has_its_reason() {
        use PathError::*;
        let cases: [(&str, PathError); 14] = [
            ("", Empty),
            ("a\0b", Nul),
            ("/etc/passwd", Absolute),
            ("/", Absolute),
            ("dir/", TrailingSlash),
            ("a//b", EmptyComponent),
            ("./a", DotComponent),
            ("a/./b", DotComponent),
            ("../escape.txt", ParentComponent),
            ("a/../../b", ParentComponent),
            ("a/b/c/d/e/f.txt", TooDeep { depth: 6 }),
            ("bad|name.txt", Character('|')),
            ("back\\slash", Character('\\')),
            ("café", Character('é')),
        ];
        for (path, want) in cases {
            assert_eq!(check_path(path), Err(want), "{path:?}");
        }
        assert_eq!(check_path(&"x".repeat(256)), Err(ComponentTooLong { bytes: 256 }));
        let long = vec!["y".repeat(250); 5].join("/");
        assert_eq!(check_path(&(long.clone() + "yyyyyyyyyyyyyyyyyyyy")), Err(TooLong { bytes: 1274 }));
        assert_eq!(check_path(&long[..1024]), Ok(()), "1024 bytes is the limit, inclusive");
        for bad in ["a*b", "a?b", "a[b]", "$HOME", "a:b", "a\nb", "~x"] {
            assert!(matches!(check_path(bad), Err(Character(_))), "{bad:?}");
        }
    }

    #[test]
    fn messages_name_the_path_and_the_rule() {
        let e = check_files(&[file("ok", b""), file("a/b/c/d/e/f.txt", b"")], false).unwrap_err();
        assert_eq!(e.field(), "files[1].path");
        assert_eq!(e.to_string(), "path \"a/b/c/d/e/f.txt\" has a depth of 6 components; at most 5 are allowed");
        let e = check_files(&[file("bad|name.txt", b"")], false).unwrap_err();
        assert!(e.to_string().contains("bad|name.txt") && e.to_string().contains("'|'"), "{e}");
        let hostile = "a".repeat(5000);
        assert!(WorkspaceError::Path { index: 0, path: hostile, error: PathError::Empty }.to_string().len() < 200);
    }

    #[test]
    fn duplicates_and_files_in_the_way_are_refused() {
        let e = check_files(&[file("a.txt", b"1"), file("a.txt", b"2")], false).unwrap_err();
        assert_eq!(
            (e.field().as_str(), e.to_string().as_str()),
            ("files[1].path", "path \"a.txt\" is also files[0].path; each path may appear once")
        );
        let e = check_files(&[file("a", b""), file("a/b", b"")], false).unwrap_err();
        assert_eq!(e, WorkspaceError::InsideFile { index: 1, path: "a/b".into(), file: "a".into() });
        let e = check_files(&[file("x/y/z", b""), file("x/y", b"")], false).unwrap_err();
        assert_eq!(e.field(), "files[0].path");
        assert_eq!(check_files(&[file("ab", b""), file("a/b", b"")], false), Ok(()), "a prefix is not a parent");
    }

    #[test]
    fn the_script_spot_is_reserved_only_with_a_script() {
        assert_eq!(check_files(&[file("job", b"")], false), Ok(()));
        assert_eq!(check_files(&[file("job/x", b"")], false), Ok(()));
        let e = check_files(&[file("ok", b""), file("job", b"")], true).unwrap_err();
        assert_eq!(e.field(), "files[1].path");
        assert!(e.to_string().contains("`script`"), "{e}");
        assert!(matches!(check_files(&[file("job/x", b"")], true), Err(WorkspaceError::ScriptClash { .. })));
        assert_eq!(check_files(&[file("jobs", b"")], true), Ok(()));
    }

    #[test]
    fn limits_hold_at_the_boundary() {
        let hundred: Vec<WorkspaceFile> = (0..MAX_FILES).map(|i| file(&format!("f{i}"), b"x")).collect();
        assert_eq!(check_files(&hundred, false), Ok(()));
        let mut more = hundred.clone();
        more.push(file("f100", b"x"));
        let e = check_files(&more, false).unwrap_err();
        assert_eq!((e.field().as_str(), e), ("files", WorkspaceError::TooManyFiles { count: 101 }));

        let full = [file("a", &vec![0; MAX_WORKSPACE_BYTES - 1]), file("b", b"x")];
        assert_eq!(check_files(&full, false), Ok(()));
        let over = [file("a", &vec![0; MAX_WORKSPACE_BYTES]), file("b", b"x")];
        assert_eq!(check_files(&over, false), Err(WorkspaceError::TooLarge { bytes: MAX_WORKSPACE_BYTES + 1 }));
    }

    #[test]
    fn encodings_decode() {
        assert_eq!(Encoding::parse("utf-8").unwrap().decode("héllo").unwrap(), "héllo".as_bytes());
        let b64 = Encoding::parse("base64").unwrap();
        assert_eq!(b64.decode("AAEC/w==").unwrap(), [0, 1, 2, 255]);
        assert_eq!(b64.decode("AAEC\n/w==\n").unwrap(), [0, 1, 2, 255], "wrapped lines are fine");
        assert!(b64.decode("AAEC/w").is_err(), "padding is required");
        assert!(b64.decode("not base64!").is_err());
        assert_eq!(Encoding::parse("UTF8"), None);
    }

    #[test]
    fn within_and_with_script() {
        assert!(is_within("src/a.py", "src") && is_within("src", "src") && is_within("x", "."));
        assert!(!is_within("srcx/a.py", "src") && !is_within("sr", "src"));
        let all = with_script(&[file("z", b"1"), file("a", b"2")], "echo");
        let paths: Vec<&str> = all.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a", "job", "z"]);
        assert_eq!(with_script(&[file("a", b"")], "").len(), 1);
    }
}
