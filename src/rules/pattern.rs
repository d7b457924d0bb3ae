//! Name patterns in rules: table / schema / function globs and the plain
//! string globs used for agents, application names and databases.
//!
//! Names in a `Classification` arrive normalised the way Postgres resolves
//! them lexically: unquoted identifiers folded to lower case, quotes removed,
//! schema kept when the SQL gave one. A rule's own patterns are normalised
//! here the same way (lower case unless quoted, quotes stripped), so rules do
//! not depend on the classifier's helper functions.
//!
//! Matching semantics for object names (tables and functions):
//!
//! - A pattern without a dot (`orders`, `*secret*`) matches the relation or
//!   function name itself, whatever schema the statement named or omitted.
//! - A pattern with a dot (`billing.*`, `public.orders`) matches
//!   `schema.name`; a name the SQL left unqualified counts as schema
//!   `public`. That is what the default `search_path` resolves to for user
//!   objects. An agent that changes `search_path` can make `invoices` mean
//!   `billing.invoices`, so objects that must be caught in any schema should
//!   be written without a schema (`*secret*`), as the shipped rules do.
//! - A name with three parts (`db.schema.name`) is matched on its last two.
//! - Restricting rules (`log`, `hold`, `deny`) match case-insensitively and
//!   `allow` rules match exactly: `"PII_Data"` (quoted, so case is kept) must
//!   not slip past a `*pii*` hold rule, while an `allow` rule for `orders`
//!   must not also allow the distinct table `"ORDERS"`. Each side errs
//!   toward the more restrictive decision.

use globset::{GlobBuilder, GlobMatcher};

/// The schema an unqualified object name is assumed to live in.
pub const UNQUALIFIED_SCHEMA: &str = "public";

/// Normalise one identifier written in a rule file: an unquoted identifier
/// folds to lower case, a double-quoted one keeps its case and loses its
/// quotes (`""` inside quotes is one `"`). Dots outside quotes separate
/// parts. Returns the parts, or a reason when the quoting is broken.
pub fn split_identifier(raw: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = raw.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    current.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                current.push(c);
            }
        } else {
            match c {
                '"' => in_quotes = true,
                '.' => parts.push(std::mem::take(&mut current)),
                c => current.extend(c.to_lowercase()),
            }
        }
    }
    if in_quotes {
        return Err(format!("unterminated double quote in `{raw}`"));
    }
    parts.push(current);
    if parts.iter().any(String::is_empty) {
        return Err(format!("`{raw}` has an empty name part"));
    }
    Ok(parts)
}

/// Normalise a function or relation name written in a rule file into the
/// form the classifier reports (`App.Purge_All` -> `app.purge_all`).
pub fn normalize_name(raw: &str) -> Result<String, String> {
    Ok(split_identifier(raw.trim())?.join("."))
}

/// Split a normalised object name from a classification into
/// `(schema, name)`; unqualified names get [`UNQUALIFIED_SCHEMA`].
pub fn schema_and_name(object: &str) -> (&str, &str) {
    let mut parts = object.rsplitn(3, '.');
    let name = parts.next().unwrap_or(object);
    let schema = parts.next().unwrap_or(UNQUALIFIED_SCHEMA);
    (schema, name)
}

