//! Dockerfiles of submitted workspaces: parsed with real Dockerfile syntax and held to Ouro's rules (prebuilt
//! bases only, no pulls, copies only from submitted paths) at submit time; rewritten to the engine's base image
//! and keyed for the build cache on the executor.
//!
//! The syntax follows BuildKit's parser: parser directives (`# escape=`) on the first lines, line continuations
//! with the escape character, comment lines (also inside continuations), blank lines, case-insensitive keywords,
//! builder flags (`--chown=…`), JSON (exec) and shell forms, and `ARG` before `FROM` with `$VAR` / `${VAR}`
//! substitution. Where our reading and the builder's could differ on something that matters (what is pulled,
//! fetched or copied), the input is refused rather than guessed at.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::job::IMAGE_ALIASES;
use crate::workspace::{is_path_char, is_within, shown, WorkspaceFile, DOCKERFILE};

/// Instructions a workspace Dockerfile may use.
pub const ALLOWED_INSTRUCTIONS: [&str; 12] =
    ["FROM", "RUN", "ENV", "WORKDIR", "ENTRYPOINT", "CMD", "COPY", "ADD", "ARG", "LABEL", "EXPOSE", "SHELL"];

/// Real instructions we refuse, each with the reason the user is told.
const REFUSED_INSTRUCTIONS: [(&str, &str); 5] = [
    ("USER", "jobs always run as the executor's unprivileged user"),
    ("VOLUME", "the sandbox's filesystems are fixed (the workspace and /tmp are the writable places)"),
    ("HEALTHCHECK", "a job is watched by its exit and its time limit, not by health checks"),
    ("STOPSIGNAL", "the executor decides how a job is stopped"),
    ("ONBUILD", "triggers for later builds have no use in a one-job image"),
];

/// Flags COPY and ADD may carry; anything else (`--from` above all) is refused.
const COPY_FLAGS: [&str; 3] = ["--chown", "--chmod", "--link"];

/// Why a Dockerfile is refused. `line` is 1-based; `None` when the problem is the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DockerfileError {
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn at(line: usize, message: impl Into<String>) -> DockerfileError {
    DockerfileError { line: Some(line), message: message.into() }
}

fn whole(message: impl Into<String>) -> DockerfileError {
    DockerfileError { line: None, message: message.into() }
}

/// One instruction as the builder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Upper-case keyword (`RUN`), whatever case it was written in.
    pub keyword: String,
    /// Builder flags as written after the keyword (`--chown=1000:1000`).
    pub flags: Vec<String>,
    /// The arguments. JSON form: the array's strings. COPY/ADD shell form: the sources normalised (quotes removed,
    /// `./` and trailing `/` dropped, `.` for the whole context), then the destination as written. FROM, EXPOSE:
    /// the whitespace-separated words. ARG: its words (`name` or `name=default`, quotes kept). Everything else: one
    /// element, the text after the keyword and flags (continuations joined).
    pub args: Vec<String>,
    /// Whether the arguments were written in JSON (exec) form.
    pub json: bool,
    /// The line the instruction starts on (1-based).
    pub line: usize,
}

/// A parsed Dockerfile that keeps every syntax rule of ours (but not yet the rules that need the submitted files;
/// see [`validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The prebuilt image alias of the one FROM (`ouro-python`), without a tag, ARGs substituted.
    pub from_alias: String,
    pub from_line: usize,
    pub instructions: Vec<Instruction>,
    /// Every COPY/ADD source, normalised (`.` is the whole context), unique and sorted.
    pub copy_sources: Vec<String>,
    /// Whether the last ENTRYPOINT (if any) gives a command (`ENTRYPOINT []` does not).
    pub has_entrypoint: bool,
    /// Whether the last CMD (if any) gives a command.
    pub has_cmd: bool,
}

// ---------------------------------------------------------------------------------------------------------------
// Lines: directives, comments, continuations.

/// A piece of a logical line and where it sits in the original text (to rewrite the original in place).
#[derive(Debug, Clone, Copy)]
struct Segment {
    logical: usize,
    original: usize,
    len: usize,
}

/// An instruction's text with its continuations joined, and where it came from.
#[derive(Debug)]
struct Logical {
    line: usize,
    text: String,
    segments: Vec<Segment>,
}

/// A physical line without its line break (`\n` or `\r\n`), with its byte offset in the file.
struct RawLine<'a> {
    number: usize,
    start: usize,
    text: &'a str,
}

fn raw_lines(text: &str) -> Vec<RawLine<'_>> {
    // The builder drops a UTF-8 byte-order mark on the first line.
    let bom = if text.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    let mut lines = Vec::new();
    let mut start = bom;
    for (i, piece) in text[bom..].split('\n').enumerate() {
        lines.push(RawLine { number: i + 1, start, text: piece.strip_suffix('\r').unwrap_or(piece) });
        start += piece.len() + 1;
    }
    lines
}

/// The parser directives BuildKit knows; an unknown `# key=value` line ends the directives like any comment.
const DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// `# key = value` → (lower-case key, value), as BuildKit's directive pattern reads it.
fn directive(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let key_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
    let key = &rest[..key_len];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[key_len..].trim_start_matches(|c: char| c.is_ascii_whitespace()).strip_prefix('=')?;
    let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
    (!value.is_empty()).then(|| (key.to_ascii_lowercase(), value))
}

/// The `syntax` directive makes the builder pull a frontend image, which no job may cause. BuildKit also looks for
/// it after a `#!` first line, so that placement is found too.
fn syntax_directive(lines: &[RawLine<'_>]) -> Option<usize> {
    let skip = usize::from(lines.first().is_some_and(|l| l.text.starts_with("#!")));
    for l in lines.iter().skip(skip) {
        match directive(l.text.trim_start()) {
            Some((key, _)) if key == "syntax" => return Some(l.number),
            Some((key, _)) if DIRECTIVES.contains(&key.as_str()) => {}
            _ => return None,
        }
    }
    None
}

/// `line` without a trailing escape character (and the blanks after it), and whether it continues.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    match line.trim_end_matches([' ', '\t']).strip_suffix(escape) {
        Some(kept) => (kept, true),
        None => (line, false),
    }
}

