//! Which report format a path asks for, from its extension.

use std::path::Path;

use super::error::ReportError;

/// The report formats imsreg writes; JSON is the reference shape, the others mirror it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Yaml,
    Csv,
    /// JUnit XML: one testcase per image.
    Junit,
    Markdown,
}

impl ReportFormat {
    /// `.json`, `.yaml`/`.yml`, `.csv`, `.xml`, `.md` (case-insensitive).
    pub fn from_path(path: &Path) -> Result<Self, ReportError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("json") => Ok(Self::Json),
            Some("yaml" | "yml") => Ok(Self::Yaml),
            Some("csv") => Ok(Self::Csv),
            Some("xml") => Ok(Self::Junit),
            Some("md" | "markdown") => Ok(Self::Markdown),
            _ => Err(ReportError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_extensions() {
        let f = |p: &str| ReportFormat::from_path(Path::new(p));
        assert_eq!(f("r.json").unwrap(), ReportFormat::Json);
        assert_eq!(f("dir/r.YML").unwrap(), ReportFormat::Yaml);
        assert_eq!(f("r.yaml").unwrap(), ReportFormat::Yaml);
        assert_eq!(f("r.csv").unwrap(), ReportFormat::Csv);
        assert_eq!(f("junit.xml").unwrap(), ReportFormat::Junit);
        assert_eq!(f("summary.md").unwrap(), ReportFormat::Markdown);
        let err = f("report.txt").unwrap_err().to_string();
        assert!(err.contains("report.txt") && err.contains(".json"), "{err}");
        assert!(f("report").is_err());
    }
}
