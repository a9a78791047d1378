//! Where a setting comes from: a config file as read (its path, its text and the line of every
//! key, taken from the TOML parser's spans), and the [`Report`] that collects the problems
//! found in it, each naming the file, the line and the key.
//!
//! A file that cannot be read or parsed is reported once, by [`TomlFile::read`], and yields
//! nothing: the checks that need it are skipped instead of reporting what its absence implies.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::{ConfigError, Overrides};

/// A key inside a config file, as a path from the top: `queues.support.required_skills[1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

impl KeyPath {
    /// A table or key at the top of a file.
    pub(crate) fn top(name: &str) -> KeyPath {
        KeyPath(vec![Step::Key(name.to_owned())])
    }

    /// `name` inside this table.
    pub(crate) fn key(&self, name: &str) -> KeyPath {
        let mut steps = self.0.clone();
        steps.push(Step::Key(name.to_owned()));
        KeyPath(steps)
    }

    /// Element `i` of this array.
    pub(crate) fn index(&self, i: usize) -> KeyPath {
        let mut steps = self.0.clone();
        steps.push(Step::Index(i));
        KeyPath(steps)
    }

    /// The dotted path without array indices: what an environment override names.
    fn without_indices(&self) -> String {
        let keys: Vec<&str> = self
            .0
            .iter()
            .filter_map(|s| match s {
                Step::Key(k) => Some(k.as_str()),
                Step::Index(_) => None,
            })
            .collect();
        keys.join(".")
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(k) if i == 0 => write!(f, "{k}")?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The lines of a document's keys: a key's own line (for a table, the line of its header),
/// and those of the keys and array elements inside it.
#[derive(Debug, Default)]
struct Lines {
    line: usize,
    keys: BTreeMap<String, Lines>,
    items: Vec<Lines>,
}

impl Lines {
    fn of_table(table: &DeTable<'_>, line_at: &impl Fn(usize) -> usize) -> BTreeMap<String, Lines> {
        table
            .iter()
            .map(|(k, v)| {
                let mut node = Lines::of_value(v.get_ref(), line_at);
                node.line = line_at(k.span().start);
                (k.get_ref().to_string(), node)
            })
            .collect()
    }

    fn of_value(value: &DeValue<'_>, line_at: &impl Fn(usize) -> usize) -> Lines {
        match value {
            DeValue::Table(t) => Lines {
                keys: Lines::of_table(t, line_at),
                ..Lines::default()
            },
            DeValue::Array(a) => Lines {
                items: a
                    .iter()
                    .map(|item| Lines {
                        line: line_at(item.span().start),
                        ..Lines::of_value(item.get_ref(), line_at)
                    })
                    .collect(),
                ..Lines::default()
            },
            _ => Lines::default(),
        }
    }
}

/// Whether a config file must exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// A missing file is an error.
    Required,
    /// A missing file is an empty one.
    Optional,
}

/// A config file that was read and parsed.
#[derive(Debug)]
pub(crate) struct TomlFile {
    path: PathBuf,
    text: String,
    /// Lines of the top-level keys and, below them, of every key in the file.
    lines: BTreeMap<String, Lines>,
}

impl TomlFile {
    /// Read `path` and deserialise it as `T`. A file that cannot be read, is not TOML, or does
    /// not fit `T` (an unknown key, a wrong type) is one error in `errors`, with its line when
    /// the parser gives one, and `None`.
    pub(crate) fn read<T: DeserializeOwned>(
        path: PathBuf,
        presence: Presence,
        errors: &mut Vec<ConfigError>,
    ) -> Option<(TomlFile, T)> {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e)
                if presence == Presence::Optional && e.kind() == std::io::ErrorKind::NotFound =>
            {
                String::new()
            }
            Err(e) => {
                errors.push(ConfigError {
                    file: path,
                    line: None,
                    key: None,
                    reason: format!("cannot read: {e}"),
                });
                return None;
            }
        };
        TomlFile::parse(path, text).map_err(|e| errors.push(e)).ok()
    }

    /// [`TomlFile::read`] of text already in memory.
    pub(crate) fn parse<T: DeserializeOwned>(
        path: PathBuf,
        text: String,
    ) -> Result<(TomlFile, T), ConfigError> {
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let line_at = |offset: usize| line_starts.partition_point(|&s| s <= offset);
        let error = |e: toml::de::Error| ConfigError {
            file: path.clone(),
            line: e.span().map(|s| line_at(s.start)),
            key: None,
            reason: e.message().to_owned(),
        };
        // The parser does not report syntax errors in the order of the text: the first one
        // in the file is the one to fix first (later ones are often its consequences).
        let (doc, syntax) = DeTable::parse_recoverable(&text);
        if let Some(e) = syntax
            .into_iter()
            .min_by_key(|e| e.span().map_or(usize::MAX, |s| s.start))
        {
            return Err(error(e));
        }
        let lines = Lines::of_table(doc.get_ref(), &line_at);
        let value = T::deserialize(toml::de::Deserializer::from(doc)).map_err(error)?;
        let file = TomlFile { path, text, lines };
        Ok((file, value))
    }

    /// The file as a TOML table (to lay environment overrides over it).
    pub(crate) fn table(&self) -> toml::Table {
        // It parsed once already: this cannot fail.
        toml::from_str(&self.text).unwrap_or_default()
    }

    /// The line of `key`; for a key the file leaves out (at its default), the line of the
    /// closest table around it that the file has.
    pub(crate) fn line_of(&self, key: &KeyPath) -> Option<usize> {
        let mut found = None;
        let mut keys = &self.lines;
        let mut items: &[Lines] = &[];
        for step in &key.0 {
            let next = match step {
                Step::Key(k) => keys.get(k),
                Step::Index(i) => items.get(*i),
            };
            let Some(node) = next else { break };
            found = Some(node.line);
            keys = &node.keys;
            items = &node.items;
        }
        found
    }
}