/// Splits the file into instructions with their continuations joined, and returns the escape character.
fn logical_lines(text: &str) -> Result<(Vec<Logical>, char), DockerfileError> {
    let lines = raw_lines(text);
    if let Some(line) = syntax_directive(&lines) {
        return Err(at(
            line,
            "the `syntax` parser directive is not allowed: it makes the builder pull a frontend image; remove it \
             (the builder's own Dockerfile syntax is used)",
        ));
    }
    let mut escape = '\\';
    let mut directives_done = false;
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut iter = lines.iter();
    while let Some(raw) = iter.next() {
        let trimmed = raw.text.trim_start();
        let lead = raw.text.len() - trimmed.len();
        if !directives_done {
            match directive(trimmed) {
                Some((key, value)) if DIRECTIVES.contains(&key.as_str()) => {
                    if seen.contains(&key) {
                        return Err(at(raw.number, format!("only one `{key}` parser directive may be used")));
                    }
                    if key == "escape" {
                        escape = match value {
                            "\\" => '\\',
                            "`" => '`',
                            _ => {
                                return Err(at(
                                    raw.number,
                                    format!("the escape character must be \\ or `, not {value:?}"),
                                ))
                            }
                        };
                    }
                    seen.push(key);
                }
                _ => directives_done = true,
            }
        }
        if trimmed.starts_with('#') {
            continue;
        }
        let (first, mut continued) = trim_continuation(trimmed, escape);
        if !continued && first.trim().is_empty() {
            continue;
        }
        let mut logical = Logical {
            line: raw.number,
            text: first.to_string(),
            segments: vec![Segment { logical: 0, original: raw.start + lead, len: first.len() }],
        };
        while continued {
            let Some(raw) = iter.next() else { break };
            let trimmed = raw.text.trim_start();
            // A comment or an empty line inside a continuation is skipped, and the instruction goes on.
            if trimmed.starts_with('#') || trimmed.is_empty() {
                continue;
            }
            let (piece, more) = trim_continuation(raw.text, escape);
            continued = more;
            logical.segments.push(Segment { logical: logical.text.len(), original: raw.start, len: piece.len() });
            logical.text.push_str(piece);
        }
        out.push(logical);
    }
    Ok((out, escape))
}

// ---------------------------------------------------------------------------------------------------------------
// Words.

/// The builder's word separators inside a line.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

fn blank_words(s: &str) -> Vec<String> {
    s.split(is_blank).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// `KEYWORD rest` → (keyword, rest).
fn split_keyword(text: &str) -> (&str, &str) {
    let t = text.trim();
    match t.find(is_blank) {
        Some(i) => (&t[..i], t[i..].trim_start_matches(is_blank)),
        None => (t, ""),
    }
}

/// Leading builder flags (`--name` or `--name=value`, quotes allowed; `--` ends them) and the rest of the line.
fn split_flags(mut s: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    loop {
        let t = s.trim_start();
        if !t.starts_with("--") {
            return (flags, t);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut end = t.len();
        let mut chars = t.char_indices();
        while let Some((i, c)) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => {
                    end = i;
                    break;
                }
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                }
                (_, c) => word.push(c),
            }
        }
        s = &t[end..];
        if word == "--" {
            return (flags, s.trim_start());
        }
        flags.push(word);
    }
}

