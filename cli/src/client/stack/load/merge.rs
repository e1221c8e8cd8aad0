//! Several `-c` files merged as Compose merges an override file into the files before it:
//! mappings merge key by key (the later file wins a scalar), `environment` and `labels`
//! merge as maps whether written as maps or lists, `ports` are appended (an identical
//! entry once), `volumes` merge by target, `secrets` and `configs` by source, `networks`
//! by name; any other list (`command`, `entrypoint`, `healthcheck.test`, constraints, ...)
//! is replaced. A value tagged `!reset` removes the key, `!override` replaces it whole.

use yaml_serde::{Mapping, Value};

/// Merges `over` into `base` (two whole files, interpolated), the later file winning.
pub fn merge_files(base: Value, over: Value) -> Result<Value, String> {
    let (Value::Mapping(mut base), Value::Mapping(over)) = (base, over) else {
        return Err(
            "a Compose file must be a mapping of top-level keys (services, networks, ...)".into(),
        );
    };
    for (key, value) in over {
        if key.as_str() == Some("services") {
            match base.get_mut(&key) {
                Some(slot) => *slot = merge_services(Some(std::mem::take(slot)), value)?,
                None => {
                    base.insert(key, merge_services(None, value)?);
                }
            }
        } else {
            merge_key(&mut base, key, value, &|_, b, o| Ok(merge_generic(b, o)))?;
        }
    }
    Ok(Value::Mapping(base))
}

/// A merge rule for the value under one key.
type Rule = dyn Fn(&str, Value, Value) -> Result<Value, String>;

/// Puts `value` under `key` in `base`, following its tag or `rule`.
fn merge_key(base: &mut Mapping, key: Value, value: Value, rule: &Rule) -> Result<(), String> {
    match value {
        Value::Tagged(t) if t.tag == "reset" => {
            base.shift_remove(&key);
        }
        Value::Tagged(t) if t.tag == "override" => {
            base.insert(key, t.value);
        }
        value => {
            let name = key.as_str().unwrap_or_default().to_string();
            // In place, so the merged file keeps the first file's order.
            match base.get_mut(&key) {
                Some(slot) => *slot = rule(&name, std::mem::take(slot), value)?,
                None => {
                    base.insert(key, value);
                }
            }
        }
    }
    Ok(())
}

fn merge_generic(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Mapping(mut b), Value::Mapping(o)) => {
            for (k, v) in o {
                // The generic rule never fails.
                let _ = merge_key(&mut b, k, v, &|_, b, o| Ok(merge_generic(b, o)));
            }
            Value::Mapping(b)
        }
        (_, over) => over,
    }
}

fn merge_services(base: Option<Value>, over: Value) -> Result<Value, String> {
    let mut services = match base {
        Some(Value::Mapping(m)) => m,
        None | Some(Value::Null) => Mapping::new(),
        Some(_) => return Err("services must be a mapping of service names".into()),
    };
    let over = match over {
        Value::Mapping(m) => m,
        Value::Null => return Ok(Value::Mapping(services)),
        _ => return Err("services must be a mapping of service names".into()),
    };
    for (name, service) in over {
        merge_key(&mut services, name, service, &|name, b, o| {
            merge_service(name, b, o)
        })?;
    }
    Ok(Value::Mapping(services))
}

fn merge_service(name: &str, base: Value, over: Value) -> Result<Value, String> {
    let (Value::Mapping(mut base), Value::Mapping(over)) = (base, over) else {
        return Err(format!("services.{name} must be a mapping"));
    };
    for (key, value) in over {
        merge_key(&mut base, key, value, &service_rule)?;
    }
    Ok(Value::Mapping(base))
}

fn service_rule(key: &str, base: Value, over: Value) -> Result<Value, String> {
    Ok(match key {
        "environment" | "labels" | "extra_hosts" | "sysctls" => {
            Value::Mapping(merge_maps(as_map(base, '='), as_map(over, '=')))
        }
        "networks" => Value::Mapping(merge_maps(as_map(base, '\0'), as_map(over, '\0'))),
        "ports" | "env_file" | "dns" | "dns_search" | "expose" => append_unique(base, over),
        "volumes" => merge_keyed(base, over, volume_target),
        "secrets" | "configs" => merge_keyed(base, over, file_source),
        "deploy" => match (base, over) {
            (Value::Mapping(mut b), Value::Mapping(o)) => {
                for (k, v) in o {
                    merge_key(&mut b, k, v, &|k, b, o| {
                        Ok(if k == "labels" {
                            Value::Mapping(merge_maps(as_map(b, '='), as_map(o, '=')))
                        } else {
                            merge_generic(b, o)
                        })
                    })?;
                }
                Value::Mapping(b)
            }
            (_, over) => over,
        },
        _ => merge_generic(base, over),
    })
}

/// A list or mapping as a mapping: `KEY=VALUE` items (split at `sep`) or bare names
/// (null values). Anything else is kept as it is, for the model to refuse.
fn as_map(value: Value, sep: char) -> Mapping {
    match value {
        Value::Mapping(m) => m,
        Value::Sequence(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => match s.split_once(sep) {
                    Some((k, v)) if sep != '\0' => {
                        (Value::String(k.to_string()), Value::String(v.to_string()))
                    }
                    _ => (Value::String(s), Value::Null),
                },
                other => (other, Value::Null),
            })
            .collect(),
        _ => Mapping::new(),
    }
}

fn merge_maps(mut base: Mapping, over: Mapping) -> Mapping {
    for (k, v) in over {
        let _ = merge_key(&mut base, k, v, &|_, b, o| Ok(merge_generic(b, o)));
    }
    base
}

