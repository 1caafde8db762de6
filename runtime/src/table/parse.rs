//! Reading a device-mapper table: `<start> <length> <target> <args...>` in
//! 512-byte sectors, one segment per line. Every error names the line and
//! the field, so "which line of the mapping table was erroneous" is never
//! a question. Parsing checks syntax and coverage only; binding (opening
//! legs, proving layouts) is separate.

/// A word of a line, with its position for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub text: String,
    /// 1-based field number on the line.
    pub index: usize,
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the table text.
    pub number: usize,
    pub start: u64,
    pub length: u64,
    pub target: String,
    pub args: Vec<Field>,
}

/// A table that parsed: contiguous lines from sector 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSpec {
    pub lines: Vec<Line>,
}

impl TableSpec {
    /// Total sectors covered.
    pub fn sectors(&self) -> u64 {
        self.lines.last().map_or(0, |l| l.start + l.length)
    }
}

/// A table error: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {message}", field.as_ref().map(|(i, name)| format!(", field {i} ({name})")).unwrap_or_default())]
pub struct TableError {
    pub line: usize,
    pub field: Option<(usize, String)>,
    pub message: String,
}

impl TableError {
    pub fn at(line: usize, field: usize, name: &str, message: impl Into<String>) -> Self {
        TableError { line, field: Some((field, name.into())), message: message.into() }
    }

    pub fn line(line: usize, message: impl Into<String>) -> Self {
        TableError { line, field: None, message: message.into() }
    }
}

/// Parse a whole number field.
pub fn number(line: usize, f: &Field, name: &str) -> Result<u64, TableError> {
    f.text.parse::<u64>().map_err(|_| TableError::at(line, f.index, name, format!("'{}' is not a whole number", f.text)))
}

/// Parse a table's text. Blank lines and `#` comments are skipped.
pub fn parse(text: &str) -> Result<TableSpec, TableError> {
    let mut lines: Vec<Line> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let number_ = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let fields: Vec<Field> = content.split_whitespace().enumerate().map(|(j, w)| Field { text: w.to_string(), index: j + 1 }).collect();
        if fields.len() < 3 {
            return Err(TableError::line(number_, format!("expected '<start> <length> <target> [args...]', got {} field(s)", fields.len())));
        }
        let start = number(number_, &fields[0], "<start>")?;
        let length = number(number_, &fields[1], "<length>")?;
        if length == 0 {
            return Err(TableError::at(number_, 2, "<length>", "a segment cannot be empty"));
        }
        let expected = lines.last().map_or(0, |l| l.start + l.length);
        if start != expected {
            let what = if start < expected { "overlaps the previous segment" } else { "leaves a gap after the previous segment" };
            return Err(TableError::at(number_, 1, "<start>", format!("starts at sector {start}, which {what} (expected {expected})")));
        }
        if start.checked_add(length).and_then(|e| e.checked_mul(512)).is_none() {
            return Err(TableError::at(number_, 2, "<length>", "the table would exceed 2^64 bytes"));
        }
        let target = fields[2].text.clone();
        super::targets::check_args(number_, &target, &fields[3..])?;
        lines.push(Line { number: number_, start, length, target, args: fields[3..].to_vec() });
    }
    if lines.is_empty() {
        return Err(TableError::line(0, "the table is empty"));
    }
    Ok(TableSpec { lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_every_mistake() {
        let t = parse("# a table\n0 100 zero\n100 50 error\n\n150 8 linear /dev/x 0\n").unwrap();
        assert_eq!(t.sectors(), 158);
        assert_eq!(t.lines[2].number, 5);
        let e = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(e("0 100 zero\n90 10 zero"), "line 2, field 1 (<start>): starts at sector 90, which overlaps the previous segment (expected 100)");
        assert!(e("0 100 zero\n101 10 zero").contains("leaves a gap"));
        assert!(e("5 100 zero").contains("line 1, field 1"));
        assert!(e("0 abc zero").contains("line 1, field 2 (<length>): 'abc' is not a whole number"));
        assert!(e("0 10").contains("got 2 field(s)"));
        assert!(e("0 10 mirror a b").contains("line 1, field 3 (<target>): unknown target 'mirror'"));
        assert!(e("0 10 linear /dev/x").contains("line 1"));
        assert!(e("0 10 linear /dev/x zz").contains("field 5 (<offset>)"));
        assert!(e("0 0 zero").contains("cannot be empty"));
        assert!(e("").contains("empty"));
    }
}
