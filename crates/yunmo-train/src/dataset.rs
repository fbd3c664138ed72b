//! CSV datasets: parsing (RFC 4180: quoted fields, doubled quotes, CRLF), the feature plan (which columns
//! are numeric or categorical, their standardisation and categories, learnt from the training rows only),
//! the design matrix and the targets. Every error names the line and the column.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::solvers::matrix::Matrix;

/// Bounds on what [`parse_csv`] accepts.
#[derive(Clone, Copy, Debug)]
pub struct CsvLimits {
    /// Most data rows.
    pub max_rows: usize,
    /// Most columns.
    pub max_columns: usize,
}

/// A parsed CSV file: the header's column names and the data rows, each as long as the header.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Column names from the header, trimmed.
    pub columns: Vec<String>,
    /// Data rows (cells trimmed).
    pub rows: Vec<Vec<String>>,
    /// The line of the file each row starts on (1-based; the header is line 1).
    pub lines: Vec<usize>,
}

impl Table {
    /// The index of a column, or a parameter error naming `field` and the columns there are.
    pub fn column(&self, name: &str, field: &str) -> Result<usize, TrainError> {
        self.columns
            .iter()
            .position(|column| column == name)
            .ok_or_else(|| TrainError::param(field, format!("there is no column '{name}' (columns: {})", self.columns.join(", "))))
    }

    /// The line (1-based, header = line 1) data row `row` starts on, for errors.
    pub fn line(&self, row: usize) -> usize {
        self.lines.get(row).copied().unwrap_or(row + 2)
    }

    /// The numeric value of a cell, or an error naming the line and column.
    pub fn number(&self, row: usize, column: usize) -> Result<f64, TrainError> {
        let cell = &self.rows[row][column];
        if cell.is_empty() {
            return Err(self.cell_error(row, column, "the value is missing".into()));
        }
        match cell.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => Err(self.cell_error(row, column, format!("'{}' is not a finite number", shorten(cell)))),
        }
    }

    /// The text of a cell, or an error naming the line and column when it is empty.
    pub fn text(&self, row: usize, column: usize) -> Result<&str, TrainError> {
        let cell = &self.rows[row][column];
        if cell.is_empty() {
            return Err(self.cell_error(row, column, "the value is missing".into()));
        }
        Ok(cell)
    }

    fn cell_error(&self, row: usize, column: usize, message: String) -> TrainError {
        TrainError::Data { line: self.line(row), column: self.columns[column].clone(), message }
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 40 { text.to_string() } else { format!("{}...", text.chars().take(40).collect::<String>()) }
}

/// Parses a CSV file with a header row. Blank lines are skipped; every row must have as many fields as
/// the header; the header's names must be unique and not empty.
pub fn parse_csv(bytes: &[u8], limits: &CsvLimits) -> Result<Table, TrainError> {
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    let columns = read_csv(bytes, limits, &mut |line, fields| {
        lines.push(line);
        rows.push(fields.into_iter().map(|cell| cell.trim().to_string()).collect());
    })?;
    Ok(Table { columns, rows, lines })
}

/// Checks a CSV file as [`parse_csv`] does without keeping its rows: its column names and row count.
pub fn scan_csv(bytes: &[u8], limits: &CsvLimits) -> Result<(Vec<String>, usize), TrainError> {
    let mut count = 0;
    let columns = read_csv(bytes, limits, &mut |_, _| count += 1)?;
    Ok((columns, count))
}

/// Reads the header, then hands each data row (its line and fields) to `row`; returns the column names.
fn read_csv(bytes: &[u8], limits: &CsvLimits, row: &mut dyn FnMut(usize, Vec<String>)) -> Result<Vec<String>, TrainError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|error| TrainError::File(format!("the file is not UTF-8 text (byte {})", error.valid_up_to())))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Records { chars: text.char_indices().peekable(), line: 1 };
    let Some((_, header)) = records.next_record()? else {
        return Err(TrainError::File("the file is empty: a header row and at least one data row are needed".into()));
    };
    let columns: Vec<String> = header.into_iter().map(|name| name.trim().to_string()).collect();
    if columns.len() > limits.max_columns {
        return Err(TrainError::File(format!("the header has {} columns; at most {} are allowed", columns.len(), limits.max_columns)));
    }
    let mut seen = BTreeSet::new();
    for (index, name) in columns.iter().enumerate() {
        if name.is_empty() {
            return Err(TrainError::File(format!("line 1: column {} of the header has no name", index + 1)));
        }
        if !seen.insert(name.as_str()) {
            return Err(TrainError::File(format!("line 1: the column name '{name}' appears twice")));
        }
    }
    let mut count = 0;
    while let Some((line, fields)) = records.next_record()? {
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue;
        }
        if fields.len() != columns.len() {
            return Err(TrainError::File(format!("line {line}: {} fields, but the header has {} columns", fields.len(), columns.len())));
        }
        if count == limits.max_rows {
            return Err(TrainError::File(format!("more than {} data rows (jobs.max_rows)", limits.max_rows)));
        }
        count += 1;
        row(line, fields);
    }
    if count == 0 {
        return Err(TrainError::File("the file has a header but no data rows".into()));
    }
    Ok(columns)
}

