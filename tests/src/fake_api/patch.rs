//! Patch application: JSON merge patch (also used for strategic-merge and apply patches, which
//! is close enough for the objects controllers write) and RFC 6902 JSON patch.

use serde_json::Value;

/// A patch that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON (or YAML for apply patches).
    #[error("patch body does not parse: {0}")]
    Parse(String),
    /// A JSON patch operation failed.
    #[error("json patch operation {index} ({op}) failed: {why}")]
    Op {
        index: usize,
        op: String,
        why: &'static str,
    },
    /// The content type names no patch format served here.
    #[error("unsupported patch content type {0:?}")]
    ContentType(String),
}

/// Apply `body` of `content_type` to `target`.
pub fn apply(target: &mut Value, content_type: &str, body: &[u8]) -> Result<(), PatchError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    match ct {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            merge(target, &parse_json(body)?);
            Ok(())
        }
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            let patch = match serde_json::from_slice::<Value>(body) {
                Ok(v) => v,
                Err(_) => serde_yaml::from_slice::<Value>(body)
                    .map_err(|e| PatchError::Parse(e.to_string()))?,
            };
            merge(target, &patch);
            Ok(())
        }
        "application/json-patch+json" => json_patch(target, &parse_json(body)?),
        other => Err(PatchError::ContentType(other.to_owned())),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(|e| PatchError::Parse(e.to_string()))
}

/// RFC 7386 merge: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in patch {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch
        .as_array()
        .ok_or(PatchError::Parse("json patch is not an array".into()))?;
    for (index, op) in ops.iter().enumerate() {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let fail = |why| PatchError::Op {
            index,
            op: name.clone(),
            why,
        };
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("no path"))?;
        let value = op.get("value").cloned();
        match name.as_str() {
            "add" | "replace" => {
                let value = value.ok_or_else(|| fail("no value"))?;
                let (parent, key) = split_pointer(path).ok_or_else(|| fail("bad path"))?;
                let parent = target
                    .pointer_mut(&parent)
                    .ok_or_else(|| fail("path not found"))?;
                match parent {
                    Value::Object(m) => {
                        if name == "replace" && !m.contains_key(&key) {
                            return Err(fail("path not found"));
                        }
                        m.insert(key, value);
                    }
                    Value::Array(a) => {
                        if key == "-" {
                            a.push(value);
                        } else {
                            let i: usize = key.parse().map_err(|_| fail("bad index"))?;
                            if name == "replace" && i < a.len() {
                                a[i] = value;
                            } else if name == "add" && i <= a.len() {
                                a.insert(i, value);
                            } else {
                                return Err(fail("index out of range"));
                            }
                        }
                    }
                    _ => return Err(fail("parent is not a container")),
                }
            }
            "remove" => {
                let (parent, key) = split_pointer(path).ok_or_else(|| fail("bad path"))?;
                let parent = target
                    .pointer_mut(&parent)
                    .ok_or_else(|| fail("path not found"))?;
                let removed = match parent {
                    Value::Object(m) => m.remove(&key).is_some(),
                    Value::Array(a) => match key.parse::<usize>() {
                        Ok(i) if i < a.len() => {
                            a.remove(i);
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !removed {
                    return Err(fail("path not found"));
                }
            }
            "test" => {
                if target.pointer(path) != value.as_ref() {
                    return Err(fail("test failed"));
                }
            }
            _ => return Err(fail("unsupported op")),
        }
    }
    Ok(())
}

/// `/a/b/c` into (`/a/b`, `c`), unescaping `~1` and `~0` in the last token.
fn split_pointer(path: &str) -> Option<(String, String)> {
    let (parent, last) = path.rsplit_once('/')?;
    Some((
        parent.to_owned(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_merges_objects_and_null_deletes() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut v, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(v, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }

    #[test]
    fn json_patch_adds_replaces_removes_and_tests() {
        let mut v = json!({"metadata": {"labels": {"a": "1"}}, "l": [1, 2]});
        let p = json!([
            {"op": "add", "path": "/metadata/labels/x~1y", "value": "2"},
            {"op": "replace", "path": "/l/0", "value": 9},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "test", "path": "/l/1", "value": 2},
        ]);
        apply(
            &mut v,
            "application/json-patch+json",
            p.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"labels": {"x/y": "2"}}, "l": [9, 2]})
        );
    }

    #[test]
    fn failed_json_patch_test_is_an_error() {
        let mut v = json!({"a": 1});
        let p = json!([{"op": "test", "path": "/a", "value": 2}]);
        assert!(
            apply(
                &mut v,
                "application/json-patch+json",
                p.to_string().as_bytes()
            )
            .is_err()
        );
    }
}
