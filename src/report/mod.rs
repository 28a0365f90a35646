//! Results reports: JSON (the reference shape), YAML, CSV, JUnit XML and Markdown.
