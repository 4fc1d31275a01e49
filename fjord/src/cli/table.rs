//! Aligned text tables for the human-readable output, and listings as a
//! table or as JSON.

use serde_json::Value;

use super::Output;

/// Prints `items` for `--output json` as an array of `json(item)`, else as
/// a table of `row(item)` under `headers`.
pub(crate) fn print_list<T>(
    output: Output,
    items: &[T],
    headers: &[&str],
    json: impl Fn(&T) -> Value,
    row: impl Fn(&T) -> Vec<String>,
) {
    if output == Output::Json {
        let list: Vec<Value> = items.iter().map(json).collect();
        println!("{}", Value::Array(list));
    } else {
        let rows: Vec<Vec<String>> = items.iter().map(row).collect();
        print!("{}", render(headers, &rows));
    }
}

/// Renders `rows` under `headers`, columns padded to their widest cell.
pub(crate) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_aligned() {
        let t = super::render(
            &["NAME", "N"],
            &[
                vec!["a".into(), "1".into()],
                vec!["longer".into(), "22".into()],
            ],
        );
        assert_eq!(t, "NAME    N\na       1\nlonger  22\n");
    }
}
