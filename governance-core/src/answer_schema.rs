//! JSON Schemas for structured answers: derived (with `schemars`) from the very type an answer
//! is parsed into, then made into a schema OpenAI's / OpenRouter's **strict** structured-output
//! mode accepts ([`strict_schema`]):
//!
//! - every object has `additionalProperties: false` and lists **every** property in `required`;
//!   a property that was optional becomes nullable (`"type": ["string", "null"]`, or an
//!   `anyOf` with `{"type": "null"}`), so "absent" is said as `null`;
//! - `$ref`s are inlined (and `$defs` dropped); `oneOf` becomes `anyOf`;
//! - only the keywords strict mode accepts everywhere are kept: `type`, `properties`,
//!   `required`, `additionalProperties`, `items`, `enum`, `const`, `anyOf`, `description`
//!   (so `format`, `minimum`, `maximum`, `title`, `default`, `$schema`, … are dropped);
//! - a type strict mode cannot express (a map without fixed properties, a recursive type, an
//!   `allOf` of several parts) is an error, never a silently loose schema.
//!
//! [`check_strict`] checks those rules on a schema; [`conforms`] checks a value against a
//! strict schema (used by tests to prove answers have the asked shape).

use std::sync::Arc;

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::llm::ResponseFormat;

/// The keywords a strict schema may use.
pub const STRICT_KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "anyOf",
    "description",
];

/// How deep `$ref`s may nest before the schema counts as recursive.
const MAX_DEPTH: usize = 32;

/// The schemars schema of `T` (JSON Schema 2020-12, subschemas inlined where possible), as
/// read when deserializing.
#[must_use]
pub fn schema_of<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// The strict `response_format` for answers of type `T`, named `name`
/// (`^[a-zA-Z0-9_-]{1,64}$`). Falls back to JSON mode ([`ResponseFormat::JsonObject`]), with a
/// warning, when `T`'s schema cannot be made strict.
#[must_use]
pub fn strict_format<T: JsonSchema>(name: &str) -> ResponseFormat {
    match strict_schema(&schema_of::<T>()) {
        Ok(schema) => ResponseFormat::JsonSchema {
            name: name.to_owned(),
            schema: Arc::new(schema),
            strict: true,
        },
        Err(e) => {
            tracing::warn!(schema = name, error = %e, "no strict schema; asking for JSON mode");
            ResponseFormat::JsonObject
        }
    }
}

/// `schema` made into one strict structured-output mode accepts (see the module docs).
///
/// # Errors
/// [`Error::InvalidInput`] naming what strict mode cannot express.
pub fn strict_schema(schema: &Value) -> Result<Value> {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .cloned()
        .unwrap_or(Value::Null);
    let out = strict_node(schema, &defs, 0)?;
    check_strict(&out).map_err(|e| Error::InvalidInput(format!("strict schema: {e}")))?;
    Ok(out)
}

fn bad(what: impl Into<String>) -> Error {
    Error::InvalidInput(format!("strict schema: {}", what.into()))
}

fn resolve<'a>(reference: &str, defs: &'a Value) -> Result<&'a Value> {
    let name = reference
        .strip_prefix("#/$defs/")
        .or_else(|| reference.strip_prefix("#/definitions/"))
        .ok_or_else(|| bad(format!("unsupported $ref {reference:?}")))?;
    defs.get(name)
        .ok_or_else(|| bad(format!("$ref {reference:?} names no definition")))
}

fn strict_node(node: &Value, defs: &Value, depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(bad("nested too deep (a recursive type?)"));
    }
    let Value::Object(map) = node else {
        return Err(bad(format!("a schema must be an object, got {node}")));
    };
    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
        let mut target = strict_node(resolve(reference, defs)?, defs, depth + 1)?;
        if let (Some(d), Some(t)) = (map.get("description"), target.as_object_mut()) {
            t.insert("description".into(), d.clone());
        }
        return Ok(target);
    }
    if let Some(all) = map.get("allOf") {
        return match all.as_array().map(Vec::as_slice) {
            Some([only]) => strict_node(only, defs, depth + 1),
            _ => Err(bad("allOf of several parts")),
        };
    }
    let mut out = Map::new();
    for (k, v) in map {
        match k.as_str() {
            "type" | "enum" | "const" | "description" => {
                out.insert(k.clone(), v.clone());
            }
            "anyOf" | "oneOf" => {
                let parts = v
                    .as_array()
                    .ok_or_else(|| bad(format!("{k} must be an array")))?
                    .iter()
                    .map(|p| strict_node(p, defs, depth + 1))
                    .collect::<Result<Vec<_>>>()?;
                out.insert("anyOf".into(), Value::Array(parts));
            }
            "items" => {
                out.insert("items".into(), strict_node(v, defs, depth + 1)?);
            }
            // rebuilt below; everything else strict mode does not take
            _ => {}
        }
    }
    if let Some(props) = map.get("properties") {
        let props = props
            .as_object()
            .ok_or_else(|| bad("properties must be an object"))?;
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut strict_props = Map::new();
        for (name, p) in props {
            let s = strict_node(p, defs, depth + 1)?;
            let s = if required.contains(&name.as_str()) {
                s
            } else {
                nullable(s)
            };
            strict_props.insert(name.clone(), s);
        }
        out.insert(
            "required".into(),
            Value::Array(strict_props.keys().cloned().map(Value::String).collect()),
        );
        out.insert("properties".into(), Value::Object(strict_props));
        out.insert("additionalProperties".into(), Value::Bool(false));
    } else if has_type(&out, "object") {
        return Err(bad(
            "an object without fixed properties (a map) cannot be strict",
        ));
    }
    Ok(Value::Object(out))
}

