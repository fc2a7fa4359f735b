//! Confines a PromQL query to namespaces, as prom-label-proxy does: the query is parsed (by `promql-parser`, a
//! port of Prometheus's own grammar), every vector and matrix selector — inside functions, aggregations, binary
//! operations and subqueries alike — gets a `namespace` matcher for the allowed namespaces, and the query sent to
//! Prometheus is printed back from that tree, so no selector can escape the matcher.
//!
//! A selector that already has a `namespace` matcher keeps working when that matcher selects allowed namespaces
//! only, written as `namespace="ns"` or as `namespace=~"ns"` / `namespace=~"ns1|ns2"` with literal names (what the
//! `{namespace}` placeholder expands to); it is replaced by the enforced matcher. Any other `namespace` matcher
//! (another namespace, `!=`, `!~`, a pattern such as `.+`) is refused rather than silently overridden, so the
//! author learns that the query never read what they meant.

use std::collections::BTreeSet;

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{self, Expr, VectorSelector};

/// The label every selector is confined by.
pub(crate) const NAMESPACE_LABEL: &str = "namespace";

/// Why a query cannot be confined; the text explains what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfineError {
    #[error("it is not valid PromQL: {0}")]
    Parse(String),
    #[error(
        "selector `{selector}` reads outside namespace {allowed} (`{matcher}`); remove the namespace matcher (the \
         policy's own namespace is added to every selector) or write namespace=\"{{namespace}}\""
    )]
    OtherNamespace { selector: String, matcher: String, allowed: String },
    #[error("{0} is not allowed in a policy's query: it reads series the namespace matcher cannot confine")]
    Unconfinable(String),
    #[error(
        "{field} `{name}` is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*); give the metric's base name, or write \
         the query in full"
    )]
    NotAMetricName { field: String, name: String },
}

/// `query` with a `namespace` matcher for `namespaces` (one or more) on every selector.
pub(crate) fn confine(query: &str, namespaces: &BTreeSet<String>) -> Result<String, ConfineError> {
    assert!(!namespaces.is_empty(), "a query is confined to at least one namespace");
    let mut expr = parser::parse(query).map_err(|e| ConfineError::Parse(e.trim().to_string()))?;
    let enforced = enforced_matcher(namespaces);
    confine_expr(&mut expr, namespaces, &enforced)?;
    Ok(expr.to_string())
}

fn enforced_matcher(namespaces: &BTreeSet<String>) -> Matcher {
    if namespaces.len() == 1 {
        let only = namespaces.iter().next().expect("one namespace");
        return Matcher::new(MatchOp::Equal, NAMESPACE_LABEL, only);
    }
    let alternation = namespaces.iter().map(|ns| regex::escape(ns)).collect::<Vec<_>>().join("|");
    // PromQL anchors regex matchers; so does this one, for the same meaning here.
    let regex = regex::Regex::new(&format!("^(?:{alternation})$")).expect("escaped literals form a valid regex");
    Matcher::new(MatchOp::Re(regex), NAMESPACE_LABEL, &alternation)
}

