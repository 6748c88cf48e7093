//! Go `text/template` output formats (`--format '{{.ID}}'`), as podman and skopeo take them.
//!
//! Hand-written rather than a crate: the one pure-Rust Go-template crate (`gtmpl`) was last
//! released in 2021, calls itself incomplete (`printf` unstable), keeps its own value type
//! with unordered maps, and cannot tell a struct (an unknown field is an error, podman's
//! "can't evaluate field Foo") from a map (a missing key prints `<no value>`). What podman's
//! formats use is small, so it lives here over [`Data`], built from `serde_json` values.
//!
//! 1. The caller builds the data: [`Data::from_json`] with a [`Shape`] that says which JSON
//!    objects are Go structs (their Go field names, type name and zero values) and which
//!    are maps, or [`Data`] values directly.
//! 2. [`Template::parse`] reads the template: text, `{{pipeline}}` with `{{-`/`-}}` trimming,
//!    comments, `if`/`else if`/`else`/`end`, `range` (with `$i, $e :=`), `with`, variables,
//!    `|` pipes, parentheses, string/number/bool literals and the functions `json`, `index`,
//!    `len`, `printf`, `print`, `println`, `join`, `lower`, `upper`, `title`, `eq`, `ne`,
//!    `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`.
//! 3. [`Template::execute`] runs it on one value and prints values as Go's `fmt` `%v` does
//!    (`[a b]`, `map[k:v]` with sorted keys, `{f1 f2}`, `<nil>`, `<no value>`, times as
//!    `2006-01-02 15:04:05 +0000 UTC`); errors read like Go's (`template: NAME:1:13:
//!    executing "NAME" at <.Foo>: can't evaluate field Foo in type T`).
//! 4. [`tabwrite`] aligns tab-separated cells as Go's `text/tabwriter` does (podman's
//!    tables: minimum width 12, padding 2), and [`headers_for`] gives podman's header names.

mod eval;
mod parse;
mod value;

pub use eval::Template;
pub use value::{go_time, go_time_unix, unix_of_rfc3339, Data, Field, Shape, Struct};

/// An error of parsing or executing a template, as Go words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// Align `text` as Go's `text/tabwriter` with `minwidth`, `padding` spaces and no flags:
/// cells end at a tab; the cells of one column across consecutive lines that have it are
/// padded to the widest plus `padding` (at least `minwidth`); a line's last cell (not
/// tab-terminated) is not padded.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split_inclusive('\n').map(split_cells).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(
        &lines,
        0,
        lines.len(),
        &mut widths,
        minwidth,
        padding,
        &mut out,
    );
    out
}

/// The cells of one line: every tab-terminated cell, then the rest (with its newline).
fn split_cells(line: &str) -> Vec<&str> {
    line.split('\t').collect()
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    minwidth: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = minwidth;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, minwidth, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for cells in &lines[from..to] {
        let last = cells.len() - 1;
        for (j, c) in cells.iter().enumerate() {
            out.push_str(c);
            if j < last {
                if let Some(w) = widths.get(j) {
                    let n = c.chars().count();
                    out.extend(std::iter::repeat_n(' ', w.saturating_sub(n)));
                }
            }
        }
    }
}

/// podman's table header for a field name: the name's words in upper case (`RepoDigests` →
/// `REPO DIGESTS`, `ParentId` → `PARENT ID`), unless `overrides` names it.
pub fn header_for(field: &str, overrides: &[(&str, &str)]) -> String {
    if let Some((_, h)) = overrides.iter().find(|(f, _)| *f == field) {
        return h.to_string();
    }
    let mut out = String::new();
    let chars: Vec<char> = field.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && c.is_uppercase() && chars[i - 1].is_lowercase() {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// A header row's data: a map from each of `fields` to its [`header_for`] name (a field not
/// listed prints `<no value>` in the header, as in podman).
pub fn headers_for(fields: &[&str], overrides: &[(&str, &str)]) -> Data {
    Data::Map(
        fields
            .iter()
            .map(|f| (f.to_string(), Data::Str(header_for(f, overrides))))
            .collect(),
    )
}

/// podman's reading of a user's `--format`: `table ` prefix removed (then every space is a
/// tab and a header row is printed), `\t` written as two characters is a tab. Returns the
/// template text and whether it is a table.
pub fn normalize_format(format: &str) -> (String, bool) {
    if let Some(rest) = format.strip_prefix("table ") {
        let f = rest
            .replace("table ", "")
            .replace("\\t", "\t")
            .replace(' ', "\t");
        (f, true)
    } else if format == "table" {
        (String::new(), true)
    } else {
        (format.replace("\\t", "\t"), false)
    }
}

/// Whether a format means "print JSON" (`json` or `{{json .}}`, spaces allowed), as podman's
/// `report.IsJSON`.
pub fn is_json_format(format: &str) -> bool {
    let f: String = format.chars().filter(|c| !c.is_whitespace()).collect();
    f == "json" || f == "{{json.}}"
}

#[cfg(test)]
mod tests;
