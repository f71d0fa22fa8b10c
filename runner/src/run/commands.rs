//! Workflow commands printed by steps (`::name key=value,…::data`), parsed the way the GitHub
//! runner parses them (`ActionCommand.TryParseV2`): leading whitespace is trimmed, the command
//! name is case-insensitive, property values unescape `%0D %0A %3A %2C %25` and data unescapes
//! `%0D %0A %25`. An unknown command name means the line is ordinary output.

/// A recognised workflow command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `::group::title`.
    Group(String),
    /// `::endgroup::`.
    EndGroup,
    /// `::error …::`, `::warning …::`, `::notice …::`.
    Annotation(Annotation),
    /// `::add-mask::value`.
    AddMask(String),
    /// `::stop-commands::token`.
    StopCommands(String),
    /// `::debug::message`.
    Debug(String),
    /// `::echo::on|off`.
    Echo(bool),
    /// Deprecated `::set-output name=x::value`.
    SetOutput {
        /// Output name.
        name: String,
        /// Value.
        value: String,
    },
    /// Deprecated `::save-state name=x::value`.
    SaveState {
        /// State name.
        name: String,
        /// Value.
        value: String,
    },
    /// Disabled `::set-env` / `::add-path` (kept so the runner can explain); fails the step.
    Disabled(&'static str),
    /// A known command that cannot be processed (`::set-output` without a name, `::echo::maybe`):
    /// the runner reports it and fails the step (`ActionCommandManager.TryProcessCommand`).
    Invalid(String),
}

/// Annotation level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `::error`.
    Error,
    /// `::warning`.
    Warning,
    /// `::notice`.
    Notice,
}

/// An annotation with its optional location.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Annotation {
    /// Level.
    pub level: Level,
    /// The message.
    pub message: String,
    /// `file=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `line=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// `endLine=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
    /// `col=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub col: Option<u32>,
    /// `endColumn=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_col: Option<u32>,
    /// `title=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

fn unescape(s: &str, property: bool) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let mut out = s.replace("%0D", "\r").replace("%0A", "\n");
    if property {
        out = out.replace("%3A", ":").replace("%2C", ",");
    }
    out.replace("%25", "%")
}

/// Parses one output line (without its line break). `None` when it is ordinary output.
pub fn parse(line: &str) -> Option<Command> {
    let msg = line.trim_start();
    let rest = msg.strip_prefix("::")?;
    let end = rest.find("::")?;
    let info = &rest[..end];
    let data = &rest[end + 2..];
    let (name, props) = match info.find(' ') {
        Some(i) => (&info[..i], &info[i + 1..]),
        None => (info, ""),
    };
    let prop = |key: &str| -> Option<String> {
        props
            .trim()
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| unescape(v, true))
    };
    let num = |key: &str| prop(key).and_then(|v| v.trim().parse::<u32>().ok());
    let data_s = || unescape(data, false);
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "group" => Command::Group(data_s()),
        "endgroup" => Command::EndGroup,
        "error" | "warning" | "notice" => Command::Annotation(Annotation {
            level: match lower.as_str() {
                "error" => Level::Error,
                "warning" => Level::Warning,
                _ => Level::Notice,
            },
            message: data_s(),
            file: prop("file"),
            line: num("line"),
            end_line: num("endLine"),
            col: num("col"),
            end_col: num("endColumn"),
            title: prop("title"),
        }),
        "add-mask" => Command::AddMask(data_s()),
        "stop-commands" => Command::StopCommands(data_s()),
        "debug" => Command::Debug(data_s()),
        "echo" => match data.trim().to_ascii_lowercase().as_str() {
            "on" => Command::Echo(true),
            "off" => Command::Echo(false),
            other => Command::Invalid(format!(
                "invalid `echo` command value `{other}`: use `on` or `off`"
            )),
        },
        "set-output" => match prop("name") {
            Some(name) => Command::SetOutput {
                name,
                value: data_s(),
            },
            None => Command::Invalid("the `set-output` command needs a `name`".to_owned()),
        },
        "save-state" => match prop("name") {
            Some(name) => Command::SaveState {
                name,
                value: data_s(),
            },
            None => Command::Invalid("the `save-state` command needs a `name`".to_owned()),
        },
        "set-env" => Command::Disabled("set-env"),
        "add-path" => Command::Disabled("add-path"),
        _ => return None,
    })
}

/// Tracks `::stop-commands::` across the lines of one step.
#[derive(Debug, Default)]
pub struct CommandState {
    stop_token: Option<String>,
    /// Whether `::echo::on` is in effect.
    pub echo: bool,
}

impl CommandState {
    /// Interprets a line: `Some(command)` when it is a command to act on.
    pub fn feed(&mut self, line: &str) -> Option<Command> {
        if let Some(token) = &self.stop_token {
            // Processing resumes at a line `::TOKEN::`.
            if line.trim() == format!("::{token}::") {
                self.stop_token = None;
            }
            return None;
        }
        let cmd = parse(line)?;
        if let Command::StopCommands(token) = &cmd
            && !token.is_empty()
        {
            self.stop_token = Some(token.clone());
        }
        if let Command::Echo(on) = cmd {
            self.echo = on;
        }
        Some(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_with_properties() {
        let c = parse(
            "  ::error file=app.js,line=1,col=5,endColumn=7,title=A%2CB::Missing%0Asemicolon%25",
        );
        assert_eq!(
            c,
            Some(Command::Annotation(Annotation {
                level: Level::Error,
                message: "Missing\nsemicolon%".into(),
                file: Some("app.js".into()),
                line: Some(1),
                end_line: None,
                col: Some(5),
                end_col: Some(7),
                title: Some("A,B".into()),
            }))
        );
        assert_eq!(
            parse("::WARNING::w").map(|c| matches!(c, Command::Annotation(_))),
            Some(true)
        );
    }

    #[test]
    fn ordinary_lines() {
        assert_eq!(parse("echo ::error::x"), None);
        assert_eq!(parse("::unknown::x"), None);
        assert_eq!(parse("::error"), None);
        assert!(matches!(
            parse("::set-output::no-name"),
            Some(Command::Invalid(_))
        ));
        assert!(matches!(parse("::echo::maybe"), Some(Command::Invalid(_))));
    }

    #[test]
    fn stop_commands() {
        let mut s = CommandState::default();
        assert_eq!(
            s.feed("::stop-commands::tok"),
            Some(Command::StopCommands("tok".into()))
        );
        assert_eq!(s.feed("::error::ignored"), None);
        assert_eq!(s.feed("::tok::"), None);
        assert!(matches!(
            s.feed("::error::seen"),
            Some(Command::Annotation(_))
        ));
    }

    #[test]
    fn groups_and_masks() {
        assert_eq!(
            parse("::group::Build it"),
            Some(Command::Group("Build it".into()))
        );
        assert_eq!(parse("::endgroup::"), Some(Command::EndGroup));
        assert_eq!(
            parse("::add-mask::s3cr3t"),
            Some(Command::AddMask("s3cr3t".into()))
        );
        assert_eq!(
            parse("::set-output name=x::1"),
            Some(Command::SetOutput {
                name: "x".into(),
                value: "1".into()
            })
        );
    }
}