fn confine_expr(expr: &mut Expr, allowed: &BTreeSet<String>, enforced: &Matcher) -> Result<(), ConfineError> {
    match expr {
        Expr::VectorSelector(selector) => confine_selector(selector, allowed, enforced),
        Expr::MatrixSelector(matrix) => confine_selector(&mut matrix.vs, allowed, enforced),
        Expr::Aggregate(aggregate) => {
            if let Some(param) = aggregate.param.as_deref_mut() {
                confine_expr(param, allowed, enforced)?;
            }
            confine_expr(&mut aggregate.expr, allowed, enforced)
        }
        Expr::Unary(unary) => confine_expr(&mut unary.expr, allowed, enforced),
        Expr::Binary(binary) => {
            confine_expr(&mut binary.lhs, allowed, enforced)?;
            confine_expr(&mut binary.rhs, allowed, enforced)
        }
        Expr::Paren(paren) => confine_expr(&mut paren.expr, allowed, enforced),
        Expr::Subquery(subquery) => confine_expr(&mut subquery.expr, allowed, enforced),
        Expr::Call(call) => {
            // info() joins in `target_info` series by identity labels, a read no matcher of ours would confine.
            if call.func.name == "info" {
                return Err(ConfineError::Unconfinable("the info() function".into()));
            }
            call.args.args.iter_mut().try_for_each(|arg| confine_expr(arg, allowed, enforced))
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Extension(_) => Err(ConfineError::Unconfinable("an extension expression".into())),
    }
}

fn confine_selector(
    selector: &mut VectorSelector,
    allowed: &BTreeSet<String>,
    enforced: &Matcher,
) -> Result<(), ConfineError> {
    let shown = selector.to_string();
    let Matchers { matchers, or_matchers } = &mut selector.matchers;
    // Printing ignores the plain matchers when `or` groups exist; the grammar never makes both.
    if !or_matchers.is_empty() && !matchers.is_empty() {
        return Err(ConfineError::Unconfinable(format!("selector `{shown}` (mixed `or` matcher groups)")));
    }
    let groups: Vec<&mut Vec<Matcher>> =
        if or_matchers.is_empty() { vec![matchers] } else { or_matchers.iter_mut().collect() };
    for group in groups {
        for matcher in group.iter().filter(|m| m.name == NAMESPACE_LABEL) {
            if !selects_only(matcher, allowed) {
                return Err(ConfineError::OtherNamespace {
                    selector: shown.clone(),
                    matcher: matcher.to_string(),
                    allowed: allowed.iter().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        group.retain(|m| m.name != NAMESPACE_LABEL);
        group.push(enforced.clone());
    }
    Ok(())
}

/// Whether a `namespace` matcher selects only allowed namespaces, as written with literal names.
fn selects_only(matcher: &Matcher, allowed: &BTreeSet<String>) -> bool {
    match &matcher.op {
        MatchOp::Equal => allowed.contains(&matcher.value),
        MatchOp::Re(_) => {
            matcher.value.split('|').all(|name| unescape_literal(name).is_some_and(|n| allowed.contains(&n)))
        }
        MatchOp::NotEqual | MatchOp::NotRe(_) => false,
    }
}

/// A regex that matches exactly one literal string (only escaped metacharacters), as that string.
fn unescape_literal(regex: &str) -> Option<String> {
    let mut out = String::with_capacity(regex.len());
    let mut chars = regex.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().filter(|e| !e.is_alphanumeric())?),
            '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => return None,
            _ => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(ns: &str) -> BTreeSet<String> {
        BTreeSet::from([ns.to_string()])
    }

    #[test]
    fn every_selector_gets_the_namespace_matcher() {
        let query = "sum(rate(a[1m])) / on() group_left max_over_time(sum(b{job=\"x\"})[5m:30s]) + c offset 1m \
                     or label_replace(d, \"namespace\", \"kube-system\", \"\", \"\") or {__name__=\"e\"}";
        let confined = confine(query, &own("team-a")).unwrap();
        let reparsed = parser::parse(&confined).unwrap();
        let mut selectors = Vec::new();
        collect_selectors(&reparsed, &mut selectors);
        assert_eq!(selectors.len(), 5, "{confined}");
        for selector in selectors {
            let namespace: Vec<_> = selector.matchers.find_matchers(NAMESPACE_LABEL);
            assert_eq!(namespace, [Matcher::new(MatchOp::Equal, NAMESPACE_LABEL, "team-a")], "{confined}");
        }
    }

    fn collect_selectors<'a>(expr: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
        match expr {
            Expr::VectorSelector(s) => out.push(s),
            Expr::MatrixSelector(m) => out.push(&m.vs),
            Expr::Aggregate(a) => {
                a.param.iter().for_each(|p| collect_selectors(p, out));
                collect_selectors(&a.expr, out)
            }
            Expr::Unary(u) => collect_selectors(&u.expr, out),
            Expr::Binary(b) => {
                collect_selectors(&b.lhs, out);
                collect_selectors(&b.rhs, out)
            }
            Expr::Paren(p) => collect_selectors(&p.expr, out),
            Expr::Subquery(s) => collect_selectors(&s.expr, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| collect_selectors(a, out)),
            _ => {}
        }
    }

    #[test]
    fn own_namespace_matchers_are_kept_as_the_enforced_one() {
        for query in ["x{namespace=\"team-a\"}", "x{namespace=~\"team-a\"}", "x{namespace=~\"team\\\\-a\"}"] {
            assert_eq!(confine(query, &own("team-a")).unwrap(), "x{namespace=\"team-a\"}", "{query}");
        }
        let both = BTreeSet::from(["a.b".to_string(), "c".to_string()]);
        assert_eq!(confine("x{namespace=~\"a\\\\.b|c\"}", &both).unwrap(), "x{namespace=~\"a\\\\.b|c\"}");
    }

    #[test]
    fn other_namespaces_are_refused_whatever_the_operator() {
        for query in [
            "sum(secret_x{namespace=\"kube-system\"})",
            "secret_x{namespace!=\"team-a\"}",
            "secret_x{namespace!~\"team-a\"}",
            "secret_x{namespace=~\"team-a|kube-system\"}",
            "secret_x{namespace=~\".+\"}",
            "secret_x{namespace=~\"team-a.*\"}",
            "rate(secret_x{namespace=\"kube-system\"}[5m])",
            "max_over_time(secret_x{namespace=\"kube-system\"}[5m:1m])",
        ] {
            let error = confine(query, &own("team-a")).unwrap_err();
            assert!(matches!(error, ConfineError::OtherNamespace { .. }), "{query}: {error}");
            assert!(error.to_string().contains("remove the namespace matcher"), "{error}");
        }
        assert!(matches!(confine("sum(rate(x[1m]", &own("a")), Err(ConfineError::Parse(_))));
    }

    #[test]
    fn literal_regex_alternations_are_recognised_exactly() {
        assert_eq!(unescape_literal("ai\\-models"), Some("ai-models".into()));
        assert_eq!(unescape_literal("a\\.b"), Some("a.b".into()));
        assert_eq!(unescape_literal("a.b"), None);
        assert_eq!(unescape_literal("\\d"), None, "a class, not a literal");
    }
}
