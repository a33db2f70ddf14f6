//! Conditions, as TagoIO's actions have them: what the items of a message
//! or of a stored batch must hold for an action to run (`condition`), or to
//! unlock it again (`unlock`).
//!
//! A condition names a variable and a test: a comparison (`<`, `>`, `=`,
//! `!=`, `<=`, `>=`), `between` two values (inclusive) or `any` value. The
//! comparison is made in the type of the condition's value, or in the type
//! `field` forces (`number`, `string`, `boolean`), into which the item's
//! value is converted first; an item whose value cannot be is never met.

use std::cmp::Ordering;

use serde_json::{json, Value};

/// One condition: `{ variable, op, value, field }`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    /// Compared without regard to ASCII case, since stored variables are
    /// lower-cased.
    pub variable: String,
    pub test: Test,
    /// `field`, when given: the type the comparison is made in. The test's
    /// values are already of that type (converted when the file was read).
    pub field: Option<Field>,
}

/// What a condition tests an item's value with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test {
    /// `op = "any"`: any value, or none (new data arrived).
    Any,
    /// `op` one of `<`, `>`, `=`, `!=`, `<=`, `>=` against `value`.
    Compare(Op, ConditionValue),
    /// `op = "between"`, `value = [low, high]`: both ends included.
    Between(ConditionValue, ConditionValue),
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Lt,
    Gt,
    Eq,
    Ne,
    Le,
    Ge,
}

impl Op {
    /// As written in the file: `<`, `>`, `=`, `!=`, `<=`, `>=`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Le => "<=",
            Op::Ge => ">=",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            ">" => Op::Gt,
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            "<=" => Op::Le,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    fn holds(self, ordering: Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Lt => ordering == Less,
            Op::Gt => ordering == Greater,
            Op::Eq => ordering == Equal,
            Op::Ne => ordering != Equal,
            Op::Le => ordering != Greater,
            Op::Ge => ordering != Less,
        }
    }
}

/// A value a condition compares with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConditionValue {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl ConditionValue {
    pub(crate) fn to_json(&self) -> Value {
        match self {
            ConditionValue::Number(n) => json!(n),
            ConditionValue::Text(s) => json!(s),
            ConditionValue::Bool(b) => json!(b),
        }
    }
}

/// `field`: the type a comparison is forced into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Number,
    String,
    Boolean,
}

impl Field {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Field::Number => "number",
            Field::String => "string",
            Field::Boolean => "boolean",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Field> {
        Some(match s {
            "number" => Field::Number,
            "string" => Field::String,
            "boolean" => Field::Boolean,
            _ => return None,
        })
    }
}

impl Condition {
    /// Whether one data item (in its JSON form) meets the condition: its
    /// `variable` is the condition's (ignoring ASCII case) and its value
    /// passes the test.
    ///
    /// Without `field`, numbers compare numerically (a numeric string counts
    /// as a number), strings as strings, booleans with `=` and `!=` only
    /// (`"true"` and `"false"` count as booleans); a value of another type
    /// than the condition's does not match. With `field = "string"` a number
    /// or boolean value is compared as its text (`21.5` as `"21.5"`).
    pub(crate) fn matches(&self, item: &Value) -> bool {
        let same_variable = item
            .get("variable")
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(&self.variable));
        if !same_variable {
            return false;
        }
        if self.test == Test::Any {
            return true;
        }
        let Some(value) = item.get("value") else {
            return false;
        };
        match &self.test {
            Test::Any => true,
            // A boolean is equal or not; it has no order.
            Test::Compare(op, ConditionValue::Bool(_)) if !matches!(op, Op::Eq | Op::Ne) => false,
            Test::Compare(op, want) => self.compare(value, want).is_some_and(|o| op.holds(o)),
            Test::Between(low, high) => {
                self.compare(value, low)
                    .is_some_and(|o| o != Ordering::Less)
                    && self
                        .compare(value, high)
                        .is_some_and(|o| o != Ordering::Greater)
            }
        }
    }

    /// Whether any of the items meets it.
    pub(crate) fn matches_any(&self, items: &[Value]) -> bool {
        items.iter().any(|item| self.matches(item))
    }

    /// How an item's value compares with `want`, in `want`'s type; `None`
    /// when the value has no form in that type. Booleans are only equal
    /// (`Equal`) or not (`Greater`).
    fn compare(&self, have: &Value, want: &ConditionValue) -> Option<Ordering> {
        match want {
            ConditionValue::Number(want) => number_of(have)?.partial_cmp(want),
            ConditionValue::Text(want) => {
                let have = match have {
                    Value::String(s) => s.clone(),
                    Value::Number(n) if self.field.is_some() => n.to_string(),
                    Value::Bool(b) if self.field.is_some() => b.to_string(),
                    _ => return None,
                };
                Some(have.as_str().cmp(want.as_str()))
            }
            ConditionValue::Bool(want) => {
                let have = match have {
                    Value::Bool(b) => *b,
                    Value::String(s) if s == "true" => true,
                    Value::String(s) if s == "false" => false,
                    _ => return None,
                };
                Some(if have == *want {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                })
            }
        }
    }

    /// The condition as the definition JSON shows it, in the file's terms.
    pub(crate) fn to_json(&self) -> Value {
        let mut c = json!({"variable": self.variable});
        match &self.test {
            Test::Any => c["op"] = json!("any"),
            Test::Compare(op, value) => {
                c["op"] = json!(op.as_str());
                c["value"] = value.to_json();
            }
            Test::Between(low, high) => {
                c["op"] = json!("between");
                c["value"] = json!([low.to_json(), high.to_json()]);
            }
        }
        if let Some(field) = self.field {
            c["field"] = json!(field.as_str());
        }
        c
    }
}

/// An item value as a finite number: a number, or a string that reads as
/// one (surrounding spaces aside).
fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

/// Whether every condition is met by some item of `items` (each by its own
/// item; an empty list always holds).
pub(crate) fn all_hold(conditions: &[Condition], items: &[Value]) -> bool {
    conditions.iter().all(|c| c.matches_any(items))
}