struct Records<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    line: usize,
}

impl Records<'_> {
    /// The next record and the line it starts on; None at the end of the text.
    fn next_record(&mut self) -> Result<Option<(usize, Vec<String>)>, TrainError> {
        if self.chars.peek().is_none() {
            return Ok(None);
        }
        let start_line = self.line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        while let Some((_, ch)) = self.chars.next() {
            if quoted {
                match ch {
                    '"' if self.chars.peek().map(|&(_, next)| next) == Some('"') => {
                        self.chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        self.line += 1;
                        field.push(ch);
                    }
                    _ => field.push(ch),
                }
                continue;
            }
            match ch {
                '"' if field.trim().is_empty() && !was_quoted => {
                    field.clear();
                    quoted = true;
                    was_quoted = true;
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if self.chars.peek().map(|&(_, next)| next) == Some('\n') => {}
                '\n' => {
                    self.line += 1;
                    fields.push(field);
                    return Ok(Some((start_line, fields)));
                }
                _ if was_quoted && !ch.is_whitespace() => {
                    return Err(TrainError::File(format!("line {}: text after a closing quote", self.line)));
                }
                _ => field.push(ch),
            }
        }
        if quoted {
            return Err(TrainError::File(format!("line {start_line}: a quoted field is not closed before the end of the file")));
        }
        fields.push(field);
        Ok(Some((start_line, fields)))
    }
}

/// How a categorical feature enters the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One column per category seen in training (unknown values: all zeros).
    #[default]
    OneHot,
    /// One column holding the category's index (unknown values: -1).
    Index,
}

/// One feature column of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Feature {
    /// A number, standardised with the training rows' mean and standard deviation.
    Numeric {
        /// Column name (the served version's input name).
        name: String,
        /// Training mean.
        mean: f64,
        /// Training standard deviation (1 when the column is constant).
        scale: f64,
    },
    /// Text, encoded by its categories in training.
    Categorical {
        /// Column name (the served version's input name).
        name: String,
        /// Categories in training, sorted.
        categories: Vec<String>,
        /// How it is encoded.
        encoding: Encoding,
    },
}

impl Feature {
    /// The column name.
    pub fn name(&self) -> &str {
        match self {
            Feature::Numeric { name, .. } | Feature::Categorical { name, .. } => name,
        }
    }

    /// How many design-matrix columns it gives.
    pub fn width(&self) -> usize {
        match self {
            Feature::Numeric { .. } => 1,
            Feature::Categorical { categories, encoding: Encoding::OneHot, .. } => categories.len(),
            Feature::Categorical { encoding: Encoding::Index, .. } => 1,
        }
    }
}

/// What the trainer needs to know about the columns.
pub struct PlanSpec<'a> {
    /// Feature columns (None: every column but the excluded ones).
    pub features: Option<&'a [String]>,
    /// Columns that are not features (the target).
    pub excluded: &'a [String],
    /// Columns to treat as categorical even when they hold numbers.
    pub categorical: &'a [String],
    /// How categories are encoded.
    pub encoding: Encoding,
}

/// Most categories one column may have (an id or free-text column would make the model as wide as the
/// data).
pub const MAX_CATEGORIES: usize = 1000;

/// Names the exported graphs give their outputs; no feature may have one.
pub const RESERVED_NAMES: [&str; 8] = ["prediction", "probabilities", "label", "cluster", "distances", "rating", "top_items", "top_scores"];

