//! What `--format` asks of `ls`, `ps` and `inspect`, and the output it makes, as Docker's
//! CLI reads the flag: nothing or `table` for the usual table, `json` for JSON, `table
//! TEMPLATE` for a table of the template's columns (a header row, tab-aligned), and any
//! other text for a Go template run once per object.
//!
//! A listing's template sees the row Docker's formatter gives (`service ls`: `.ID .Name
//! .Mode .Replicas .Image .Ports`), built from the same cells the default table shows, so
//! the two never disagree. `inspect`'s template sees the object's Docker JSON. The whole
//! output is rendered before any of it is printed, so a template that fails on the third
//! row prints nothing but its error.

use serde_json::{Map, Value};

use super::table::{align_tabs, Table};
use super::template::Template;

/// A parsed `--format`.
#[derive(Debug)]
pub enum Format {
    /// No flag, or `table`: the command's own table (or, for inspect, indented JSON).
    Default,
    /// `json`: the command's JSON output.
    Json,
    /// A Go template, run once per object.
    Template(Template),
    /// `table TEMPLATE`: a header row, then the template once per row, tab-aligned.
    Table {
        /// The rows' template.
        rows: Template,
        /// The header row's template.
        header: Template,
    },
}

impl Format {
    /// Parses `--format`; a bad template fails with Docker's "template parsing error: ...".
    /// `\t` and `\n` written literally (as shells pass them) are a tab and a newline.
    pub fn parse(flag: Option<&str>) -> anyhow::Result<Format> {
        let Some(flag) = flag else {
            return Ok(Format::Default);
        };
        match flag.trim() {
            "" | "table" => return Ok(Format::Default),
            "json" => return Ok(Format::Json),
            _ => {}
        }
        let text = flag.replace(r"\t", "\t").replace(r"\n", "\n");
        match text.strip_prefix("table") {
            Some(rest) if rest.starts_with([' ', '\t']) => {
                let rest = rest.trim_matches(' ');
                Ok(Format::Table {
                    rows: Template::parse(rest)?,
                    header: Template::parse_header(rest)?,
                })
            }
            _ => Ok(Format::Template(Template::parse(text.trim_matches(' '))?)),
        }
    }

    /// Whether a template was given (the output is then the template's alone).
    pub fn is_template(&self) -> bool {
        matches!(self, Format::Template(_) | Format::Table { .. })
    }

    /// `inspect`'s output for Docker JSON `objects`: indented JSON by default, else the
    /// template once per object (a `table` template too: inspect has no header row).
    pub fn inspect(&self, objects: Vec<Value>) -> anyhow::Result<String> {
        match self {
            Format::Default | Format::Json => super::docker::inspect_array(objects),
            Format::Template(t) | Format::Table { rows: t, .. } => {
                let mut out = String::new();
                for o in &objects {
                    out.push_str(&t.render(o, false)?);
                    out.push('\n');
                }
                Ok(out.trim_end_matches('\n').to_string())
            }
        }
    }
}

/// The rows of a listing as Docker's formatter names their fields, with each field's
/// column header.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    headers: Map<String, Value>,
    rows: Vec<Map<String, Value>>,
}

impl Rows {
    /// The rows of `table`, its columns named `fields` in order (a field per header).
    pub fn from_table(table: &Table, fields: &[&str]) -> Rows {
        let headers = fields
            .iter()
            .zip(table.headers())
            .map(|(f, h)| (f.to_string(), Value::String(h.clone())))
            .collect();
        let rows = table
            .rows()
            .iter()
            .map(|row| {
                fields
                    .iter()
                    .zip(row)
                    .map(|(f, cell)| (f.to_string(), Value::String(cell.clone())))
                    .collect()
            })
            .collect();
        Rows { headers, rows }
    }

    /// Sets field `field` (headed `header`) of row `i`.
    pub fn set(&mut self, i: usize, field: &str, header: &str, value: Value) {
        self.headers
            .insert(field.to_string(), Value::String(header.to_string()));
        if let Some(row) = self.rows.get_mut(i) {
            row.insert(field.to_string(), value);
        }
    }