fn append_unique(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Sequence(mut b), Value::Sequence(o)) => {
            for item in o {
                if !b.contains(&item) {
                    b.push(item);
                }
            }
            Value::Sequence(b)
        }
        (_, over) => over,
    }
}

/// Merges two lists item by item, an item of `over` replacing the one of `base` with the
/// same key.
fn merge_keyed(base: Value, over: Value, key: fn(&Value) -> Option<String>) -> Value {
    match (base, over) {
        (Value::Sequence(mut b), Value::Sequence(o)) => {
            for item in o {
                let k = key(&item);
                match b.iter().position(|x| k.is_some() && key(x) == k) {
                    Some(i) => b[i] = item,
                    None => b.push(item),
                }
            }
            Value::Sequence(b)
        }
        (_, over) => over,
    }
}

/// A volume's target: `SOURCE:TARGET[:MODE]`, `TARGET`, or the long syntax's `target`.
fn volume_target(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            Some(parts.get(1).unwrap_or(&parts[0]).to_string())
        }
        Value::Mapping(m) => m.get("target")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// A secret's or config's source: the short syntax's name or the long syntax's `source`.
fn file_source(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Mapping(m) => m.get("source")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Resolves the tags left after merging (or in a single file): `!reset` removes its key,
/// `!override` is its value.
pub fn resolve_tags(value: &mut Value) {
    match value {
        Value::Mapping(m) => {
            m.retain(|_, v| !matches!(v, Value::Tagged(t) if t.tag == "reset"));
            for v in m.values_mut() {
                resolve_tags(v);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(resolve_tags),
        Value::Tagged(t) if t.tag == "override" => {
            let mut inner = std::mem::take(&mut t.value);
            resolve_tags(&mut inner);
            *value = inner;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        yaml_serde::from_str(s).unwrap()
    }

    fn merged(base: &str, over: &str) -> Value {
        let mut v = merge_files(yaml(base), yaml(over)).unwrap();
        resolve_tags(&mut v);
        v
    }

    #[test]
    fn an_override_file_merges_as_compose_merges_it() {
        let base = "
services:
  web:
    image: web:1
    command: [serve, --port, '80']
    environment: [A=1, B=2]
    labels: {tier: web}
    ports: ['80:80']
    volumes: ['data:/data', '/etc/web:/etc/web:ro']
    secrets: [key, {source: cert, target: cert.pem}]
    networks: [front]
    deploy:
      replicas: 2
      labels: [x=1]
      placement: {constraints: [node.role==worker]}
      resources: {limits: {memory: 64M}}
  db:
    image: db:1
networks:
  front: {attachable: true}
";
        let over = "
services:
  web:
    image: web:2
    command: [serve]
    environment: {B: '3', C: '4'}
    ports: ['80:80', '443:443']
    volumes: [{type: bind, source: /srv/data, target: /data}]
    secrets: [{source: key, target: key.txt}]
    networks: {back: {aliases: [api]}}
    deploy:
      replicas: 3
      labels: {y: '2'}
      placement: {constraints: [node.role==manager]}
      resources: {limits: {cpus: '0.5'}}
  cache:
    image: cache:1
networks:
  back: {}
";
        let v = merged(base, over);
        let web = &v["services"]["web"];
        assert_eq!(web["image"], "web:2");
        assert_eq!(web["command"], yaml("[serve]"));
        assert_eq!(web["environment"], yaml("{A: '1', B: '3', C: '4'}"));
        assert_eq!(web["labels"], yaml("{tier: web}"));
        assert_eq!(web["ports"], yaml("['80:80', '443:443']"));
        assert_eq!(
            web["volumes"],
            yaml("[{type: bind, source: /srv/data, target: /data}, '/etc/web:/etc/web:ro']")
        );
        assert_eq!(
            web["secrets"],
            yaml("[{source: key, target: key.txt}, {source: cert, target: cert.pem}]")
        );
        assert_eq!(
            web["networks"],
            yaml("{front: null, back: {aliases: [api]}}")
        );
        let deploy = &web["deploy"];
        assert_eq!(deploy["replicas"], 3);
        assert_eq!(deploy["labels"], yaml("{x: '1', y: '2'}"));
        assert_eq!(
            deploy["placement"]["constraints"],
            yaml("[node.role==manager]")
        );
        assert_eq!(
            deploy["resources"]["limits"],
            yaml("{memory: 64M, cpus: '0.5'}")
        );
        assert_eq!(v["services"]["db"]["image"], "db:1");
        assert_eq!(v["services"]["cache"]["image"], "cache:1");
        assert_eq!(v["networks"], yaml("{front: {attachable: true}, back: {}}"));
    }

    #[test]
    fn reset_and_override_tags_remove_or_replace_what_came_before() {
        let base =
            "services:\n  web:\n    image: web\n    ports: ['80:80']\n    environment: {A: '1'}\n";
        let over = "services:\n  web:\n    ports: !reset []\n    environment: !override {B: '2'}\n";
        let v = merged(base, over);
        let web = &v["services"]["web"];
        assert!(web.get("ports").is_none());
        assert_eq!(web["environment"], yaml("{B: '2'}"));
        // In a single file, the tags resolve too.
        let mut single = yaml("services:\n  web:\n    image: !override web\n    user: !reset x\n");
        resolve_tags(&mut single);
        assert_eq!(single, yaml("services:\n  web:\n    image: web\n"));
    }

    #[test]
    fn a_file_that_is_not_a_mapping_is_refused() {
        let e = merge_files(yaml("services: {}"), yaml("[a]")).unwrap_err();
        assert!(e.contains("must be a mapping"), "{e}");
    }
}