/// Chooses and describes the features from the training rows: a column is categorical when named so or
/// when any training value is not a number.
pub fn plan_features(table: &Table, spec: &PlanSpec<'_>, train_rows: &[usize]) -> Result<Vec<Feature>, TrainError> {
    let names: Vec<String> = match spec.features {
        Some(features) => features.to_vec(),
        None => table.columns.iter().filter(|column| !spec.excluded.contains(column)).cloned().collect(),
    };
    if names.is_empty() {
        return Err(TrainError::param("params.features", "no feature columns remain".into()));
    }
    for name in spec.categorical {
        if !names.contains(name) {
            return Err(TrainError::param("params.categorical", format!("'{name}' is not one of the feature columns")));
        }
    }
    let mut plan: Vec<Feature> = Vec::with_capacity(names.len());
    for name in names {
        let column = table.column(&name, "params.features")?;
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(TrainError::param(
                "params.features",
                format!("'{name}' is the name of a model output; rename the column or leave it out with params.features"),
            ));
        }
        if plan.iter().any(|feature| feature.name() == name) {
            return Err(TrainError::param("params.features", format!("'{name}' is listed twice")));
        }
        if spec.excluded.contains(&name) {
            return Err(TrainError::param("params.features", format!("'{name}' is the target; it cannot also be a feature")));
        }
        let numeric = !spec.categorical.contains(&name) && train_rows.iter().all(|&row| table.rows[row][column].parse::<f64>().is_ok());
        if numeric {
            let mut sum = 0.0;
            for &row in train_rows {
                sum += table.number(row, column)?;
            }
            let mean = sum / train_rows.len() as f64;
            let variance = train_rows.iter().map(|&row| (table.number(row, column).unwrap_or(mean) - mean).powi(2)).sum::<f64>()
                / train_rows.len() as f64;
            let scale = if variance > 0.0 { variance.sqrt() } else { 1.0 };
            plan.push(Feature::Numeric { name, mean, scale });
        } else {
            let mut categories = BTreeSet::new();
            for &row in train_rows {
                categories.insert(table.text(row, column)?.to_string());
                if categories.len() > MAX_CATEGORIES {
                    return Err(TrainError::param(
                        "params.features",
                        format!(
                            "column '{name}' has more than {MAX_CATEGORIES} distinct values, too many for a category (an id or free text?); leave it out with params.features"
                        ),
                    ));
                }
            }
            plan.push(Feature::Categorical { name, categories: categories.into_iter().collect(), encoding: spec.encoding });
        }
    }
    Ok(plan)
}

/// The design matrix of `rows`: standardised numbers and encoded categories, in plan order.
pub fn design(table: &Table, plan: &[Feature], rows: &[usize]) -> Result<Matrix, TrainError> {
    let width: usize = plan.iter().map(Feature::width).sum();
    let mut matrix = Matrix::zeros(rows.len(), width);
    let mut offset = 0;
    for feature in plan {
        let column = table.column(feature.name(), "params.features")?;
        match feature {
            Feature::Numeric { mean, scale, .. } => {
                for (out, &row) in rows.iter().enumerate() {
                    matrix.set(out, offset, (table.number(row, column)? - mean) / scale);
                }
            }
            Feature::Categorical { categories, encoding, .. } => {
                let index: HashMap<&str, usize> = categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
                for (out, &row) in rows.iter().enumerate() {
                    let found = index.get(table.text(row, column)?).copied();
                    match (encoding, found) {
                        (Encoding::OneHot, Some(category)) => matrix.set(out, offset + category, 1.0),
                        (Encoding::OneHot, None) => {}
                        (Encoding::Index, found) => matrix.set(out, offset, found.map_or(-1.0, |category| category as f64)),
                    }
                }
            }
        }
        offset += feature.width();
    }
    Ok(matrix)
}

/// Numeric targets of `rows`.
pub fn numeric_target(table: &Table, column: usize, rows: &[usize]) -> Result<Vec<f64>, TrainError> {
    rows.iter().map(|&row| table.number(row, column)).collect()
}

/// Class labels of the training rows: the sorted distinct values (numerically when all are numbers).
pub fn classes(table: &Table, column: usize, rows: &[usize]) -> Result<Vec<String>, TrainError> {
    let mut distinct = BTreeSet::new();
    for &row in rows {
        distinct.insert(table.text(row, column)?.to_string());
    }
    let mut classes: Vec<String> = distinct.into_iter().collect();
    if classes.iter().all(|class| class.parse::<f64>().is_ok()) {
        classes.sort_by(|a, b| a.parse::<f64>().unwrap_or(0.0).total_cmp(&b.parse::<f64>().unwrap_or(0.0)));
    }
    if classes.len() < 2 {
        return Err(TrainError::param("params.target", format!("the training rows hold only one class ({})", classes.join(", "))));
    }
    Ok(classes)
}