    /// The listing in `format`, which must be a template (the default table and JSON are
    /// each command's own); one line per row.
    pub fn render(&self, format: &Format) -> anyhow::Result<String> {
        match format {
            Format::Template(t) => {
                let mut out = String::new();
                for row in &self.rows {
                    out.push_str(&t.render(&Value::Object(row.clone()), true)?);
                    out.push('\n');
                }
                Ok(out.trim_end_matches('\n').to_string())
            }
            Format::Table { rows, header } => {
                let mut out = header.render(&Value::Object(self.headers.clone()), true)?;
                out.push('\n');
                for row in &self.rows {
                    out.push_str(&rows.render(&Value::Object(row.clone()), true)?);
                    out.push('\n');
                }
                Ok(align_tabs(&out).trim_end_matches('\n').to_string())
            }
            Format::Default | Format::Json => Err(anyhow::anyhow!(
                "this listing has no template to run; use --format with a Go template"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Rows {
        let mut t = Table::new(&["ID", "NAME", "REPLICAS"]);
        t.push(["abc", "web", "3/3"]);
        t.push(["def", "db", "1/1"]);
        Rows::from_table(&t, &["ID", "Name", "Replicas"])
    }

    #[test]
    fn flags_parse_as_dockers() {
        assert!(matches!(Format::parse(None).unwrap(), Format::Default));
        assert!(matches!(
            Format::parse(Some("table")).unwrap(),
            Format::Default
        ));
        assert!(matches!(Format::parse(Some("json")).unwrap(), Format::Json));
        assert!(matches!(
            Format::parse(Some("{{.Name}}")).unwrap(),
            Format::Template(_)
        ));
        assert!(matches!(
            Format::parse(Some(r"table {{.Name}}\t{{.Replicas}}")).unwrap(),
            Format::Table { .. }
        ));
        // A word that merely starts with "table" is a template.
        assert!(matches!(
            Format::parse(Some("tables {{.Name}}")).unwrap(),
            Format::Template(_)
        ));
        let e = Format::parse(Some("{{.Name")).unwrap_err().to_string();
        assert!(e.starts_with("template parsing error: "), "{e}");
    }

    #[test]
    fn a_template_runs_once_per_row() {
        let f = Format::parse(Some("{{.Name}} {{.Replicas}}")).unwrap();
        assert_eq!(services().render(&f).unwrap(), "web 3/3\ndb 1/1");
        let f = Format::parse(Some("{{json .}}")).unwrap();
        assert_eq!(
            services().render(&f).unwrap(),
            "{\"ID\":\"abc\",\"Name\":\"web\",\"Replicas\":\"3/3\"}\n\
             {\"ID\":\"def\",\"Name\":\"db\",\"Replicas\":\"1/1\"}"
        );
    }

    #[test]
    fn a_table_template_has_a_header_row_and_aligned_columns() {
        let f = Format::parse(Some(r"table {{.Name}}\t{{.Replicas}}")).unwrap();
        assert_eq!(
            services().render(&f).unwrap(),
            "NAME      REPLICAS\nweb       3/3\ndb        1/1"
        );
        let mut rows = services();
        rows.set(0, "Self", "", Value::Bool(true));
        rows.set(1, "Self", "", Value::Bool(false));
        let f = Format::parse(Some("{{.ID}}{{if .Self}} *{{end}}")).unwrap();
        assert_eq!(rows.render(&f).unwrap(), "abc *\ndef");
    }

    #[test]
    fn a_field_the_row_lacks_fails_and_prints_nothing() {
        let f = Format::parse(Some("{{.Name}} {{.Spec.Name}}")).unwrap();
        let e = services().render(&f).unwrap_err().to_string();
        assert!(e.starts_with("template execution error: "), "{e}");
    }

    #[test]
    fn inspect_runs_the_template_on_each_object() {
        let objects = vec![
            serde_json::json!({"Spec": {"Name": "web"}}),
            serde_json::json!({"Spec": {"Name": "db"}}),
        ];
        let f = Format::parse(Some("{{.Spec.Name}}")).unwrap();
        assert_eq!(f.inspect(objects.clone()).unwrap(), "web\ndb");
        let text = Format::Default.inspect(objects).unwrap();
        assert!(text.starts_with("[\n  {"), "{text}");
    }
}
