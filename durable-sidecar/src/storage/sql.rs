//! The SQL of the instance queries, shared by the SQL backends: both SQLite and PostgreSQL
//! accept the same text once placeholders are spelled their way (`?1` / `$1`).

use super::{CompletedQuery, InstanceQuery};

/// A query parameter.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
}

/// How a backend writes the n-th (1-based) placeholder.
pub(crate) type Placeholder = fn(usize) -> String;

struct Builder {
    placeholder: Placeholder,
    params: Vec<Param>,
    conds: Vec<String>,
}

impl Builder {
    fn new(placeholder: Placeholder) -> Self {
        Self {
            placeholder,
            params: Vec::new(),
            conds: Vec::new(),
        }
    }

    /// Adds a parameter; returns its placeholder.
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        (self.placeholder)(self.params.len())
    }

    fn statuses(&mut self, statuses: &[i32]) {
        if statuses.is_empty() {
            return;
        }
        let marks: Vec<String> = statuses
            .iter()
            .map(|s| self.bind(Param::Int(i64::from(*s))))
            .collect();
        self.conds.push(format!("status IN ({})", marks.join(", ")));
    }

    fn range(&mut self, column: &str, from: Option<i64>, to: Option<i64>) {
        if let Some(from) = from {
            let p = self.bind(Param::Int(from));
            self.conds.push(format!("{column} >= {p}"));
        }
        if let Some(to) = to {
            let p = self.bind(Param::Int(to));
            self.conds.push(format!("{column} < {p}"));
        }
    }

    fn after(&mut self, column: &str, after: Option<&(i64, String)>) {
        if let Some((ms, id)) = after {
            let ms = self.bind(Param::Int(*ms));
            let id = self.bind(Param::Text(id.clone()));
            self.conds.push(format!("({column}, id) > ({ms}, {id})"));
        }
    }

    fn finish(mut self, select: &str, order: &str, limit: usize) -> (String, Vec<Param>) {
        let limit = self.bind(Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        let filter = if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        };
        (
            format!("{select} FROM instances{filter} ORDER BY {order} LIMIT {limit}"),
            self.params,
        )
    }
}

/// An upper bound of ids starting with `prefix`, so the id index serves the prefix filter (the
/// exact test is `substr`).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `SELECT record ...` for [`InstanceQuery`], in (created_ms, id) order.
pub(crate) fn instance_query(q: &InstanceQuery, placeholder: Placeholder) -> (String, Vec<Param>) {
    let mut b = Builder::new(placeholder);
    b.statuses(&q.statuses);
    b.range("created_ms", q.created_from, q.created_to);
    if let Some(prefix) = q.prefix.as_deref().filter(|p| !p.is_empty()) {
        let p = b.bind(Param::Text(prefix.to_owned()));
        b.conds.push(format!("id >= {p}"));
        if let Some(end) = prefix_end(prefix) {
            let e = b.bind(Param::Text(end));
            b.conds.push(format!("id < {e}"));
        }
        b.conds.push(format!("substr(id, 1, length({p})) = {p}"));
    }
    b.after("created_ms", q.after.as_ref());
    b.finish("SELECT record", "created_ms, id", q.limit)
}

/// `SELECT completed_ms, id ...` for [`CompletedQuery`], in (completed_ms, id) order.
pub(crate) fn completed_query(
    q: &CompletedQuery,
    placeholder: Placeholder,
) -> (String, Vec<Param>) {
    let mut b = Builder::new(placeholder);
    b.conds.push("completed_ms IS NOT NULL".into());
    // Only finished instances have a completion time, so without a status filter there is no
    // status condition: one would lead the planner to the status index and a sort of every
    // finished instance instead of walking the completion-time index.
    if !q.statuses.is_empty() {
        b.statuses(&q.terminal_statuses());
    }
    b.range("completed_ms", q.completed_from, q.completed_to);
    b.after("completed_ms", q.after.as_ref());
    b.finish("SELECT completed_ms, id", "completed_ms, id", q.limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_bind_every_value() {
        let q = InstanceQuery {
            statuses: vec![1, 3],
            created_from: Some(5),
            prefix: Some("ab".into()),
            after: Some((7, "abc".into())),
            limit: 10,
            ..Default::default()
        };
        let (sql, params) = instance_query(&q, |n| format!("${n}"));
        assert_eq!(
            sql,
            "SELECT record FROM instances WHERE status IN ($1, $2) AND created_ms >= $3 AND id >= $4 AND id < $5 AND substr(id, 1, length($4)) = $4 AND (created_ms, id) > ($6, $7) ORDER BY created_ms, id LIMIT $8"
        );
        assert_eq!(params.len(), 8);
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
    }
}