fn compile_glob(glob: &str, case_insensitive: bool) -> Result<GlobMatcher, String> {
    GlobBuilder::new(glob)
        .case_insensitive(case_insensitive)
        // Names are not paths: `*` must match any character, and a
        // backslash is a literal escape as in globs elsewhere.
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

/// A table, schema-qualified table, or function pattern.
#[derive(Debug, Clone)]
pub struct ObjectPattern {
    /// The pattern as written in the rule file, for messages.
    source: String,
    schema: Option<GlobMatcher>,
    name: GlobMatcher,
}

impl ObjectPattern {
    pub fn new(raw: &str, case_insensitive: bool) -> Result<ObjectPattern, String> {
        let parts = split_identifier(raw.trim())?;
        let (schema, name) = match parts.as_slice() {
            [name] => (None, name),
            [schema, name] => (Some(schema), name),
            _ => {
                return Err(format!(
                    "`{raw}` has {} dot-separated parts; write `name` or `schema.name`",
                    parts.len()
                ));
            }
        };
        Ok(ObjectPattern {
            source: raw.to_string(),
            schema: schema
                .map(|s| compile_glob(s, case_insensitive))
                .transpose()?,
            name: compile_glob(name, case_insensitive)?,
        })
    }

    /// Whether a normalised object name from a classification matches.
    pub fn matches(&self, object: &str) -> bool {
        let (schema, name) = schema_and_name(object);
        self.name.is_match(name) && self.schema.as_ref().is_none_or(|s| s.is_match(schema))
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// A schema pattern: matches the schema part of an object name
/// (unqualified names count as [`UNQUALIFIED_SCHEMA`]).
#[derive(Debug, Clone)]
pub struct SchemaPattern {
    source: String,
    glob: GlobMatcher,
}

impl SchemaPattern {
    pub fn new(raw: &str, case_insensitive: bool) -> Result<SchemaPattern, String> {
        let parts = split_identifier(raw.trim())?;
        let [schema] = parts.as_slice() else {
            return Err(format!("`{raw}` is not a single schema name"));
        };
        Ok(SchemaPattern {
            source: raw.to_string(),
            glob: compile_glob(schema, case_insensitive)?,
        })
    }

    pub fn matches(&self, object: &str) -> bool {
        self.glob.is_match(schema_and_name(object).0)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// A glob over an opaque, case-sensitive string (agent name, application
/// name, database name). These are compared as the session reports them;
/// no identifier folding applies.
#[derive(Debug, Clone)]
pub struct TextPattern {
    source: String,
    glob: GlobMatcher,
}

impl TextPattern {
    pub fn new(raw: &str) -> Result<TextPattern, String> {
        if raw.is_empty() {
            return Err("empty pattern".to_string());
        }
        Ok(TextPattern {
            source: raw.to_string(),
            glob: compile_glob(raw, false)?,
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        self.glob.is_match(value)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(p: &str) -> ObjectPattern {
        ObjectPattern::new(p, false).unwrap()
    }

    #[test]
    fn identifiers_fold_unless_quoted() {
        assert_eq!(
            split_identifier("App.Purge_All").unwrap(),
            ["app", "purge_all"]
        );
        assert_eq!(split_identifier(r#""App"."X.y""#).unwrap(), ["App", "X.y"]);
        assert_eq!(split_identifier(r#""a""b""#).unwrap(), [r#"a"b"#]);
        assert!(split_identifier(r#""open"#).is_err());
        assert!(split_identifier("a..b").is_err());
        assert!(split_identifier("a.").is_err());
    }

    #[test]
    fn bare_pattern_matches_name_in_any_schema() {
        let p = obj("orders");
        assert!(p.matches("orders"));
        assert!(p.matches("public.orders"));
        assert!(p.matches("billing.orders"));
        assert!(!p.matches("orders_archive"));
        assert!(!p.matches("orders.items"));
        let p = obj("*secret*");
        assert!(p.matches("app.user_secrets"));
        assert!(p.matches("secret"));
        assert!(!p.matches("secretive_schema.t"));
    }

    #[test]
    fn qualified_pattern_treats_unqualified_as_public() {
        let p = obj("public.orders");
        assert!(p.matches("orders"));
        assert!(p.matches("public.orders"));
        assert!(!p.matches("billing.orders"));
        let p = obj("billing.*");
        assert!(p.matches("billing.invoices"));
        assert!(!p.matches("invoices"));
        assert!(!p.matches("public.invoices"));
        // `*` in the schema part never reaches into the name part.
        assert!(!p.matches("billing_archive.x"));
        // Three-part names match on schema.name.
        assert!(p.matches("mydb.billing.invoices"));
    }

    #[test]
    fn pattern_case_follows_postgres_folding() {
        // Unquoted pattern folds to lower case and matches the folded name...
        assert!(obj("Orders").matches("orders"));
        // ...but not a quoted upper-case table, unless case-insensitive.
        assert!(!obj("orders").matches("ORDERS"));
        assert!(obj(r#""ORDERS""#).matches("ORDERS"));
        let ci = ObjectPattern::new("*pii*", true).unwrap();
        assert!(ci.matches("public.PII_Data"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(
            ObjectPattern::new("a.b.c", false)
                .unwrap_err()
                .contains("3 dot-separated")
        );
        assert!(ObjectPattern::new("[abc", false).is_err());
        assert!(SchemaPattern::new("a.b", false).is_err());
        assert!(TextPattern::new("").is_err());
        assert!(TextPattern::new("{a,").is_err());
    }

    #[test]
    fn schema_pattern_matches_schema_part() {
        let p = SchemaPattern::new("bill*", false).unwrap();
        assert!(p.matches("billing.invoices"));
        assert!(!p.matches("invoices"));
        assert!(
            SchemaPattern::new("public", false)
                .unwrap()
                .matches("invoices")
        );
    }

    #[test]
    fn text_patterns_are_case_sensitive_globs() {
        let p = TextPattern::new("billing-*").unwrap();
        assert!(p.matches("billing-bot"));
        assert!(!p.matches("Billing-bot"));
        assert!(!p.matches("ops-bot"));
    }
}
