//! Terminal output: colour choice (`--color`, `NO_COLOR`), styles, and writers that never
//! panic on a closed pipe.

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ColorMode {
    /// Colour when the stream is a terminal and `NO_COLOR` is unset.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Whether a stream gets colour.
pub fn use_color(mode: ColorMode, is_tty: bool) -> bool {
    match mode {
        ColorMode::Always => true,
        ColorMode::Never => false,
        ColorMode::Auto => is_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

/// The styles used by every command.
#[derive(Clone, Copy, Debug)]
pub struct Styles {
    pub error: Style,
    pub warning: Style,
    pub success: Style,
    pub dim: Style,
    pub bold: Style,
    pub hint: Style,
}

impl Styles {
    /// Styles when colour is on, plain ones otherwise.
    pub fn new(color: bool) -> Self {
        if !color {
            let p = Style::new();
            return Styles {
                error: p,
                warning: p,
                success: p,
                dim: p,
                bold: p,
                hint: p,
            };
        }
        Styles {
            error: AnsiColor::Red.on_default().bold(),
            warning: AnsiColor::Yellow.on_default().bold(),
            success: AnsiColor::Green.on_default().bold(),
            dim: Style::new().dimmed(),
            bold: Style::new().bold(),
            hint: AnsiColor::Cyan.on_default(),
        }
    }

    /// Wraps text in a style.
    pub fn paint(&self, style: Style, text: &str) -> String {
        if style == Style::new() {
            return text.to_owned();
        }
        format!("{style}{text}{style:#}")
    }
}

/// Writes to stdout; a closed pipe is reported as `Err(BrokenPipe)` so `main` can exit quietly.
pub fn stdout_write(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Writes to stderr, ignoring errors (there is nowhere left to report them).
pub fn stderr_write(bytes: &[u8]) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(bytes);
    let _ = err.flush();
}