/// The class index of each row; a class not seen in training is an error naming the line.
pub fn labels(table: &Table, column: usize, rows: &[usize], classes: &[String]) -> Result<Vec<usize>, TrainError> {
    let index: HashMap<&str, usize> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    rows.iter()
        .map(|&row| {
            let text = table.text(row, column)?;
            index.get(text).copied().ok_or_else(|| TrainError::Data {
                line: table.line(row),
                column: table.columns[column].clone(),
                message: format!("class '{}' does not occur in the training rows", shorten(text)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: CsvLimits = CsvLimits { max_rows: 100, max_columns: 10 };

    #[test]
    fn quoted_fields_crlf_and_blank_lines_parse() {
        let table = parse_csv(b"a,b\r\n1,\"x, \"\"y\"\"\"\r\n\r\n2,z\n", &LIMITS).unwrap();
        assert_eq!(table.columns, ["a", "b"]);
        assert_eq!(table.lines, [2, 4], "the blank line counts");
        assert_eq!(table.rows, vec![vec!["1".to_string(), "x, \"y\"".into()], vec!["2".into(), "z".into()]]);
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let error = |bytes: &[u8]| parse_csv(bytes, &LIMITS).unwrap_err().to_string();
        assert!(error(b"").contains("empty"));
        assert!(error(b"a,b\n").contains("no data rows"));
        assert!(error(b"a,b\n1,2\n3\n").contains("line 3: 1 fields, but the header has 2"), "{}", error(b"a,b\n1,2\n3\n"));
        assert!(error(b"a,a\n1,2\n").contains("'a' appears twice"));
        assert!(error(b"a,\n1,2\n").contains("column 2 of the header has no name"));
        assert!(error(b"a\n\"x\n").contains("not closed"));
        assert!(error(&[b'a', b'\n', 0xff]).contains("not UTF-8"));
        let many = "a\n".to_string() + &"1\n".repeat(101);
        assert!(error(many.as_bytes()).contains("more than 100 data rows"));
    }

    #[test]
    fn the_plan_standardises_numbers_and_encodes_categories() {
        let table = parse_csv(b"x,c,y\n1,red,0\n3,blue,1\n5,red,1\n", &LIMITS).unwrap();
        let rows = [0, 1, 2];
        let spec = PlanSpec { features: None, excluded: &["y".into()], categorical: &[], encoding: Encoding::OneHot };
        let plan = plan_features(&table, &spec, &rows).unwrap();
        assert_eq!(plan[0], Feature::Numeric { name: "x".into(), mean: 3.0, scale: (8.0f64 / 3.0).sqrt() });
        assert_eq!(
            plan[1],
            Feature::Categorical { name: "c".into(), categories: vec!["blue".into(), "red".into()], encoding: Encoding::OneHot }
        );
        let matrix = design(&table, &plan, &rows).unwrap();
        assert_eq!(matrix.row(1)[1..], [1.0, 0.0]);
        assert!((matrix.get(0, 0) + 1.224744871391589).abs() < 1e-12);
        let classes = classes(&table, 2, &rows).unwrap();
        assert_eq!(labels(&table, 2, &rows, &classes).unwrap(), [0, 1, 1]);
    }

    #[test]
    fn output_names_duplicates_and_id_columns_are_refused_as_features() {
        let table = parse_csv(b"label,x,y\n1,2,3\n", &LIMITS).unwrap();
        let spec = PlanSpec { features: None, excluded: &["y".into()], categorical: &[], encoding: Encoding::OneHot };
        assert!(plan_features(&table, &spec, &[0]).unwrap_err().to_string().contains("'label' is the name of a model output"));
        let twice = ["x".to_string(), "x".to_string()];
        let spec = PlanSpec { features: Some(&twice), excluded: &["y".into()], categorical: &[], encoding: Encoding::OneHot };
        assert!(plan_features(&table, &spec, &[0]).unwrap_err().to_string().contains("'x' is listed twice"));
        let ids: String = (0..=MAX_CATEGORIES).map(|i| format!("u{i},1\n")).collect();
        let table = parse_csv(format!("id,y\n{ids}").as_bytes(), &CsvLimits { max_rows: 5000, max_columns: 10 }).unwrap();
        let rows: Vec<usize> = (0..table.rows.len()).collect();
        let spec = PlanSpec { features: None, excluded: &["y".into()], categorical: &[], encoding: Encoding::OneHot };
        assert!(plan_features(&table, &spec, &rows).unwrap_err().to_string().contains("column 'id' has more than 1000 distinct values"));
    }

    #[test]
    fn missing_and_bad_cells_name_line_and_column() {
        let table = parse_csv(b"x,y\n1,2\n,3\nfoo,4\n", &LIMITS).unwrap();
        let error = numeric_target(&table, 0, &[0, 1]).unwrap_err().to_string();
        assert_eq!(error, "line 3, column 'x': the value is missing");
        let error = numeric_target(&table, 0, &[2]).unwrap_err().to_string();
        assert_eq!(error, "line 4, column 'x': 'foo' is not a finite number");
    }
}
