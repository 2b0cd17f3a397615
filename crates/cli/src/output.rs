//! Command output: `out!`/`outln!` (every line a command prints goes
//! through them, never `print!`/`println!`), plain-text tables and JSON.

use std::io::Write as _;

use serde::Serialize;

/// `print!` for command output; see [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` for command output; see [`write_stdout`].
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to standard output. `println!` panics when the write fails, so
/// `tessera audit list | head -1` printed "failed printing to stdout:
/// Broken pipe" and a backtrace (issue 15, item 1). Here a reader that has
/// gone away ends the process at once, silently, with status 0 rather than
/// the 141 of a SIGPIPE death: the command did what it was asked (a listing
/// changes nothing; a changing command has committed before it prints), the
/// reader chose to stop reading, and under `set -o pipefail` a 141 would
/// fail a script's `tessera … | head -1` over nothing (ripgrep makes the
/// same choice). Taking SIGPIPE's default action instead would also need
/// unsafe code and would have to be undone for `serve`. Any other write
/// error (a full disk behind `>`) is reported, with status 1.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("tessera: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Prints rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<w$}  ", c, w = widths[i]));
            }
        }
        outln!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn json<T: Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    /// Every line of command output goes through `out!`/`outln!`: a plain
    /// `println!` would bring the broken-pipe panic back.
    #[test]
    fn no_command_prints_with_println() {
        fn visit(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    visit(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        let code = line.split("//").next().unwrap_or_default();
                        let plain = |m: &str| {
                            code.match_indices(m).any(|(at, _)| {
                                at == 0
                                    || !code.as_bytes()[at - 1].is_ascii_alphanumeric()
                                        && code.as_bytes()[at - 1] != b'_'
                            })
                        };
                        // Spelt in two parts so this test does not find itself.
                        if plain(concat!("print", "ln!")) || plain(concat!("print", "!")) {
                            found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        visit(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut found);
        assert!(found.is_empty(), "use out!/outln! for command output:\n{}", found.join("\n"));
    }
}