/// What the checks found: errors stop a config from loading, warnings do not.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<ConfigError>,
}

/// The problems found in one file, each located by its key: `file:line: key: reason`, or
/// `environment VAR: key: reason` for a key an environment variable set.
pub(crate) struct Report<'a> {
    file: &'a TomlFile,
    /// Environment overrides (switchboard.toml only).
    overrides: &'a Overrides,
    found: &'a mut Findings,
}

/// No environment overrides: every file but switchboard.toml.
static NO_OVERRIDES: Overrides = Overrides::new();

impl<'a> Report<'a> {
    /// Problems in `file`.
    pub(crate) fn new(file: &'a TomlFile, found: &'a mut Findings) -> Report<'a> {
        Report::with_overrides(file, &NO_OVERRIDES, found)
    }

    /// Problems in `file` with `overrides` laid over it.
    pub(crate) fn with_overrides(
        file: &'a TomlFile,
        overrides: &'a Overrides,
        found: &'a mut Findings,
    ) -> Report<'a> {
        Report {
            file,
            overrides,
            found,
        }
    }

    /// An error at `key`.
    pub(crate) fn err(&mut self, key: &KeyPath, reason: impl Into<String>) {
        let e = self.problem(key, reason.into());
        self.found.errors.push(e);
    }

    /// A warning at `key`.
    pub(crate) fn warn(&mut self, key: &KeyPath, reason: impl Into<String>) {
        let w = self.problem(key, reason.into());
        self.found.warnings.push(w);
    }

    /// An error that does not come from the file (a command-line flag).
    pub(crate) fn push(&mut self, e: ConfigError) {
        self.found.errors.push(e);
    }

    fn problem(&self, key: &KeyPath, reason: String) -> ConfigError {
        let (file, line) = match self.overrides.get(&key.without_indices()) {
            Some(var) => (PathBuf::from(format!("environment {var}")), None),
            None => (self.file.path.clone(), self.file.line_of(key)),
        };
        ConfigError {
            file,
            line,
            key: Some(key.to_string()),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> TomlFile {
        TomlFile::parse::<toml::Table>(PathBuf::from("t.toml"), text.to_owned())
            .unwrap()
            .0
    }

    #[test]
    fn lines_come_from_the_parser_not_from_searching_the_text() {
        let f = file(
            "# port_min = 1 in a comment\n\
             [media]\n\
             bind = \"0.0.0.0\"   # port_min here too\n\
             port_min = 10000\n\
             \n\
             [queues.\"sales.eu\"]\n\
             required_skills = [\n  \"english\",\n  { skill = \"spanish\", min = 3 },\n]\n\
             skills = { english = 5, spansh = 4 }\n\
             [queues.support]\n\
             number = \"600\"\n",
        );
        let media = KeyPath::top("media");
        assert_eq!(f.line_of(&media), Some(2));
        assert_eq!(f.line_of(&media.key("port_min")), Some(4));
        let sales = KeyPath::top("queues").key("sales.eu");
        assert_eq!(f.line_of(&sales), Some(6));
        assert_eq!(f.line_of(&sales.key("required_skills")), Some(7));
        assert_eq!(f.line_of(&sales.key("required_skills").index(1)), Some(9));
        assert_eq!(f.line_of(&sales.key("skills").key("spansh")), Some(11));
        let support = KeyPath::top("queues").key("support");
        assert_eq!(f.line_of(&support.key("number")), Some(13));
        // A key left at its default: the table it belongs in.
        assert_eq!(f.line_of(&media.key("port_max")), Some(2));
        assert_eq!(f.line_of(&support.key("strategy")), Some(12));
        assert_eq!(f.line_of(&KeyPath::top("registrar").key("x")), None);
    }

    #[test]
    fn key_paths_print_dotted_with_indices() {
        let k = KeyPath::top("queues")
            .key("support")
            .key("escalation")
            .index(1);
        assert_eq!(k.to_string(), "queues.support.escalation[1]");
        assert_eq!(k.without_indices(), "queues.support.escalation");
    }

    #[test]
    fn a_file_that_does_not_parse_is_one_error_with_its_line() {
        let e = TomlFile::parse::<toml::Table>(
            PathBuf::from("q.toml"),
            "[a]\nx = 1\ny = \n[b]\nz = = 2\n".to_owned(),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("q.toml:3: "), "{e}");
    }

    #[test]
    fn problems_name_the_variable_that_set_a_key() {
        let f = file("[media]\ntimeout = 5\n");
        let overrides: Overrides = [("media.timeout".to_owned(), "SB__MEDIA__TIMEOUT".to_owned())]
            .into_iter()
            .collect();
        let mut found = Findings::default();
        let mut r = Report::with_overrides(&f, &overrides, &mut found);
        let media = KeyPath::top("media");
        r.err(&media.key("timeout"), "bad");
        r.warn(&media.key("bind"), "odd");
        assert_eq!(
            found.errors[0].to_string(),
            "environment SB__MEDIA__TIMEOUT: media.timeout: bad"
        );
        assert_eq!(found.warnings[0].to_string(), "t.toml:1: media.bind: odd");
    }
}