/// `schema` that also accepts `null`.
fn nullable(mut schema: Value) -> Value {
    let Value::Object(map) = &mut schema else {
        return schema;
    };
    if let Some(e) = map.get_mut("enum").and_then(Value::as_array_mut)
        && !e.contains(&Value::Null)
    {
        e.push(Value::Null);
    }
    match map.get_mut("type") {
        Some(Value::String(t)) if t != "null" => {
            let t = std::mem::take(t);
            map.insert("type".into(), serde_json::json!([t, "null"]));
            schema
        }
        Some(Value::Array(types)) => {
            if !types.iter().any(|t| t == "null") {
                types.push(Value::from("null"));
            }
            schema
        }
        Some(_) => schema,
        None => match map.get_mut("anyOf").and_then(Value::as_array_mut) {
            Some(parts) => {
                if !parts
                    .iter()
                    .any(|p| p.get("type") == Some(&Value::from("null")))
                {
                    parts.push(serde_json::json!({"type": "null"}));
                }
                schema
            }
            None => serde_json::json!({"anyOf": [schema, {"type": "null"}]}),
        },
    }
}

fn has_type(node: &Map<String, Value>, t: &str) -> bool {
    match node.get("type") {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(a)) => a.iter().any(|x| x == t),
        _ => false,
    }
}

/// Checks the rules of strict mode on `schema` (see the module docs): the root is an object
/// type; every node uses only [`STRICT_KEYWORDS`] and says its `type` (or an `anyOf`); every
/// object lists all its properties in `required` and has `additionalProperties: false`; every
/// array has `items`.
///
/// # Errors
/// The first rule broken, with the JSON pointer of the node.
pub fn check_strict(schema: &Value) -> std::result::Result<(), String> {
    let root = schema.as_object().ok_or("the root is not an object")?;
    if !has_type(root, "object") {
        return Err("the root must be of type object".into());
    }
    check_node(schema, "")
}

fn check_node(node: &Value, at: &str) -> std::result::Result<(), String> {
    let map = node
        .as_object()
        .ok_or_else(|| format!("{at}: not a schema object"))?;
    if let Some(k) = map.keys().find(|k| !STRICT_KEYWORDS.contains(&k.as_str())) {
        return Err(format!("{at}: keyword {k:?} is not allowed in strict mode"));
    }
    if !["type", "anyOf", "enum", "const"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return Err(format!("{at}: no type, anyOf, enum or const"));
    }
    if let Some(parts) = map.get("anyOf") {
        let parts = parts
            .as_array()
            .ok_or(format!("{at}/anyOf: not an array"))?;
        for (i, p) in parts.iter().enumerate() {
            check_node(p, &format!("{at}/anyOf/{i}"))?;
        }
    }
    if has_type(map, "array") {
        let items = map
            .get("items")
            .ok_or_else(|| format!("{at}: an array without items"))?;
        check_node(items, &format!("{at}/items"))?;
    }
    if has_type(map, "object") {
        let props = map
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{at}: an object without properties"))?;
        if map.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Err(format!("{at}: additionalProperties must be false"));
        }
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{at}: no required list"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for name in props.keys() {
            if !required.contains(&name.as_str()) {
                return Err(format!("{at}: property {name:?} is not required"));
            }
        }
        if let Some(extra) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(format!("{at}: required {extra:?} is no property"));
        }
        for (name, p) in props {
            check_node(p, &format!("{at}/properties/{name}"))?;
        }
    }
    Ok(())
}

/// Checks that `value` has the shape a strict `schema` asks for: types, required properties,
/// no others, array items, `enum`, `const`, `anyOf`.
///
/// # Errors
/// The first mismatch, with the JSON pointer of the value.
pub fn conforms(schema: &Value, value: &Value) -> std::result::Result<(), String> {
    conforms_at(schema, value, "")
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn conforms_at(schema: &Value, value: &Value, at: &str) -> std::result::Result<(), String> {
    let Some(map) = schema.as_object() else {
        return Err(format!("{at}: not a schema object"));
    };
    if let Some(parts) = map.get("anyOf").and_then(Value::as_array)
        && !parts.iter().any(|p| conforms_at(p, value, at).is_ok())
    {
        return Err(format!("{at}: matches no anyOf alternative"));
    }
    if let Some(allowed) = map.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(c) = map.get("const")
        && c != value
    {
        return Err(format!("{at}: {value} is not {c}"));
    }
    let ok = match map.get("type") {
        None => true,
        Some(Value::String(t)) => type_matches(t, value),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .any(|t| type_matches(t, value)),
        Some(_) => false,
    };
    if !ok {
        return Err(format!("{at}: {value} is not of type {}", map["type"]));
    }
    if let (Value::Object(obj), Some(props)) =
        (value, map.get("properties").and_then(Value::as_object))
    {
        for name in map
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(name) {
                return Err(format!("{at}: property {name:?} is missing"));
            }
        }
        if map.get("additionalProperties") == Some(&Value::Bool(false))
            && let Some(extra) = obj.keys().find(|k| !props.contains_key(*k))
        {
            return Err(format!("{at}: property {extra:?} is not allowed"));
        }
        for (name, v) in obj {
            if let Some(p) = props.get(name) {
                conforms_at(p, v, &format!("{at}/{name}"))?;
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, map.get("items")) {
        for (i, v) in items.iter().enumerate() {
            conforms_at(item_schema, v, &format!("{at}/{i}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
