//! List queries of `GET /runs` and `GET /flows`: repeated `property` filters (AND), `orderby`,
//! `limit`, `continuationToken` and `count` (api-facts §3.2).

use std::cmp::Ordering;

use serde_json::Value;

/// Percent-decode a query component (`+` is a space, as in form encoding).
pub(crate) fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode a query component.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// `name=value` pairs of a raw query string, decoded, in order.
pub(crate) fn pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// One `property=path OP value[,value...]`.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    path: Vec<String>,
    op: Op,
    values: Vec<String>,
}

impl Filter {
    pub fn parse(expr: &str) -> Result<Filter, String> {
        let ops: [(&str, Op); 6] = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        // The leftmost operator wins; at the same position the two-character one.
        let mut best: Option<(usize, &str, Op)> = None;
        for (tok, op) in ops {
            if let Some(i) = expr.find(tok)
                && best.is_none_or(|(j, t, _)| i < j || (i == j && tok.len() > t.len()))
            {
                best = Some((i, tok, op));
            }
        }
        let (i, tok, op) = best.ok_or_else(|| {
            format!(
                "invalid property filter '{expr}': expected path==value, path>value or path<value"
            )
        })?;
        let path = expr[..i].trim();
        let value = expr[i + tok.len()..].trim();
        if path.is_empty() {
            return Err(format!("invalid property filter '{expr}': empty path"));
        }
        let values: Vec<String> = value.split(',').map(|v| v.trim().to_string()).collect();
        if values.iter().all(String::is_empty) {
            return Err(format!("invalid property filter '{expr}': empty value"));
        }
        Ok(Filter {
            path: path.split('.').map(str::to_string).collect(),
            op,
            values,
        })
    }

    pub fn matches(&self, item: &Value) -> bool {
        let mut found = Vec::new();
        resolve(item, &self.path, &mut found);
        let any = found.iter().any(|v| {
            self.values.iter().any(|want| {
                let ord = compare(v, want);
                match self.op {
                    Op::Eq => ord == Some(Ordering::Equal),
                    Op::Ne => ord != Some(Ordering::Equal),
                    Op::Gt => ord == Some(Ordering::Greater),
                    Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                    Op::Lt => ord == Some(Ordering::Less),
                    Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                }
            })
        });
        // `!=` holds when no value at the path equals any listed one.
        if self.op == Op::Ne {
            !found.iter().any(|v| {
                self.values
                    .iter()
                    .any(|w| compare(v, w) == Some(Ordering::Equal))
            })
        } else {
            any
        }
    }
}

/// Values at a dotted path; a segment ending in `[]` fans out over an array.
fn resolve<'a>(v: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    let Some((head, rest)) = path.split_first() else {
        match v {
            Value::Array(a) => out.extend(a.iter()),
            other => out.push(other),
        }
        return;
    };
    let (name, fan) = match head.strip_suffix("[]") {
        Some(n) => (n, true),
        None => (head.as_str(), false),
    };
    let Some(child) = v.get(name) else {
        return;
    };
    if fan {
        if let Value::Array(a) = child {
            for c in a {
                resolve(c, rest, out);
            }
        }
    } else {
        resolve(child, rest, out);
    }
}

/// Compare a JSON value with a query value: numerically when both are numbers, else as
/// case-insensitive strings (statuses are documented in two cases, api-facts §3.2).
fn compare(v: &Value, want: &str) -> Option<Ordering> {
    match v {
        Value::Number(n) => {
            let a = n.as_f64()?;
            match want.parse::<f64>() {
                Ok(b) => a.partial_cmp(&b),
                Err(_) => Some(n.to_string().cmp(&want.to_string())),
            }
        }
        Value::String(s) => {
            if let (Ok(a), Ok(b)) = (s.parse::<f64>(), want.parse::<f64>()) {
                return a.partial_cmp(&b);
            }
            Some(s.to_ascii_lowercase().cmp(&want.to_ascii_lowercase()))
        }
        Value::Bool(b) => Some(b.to_string().cmp(&want.to_ascii_lowercase())),
        _ => None,
    }
}

/// Sort keys of `orderby=[+|-]path[,...]`.
#[derive(Debug, Clone)]
pub(crate) struct OrderBy(Vec<(Vec<String>, bool)>);

impl OrderBy {
    pub fn parse(s: &str) -> Result<OrderBy, String> {
        let mut keys = Vec::new();
        for part in s.split(',') {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let (desc, path) = match p.as_bytes()[0] {
                b'-' => (true, &p[1..]),
                b'+' => (false, &p[1..]),
                _ => (false, p),
            };
            if path.trim().is_empty() {
                return Err(format!("invalid orderby '{s}'"));
            }
            keys.push((path.trim().split('.').map(str::to_string).collect(), desc));
        }
        if keys.is_empty() {
            return Err(format!("invalid orderby '{s}'"));
        }
        Ok(OrderBy(keys))
    }

    /// `-createdAt`: newest first (the emulator's default order).
    pub fn newest_first() -> OrderBy {
        OrderBy(vec![(vec!["createdAt".to_string()], true)])
    }

