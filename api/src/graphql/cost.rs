//! What a query may ask for, checked right after parsing and before
//! anything that walks fragments expanded (async-graphql's validation,
//! depth and complexity visitors): ten nested fragments that each spread
//! the one below twice expand to a thousand selections, forty to a
//! trillion, in a query of a kilobyte.
//!
//! The check counts the selections a query would expand to with one pass
//! over each fragment (each fragment's count is kept once computed), so its
//! work is linear in the query text however deep the spreads go. It also
//! bounds the fragments, and how many fields a mutation request names at
//! its root (each runs a command). Anonymous callers get tighter bounds.

use std::collections::HashMap;
use std::sync::Mutex;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Request, ServerError, ServerResult, Variables};
use hashlink::LruCache;

use app::caller::Viewer;

/// Bounds on one request's query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryBounds {
    pub query_bytes_max: usize,
    pub fragments_max: usize,
    /// Selections (fields) once every fragment spread is expanded.
    pub selections_expanded_max: u64,
    /// Fields at a mutation's root, aliases counted: each runs a command.
    pub mutation_fields_max: u64,
}

/// For signed-in callers.
pub const MEMBER_BOUNDS: QueryBounds = QueryBounds {
    query_bytes_max: 64 * 1024,
    fragments_max: 100,
    selections_expanded_max: 5_000,
    mutation_fields_max: 10,
};

/// For anonymous callers (QR pages): one command a request, small queries.
pub const ANONYMOUS_BOUNDS: QueryBounds = QueryBounds {
    query_bytes_max: 8 * 1024,
    fragments_max: 20,
    selections_expanded_max: 500,
    mutation_fields_max: 1,
};

/// What checking a document measured; `work` counts the steps taken (one
/// per selection visited), for tests that the check stays linear.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    pub selections_expanded: u64,
    pub mutation_fields: u64,
    pub work: u64,
}

/// Why a query is refused, with its code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooCostly {
    pub message: String,
}

/// Measures `document` against `bounds`.
pub fn check(
    document: &ExecutableDocument,
    query_bytes: usize,
    bounds: &QueryBounds,
) -> Result<Measured, TooCostly> {
    let refuse = |message: String| Err(TooCostly { message });
    if let Some(refusal) = too_long(query_bytes, bounds) {
        return Err(refusal);
    }
    if document.fragments.len() > bounds.fragments_max {
        return refuse(format!(
            "the query defines {} fragments; at most {}",
            document.fragments.len(),
            bounds.fragments_max
        ));
    }
    let mut counter = Counter {
        fragments: &document.fragments,
        known: HashMap::new(),
        work: 0,
    };
    let mut measured = Measured::default();
    for (_, operation) in document.operations.iter() {
        let operation = &operation.node;
        let selections = counter.count(&operation.selection_set.node)?;
        measured.selections_expanded = measured.selections_expanded.saturating_add(selections);
        if operation.ty == OperationType::Mutation {
            let roots = counter.roots(&operation.selection_set.node)?;
            measured.mutation_fields = measured.mutation_fields.saturating_add(roots);
        }
    }
    measured.work = counter.work;
    if measured.selections_expanded > bounds.selections_expanded_max {
        return refuse(format!(
            "the query expands to {} selections; at most {} for this caller",
            measured.selections_expanded, bounds.selections_expanded_max
        ));
    }
    if measured.mutation_fields > bounds.mutation_fields_max {
        return refuse(format!(
            "the request runs {} mutations; at most {} for this caller",
            measured.mutation_fields, bounds.mutation_fields_max
        ));
    }
    Ok(measured)
}

/// A query longer than `bounds` allow, refused before it is parsed.
fn too_long(query_bytes: usize, bounds: &QueryBounds) -> Option<TooCostly> {
    (query_bytes > bounds.query_bytes_max).then(|| TooCostly {
        message: format!(
            "the query is {query_bytes} bytes; at most {} for this caller",
            bounds.query_bytes_max
        ),
    })
}

/// What a fragment expands to: its selections, and its fields at a root.
#[derive(Clone, Copy)]
enum Known {
    Counting,
    Counted { selections: u64, roots: u64 },
}

struct Counter<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    known: HashMap<&'a str, Known>,
    work: u64,
}

