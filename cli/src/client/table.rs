//! Plain-text tables as Docker prints them: upper-case headers, columns as wide as their
//! widest cell plus a three-space gap, no trailing spaces.

use std::fmt::Write as _;

/// Spaces between two columns.
const GAP: usize = 3;

/// A table built row by row, then rendered at once so widths fit the content.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.as_ref().to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub fn push<I, S>(&mut self, row: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = row.into_iter().map(Into::into).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// Number of rows (headers excluded).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The column headers.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The rows, each as wide as the headers.
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row (header first), each ending in a newline.
    pub fn render(&self) -> String {
        let cols = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < cols {
                    let pad = widths[i] - width(cell) + GAP;
                    let _ = write!(line, "{:pad$}", "");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout.
    pub fn print(&self) {
        super::out(self.render().trim_end_matches('\n'));
    }
}

/// Aligns tab-separated text as Docker aligns a `table` template's output (Go's
/// `text/tabwriter` with a minimum cell width of 10 and a padding of 3): every cell that a
/// tab ends is padded to the widest cell of its column, in each run of consecutive lines
/// that have that column; the last cell of a line is left as it is.
pub fn align_tabs(text: &str) -> String {
    const MIN_WIDTH: usize = 10;
    const PADDING: usize = 3;
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    // widths[i][c]: the width of line i's cell c, once its column block is measured.
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len()]).collect();
    // Columns are measured left to right; a block of column c is a run of lines that
    // all have a tab-ended cell c (Go's tabwriter splits blocks the same way).
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    for c in 0..columns {
        let mut i = 0;
        while i < lines.len() {
            if lines[i].len() <= c + 1 {
                i += 1;
                continue;
            }
            let start = i;
            let mut w = MIN_WIDTH;
            while i < lines.len() && lines[i].len() > c + 1 {
                w = w.max(width(lines[i][c]) + PADDING);
                i += 1;
            }
            for row in &mut widths[start..i] {
                row[c] = w;
            }
        }
    }
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for (c, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if c + 1 < line.len() {
                let pad = widths[i][c] - width(cell);
                let _ = write!(out, "{:pad$}", "");
            }
        }
    }
    out
}

/// Display width of a cell (characters; skiff prints no wide glyphs).
fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_content() {
        let mut t = Table::new(&["ID", "HOSTNAME", "STATUS"]);
        t.push(["abc *", "node-one", "Ready"]);
        t.push(["abcdefgh", "n2", "Down"]);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.render(),
            "ID         HOSTNAME   STATUS\n\
             abc *      node-one   Ready\n\
             abcdefgh   n2         Down\n"
        );
    }

    #[test]
    fn empty_cells_and_no_trailing_spaces() {
        let mut t = Table::new(&["A", "MANAGER STATUS", "VERSION"]);
        t.push(["x", "", ""]);
        t.push(vec!["longer".to_string()]);
        let text = t.render();
        assert_eq!(
            text,
            "A        MANAGER STATUS   VERSION\n\
             x\n\
             longer\n"
        );
        assert!(text.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn header_only() {
        let t = Table::new(&["ID", "NAME"]);
        assert!(t.is_empty());
        assert_eq!(t.render(), "ID   NAME\n");
    }

    #[test]
    fn tabs_align_as_dockers_tabwriter() {
        // At least ten wide, three spaces of padding, the last cell untouched.
        assert_eq!(
            align_tabs("NAME\tREPLICAS\nweb\t3/3\nlonger-name\t1/1\n"),
            "NAME          REPLICAS\n\
             web           3/3\n\
             longer-name   1/1\n"
        );
        assert_eq!(
            align_tabs("ID\tNAME\nab\tweb\n"),
            "ID        NAME\nab        web\n"
        );
        // A line without the column ends the block: the next block is measured alone.
        assert_eq!(
            align_tabs("a-very-long-cell\tx\nplain\nb\ty"),
            "a-very-long-cell   x\nplain\nb         y"
        );
        assert_eq!(align_tabs("no tabs"), "no tabs");
    }

    #[test]
    fn non_ascii_counts_characters() {
        let mut t = Table::new(&["K", "V"]);
        t.push(["µµ", "1"]);
        assert_eq!(t.render(), "K    V\nµµ   1\n");
    }
}
