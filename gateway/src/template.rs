//! `google.api.http` path templates: parsing and matching.
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! A variable that covers one segment is fully percent-decoded; one that covers several keeps
//! `%2F` as it is (the reserved expansion of the spec), so `/` in a value stays distinguishable.

use std::fmt;

use percent_encoding::percent_decode_str;

/// One segment of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this text (after percent-decoding the request's segment).
    Literal(String),
    /// `*`: one non-empty segment.
    Wildcard,
    /// `**`: zero or more segments; only last.
    DeepWildcard,
}

/// A variable of a template: the request field it sets and the segments it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// The (possibly nested) field, such as `["name"]` or `["book", "name"]`.
    pub field_path: Vec<String>,
    /// First segment index covered.
    pub start: usize,
    /// One past the last segment index covered.
    pub end: usize,
}

impl Variable {
    /// The field path joined with dots.
    pub fn field(&self) -> String {
        self.field_path.join(".")
    }
}

/// A parsed path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    /// Every segment, variables expanded.
    pub segments: Vec<Segment>,
    /// The variables, in order.
    pub variables: Vec<Variable>,
    /// The custom verb (`cancel` of `:cancel`), if any.
    pub verb: Option<String>,
    source: String,
}

/// Why a template does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

fn err(template: &str, reason: impl fmt::Display) -> TemplateError {
    TemplateError(format!("invalid path template {template:?}: {reason}"))
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PathTemplate {
    /// Parses a template such as `/api/v1/{name=runs/*}:cancel`.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let Some(rest) = template.strip_prefix('/') else {
            return Err(err(template, "must start with '/'"));
        };
        // The verb is a ':' after the last '/' and after the last '}'.
        let (body, verb) = match rest.rfind(':') {
            Some(colon)
                if rest.rfind('/').is_none_or(|slash| colon > slash)
                    && rest.rfind('}').is_none_or(|brace| colon > brace) =>
            {
                let verb = &rest[colon + 1..];
                if verb.is_empty() || !verb.chars().all(is_literal_char) {
                    return Err(err(template, format!("bad verb {verb:?}")));
                }
                (&rest[..colon], Some(verb.to_string()))
            }
            _ => (rest, None),
        };

        let mut segments = Vec::new();
        let mut variables = Vec::new();
        for token in split_top_level(body).map_err(|reason| err(template, reason))? {
            if let Some(inner) = token.strip_prefix('{') {
                let Some(inner) = inner.strip_suffix('}') else {
                    return Err(err(template, format!("unterminated variable {token:?}")));
                };
                let (field, pattern) = inner.split_once('=').unwrap_or((inner, "*"));
                let field_path: Vec<String> = field.split('.').map(str::to_string).collect();
                if field_path.iter().any(|ident| !is_ident(ident)) {
                    return Err(err(template, format!("bad field path {field:?}")));
                }
                if variables.iter().any(|v: &Variable| v.field_path == field_path) {
                    return Err(err(template, format!("variable {field:?} appears twice")));
                }
                let start = segments.len();
                for part in pattern.split('/') {
                    if part.contains(['{', '}']) {
                        return Err(err(template, "nested variables are not allowed"));
                    }
                    segments.push(parse_segment(part).map_err(|reason| err(template, reason))?);
                }
                variables.push(Variable {
                    field_path,
                    start,
                    end: segments.len(),
                });
            } else {
                segments.push(parse_segment(token).map_err(|reason| err(template, reason))?);
            }
        }
        if let Some(pos) = segments.iter().position(|s| *s == Segment::DeepWildcard)
            && pos + 1 != segments.len()
        {
            return Err(err(template, "'**' must be the last segment"));
        }
        Ok(Self {
            segments,
            variables,
            verb,
            source: template.to_string(),
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Matches a request path (without the query); returns each variable's decoded value.
    pub fn matches(&self, path: &str) -> Option<Vec<(&Variable, String)>> {
        let mut rest = path.strip_prefix('/')?;
        if let Some(verb) = &self.verb {
            let stripped = rest.strip_suffix(verb.as_str())?.strip_suffix(':')?;
            // The verb belongs to the last segment: `/x/:verb` has an empty last segment.
            rest = stripped;
        }
        let raw: Vec<&str> = rest.split('/').collect();
        if self.segments.last() == Some(&Segment::DeepWildcard) {
            if raw.len() + 1 < self.segments.len() {
                return None;
            }
        } else if raw.len() != self.segments.len() {
            return None;
        }
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(literal) => {
                    let value = percent_decode_str(raw.get(i)?).decode_utf8().ok()?;
                    if value != literal.as_str() {
                        return None;
                    }
                }
                Segment::Wildcard => {
                    if raw.get(i)?.is_empty() {
                        return None;
                    }
                }
                Segment::DeepWildcard => {}
            }
        }
        let mut values = Vec::with_capacity(self.variables.len());
        for var in &self.variables {
            let deep_var = self.segments[var.end - 1] == Segment::DeepWildcard;
            let end = if deep_var { raw.len() } else { var.end };
            let covered = raw.get(var.start..end).unwrap_or_default();
            let value = if var.end - var.start == 1 && !deep_var {
                percent_decode_str(covered[0]).decode_utf8().ok()?.into_owned()
            } else {
                covered
                    .iter()
                    .map(|s| decode_reserved(s))
                    .collect::<Option<Vec<_>>>()?
                    .join("/")
            };
            values.push((var, value));
        }
        Some(values)
    }

    /// How specific the template is: with a verb first, then more literal segments, then more
    /// segments, then without `**`. Higher sorts first.
    pub fn specificity(&self) -> (bool, usize, usize, bool) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        let deep = self.segments.last() == Some(&Segment::DeepWildcard);
        (self.verb.is_some(), literals, self.segments.len(), !deep)
    }
}