/// Words split at unquoted blanks with quotes and escapes kept (BuildKit's `parseWords`).
fn shell_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                continue;
            }
            None if c == '\'' || c == '"' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ => {}
        }
        word.push(c);
        if c == escape && quote != Some('\'') {
            if let Some(next) = chars.next() {
                word.push(next);
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// A heredoc opener (`<<EOF`, `<<-"EOF"`, `2<<EOF`) as BuildKit recognises one among a line's words.
fn is_heredoc(word: &str) -> bool {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else { return false };
    let name = rest.strip_prefix('-').unwrap_or(rest);
    !name.is_empty() && !name.contains('<')
}

/// Build arguments in scope: `None` is declared without a default (it expands to nothing, as unset).
type Args = HashMap<String, Option<String>>;

/// Quote removal, escapes and `$VAR` / `${VAR}` / `${VAR:-word}` / `${VAR:+word}` substitution of one word, as
/// the builder processes FROM images, ARG defaults and COPY sources.
fn expand(word: &str, escape: char, args: &Args) -> Result<String, String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c == escape {
            if let Some(&next) = chars.get(i) {
                out.push(next);
                i += 1;
            }
        } else if c == '\'' {
            let close = chars[i..].iter().position(|&x| x == '\'').ok_or("has an unterminated ' quote")?;
            out.extend(&chars[i..i + close]);
            i += close + 1;
        } else if c == '"' {
            loop {
                let Some(&d) = chars.get(i) else { return Err("has an unterminated \" quote".into()) };
                i += 1;
                if d == '"' {
                    break;
                } else if d == escape && matches!(chars.get(i), Some(&n) if n == '"' || n == '$' || n == escape) {
                    out.push(chars[i]);
                    i += 1;
                } else if d == '$' {
                    i = substitute(&chars, i, escape, args, &mut out)?;
                } else {
                    out.push(d);
                }
            }
        } else if c == '$' {
            i = substitute(&chars, i, escape, args, &mut out)?;
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands the variable after a `$` at `chars[i]`; returns where the word goes on.
fn substitute(chars: &[char], mut i: usize, escape: char, args: &Args, out: &mut String) -> Result<usize, String> {
    let value = |name: &str| args.get(name).cloned().flatten();
    if chars.get(i) != Some(&'{') {
        let len = chars[i..].iter().take_while(|c| is_name_char(**c)).count();
        if len == 0 {
            out.push('$');
            return Ok(i);
        }
        let name: String = chars[i..i + len].iter().collect();
        out.push_str(&value(&name).unwrap_or_default());
        return Ok(i + len);
    }
    i += 1;
    let len = chars[i..].iter().take_while(|c| is_name_char(**c)).count();
    let name: String = chars[i..i + len].iter().collect();
    if name.is_empty() {
        return Err("has an empty ${} substitution".into());
    }
    i += len;
    // The rest up to the matching brace is the modifier and its word.
    let mut depth = 1;
    let start = i;
    while depth > 0 {
        match chars.get(i) {
            None => return Err(format!("has an unterminated ${{{name}")),
            Some('{') => depth += 1,
            Some('}') => depth -= 1,
            Some(_) => {}
        }
        i += 1;
    }
    let modifier: String = chars[start..i - 1].iter().collect();
    let set = args.get(&name).is_some_and(|v| v.is_some());
    let current = value(&name).unwrap_or_default();
    let (test_empty, op, alt) = match modifier.strip_prefix(':') {
        Some(m) => (true, m.chars().next(), m.get(1..).unwrap_or("")),
        None => (false, modifier.chars().next(), modifier.get(1..).unwrap_or("")),
    };
    let present = set && !(test_empty && current.is_empty());
    let expanded = match op {
        None if !test_empty => current,
        Some('-') => {
            if present {
                current
            } else {
                expand(alt, escape, args)?
            }
        }
        Some('+') => {
            if present {
                expand(alt, escape, args)?
            } else {
                String::new()
            }
        }
        _ => {
            return Err(format!(
                "uses ${{{name}{modifier}}}, a substitution not supported here (use ${{NAME}}, ${{NAME:-default}} \
                 or ${{NAME:+alt}})"
            ))
        }
    };
    out.push_str(&expanded);
    Ok(i)
}

/// The JSON (exec) form of an instruction's arguments, if that is how they are written: `Some(Ok(..))` for an
/// array of strings, `Some(Err(..))` for an array with anything else; `None` when it is shell form (text that
/// starts with `[` but is not valid JSON is shell form for the builder too).
fn json_form(args: &str) -> Option<Result<Vec<String>, &'static str>> {
    if !args.starts_with('[') {
        return None;
    }
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(args) else { return None };
    Some(
        items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err("in JSON form every element must be a string"),
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Instructions.

fn allowed_list() -> String {
    ALLOWED_INSTRUCTIONS.join(", ")
}

fn aliases_list() -> String {
    IMAGE_ALIASES.join(", ")
}

/// A COPY/ADD source as it names the build context: `./a/` → `a`, `.` or `./` → `.` (everything).
fn normalize_source(keyword: &str, raw: &str, source: &str) -> Result<String, String> {
    let parts: Vec<&str> = source.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err(format!("{keyword} source {} leaves the workspace (`..`)", shown(raw)));
    }
    if let Some(c) = source.chars().find(|c| !is_path_char(*c)) {
        return Err(format!(
            "{keyword} source {} contains {c:?}, which no submitted path has; name a submitted path",
            shown(raw)
        ));
    }
    Ok(if parts.is_empty() { ".".to_string() } else { parts.join("/") })
}

/// Checks one COPY/ADD source as written (before quote removal) for what is never allowed.
fn check_source_text(keyword: &str, raw: &str) -> Result<(), String> {
    let lower = raw.to_ascii_lowercase();
    if lower.contains("://") || lower.starts_with("git@") {
        return Err(format!(
            "{keyword} source {} is a URL; URLs are not allowed (nothing is fetched during the build): submit the \
             file and copy it",
            shown(raw)
        ));
    }
    if raw.contains('$') {
        return Err(format!("{keyword} source {} uses a variable; name a submitted path", shown(raw)));
    }
    if raw.contains(['*', '?', '[']) {
        return Err(format!(
            "{keyword} source {} is a glob; wildcards (* ? [) are not allowed: name each submitted path or a \
             directory",
            shown(raw)
        ));
    }
    Ok(())
}

/// COPY and ADD: flags, heredocs, then each source (the last argument is the destination).
fn parse_copy(
    keyword: &str,
    flags: &[String],
    args: &str,
    escape: char,
    line: usize,
) -> Result<(Vec<String>, bool), DockerfileError> {
    for flag in flags {
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag.as_str(), None),
        };
        match name {
            "--from" => {
                return Err(at(
                    line,
                    format!(
                        "{keyword} --from is not allowed: it copies from another image or build stage, and only the \
                         submitted files and the prebuilt base are available"
                    ),
                ))
            }
            "--chown" | "--chmod" if value.is_none_or(str::is_empty) => {
                return Err(at(line, format!("{keyword} {name} needs a value ({name}=…)")))
            }
            _ if COPY_FLAGS.contains(&name) => {}
            _ => {
                return Err(at(
                    line,
                    format!("{keyword} does not take {} (allowed flags: {})", shown(name), COPY_FLAGS.join(", ")),
                ))
            }
        }
    }
    let (words, json) = match json_form(args) {
        Some(Ok(items)) => (items, true),
        Some(Err(e)) => return Err(at(line, format!("{keyword}: {e}"))),
        None => {
            let words = blank_words(args);
            if words.iter().any(|w| is_heredoc(w)) {
                return Err(at(
                    line,
                    format!(
                        "heredocs (<<EOF) are not supported in {keyword}; submit the content as a file and copy it"
                    ),
                ));
            }
            (words, false)
        }
    };
    let Some((dest, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(at(line, format!("{keyword} needs at least one source and a destination")));
    };
    let mut out = Vec::with_capacity(words.len());
    for raw in sources {
        check_source_text(keyword, raw).map_err(|m| at(line, m))?;
        let unquoted = if json {
            raw.clone()
        } else {
            expand(raw, escape, &Args::new()).map_err(|m| at(line, format!("{keyword} source {} {m}", shown(raw))))?
        };
        out.push(normalize_source(keyword, raw, &unquoted).map_err(|m| at(line, m))?);
    }
    out.push(dest.clone());
    Ok((out, json))
}

/// The one FROM: no flags, `image [AS name]`, and the image a prebuilt alias (optionally `:latest`).
fn parse_from(
    flags: &[String],
    args: &str,
    escape: char,
    meta: &Args,
    line: usize,
) -> Result<(String, Vec<String>), DockerfileError> {
    if let Some(flag) = flags.first() {
        let name = flag.split('=').next().unwrap_or(flag);
        return Err(at(
            line,
            if name == "--platform" {
                "FROM --platform is not allowed: the base is a prebuilt image for the executor's own platform"
                    .to_string()
            } else {
                format!("FROM does not take {}", shown(name))
            },
        ));
    }
    let words = blank_words(args);
    if words.is_empty() {
        return Err(at(line, format!("FROM needs an image: one of {}", aliases_list())));
    }
    let shape_ok = words.len() == 1 || (words.len() == 3 && words[1].eq_ignore_ascii_case("as"));
    if !shape_ok {
        return Err(at(line, format!("FROM takes an image and optionally `AS name`, not {}", shown(args))));
    }
    let raw = &words[0];
    let image = expand(raw, escape, meta).map_err(|m| at(line, format!("FROM image {} {m}", shown(raw))))?;
    let (name, tag) = match image.split_once(':') {
        Some((n, t)) => (n, Some(t)),
        None => (image.as_str(), None),
    };
    if IMAGE_ALIASES.contains(&name) && matches!(tag, None | Some("latest")) {
        return Ok((name.to_string(), words));
    }
    let named = if *raw == image { shown(raw) } else { format!("{} (= {})", shown(raw), shown(&image)) };
    Err(at(
        line,
        format!(
            "FROM {named} is not a prebuilt image; use one of {} (optionally with :latest); nothing is ever pulled",
            aliases_list()
        ),
    ))
}

/// An `ARG name[=default] …` line; before FROM its defaults join the scope the FROM image is expanded in.
fn parse_arg(args: &str, escape: char, meta: Option<&mut Args>, line: usize) -> Result<Vec<String>, DockerfileError> {
    let words = shell_words(args, escape);
    if words.is_empty() {
        return Err(at(line, "ARG needs a name (ARG NAME or ARG NAME=default)"));
    }
    let mut meta = meta;
    for word in &words {
        let (name, default) = match word.split_once('=') {
            Some((n, d)) => (n, Some(d)),
            None => (word.as_str(), None),
        };
        if name.is_empty() {
            return Err(at(line, format!("ARG {} has no name", shown(word))));
        }
        if let Some(scope) = meta.as_deref_mut() {
            let value = match default {
                Some(d) => Some(expand(d, escape, scope).map_err(|m| at(line, format!("ARG {name} default {m}")))?),
                None => scope.get(name).cloned().flatten(),
            };
            scope.insert(name.to_string(), value);
        }
    }
    Ok(words)
}

/// ENV and LABEL: `key=value …`, or the legacy `key value`.
fn check_key_values(keyword: &str, args: &str, escape: char, line: usize) -> Result<(), DockerfileError> {
    let words = shell_words(args, escape);
    let Some(first) = words.first() else {
        return Err(at(line, format!("{keyword} needs key=value")));
    };
    if !first.contains('=') {
        if words.len() < 2 {
            return Err(at(line, format!("{keyword} needs a value: {keyword} key=value")));
        }
        return Ok(());
    }
    match words.iter().find(|w| !w.contains('=')) {
        Some(w) => Err(at(line, format!("{keyword} {} has no `=`; write key=value", shown(w)))),
        None => Ok(()),
    }
}

/// Parses a Dockerfile and holds it to every rule that does not need the submitted files.
pub fn parse(text: &str) -> Result<Dockerfile, DockerfileError> {
    let (logicals, escape) = logical_lines(text)?;
    let mut meta = Args::new();
    let mut from: Option<(String, usize)> = None;
    let mut instructions = Vec::new();
    let mut copy_sources = BTreeSet::new();
    let (mut has_entrypoint, mut has_cmd) = (false, false);
    for logical in &logicals {
        let line = logical.line;
        let (written, rest) = split_keyword(&logical.text);
        let keyword = written.to_ascii_uppercase();
        if let Some((_, why)) = REFUSED_INSTRUCTIONS.iter().find(|(k, _)| *k == keyword) {
            return Err(at(line, format!("{keyword} is not allowed: {why}")));
        }
        if keyword == "MAINTAINER" {
            return Err(at(line, "MAINTAINER is deprecated and not allowed; use LABEL maintainer=\"…\""));
        }
        if !ALLOWED_INSTRUCTIONS.contains(&keyword.as_str()) {
            return Err(at(line, format!("unknown instruction {} (allowed: {})", shown(written), allowed_list())));
        }
        if from.is_none() && keyword != "FROM" && keyword != "ARG" {
            return Err(at(line, format!("{keyword} comes before FROM; only ARG may come before FROM")));
        }
        let (flags, args) = split_flags(rest);
        let takes_flags = matches!(keyword.as_str(), "FROM" | "COPY" | "ADD" | "RUN");
        if let (false, Some(flag)) = (takes_flags, flags.first()) {
            return Err(at(line, format!("{keyword} does not take flags ({})", shown(flag))));
        }
        let needs_args = |what: &str| -> Result<(), DockerfileError> {
            if args.is_empty() {
                Err(at(line, format!("{keyword} needs {what}")))
            } else {
                Ok(())
            }
        };
        let (parsed, json) = match keyword.as_str() {
            "FROM" => {
                if let Some((_, first)) = &from {
                    return Err(at(
                        line,
                        format!(
                            "a second FROM (the first is on line {first}): multi-stage builds are not supported; \
                             use a single FROM"
                        ),
                    ));
                }
                let (alias, words) = parse_from(&flags, args, escape, &meta, line)?;
                from = Some((alias, line));
                (words, false)
            }
            "ARG" => {
                let scope = if from.is_none() { Some(&mut meta) } else { None };
                (parse_arg(args, escape, scope, line)?, false)
            }
            "RUN" => {
                if let Some(flag) = flags.first() {
                    return Err(at(
                        line,
                        format!(
                            "RUN {} is not allowed: mounts, network and security modes of a build are the \
                             executor's to set",
                            shown(flag.split('=').next().unwrap_or(flag))
                        ),
                    ));
                }
                needs_args("a command")?;
                match json_form(args) {
                    Some(Ok(items)) if items.is_empty() => return Err(at(line, "RUN needs a command")),
                    Some(Ok(items)) => (items, true),
                    Some(Err(e)) => return Err(at(line, format!("RUN: {e}"))),
                    None => {
                        if shell_words(args, escape).iter().any(|w| is_heredoc(w)) {
                            return Err(at(
                                line,
                                "heredocs (<<EOF) are not supported in RUN; submit the content as a file",
                            ));
                        }
                        (vec![args.to_string()], false)
                    }
                }
            }
            "CMD" | "ENTRYPOINT" => {
                needs_args("a command")?;
                let (items, json) = match json_form(args) {
                    Some(Ok(items)) => (items, true),
                    Some(Err(e)) => return Err(at(line, format!("{keyword}: {e}"))),
                    None => (vec![args.to_string()], false),
                };
                let gives_command = !items.is_empty();
                if keyword == "CMD" {
                    has_cmd = gives_command;
                } else {
                    has_entrypoint = gives_command;
                }
                (items, json)
            }
            "SHELL" => match json_form(args) {
                Some(Ok(items)) if !items.is_empty() => (items, true),
                _ => return Err(at(line, "SHELL must be a non-empty JSON array, e.g. SHELL [\"/bin/bash\", \"-c\"]")),
            },
            "COPY" | "ADD" => {
                let (items, json) = parse_copy(&keyword, &flags, args, escape, line)?;
                copy_sources.extend(items[..items.len() - 1].iter().cloned());
                (items, json)
            }
            "ENV" | "LABEL" => {
                check_key_values(&keyword, args, escape, line)?;
                (vec![args.to_string()], false)
            }
            "EXPOSE" => {
                needs_args("a port")?;
                (blank_words(args), false)
            }
            // WORKDIR, the last of the allowed ones.
            _ => {
                needs_args("a directory")?;
                (vec![args.to_string()], false)
            }
        };
        instructions.push(Instruction { keyword, flags, args: parsed, json, line });
    }
    let Some((from_alias, from_line)) = from else {
        return Err(whole(format!("the Dockerfile has no FROM; start it with FROM and one of {}", aliases_list())));
    };
    Ok(Dockerfile {
        from_alias,
        from_line,
        instructions,
        copy_sources: copy_sources.into_iter().collect(),
        has_entrypoint,
        has_cmd,
    })
}

/// At most this many paths are listed in a message; beyond it the count is given.
const LISTED_PATHS: usize = 20;

fn listing(paths: &[&str]) -> String {
    let mut sorted: Vec<&str> = paths.to_vec();
    sorted.sort_unstable();
    let mut text = sorted.iter().take(LISTED_PATHS).map(|p| shown(p)).collect::<Vec<_>>().join(", ");
    if sorted.len() > LISTED_PATHS {
        text.push_str(&format!(" and {} more", sorted.len() - LISTED_PATHS));
    }
    if text.is_empty() {
        text.push_str("none");
    }
    text
}

/// The submit-time check of a workspace's Dockerfile: [`parse`], then every COPY/ADD source must be a submitted
/// path (`paths`: every path of the build context, the script's [`crate::workspace::SCRIPT_FILE`] included) or a
/// directory above one, and there must be a command to run: an ENTRYPOINT or CMD, unless the submission gives its
/// own `entrypoint`.
pub fn validate(text: &str, paths: &[&str], entrypoint_given: bool) -> Result<Dockerfile, DockerfileError> {
    let dockerfile = parse(text)?;
    for ins in dockerfile.instructions.iter().filter(|i| i.keyword == "COPY" || i.keyword == "ADD") {
        let sources = &ins.args[..ins.args.len() - 1];
        let missing: Vec<&str> =
            sources.iter().filter(|s| !paths.iter().any(|p| is_within(p, s))).map(String::as_str).collect();
        if !missing.is_empty() {
            let noun = if missing.len() == 1 { "source is" } else { "sources are" };
            return Err(at(
                ins.line,
                format!(
                    "{} {noun} not in the submission: {}; submitted paths: {}",
                    ins.keyword,
                    listing(&missing),
                    listing(paths)
                ),
            ));
        }
    }
    if !entrypoint_given && !dockerfile.has_entrypoint && !dockerfile.has_cmd {
        return Err(whole(
            "the Dockerfile needs an ENTRYPOINT or CMD (or the submission an `entrypoint`) to say what the job runs",
        ));
    }
    Ok(dockerfile)
}

/// The Dockerfile with its FROM image replaced by `engine_image` (the operator's image for the alias), every other
/// byte as submitted: the engine then builds on a local image and never resolves a name of the user's.
pub fn with_base_image(text: &str, engine_image: &str) -> Result<String, DockerfileError> {
    if engine_image.is_empty() || engine_image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(whole(format!("the engine image {} must be a single word", shown(engine_image))));
    }
    let parsed = parse(text)?;
    let (logicals, _) = logical_lines(text)?;
    let from = logicals
        .iter()
        .find(|l| l.line == parsed.from_line)
        .ok_or_else(|| whole("the FROM instruction could not be found again"))?;
    // In the joined line: the keyword, the blanks after it, then the image word (FROM takes no flags here).
    let t = &from.text;
    let keyword_start = t.len() - t.trim_start().len();
    let keyword_end = t[keyword_start..].find(is_blank).map_or(t.len(), |i| keyword_start + i);
    let image_start = t[keyword_end..].find(|c: char| !is_blank(c)).map_or(t.len(), |i| keyword_end + i);
    let image_end = t[image_start..].find(is_blank).map_or(t.len(), |i| image_start + i);
    let start = from
        .segments
        .iter()
        .find(|s| s.logical <= image_start && image_start < s.logical + s.len)
        .map(|s| s.original + image_start - s.logical);
    let end = from
        .segments
        .iter()
        .find(|s| s.logical < image_end && image_end <= s.logical + s.len)
        .map(|s| s.original + image_end - s.logical);
    let (Some(start), Some(end)) = (start, end) else {
        return Err(at(parsed.from_line, "the FROM image could not be located in the text"));
    };
    Ok(format!("{}{engine_image}{}", &text[..start], &text[end..]))
}

/// Files besides the Dockerfile that change a build whatever is copied: they decide what the context holds.
const CONTEXT_FILES: [&str; 2] = [".dockerignore", "Dockerfile.dockerignore"];

/// The build-cache key of a workspace (the whole build context, e.g. [`crate::workspace::with_script`]): sha256
/// (hex) over the Dockerfile, the ignore files and exactly the files its COPY/ADD instructions copy, sorted by
/// path, each path and content length-prefixed. An identical resubmission has the same key; a change to a file
/// that is not copied does not change it. The key says nothing of the engine image an alias maps to: the
/// executor qualifies it with that.
pub fn build_key(files: &[WorkspaceFile]) -> Result<String, DockerfileError> {
    let dockerfile =
        files.iter().find(|f| f.path == DOCKERFILE).ok_or_else(|| whole("the workspace has no Dockerfile"))?;
    let text = std::str::from_utf8(&dockerfile.content).map_err(|_| whole("the Dockerfile is not UTF-8 text"))?;
    let parsed = parse(text)?;
    let keyed: BTreeMap<&str, &[u8]> = files
        .iter()
        .filter(|f| {
            f.path == DOCKERFILE
                || CONTEXT_FILES.contains(&f.path.as_str())
                || parsed.copy_sources.iter().any(|s| is_within(&f.path, s))
        })
        .map(|f| (f.path.as_str(), f.content.as_slice()))
        .collect();
    let mut hash = Sha256::new();
    hash.update(b"ouro-build-key-v1\0");
    for (path, content) in keyed {
        hash.update((path.len() as u64).to_be_bytes());
        hash.update(path.as_bytes());
        hash.update((content.len() as u64).to_be_bytes());
        hash.update(content);
    }
    Ok(hex::encode(hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMD: &str = "CMD [\"python3\", \"main.py\"]\n";

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    fn check(text: &str, paths: &[&str]) -> Result<Dockerfile, String> {
        validate(text, paths, false).map_err(|e| e.to_string())
    }

    fn file(path: &str, content: &str) -> WorkspaceFile {
        WorkspaceFile { path: path.to_string(), content: content.as_bytes().to_vec() }
    }

    #[test]
    fn a_plain_dockerfile_parses() {
        let df = parse(
            "FROM ouro-python\nRUN pip --version\nWORKDIR /app\nCOPY main.py /app/main.py\n\
             ENTRYPOINT [\"python\", \"main.py\"]\n",
        )
        .unwrap();
        assert_eq!((df.from_alias.as_str(), df.from_line), ("ouro-python", 1));
        assert_eq!(df.copy_sources, ["main.py"]);
        assert!(df.has_entrypoint && !df.has_cmd);
        let kinds: Vec<(&str, usize, bool)> =
            df.instructions.iter().map(|i| (i.keyword.as_str(), i.line, i.json)).collect();
        assert_eq!(
            kinds,
            [("FROM", 1, false), ("RUN", 2, false), ("WORKDIR", 3, false), ("COPY", 4, false), ("ENTRYPOINT", 5, true)]
        );
        assert_eq!(df.instructions[4].args, ["python", "main.py"]);
        assert_eq!(df.instructions[1].args, ["pip --version"]);
    }

    #[test]
    fn refused_instructions_name_themselves_and_the_line() {
        assert_eq!(
            err("FROM ouro-python\n\nUSER root\n"),
            "line 3: USER is not allowed: jobs always run as the executor's unprivileged user"
        );
        assert!(err("FROM ouro-python\nVOLUME /data\n").starts_with("line 2: VOLUME is not allowed: "));
        assert!(err("FROM ouro-python\nhealthcheck CMD true\n").starts_with("line 2: HEALTHCHECK is not allowed"));
        assert!(err("FROM ouro-python\nSTOPSIGNAL SIGKILL\n").starts_with("line 2: STOPSIGNAL is not allowed"));
        assert!(err("FROM ouro-python\nONBUILD RUN x\n").starts_with("line 2: ONBUILD is not allowed"));
        assert!(err("FROM ouro-python\nMAINTAINER me\n").starts_with("line 2: MAINTAINER is deprecated"));
        assert_eq!(
            err("FROM ouro-python\nFETCH x\n"),
            "line 2: unknown instruction \"FETCH\" (allowed: FROM, RUN, ENV, WORKDIR, ENTRYPOINT, CMD, COPY, ADD, ARG, \
             LABEL, EXPOSE, SHELL)"
        );
    }

    #[test]
    fn from_must_be_one_prebuilt_alias() {
        assert_eq!(
            err("FROM ubuntu:22.04\n"),
            "line 1: FROM \"ubuntu:22.04\" is not a prebuilt image; use one of ouro-ubuntu, ouro-python, ouro-nodejs \
             (optionally with :latest); nothing is ever pulled"
        );
        for bad in ["ouro-python:3.12", "docker.io/ouro-python", "ouro-python@sha256:00", "OURO-PYTHON", "scratch"] {
            assert!(err(&format!("FROM {bad}\n")).contains("is not a prebuilt image"), "{bad}");
        }
        for good in ["ouro-ubuntu", "ouro-nodejs:latest", "ouro-python AS app", "ouro-python as app"] {
            assert!(parse(&format!("from {good}\n")).is_ok(), "{good}");
        }
        assert_eq!(
            err("FROM --platform=linux/amd64 ouro-python\n"),
            "line 1: FROM --platform is not allowed: the base is a prebuilt image for the executor's own platform"
        );
        assert!(err("FROM ouro-python AS\n").contains("FROM takes an image and optionally `AS name`"));
        assert_eq!(
            err("FROM ouro-python\nRUN true\nFROM ouro-ubuntu\n"),
            "line 3: a second FROM (the first is on line 1): multi-stage builds are not supported; use a single FROM"
        );
        assert_eq!(
            err("# only a comment\n"),
            "the Dockerfile has no FROM; start it with FROM and one of ouro-ubuntu, ouro-python, ouro-nodejs"
        );
        assert_eq!(err("RUN true\nFROM ouro-python\n"), "line 1: RUN comes before FROM; only ARG may come before FROM");
    }

    #[test]
    fn arg_before_from_is_substituted() {
        let df = parse("ARG BASE=ouro-python\nARG TAG=latest\nFROM ${BASE}:$TAG\n").unwrap();
        assert_eq!((df.from_alias.as_str(), df.from_line), ("ouro-python", 3));
        assert_eq!(parse("ARG A=ouro B=${A}-nodejs\nFROM \"$B\"\n").unwrap().from_alias, "ouro-nodejs");
        assert_eq!(parse("ARG V\nFROM ${V:-ouro-ubuntu}\n").unwrap().from_alias, "ouro-ubuntu");
        assert_eq!(parse("ARG V=x\nFROM ouro-ubuntu${V:+}\n").unwrap().from_alias, "ouro-ubuntu");
        assert_eq!(
            err("ARG BASE=python:3.12\nFROM $BASE\n"),
            "line 2: FROM \"$BASE\" (= \"python:3.12\") is not a prebuilt image; use one of ouro-ubuntu, ouro-python, \
             ouro-nodejs (optionally with :latest); nothing is ever pulled"
        );
        assert!(err("FROM $UNDECLARED\n").contains("(= \"\")"), "an undeclared ARG expands to nothing");
        // An ARG after FROM does not reach back into it, and is fine.
        assert!(parse("FROM ouro-python\nARG BASE=ubuntu\nCMD x\n").is_ok());
        assert!(err("ARG B=ouro-python\nFROM ${B:?no}\n").contains("not supported here"));
    }

    #[test]
    fn continuations_and_comments_parse_like_the_builder() {
        let text = concat!(
            "# a comment\n\nFROM ouro-python\nRUN apt-get update \\\n    # a comment inside\n\n",
            "    && echo done \\   \n    ok\nCMD python3 \\\nmain.py\n"
        );
        let df = parse(text).unwrap();
        let run = &df.instructions[1];
        assert_eq!((run.keyword.as_str(), run.line), ("RUN", 4));
        assert_eq!(run.args, ["apt-get update     && echo done     ok"]);
        assert_eq!((df.instructions[2].line, df.instructions[2].args[0].as_str()), (9, "python3 main.py"));
        assert!(df.has_cmd);
        // A `#` that is not at the start of a line is the command's, not a comment.
        assert_eq!(parse("FROM ouro-ubuntu\nRUN echo a # b\n").unwrap().instructions[1].args, ["echo a # b"]);
        // CRLF line ends and a byte-order mark.
        let df = parse("\u{feff}FROM ouro-ubuntu\r\nRUN a \\\r\n  b\r\n").unwrap();
        assert_eq!(df.instructions[1].args, ["a   b"]);
        // Keywords in any case.
        assert!(parse("from ouro-ubuntu\nRuN true\ncmd [\"true\"]\n").unwrap().has_cmd);
    }

    #[test]
    fn the_escape_directive_changes_the_continuation_character() {
        let df = parse("# escape=`\nFROM ouro-ubuntu\nRUN echo a `\n  b\n").unwrap();
        assert_eq!(df.instructions[1].args, ["echo a   b"]);
        // With ` as escape, a backslash is an ordinary character (and then not a path character).
        assert!(parse("# escape=`\nFROM ouro-ubuntu\nRUN echo a \\\nCMD x\n").unwrap().instructions.len() == 3);
        assert!(err("# escape=x\nFROM ouro-ubuntu\n").starts_with("line 1: the escape character must be"));
        assert!(err("# escape=`\n# escape=\\\nFROM ouro-ubuntu\n").starts_with("line 2: only one `escape`"));
        // After the first non-directive line a directive is only a comment.
        let df = parse("FROM ouro-ubuntu\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(df.instructions[1].args, ["a  b"]);
        assert!(
            parse("# check=skip=all\n# escape=`\nFROM ouro-ubuntu\nRUN a `\n b\n").unwrap().instructions.len() == 2
        );
    }

    #[test]
    fn the_syntax_directive_would_pull_and_is_refused() {
        assert!(err("# syntax=docker/dockerfile:1\nFROM ouro-ubuntu\n")
            .starts_with("line 1: the `syntax` parser directive is not allowed"));
        let after_shebang = "#!/usr/bin/env docker\n# syntax = docker/dockerfile:1\nFROM ouro-ubuntu\n";
        assert!(err(after_shebang).starts_with("line 2:"));
        // Not a directive once an instruction came first.
        assert!(parse("FROM ouro-ubuntu\n# syntax=docker/dockerfile:1\n").is_ok());
    }

    #[test]
    fn exec_and_shell_forms() {
        let text = "FROM ouro-ubuntu\nSHELL [\"/bin/bash\", \"-c\"]\nRUN [\"echo\", \"x\"]\nENTRYPOINT [\"a\"]\n\
                    CMD [\"b\", \"c\"]\n";
        let df = parse(text).unwrap();
        assert!(df.instructions.iter().skip(1).all(|i| i.json));
        assert_eq!(df.instructions[4].args, ["b", "c"]);
        // Not valid JSON: shell form, as for the builder.
        let df = parse("FROM ouro-ubuntu\nCMD ['python3', 'main.py']\n").unwrap();
        assert_eq!((df.instructions[1].json, df.instructions[1].args[0].as_str()), (false, "['python3', 'main.py']"));
        assert_eq!(
            err("FROM ouro-ubuntu\nCMD [\"a\", 1]\n"),
            "line 2: CMD: in JSON form every element must be a string"
        );
        assert!(
            err("FROM ouro-ubuntu\nSHELL /bin/bash -c\n").starts_with("line 2: SHELL must be a non-empty JSON array")
        );
        // `CMD []` gives no command.
        let df = parse("FROM ouro-ubuntu\nCMD [\"x\"]\nCMD []\n").unwrap();
        assert!(!df.has_cmd);
        assert_eq!(err("FROM ouro-ubuntu\nRUN\n"), "line 2: RUN needs a command");
    }

    #[test]
    fn build_flags_that_reach_outside_are_refused() {
        assert!(err("FROM ouro-ubuntu\nRUN --mount=type=cache,target=/root/.cache pip install x\n")
            .starts_with("line 2: RUN \"--mount\" is not allowed"));
        assert!(err("FROM ouro-ubuntu\nRUN --network=host curl x\n")
            .starts_with("line 2: RUN \"--network\" is not allowed"));
        assert_eq!(err("FROM ouro-ubuntu\nWORKDIR --x /a\n"), "line 2: WORKDIR does not take flags (\"--x\")");
        // `--` inside a command is the command's.
        assert!(parse("FROM ouro-ubuntu\nRUN pip install --no-index x\n").is_ok());
    }

    #[test]
    fn heredocs_are_refused() {
        assert_eq!(
            err("FROM ouro-ubuntu\nCOPY <<EOF /x\nhello\nEOF\n"),
            "line 2: heredocs (<<EOF) are not supported in COPY; submit the content as a file and copy it"
        );
        assert!(err("FROM ouro-ubuntu\nRUN cat <<-'EOT' > f\nx\nEOT\n").starts_with("line 2: heredocs"));
        // A shift or a here-string is not a heredoc; nor is a quoted one.
        for ok in ["RUN echo $((1 << 2))", "RUN cat <<< hi", "RUN echo \"a <<EOF\""] {
            assert!(parse(&format!("FROM ouro-ubuntu\n{ok}\n")).is_ok(), "{ok}");
        }
    }

    #[test]
    fn copy_sources_are_plain_submitted_paths() {
        let bad = |line: &str| err(&format!("FROM ouro-ubuntu\n{line}\n"));
        assert_eq!(
            bad("ADD https://example.com/x.tar.gz /x"),
            "line 2: ADD source \"https://example.com/x.tar.gz\" is a URL; URLs are not allowed (nothing is fetched \
             during the build): submit the file and copy it"
        );
        assert!(bad("ADD git@github.com:a/b.git /b").contains("is a URL"));
        assert!(bad("ADD ftp://h/f /f").contains("is a URL"));
        assert_eq!(
            bad("COPY *.py /app/"),
            "line 2: COPY source \"*.py\" is a glob; wildcards (* ? [) are not allowed: name each submitted path or a \
             directory"
        );
        assert!(bad("COPY a?.py /app/").contains("is a glob"));
        assert!(bad("COPY [ab].py /app/").contains("is a glob"));
        assert_eq!(bad("COPY ../secret /x"), "line 2: COPY source \"../secret\" leaves the workspace (`..`)");
        assert!(bad("COPY $SRC /x").contains("uses a variable"));
        assert_eq!(
            bad("COPY --from=builder /out /out"),
            "line 2: COPY --from is not allowed: it copies from another image or build stage, and only the submitted \
             files and the prebuilt base are available"
        );
        assert!(bad("COPY --from builder /out /out").contains("COPY --from is not allowed"));
        assert!(bad("ADD --checksum=sha256:00 a /a").contains("does not take \"--checksum\""));
        assert!(bad("COPY --chown a /a").contains("--chown needs a value"));
        assert!(bad("COPY a").contains("needs at least one source and a destination"));
        assert!(bad("COPY [\"a\"]").contains("needs at least one source and a destination"));
        assert!(bad("COPY a|b /x").contains("contains '|'"));
        assert!(bad("COPY \"a b /x").contains("unterminated"));

        let text = "FROM ouro-ubuntu\nCOPY --chown=1000:1000 --chmod=644 --link ./src/ lib/a.py /app/\nADD . /w\n\
                    COPY [\"my file.txt\", \"/x\"]\nCOPY 'q.txt' /q\n";
        let df = parse(text).unwrap();
        assert_eq!(df.copy_sources, [".", "lib/a.py", "my file.txt", "q.txt", "src"]);
        assert_eq!(df.instructions[1].args, ["src", "lib/a.py", "/app/"]);
        assert_eq!(df.instructions[1].flags, ["--chown=1000:1000", "--chmod=644", "--link"]);
        assert!(df.instructions[3].json);
        assert_eq!(parse("FROM ouro-ubuntu\nCOPY ./ /w\n").unwrap().copy_sources, ["."]);
    }

    #[test]
    fn validate_checks_sources_against_the_submission_and_needs_a_command() {
        let paths = ["Dockerfile", "main.py", "src/app/x.py"];
        let text = format!("FROM ouro-python\nCOPY main.py src src/app ./src/app/x.py . /app/\n{CMD}");
        assert!(check(&text, &paths).is_ok());
        assert_eq!(
            check(&format!("FROM ouro-python\nCOPY main.py missing.py lib /app/\n{CMD}"), &paths).unwrap_err(),
            "line 2: COPY sources are not in the submission: \"lib\", \"missing.py\"; submitted paths: \"Dockerfile\", \
             \"main.py\", \"src/app/x.py\""
        );
        assert!(check(&format!("FROM ouro-python\nADD sr /x\n{CMD}"), &paths)
            .unwrap_err()
            .contains("ADD source is not in"));
        assert!(check(&format!("FROM ouro-python\nCOPY [\"job\", \"/j\"]\n{CMD}"), &["Dockerfile", "job"]).is_ok());
        assert_eq!(
            check("FROM ouro-python\nCOPY main.py /app/main.py\n", &paths).unwrap_err(),
            "the Dockerfile needs an ENTRYPOINT or CMD (or the submission an `entrypoint`) to say what the job runs"
        );
        assert!(validate("FROM ouro-python\n", &paths, true).is_ok(), "an `entrypoint` in the submission will do");
        assert!(check("FROM ouro-python\nENTRYPOINT python3 main.py\n", &paths).is_ok());
        let many: Vec<String> = (0..100).map(|i| format!("f{i:03}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = check(&format!("FROM ouro-python\nCOPY nope /x\n{CMD}"), &many).unwrap_err();
        assert!(e.ends_with("\"f019\" and 80 more"), "{e}");
    }

    #[test]
    fn with_base_image_replaces_only_the_image() {
        let text = "# build\nARG X=1\nFROM ouro-python\nRUN echo hi  \n";
        assert_eq!(
            with_base_image(text, "registry.local/ouro/python:2024").unwrap(),
            "# build\nARG X=1\nFROM registry.local/ouro/python:2024\nRUN echo hi  \n"
        );
        let text = "ARG BASE=ouro-nodejs\r\n  from   ${BASE}:latest  AS app\r\nCMD x\r\n";
        assert_eq!(
            with_base_image(text, "node-img").unwrap(),
            "ARG BASE=ouro-nodejs\r\n  from   node-img  AS app\r\nCMD x\r\n"
        );
        let text = "\u{feff}FROM \\\n  # note\n  ouro-ubuntu \\\n  AS base\nCMD x";
        assert_eq!(with_base_image(text, "u:1").unwrap(), "\u{feff}FROM \\\n  # note\n  u:1 \\\n  AS base\nCMD x");
        assert!(with_base_image("FROM ubuntu\n", "u").is_err());
        assert!(with_base_image("FROM ouro-ubuntu\n", "two words").is_err());
        assert_eq!(
            parse(&with_base_image("FROM ouro-ubuntu\nCMD x\n", "ouro-ubuntu:latest").unwrap()).unwrap().from_alias,
            "ouro-ubuntu"
        );
    }

    #[test]
    fn build_key_covers_exactly_what_is_copied() {
        let dockerfile = file("Dockerfile", &format!("FROM ouro-python\nCOPY main.py lib /app/\n{CMD}"));
        let base = vec![dockerfile.clone(), file("main.py", "print(1)"), file("lib/a.py", "A"), file("notes.txt", "n")];
        let key = build_key(&base).unwrap();
        assert_eq!(key.len(), 64);
        let mut reordered = base.clone();
        reordered.reverse();
        assert_eq!(build_key(&reordered).unwrap(), key, "order does not matter");

        let changed = |i: usize, content: &str| {
            let mut files = base.clone();
            files[i].content = content.as_bytes().to_vec();
            build_key(&files).unwrap()
        };
        assert_eq!(changed(3, "other notes"), key, "an uncopied file does not count");
        assert_ne!(changed(1, "print(2)"), key);
        assert_ne!(changed(2, "B"), key, "a file inside a copied directory counts");
        assert_ne!(changed(0, &format!("FROM ouro-python\nCOPY main.py lib /app/\n{CMD}# more\n")), key);
        let mut extra = base.clone();
        extra.push(file("lib/b.py", "B"));
        assert_ne!(build_key(&extra).unwrap(), key, "a new file in a copied directory counts");
        let mut ignore = base.clone();
        ignore.push(file(".dockerignore", "lib/a.py"));
        assert_ne!(build_key(&ignore).unwrap(), key, "the ignore file decides what is copied");
        // Length prefixes: moving bytes between path and content changes the key.
        let a = build_key(&[file("Dockerfile", "FROM ouro-ubuntu\nCOPY . /\nCMD x"), file("ab", "c")]).unwrap();
        let b = build_key(&[file("Dockerfile", "FROM ouro-ubuntu\nCOPY . /\nCMD x"), file("a", "bc")]).unwrap();
        assert_ne!(a, b);
        assert_eq!(build_key(&[file("main.py", "")]).unwrap_err().message, "the workspace has no Dockerfile");
    }
}
