//! Printing for people (aligned tables, a coloured summary line) and for scripts (JSON).

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use console::style;
use serde::Serialize;

use crate::cli::Format;

/// Where results go: stdout, as tables or as one JSON document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub(crate) format: Format,
}

impl Output {
    pub(crate) fn new(format: Format) -> Self {
        // Colour only for a person at a terminal, and never when NO_COLOR is set
        // (https://no-color.org).
        let colour = std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
            && std::io::stdout().is_terminal()
            && format == Format::Table;
        console::set_colors_enabled(colour);
        console::set_colors_enabled_stderr(colour && std::io::stderr().is_terminal());
        Output { format }
    }

    /// Prints `value` as JSON (scripts), or calls `table` (people).
    pub(crate) fn emit<T: Serialize>(&self, value: &T, table: impl FnOnce()) {
        match self.format {
            Format::Json => match serde_json::to_string_pretty(value) {
                Ok(json) => write_line(&json),
                Err(error) => eprintln_error(&format!("cannot print JSON: {error}")),
            },
            Format::Table => table(),
        }
    }

    /// The closing line of a command, for people (scripts read the JSON instead).
    pub(crate) fn summary(&self, ok: bool, text: &str) {
        if self.format == Format::Table {
            let line = if ok {
                style(text).green().to_string()
            } else {
                style(text).red().to_string()
            };
            write_line(&line);
        }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.format == Format::Json
    }
}

/// An aligned table with these headers.
pub(crate) fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().copied());
    table
}

/// Prints a line on stdout: this program's output.
#[allow(clippy::print_stdout)]
pub(crate) fn write_line(line: &str) {
    println!("{line}");
}

/// Prints an error line on stderr.
#[allow(clippy::print_stderr)]
pub(crate) fn eprintln_error(text: &str) {
    eprintln!("{} {text}", style("error:").red().bold());
}

/// How long ago `at` was, as people read it (`3m 12s`), or `-`.
pub(crate) fn age(at: Option<SystemTime>) -> String {
    at.and_then(|at| SystemTime::now().duration_since(at).ok())
        .map(|age| humantime::format_duration(Duration::from_secs(age.as_secs())).to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// A body as text for a terminal: lossy UTF-8, control characters escaped, cut at 200 chars.
pub(crate) fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let escaped: String = text.chars().flat_map(char::escape_default).collect();
    if escaped.chars().count() > 200 {
        format!("{}…", escaped.chars().take(200).collect::<String>())
    } else {
        escaped
    }
}

/// Milliseconds since the Unix epoch, for JSON.
pub(crate) fn unix_millis(at: SystemTime) -> u64 {
    queue_runtime::core::raw::time::to_unix_millis(at)
}