impl<'a> Counter<'a> {
    /// Selections under `set`, fragments expanded (saturating).
    fn count(&mut self, set: &'a SelectionSet) -> Result<u64, TooCostly> {
        let mut total: u64 = 0;
        for item in &set.items {
            self.work += 1;
            let here = match &item.node {
                Selection::Field(field) => {
                    1_u64.saturating_add(self.count(&field.node.selection_set.node)?)
                }
                Selection::InlineFragment(inline) => self.count(&inline.node.selection_set.node)?,
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str())?.0
                }
            };
            total = total.saturating_add(here);
        }
        Ok(total)
    }

    /// Fields directly in `set` (through fragments at that level).
    fn roots(&mut self, set: &'a SelectionSet) -> Result<u64, TooCostly> {
        let mut total: u64 = 0;
        for item in &set.items {
            self.work += 1;
            let here = match &item.node {
                Selection::Field(_) => 1,
                Selection::InlineFragment(inline) => self.roots(&inline.node.selection_set.node)?,
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str())?.1
                }
            };
            total = total.saturating_add(here);
        }
        Ok(total)
    }

    /// A fragment's (selections, root fields), each fragment walked once.
    fn fragment(&mut self, name: &'a str) -> Result<(u64, u64), TooCostly> {
        match self.known.get(name) {
            Some(Known::Counted { selections, roots }) => return Ok((*selections, *roots)),
            Some(Known::Counting) => {
                return Err(TooCostly {
                    message: format!("fragment {name} spreads itself"),
                })
            }
            None => {}
        }
        let Some(fragment) = self.fragments.get(name) else {
            // Validation names the unknown fragment; it expands to nothing.
            return Ok((0, 0));
        };
        self.known.insert(name, Known::Counting);
        let set = &fragment.node.selection_set.node;
        let selections = self.count(set)?;
        let roots = self.roots(set)?;
        self.known
            .insert(name, Known::Counted { selections, roots });
        Ok((selections, roots))
    }
}

/// The async-graphql extension that applies `check` to every request, over
/// HTTP and WebSocket alike, with the caller's bounds.
pub struct QueryCost;

impl ExtensionFactory for QueryCost {
    fn create(&self) -> std::sync::Arc<dyn Extension> {
        std::sync::Arc::new(QueryCostExtension)
    }
}

struct QueryCostExtension;

#[async_trait::async_trait]
impl Extension for QueryCostExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let viewer = ctx.data_opt::<Viewer>().unwrap_or(&Viewer::Anonymous);
        match refusal(&document, query.len(), variables, viewer) {
            None => Ok(document),
            Some(error) => Err(error),
        }
    }
}

/// Why a request's query is refused for `viewer`, as the error to answer
/// with (its code `QUERY_TOO_COMPLEX` or `VALIDATION`); `None` when it may
/// run. The extension applies it to WebSocket requests; the HTTP handler
/// applies it itself ([`ParsedQueries::admit`]), so that the schema it runs
/// has no extension and no field pays for an extension's hooks.
pub fn refusal(
    document: &ExecutableDocument,
    query_bytes: usize,
    variables: &Variables,
    viewer: &Viewer,
) -> Option<ServerError> {
    let (message, code) = match nesting_within(document, NESTING_MAX) {
        false => (
            format!("the query nests deeper than {NESTING_MAX} selections"),
            "QUERY_TOO_DEEP",
        ),
        true => match check(document, query_bytes, bounds_of(viewer)) {
            Ok(_) => (control_character(document, variables)?, "VALIDATION"),
            Err(refusal) => (refusal.message, TOO_COMPLEX),
        },
    };
    Some(refused(message, code))
}

const TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";

fn bounds_of(viewer: &Viewer) -> &'static QueryBounds {
    match viewer {
        Viewer::Member(_) => &MEMBER_BOUNDS,
        _ => &ANONYMOUS_BOUNDS,
    }
}

fn refused(message: String, code: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    error
}

/// How deep a selection set may nest in the text, fields and inline
/// fragments counted, before the query is refused unwalked: the checks
/// here recurse, and async-graphql refuses deeper than 32 as well.
const NESTING_MAX: usize = 32;