    pub fn cmp(&self, a: &Value, b: &Value) -> Ordering {
        for (path, desc) in &self.0 {
            let mut va = Vec::new();
            let mut vb = Vec::new();
            resolve(a, path, &mut va);
            resolve(b, path, &mut vb);
            let o = cmp_values(va.first().copied(), vb.first().copied());
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

fn cmp_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => {
            x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase())
        }
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

/// A parsed list query.
#[derive(Debug, Clone)]
pub(crate) struct ListQuery {
    pub filters: Vec<Filter>,
    pub order: OrderBy,
    pub limit: usize,
    pub offset: usize,
    pub count: bool,
    /// The query without paging state, re-used in continuation tokens.
    pub canonical: String,
}

/// A continuation token: hex of `v1|offset|canonical query`, self-contained so that
/// `_links.next.href` (`/runs?continuationToken=...`) alone fetches the next page.
pub(crate) fn make_token(offset: usize, canonical: &str) -> String {
    let raw = format!("v1|{offset}|{canonical}");
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn read_token(t: &str) -> Option<(usize, String)> {
    if !t.len().is_multiple_of(2) || t.is_empty() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let mut it = s.splitn(3, '|');
    if it.next()? != "v1" {
        return None;
    }
    let off = it.next()?.parse().ok()?;
    Some((off, it.next()?.to_string()))
}

impl ListQuery {
    pub fn parse(raw: &str, default_limit: u32) -> Result<ListQuery, String> {
        let ps = pairs(raw);
        if let Some((_, tok)) = ps.iter().find(|(k, _)| k == "continuationToken") {
            let (offset, canonical) =
                read_token(tok).ok_or_else(|| format!("invalid continuationToken '{tok}'"))?;
            let mut q = Self::parse_params(&pairs(&canonical), default_limit)?;
            q.offset = offset;
            // A `count=true` next to a token still counts.
            if ps
                .iter()
                .any(|(k, v)| k == "count" && v.eq_ignore_ascii_case("true"))
            {
                q.count = true;
            }
            return Ok(q);
        }
        Self::parse_params(&ps, default_limit)
    }

    fn parse_params(ps: &[(String, String)], default_limit: u32) -> Result<ListQuery, String> {
        let mut filters = Vec::new();
        let mut order = None;
        let mut limit = default_limit.max(1) as usize;
        let mut count = false;
        let mut canonical = Vec::new();
        for (k, v) in ps {
            match k.as_str() {
                "property" => {
                    filters.push(Filter::parse(v)?);
                    canonical.push(format!("property={}", encode(v)));
                }
                "orderby" | "orderBy" => {
                    order = Some(OrderBy::parse(v)?);
                    canonical.push(format!("orderby={}", encode(v)));
                }
                "limit" => {
                    limit = v
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            format!("invalid limit '{v}': expected a positive integer")
                        })?;
                    canonical.push(format!("limit={limit}"));
                }
                "count" => count = v.eq_ignore_ascii_case("true"),
                // Unknown parameters (e.g. `start`, `fields`) are ignored.
                _ => {}
            }
        }
        Ok(ListQuery {
            filters,
            order: order.unwrap_or_else(OrderBy::newest_first),
            limit,
            offset: 0,
            count,
            canonical: canonical.join("&"),
        })
    }

    /// Filter, sort and page `items`; returns the page and the next page's token.
    pub fn apply(&self, mut items: Vec<Value>) -> (Vec<Value>, usize, Option<String>) {
        items.retain(|i| self.filters.iter().all(|f| f.matches(i)));
        let total = items.len();
        items.sort_by(|a, b| {
            self.order.cmp(a, b).then_with(|| {
                let ia = a.get("id").and_then(Value::as_str).unwrap_or_default();
                let ib = b.get("id").and_then(Value::as_str).unwrap_or_default();
                ia.cmp(ib)
            })
        });
        let page: Vec<Value> = items
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect();
        let end = self.offset + page.len();
        let next = (end < total).then(|| make_token(end, &self.canonical));
        (page, total, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_and_order() {
        let a = json!({"id": "a", "createdAt": 1, "metrics": {"statusSummary": {"status": "failed"}}, "t": [{"x": 1}, {"x": 5}]});
        let b = json!({"id": "b", "createdAt": 2, "metrics": {"statusSummary": {"status": "success"}}, "t": []});
        let f = Filter::parse("metrics.statusSummary.status==Failed").unwrap();
        assert!(f.matches(&a) && !f.matches(&b));
        let f = Filter::parse("id==b,c").unwrap();
        assert!(!f.matches(&a) && f.matches(&b));
        assert!(Filter::parse("createdAt>1").unwrap().matches(&b));
        assert!(!Filter::parse("createdAt>1").unwrap().matches(&a));
        assert!(Filter::parse("createdAt>=1").unwrap().matches(&a));
        assert!(Filter::parse("t[].x==5").unwrap().matches(&a));
        assert!(!Filter::parse("t[].x==5").unwrap().matches(&b));
        assert!(Filter::parse("nothing").is_err());
        let o = OrderBy::parse("-createdAt").unwrap();
        assert_eq!(o.cmp(&a, &b), Ordering::Greater);
        assert_eq!(decode("a%3D%3Db+c"), "a==b c");
        assert_eq!(decode("100%"), "100%");
        let q = ListQuery::parse("property=id%3D%3Da&limit=1", 100).unwrap();
        let t = make_token(1, &q.canonical);
        let q2 = ListQuery::parse(&format!("continuationToken={t}"), 100).unwrap();
        assert_eq!(q2.offset, 1);
        assert_eq!(q2.limit, 1);
        assert_eq!(q2.filters.len(), 1);
    }
}