/// Percent-decodes a segment of a multi-segment variable, leaving `%2F` encoded.
fn decode_reserved(segment: &str) -> Option<String> {
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(pos) = rest.find(['%']) {
        let (before, after) = rest.split_at(pos);
        out.push_str(&percent_decode_str(before).decode_utf8().ok()?);
        if after.len() >= 3 && after[1..3].eq_ignore_ascii_case("2F") {
            out.push_str(&after[..3]);
            rest = &after[3..];
        } else {
            // Decode up to the next "%2F" (or the end) in one go so multi-byte UTF-8 stays whole.
            let next = after[1..]
                .match_indices('%')
                .map(|(i, _)| i + 1)
                .find(|&i| after.len() >= i + 3 && after[i + 1..i + 3].eq_ignore_ascii_case("2F"))
                .unwrap_or(after.len());
            out.push_str(&percent_decode_str(&after[..next]).decode_utf8().ok()?);
            rest = &after[next..];
        }
    }
    out.push_str(&percent_decode_str(rest).decode_utf8().ok()?);
    Some(out)
}

fn split_top_level(body: &str) -> Result<Vec<&str>, String> {
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in body.char_indices() {
        match c {
            '{' => {
                depth += 1;
                if depth > 1 {
                    return Err("nested variables are not allowed".into());
                }
            }
            '}' => depth = depth.checked_sub(1).ok_or("unbalanced '}'")?,
            '/' if depth == 0 => {
                tokens.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '{'".into());
    }
    tokens.push(&body[start..]);
    Ok(tokens)
}

fn parse_segment(token: &str) -> Result<Segment, String> {
    match token {
        "*" => Ok(Segment::Wildcard),
        "**" => Ok(Segment::DeepWildcard),
        "" => Err("empty segment".into()),
        literal if literal.chars().all(is_literal_char) => Ok(Segment::Literal(literal.to_string())),
        other => Err(format!("bad segment {other:?}")),
    }
}

fn is_literal_char(c: char) -> bool {
    !matches!(c, '/' | '{' | '}' | '*' | '=' | ':' | '?' | '#') && !c.is_whitespace() && !c.is_control()
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        let t = PathTemplate::parse(template).unwrap();
        t.matches(path)
            .map(|v| v.into_iter().map(|(var, value)| (var.field(), value)).collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect())
    }

    #[test]
    fn parses_segments_variables_and_verbs() {
        let t = PathTemplate::parse("/api/v1/{name=runs/*}:cancel").unwrap();
        assert_eq!(
            t.segments,
            vec![
                Segment::Literal("api".into()),
                Segment::Literal("v1".into()),
                Segment::Literal("runs".into()),
                Segment::Wildcard
            ]
        );
        assert_eq!(
            t.variables,
            vec![Variable {
                field_path: vec!["name".into()],
                start: 2,
                end: 4
            }]
        );
        assert_eq!(t.verb.as_deref(), Some("cancel"));

        let t = PathTemplate::parse("/api/v1/readings:aggregate").unwrap();
        assert_eq!(t.verb.as_deref(), Some("aggregate"));
        assert_eq!(t.segments.len(), 3);

        let t = PathTemplate::parse("/v1/{book.name}/x/**").unwrap();
        assert_eq!(t.variables[0].field_path, vec!["book".to_string(), "name".to_string()]);
        assert_eq!(t.variables[0].start..t.variables[0].end, 1..2);
        assert_eq!(t.segments.last(), Some(&Segment::DeepWildcard));
        assert_eq!(t.verb, None);
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in [
            "api/v1/x",
            "/api/{name=runs/{x}}",
            "/api/{name",
            "/api/name}",
            "/api//x",
            "/api/**/x",
            "/api/{1name}",
            "/api/{name}/{name}",
            "/api/x:",
            "/api/x*y",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn matches_literals_wildcards_and_verbs() {
        assert_eq!(
            vars("/api/v1/{name=runs/*}", "/api/v1/runs/abc"),
            pairs(&[("name", "runs/abc")])
        );
        assert_eq!(vars("/api/v1/{name=runs/*}", "/api/v1/runs"), None);
        assert_eq!(vars("/api/v1/{name=runs/*}", "/api/v1/runs/"), None);
        assert_eq!(vars("/api/v1/{name=runs/*}", "/api/v1/runs/a/b"), None);
        assert_eq!(vars("/api/v1/{name=runs/*}", "/api/v1/images/a"), None);
        assert_eq!(
            vars("/api/v1/{name=runs/*}:cancel", "/api/v1/runs/abc:cancel"),
            pairs(&[("name", "runs/abc")])
        );
        assert_eq!(vars("/api/v1/{name=runs/*}:cancel", "/api/v1/runs/abc"), None);
        assert_eq!(vars("/api/v1/{name=runs/*}:cancel", "/api/v1/runs/abc:stop"), None);
        // Without a verb in the template, a colon is part of the segment.
        assert_eq!(
            vars("/api/v1/{name=runs/*}", "/api/v1/runs/abc:cancel"),
            pairs(&[("name", "runs/abc:cancel")])
        );
        assert_eq!(
            vars("/api/v1/readings:aggregate", "/api/v1/readings:aggregate"),
            pairs(&[])
        );
        assert_eq!(vars("/api/v1/readings:aggregate", "/api/v1/readings"), None);
        assert_eq!(
            vars(
                "/api/v1/{name=devices/*/sensors/*/currentValue}",
                "/api/v1/devices/d1/sensors/t/currentValue"
            ),
            pairs(&[("name", "devices/d1/sensors/t/currentValue")])
        );
        assert_eq!(
            vars(
                "/api/v1/{parent=tracks/*}/waypoints",
                "/api/v1/tracks/perseverance/waypoints"
            ),
            pairs(&[("parent", "tracks/perseverance")])
        );
        assert_eq!(
            vars("/v1/{a}/{b.c=x/*}", "/v1/one/x/two"),
            pairs(&[("a", "one"), ("b.c", "x/two")])
        );
    }

    #[test]
    fn deep_wildcards_match_zero_or_more_segments() {
        assert_eq!(vars("/files/{path=**}", "/files/a/b/c"), pairs(&[("path", "a/b/c")]));
        assert_eq!(vars("/files/{path=**}", "/files/a"), pairs(&[("path", "a")]));
        assert_eq!(vars("/files/{path=**}", "/files"), pairs(&[("path", "")]));
        assert_eq!(
            vars("/files/{path=x/**}:get", "/files/x/1/2:get"),
            pairs(&[("path", "x/1/2")])
        );
        assert_eq!(vars("/files/{path=x/**}", "/other/x/1"), None);
    }

    #[test]
    fn percent_decodes_variables() {
        // One segment: fully decoded, so an encoded slash becomes a slash.
        assert_eq!(vars("/v1/{id}", "/v1/a%2Fb%20c"), pairs(&[("id", "a/b c")]));
        assert_eq!(vars("/v1/{id}", "/v1/caf%C3%A9"), pairs(&[("id", "café")]));
        // Several segments: %2F stays encoded, everything else is decoded.
        assert_eq!(
            vars("/v1/{name=runs/*}", "/v1/runs/a%2Fb%20c"),
            pairs(&[("name", "runs/a%2Fb c")])
        );
        assert_eq!(
            vars("/v1/{name=runs/*}", "/v1/runs/caf%C3%A9%2f"),
            pairs(&[("name", "runs/café%2f")])
        );
        // Literals compare decoded.
        assert_eq!(vars("/v1/{name=runs/*}", "/v1/r%75ns/x"), pairs(&[("name", "runs/x")]));
        // Invalid UTF-8 does not match.
        assert_eq!(vars("/v1/{id}", "/v1/%FF"), None);
    }

    #[test]
    fn specificity_prefers_verbs_and_literals() {
        let verb = PathTemplate::parse("/api/v1/{name=tracks/*}:summary").unwrap();
        let plain = PathTemplate::parse("/api/v1/{name=tracks/*}").unwrap();
        let literal = PathTemplate::parse("/api/v1/tracks/latest").unwrap();
        let deep = PathTemplate::parse("/api/v1/tracks/{rest=**}").unwrap();
        assert!(verb.specificity() > plain.specificity());
        assert!(literal.specificity() > plain.specificity());
        assert!(plain.specificity() > deep.specificity());
        assert_eq!(plain.to_string(), "/api/v1/{name=tracks/*}");
    }
}
