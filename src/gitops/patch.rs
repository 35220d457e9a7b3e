//! The change from one stage to the next as kustomize patches: a JSON patch (RFC 6902) per
//! changed object, `$patch: delete` per removed one.

use serde_json::{Value, json};

/// A key as a JSON pointer segment.
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The JSON patch operations that turn `a` into `b`: maps are compared key by key; lists and
/// scalars are replaced whole.
pub fn diff(a: &Value, b: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<Value>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let p = format!("{path}/{}", escape(k));
                match y.get(k) {
                    None => out.push(json!({"op": "remove", "path": p})),
                    Some(w) => walk(&p, v, w, out),
                }
            }
            for (k, w) in y {
                if !x.contains_key(k) {
                    let p = format!("{path}/{}", escape(k));
                    out.push(json!({"op": "add", "path": p, "value": w}));
                }
            }
        }
        _ if a == b => {}
        _ => out.push(json!({"op": "replace", "path": path, "value": b})),
    }
}

/// Applies operations [`diff`] writes (add, remove, replace of map keys).
#[cfg(test)]
pub fn apply(v: &mut Value, ops: &[Value]) {
    for op in ops {
        let path = op["path"].as_str().unwrap();
        let (parent, last) = path.rsplit_once('/').unwrap();
        let last = last.replace("~1", "/").replace("~0", "~");
        let target = if parent.is_empty() {
            &mut *v
        } else {
            v.pointer_mut(parent).unwrap()
        };
        let m = target.as_object_mut().unwrap();
        match op["op"].as_str().unwrap() {
            "remove" => {
                m.remove(&last);
            }
            _ => {
                m.insert(last, op["value"].clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_then_apply_gives_the_new_value() {
        let a = json!({"metadata": {"labels": {"istio-injection": "enabled", "x/y": "1"}}, "spec": {"l": [1], "v": "1.24.3"}});
        let b = json!({"metadata": {"labels": {"istio.io/rev": "1-26", "x/y": "1"}}, "spec": {"l": [1, 2], "v": "1.26.8", "n": {"k": 1}}});
        let ops = diff(&a, &b);
        let mut c = a.clone();
        apply(&mut c, &ops);
        assert_eq!(c, b);
        assert!(
            ops.iter()
                .any(|o| o["path"] == "/metadata/labels/istio.io~1rev")
        );
        assert!(diff(&b, &b).is_empty());
    }
}
