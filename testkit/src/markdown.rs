//! Reading PROTOCOL.md's tables, for the tests that check the code against
//! the spec in both directions.

/// The rows of the first markdown table after the heading that starts with
/// `heading_prefix`, header and separator rows excluded, each split into
/// trimmed cells.
pub fn table_after(markdown: &str, heading_prefix: &str) -> Vec<Vec<String>> {
    let mut lines = markdown.lines().skip_while(|line| !line.starts_with(heading_prefix));
    assert!(lines.next().is_some(), "PROTOCOL.md has no heading {heading_prefix:?}");
    let rows: Vec<Vec<String>> = lines
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .map(|line| line.trim().trim_matches('|').split('|').map(|cell| cell.trim().to_owned()).collect())
        .collect();
    assert!(rows.len() > 2, "the table under {heading_prefix:?} is empty");
    rows.into_iter().skip(2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rows_under_a_heading_and_skips_the_header() {
        let doc = "# A\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n## B\n\n| k |\n|---|\n| v |\n| w |\n";
        assert_eq!(table_after(doc, "## B"), vec![vec!["v".to_owned()], vec!["w".to_owned()]]);
        assert_eq!(table_after(doc, "# A"), vec![vec!["1".to_owned(), "2".to_owned()]]);
    }
}
