//! Raw samples of one benchmark group, as the JSON that `cargo xtask bench` reports from.

use std::{collections::BTreeMap, path::Path};

use serde::Serialize;

/// One column of a table: a measured quantity.
#[derive(Serialize, Clone)]
pub struct Column {
    /// Header, with the unit (e.g. `req/s`, `p99 ms`).
    pub name: String,
    /// Whether a larger value is better (ratios and charts read it).
    pub higher_is_better: bool,
}

/// One configuration measured in a table.
#[derive(Serialize, Default)]
pub struct Row {
    /// The configuration (e.g. `xdp-ingress xdp`).
    pub name: String,
    /// Samples per column name; a single sample is a value computed over the whole run.
    pub cells: BTreeMap<String, Vec<f64>>,
    /// The goal an issue sets for this row (e.g. `p99 < 20 ms (#16)`), shown beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A table of configurations × quantities.
#[derive(Serialize)]
pub struct Table {
    /// Title.
    pub name: String,
    /// What the table measures and how, in one or two sentences.
    pub about: String,
    /// Quantities.
    pub columns: Vec<Column>,
    /// Rows whose first column the others are compared to (e.g. direct routing, nginx).
    pub ratio_to: Vec<String>,
    /// Configurations, in the order measured.
    pub rows: Vec<Row>,
}

/// A benchmark group's output.
#[derive(Serialize)]
pub struct Results {
    /// `l4`, `http`, `churn` or `scale`.
    pub group: String,
    /// Tables in report order.
    pub tables: Vec<Table>,
    /// Caveats and setup facts printed under the tables.
    pub notes: Vec<String>,
}

impl Results {
    /// An empty group.
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            tables: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Declares a table; `columns` are `(name, higher_is_better)`.
    pub fn table(&mut self, name: &str, about: &str, columns: &[(&str, bool)], ratio_to: &[&str]) {
        self.tables.push(Table {
            name: name.to_owned(),
            about: about.to_owned(),
            columns: columns
                .iter()
                .map(|(n, h)| Column {
                    name: (*n).to_owned(),
                    higher_is_better: *h,
                })
                .collect(),
            ratio_to: ratio_to.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        });
    }

    /// Records samples of `column` for configuration `row` in `table` (declared before).
    pub fn add(&mut self, table: &str, row: &str, column: &str, samples: Vec<f64>) {
        println!("  {table} | {row} | {column}: {samples:?}");
        self.row(table, row)
            .cells
            .insert(column.to_owned(), samples);
    }

    /// Sets the target shown beside `row` of `table` (declared before).
    pub fn target(&mut self, table: &str, row: &str, target: &str) {
        self.row(table, row).target = Some(target.to_owned());
    }

    /// The row `row` of `table`, added empty if it is new.
    fn row(&mut self, table: &str, row: &str) -> &mut Row {
        let t = self
            .tables
            .iter_mut()
            .find(|t| t.name == table)
            .unwrap_or_else(|| panic!("table {table} not declared"));
        match t.rows.iter().position(|r| r.name == row) {
            Some(i) => &mut t.rows[i],
            None => {
                t.rows.push(Row {
                    name: row.to_owned(),
                    ..Row::default()
                });
                t.rows.last_mut().expect("just pushed")
            }
        }
    }

    /// Adds a caveat.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Writes the JSON to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(
            path,
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
        )
    }
}

/// The `q` quantile (0..=1) of `v` by nearest rank; 0 for an empty slice.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}