/// Whether no selection set of `document` (operations and fragment
/// definitions alike, spreads not followed) nests deeper than `max`,
/// measured without recursion, so that no depth of text can exhaust the
/// stack.
fn nesting_within(document: &ExecutableDocument, max: usize) -> bool {
    let mut sets: Vec<(&SelectionSet, usize)> = document
        .operations
        .iter()
        .map(|(_, operation)| (&operation.node.selection_set.node, 0))
        .chain(
            document
                .fragments
                .values()
                .map(|fragment| (&fragment.node.selection_set.node, 0)),
        )
        .collect();
    while let Some((set, depth)) = sets.pop() {
        if depth > max {
            return false;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => sets.push((&field.node.selection_set.node, depth + 1)),
                Selection::InlineFragment(inline) => {
                    sets.push((&inline.node.selection_set.node, depth + 1))
                }
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    true
}

/// Parsed documents of the queries asked most recently, by their text:
/// clients send the same few queries over and over, and parsing one cost
/// an eighth of the server's time for a page of twenty reports. A hostile
/// client that varies its queries only turns the kept ones over; long
/// queries are not kept.
pub struct ParsedQueries {
    kept: Mutex<LruCache<String, ExecutableDocument>>,
}

/// Queries kept at most, and the longest kept.
const PARSED_KEPT_MAX: usize = 256;
const PARSED_QUERY_BYTES_MAX: usize = 4 * 1024;

impl Default for ParsedQueries {
    fn default() -> Self {
        ParsedQueries {
            kept: Mutex::new(LruCache::new(PARSED_KEPT_MAX)),
        }
    }
}

impl ParsedQueries {
    /// Parses `request`'s query (or takes the kept parse of the same text)
    /// and checks it for `viewer`, as the extension does: the refusal to
    /// answer with, or the request carrying its parsed document. A query
    /// that does not parse is left to the schema, which reports it as it
    /// always has.
    pub fn admit(&self, request: &mut Request, viewer: &Viewer) -> Result<(), ServerError> {
        let query_bytes = request.query.len();
        let kept = lock(&self.kept).get(&request.query).cloned();
        let document = match kept {
            Some(document) => document,
            None => {
                if let Some(refusal) = too_long(query_bytes, bounds_of(viewer)) {
                    return Err(refused(refusal.message, TOO_COMPLEX));
                }
                let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
                    return Ok(());
                };
                if query_bytes <= PARSED_QUERY_BYTES_MAX {
                    lock(&self.kept).insert(request.query.clone(), document.clone());
                }
                document
            }
        };
        if let Some(error) = refusal(&document, query_bytes, &request.variables, viewer) {
            return Err(error);
        }
        request.set_parsed_query(document);
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `c` may travel in a string at all: control characters other
/// than tab and line breaks are refused in every argument and variable
/// (texts, names, filters, keys), before any reaches a rule or PostgreSQL
/// (which cannot store NUL), so each is `VALIDATION`, never `INTERNAL`.
fn forbidden_in_strings(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

/// The first string of the request (a variable or an argument written in
/// the query) holding a forbidden control character, said as a refusal.
fn control_character(document: &ExecutableDocument, variables: &Variables) -> Option<String> {
    let refusal = |where_: &str| Some(format!("{where_}: control characters are not allowed"));
    for (name, value) in variables.iter() {
        if value_has_control(value) {
            return refusal(&format!("${name}"));
        }
    }
    let mut sets: Vec<&SelectionSet> = document
        .operations
        .iter()
        .map(|(_, operation)| &operation.node.selection_set.node)
        .chain(
            document
                .fragments
                .values()
                .map(|fragment| &fragment.node.selection_set.node),
        )
        .collect();
    while let Some(set) = sets.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    for (name, value) in &field.node.arguments {
                        // Variables inside are checked with the variables.
                        let literal = value
                            .node
                            .clone()
                            .into_const_with(|_| Ok::<_, ()>(async_graphql::Value::Null))
                            .unwrap_or_default();
                        if value_has_control(&literal) {
                            return refusal(name.node.as_str());
                        }
                    }
                    sets.push(&field.node.selection_set.node);
                }
                Selection::InlineFragment(inline) => sets.push(&inline.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    None
}

fn value_has_control(value: &async_graphql::Value) -> bool {
    use async_graphql::Value;
    match value {
        Value::String(text) => text.chars().any(forbidden_in_strings),
        Value::List(items) => items.iter().any(value_has_control),
        Value::Object(fields) => fields.iter().any(|(name, field)| {
            name.as_str().chars().any(forbidden_in_strings) || value_has_control(field)
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `depth` fragments, each spreading the one below twice: 2^depth
    /// selections once expanded, in text linear in `depth`.
    fn exploding(depth: usize) -> String {
        let mut query = String::from("query { ...F0 }\n");
        for level in 0..depth {
            let next = level + 1;
            query.push_str(&format!(
                "fragment F{level} on Query {{ a: healthz {{ ...F{next} }} b: healthz {{ ...F{next} }} }}\n"
            ));
        }
        query.push_str(&format!("fragment F{depth} on Query {{ __typename }}\n"));
        query
    }

    fn measure(query: &str, bounds: &QueryBounds) -> Result<Measured, TooCostly> {
        let document = async_graphql::parser::parse_query(query).expect("it parses");
        check(&document, query.len(), bounds)
    }

    const UNBOUNDED: QueryBounds = QueryBounds {
        query_bytes_max: usize::MAX,
        fragments_max: usize::MAX,
        selections_expanded_max: u64::MAX,
        mutation_fields_max: u64::MAX,
    };

    #[test]
    fn an_exploding_query_is_measured_in_work_linear_in_its_text() {
        for depth in [4, 10, 20, 40, 64, 90] {
            let query = exploding(depth);
            let measured = measure(&query, &UNBOUNDED).unwrap();
            let expected = (1_u64 << depth.min(63)).saturating_mul(2).saturating_sub(2);
            if depth < 60 {
                // Every level adds two fields and doubles what is below.
                assert!(
                    measured.selections_expanded >= expected,
                    "{depth}: {measured:?}"
                );
            } else {
                assert_eq!(measured.selections_expanded, u64::MAX, "saturates");
            }
            assert!(
                measured.work <= 8 * depth as u64 + 8,
                "depth {depth}: {} steps for {} bytes",
                measured.work,
                query.len()
            );
            let refused = measure(&query, &MEMBER_BOUNDS);
            assert_eq!(refused.is_err(), depth > 10, "depth {depth}: {refused:?}");
        }
    }

    #[test]
    fn bounds_table() {
        let aliased = |n: usize| {
            let fields: String = (0..n)
                .map(|i| format!("r{i}: submitReport(communityId: \"x\") {{ position }} "))
                .collect();
            format!("mutation {{ {fields} }}")
        };
        let through_fragment = "mutation { ...M ...M } fragment M on Mutation { a: fundBudget { position } b: fundBudget { position } }";
        let many_fragments: String = (0..25)
            .map(|i| format!("fragment G{i} on Query {{ __typename }} "))
            .collect::<String>()
            + "query { __typename }";
        let cycle = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        let cases: Vec<(&str, String, &QueryBounds, bool)> = vec![
            (
                "one mutation, anonymous",
                aliased(1),
                &ANONYMOUS_BOUNDS,
                true,
            ),
            (
                "two aliased mutations, anonymous",
                aliased(2),
                &ANONYMOUS_BOUNDS,
                false,
            ),
            ("ten, signed in", aliased(10), &MEMBER_BOUNDS, true),
            ("eleven, signed in", aliased(11), &MEMBER_BOUNDS, false),
            ("a hundred, signed in", aliased(100), &MEMBER_BOUNDS, false),
            (
                "four through fragments, anonymous",
                through_fragment.into(),
                &ANONYMOUS_BOUNDS,
                false,
            ),
            (
                "four through fragments, signed in",
                through_fragment.into(),
                &MEMBER_BOUNDS,
                true,
            ),
            (
                "25 fragments, anonymous",
                many_fragments.clone(),
                &ANONYMOUS_BOUNDS,
                false,
            ),
            (
                "25 fragments, signed in",
                many_fragments,
                &MEMBER_BOUNDS,
                true,
            ),
            ("a cycle", cycle.into(), &MEMBER_BOUNDS, false),
            (
                "9 KB, anonymous",
                format!("query {{ __typename }} #{}", "x".repeat(9 * 1024)),
                &ANONYMOUS_BOUNDS,
                false,
            ),
            (
                "9 KB, signed in",
                format!("query {{ __typename }} #{}", "x".repeat(9 * 1024)),
                &MEMBER_BOUNDS,
                true,
            ),
        ];
        for (name, query, bounds, allowed) in cases {
            assert_eq!(measure(&query, bounds).is_ok(), allowed, "{name}");
        }
    }
}
