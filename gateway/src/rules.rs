//! The route table: every `google.api.http` rule (and its `additional_bindings`) of every
//! service in the descriptor pool, checked at start, ordered so that the most specific
//! template is tried first.

use anyhow::{Context, anyhow, bail};
use http::Method;
use outpost_api::google::api::{HttpRule, http_rule::Pattern};
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value};

use crate::template::PathTemplate;

/// Where the HTTP body goes.
#[derive(Clone, Debug)]
pub enum BodyRule {
    /// No body: the fields not bound by the path come from the query.
    None,
    /// `body: "*"`: the whole request message (path variables override).
    Whole,
    /// `body: "field"`: one top-level field; the others come from the path and the query.
    Field(FieldDescriptor),
}

/// One HTTP binding of one RPC.
#[derive(Clone, Debug)]
pub struct Binding {
    /// The HTTP method.
    pub method: Method,
    /// The path template.
    pub template: PathTemplate,
    /// The RPC.
    pub rpc: MethodDescriptor,
    /// Where the body goes.
    pub body: BodyRule,
    /// The response field answered instead of the whole response, if any.
    pub response_body: Option<FieldDescriptor>,
    /// For each template variable (same order), the field path it sets.
    pub path_fields: Vec<Vec<FieldDescriptor>>,
}

impl Binding {
    /// The route label for metrics and logs: method-independent template text.
    pub fn route(&self) -> &str {
        self.template.as_str()
    }

    /// Whether a top-level request field is set by the path.
    pub fn binds_by_path(&self, field: &FieldDescriptor) -> bool {
        self.path_fields.iter().any(|p| p.len() == 1 && p[0] == *field)
    }

    /// Whether a top-level request field is bound by the path or the body.
    pub fn binds_top_level(&self, field: &FieldDescriptor) -> bool {
        let by_path = self.path_fields.iter().any(|p| p.len() == 1 && p[0] == *field);
        let by_body = matches!(&self.body, BodyRule::Field(f) if f == field) || matches!(self.body, BodyRule::Whole);
        by_path || by_body
    }
}

/// The result of looking a request up.
pub enum Lookup<'a> {
    /// This binding, with each variable's value (same order as `path_fields`).
    Found(&'a Binding, Vec<String>),
    /// The path is known, the method is not: these methods are.
    WrongMethod(Vec<Method>),
    /// Nothing matches the path.
    NotFound,
}

/// Every binding, most specific first.
#[derive(Clone, Debug)]
pub struct RouteTable {
    bindings: Vec<Binding>,
}

impl RouteTable {
    /// Reads every annotated unary RPC of the pool. A rule that does not fit its messages
    /// (a missing field, a bad template, two RPCs on one method and path) fails here, at start.
    pub fn from_pool(pool: &DescriptorPool) -> anyhow::Result<Self> {
        let Some(extension) = pool.get_extension_by_name("google.api.http") else {
            bail!("the descriptor set has no google.api.http extension");
        };
        let mut bindings = Vec::new();
        for service in pool.services() {
            for rpc in service.methods() {
                let options = rpc.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
                    bail!("{}: google.api.http is not a message", rpc.full_name());
                };
                let rule: HttpRule = rule
                    .transcode_to()
                    .with_context(|| format!("{}: reading google.api.http", rpc.full_name()))?;
                if rpc.is_client_streaming() || rpc.is_server_streaming() {
                    tracing::warn!(rpc = rpc.full_name(), "streaming RPC has an HTTP rule; not transcoded");
                    continue;
                }
                let mut rules = vec![rule.clone()];
                rules.extend(rule.additional_bindings.iter().cloned());
                for rule in &rules {
                    let binding = binding(&rpc, rule).with_context(|| format!("HTTP rule of {}", rpc.full_name()))?;
                    bindings.push(binding);
                }
            }
        }
        for (i, a) in bindings.iter().enumerate() {
            if let Some(b) = bindings[..i]
                .iter()
                .find(|b| b.method == a.method && b.template == a.template)
            {
                bail!(
                    "{} and {} are both bound to {} {}",
                    b.rpc.full_name(),
                    a.rpc.full_name(),
                    a.method,
                    a.template
                );
            }
        }
        bindings.sort_by_key(|b| std::cmp::Reverse(b.template.specificity()));
        Ok(Self { bindings })
    }

    /// Every binding, most specific first.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// The binding for a method and path. HEAD looks up GET.
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        let wanted = if *method == Method::HEAD { &Method::GET } else { method };
        let mut allowed: Vec<Method> = Vec::new();
        // A path that a custom-verb template matches belongs to the verb's routes only:
        // `runs/r1:cancel` is not also `{name=runs/*}` with the name `runs/r1:cancel`.
        // Templates with a verb sort first, so the first match decides.
        let mut verb_matched = false;
        for binding in &self.bindings {
            if verb_matched && binding.template.verb.is_none() {
                break;
            }
            let Some(values) = binding.template.matches(path) else {
                continue;
            };
            verb_matched |= binding.template.verb.is_some();
            if binding.method == *wanted {
                return Lookup::Found(binding, values.into_iter().map(|(_, v)| v).collect());
            }
            if !allowed.contains(&binding.method) {
                allowed.push(binding.method.clone());
            }
        }
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::WrongMethod(allowed)
        }
    }
}

fn binding(rpc: &MethodDescriptor, rule: &HttpRule) -> anyhow::Result<Binding> {
    let (method, path) = match &rule.pattern {
        Some(Pattern::Get(p)) => (Method::GET, p.clone()),
        Some(Pattern::Put(p)) => (Method::PUT, p.clone()),
        Some(Pattern::Post(p)) => (Method::POST, p.clone()),
        Some(Pattern::Delete(p)) => (Method::DELETE, p.clone()),
        Some(Pattern::Patch(p)) => (Method::PATCH, p.clone()),
        Some(Pattern::Custom(c)) => (
            Method::from_bytes(c.kind.as_bytes()).map_err(|_| anyhow!("bad custom method {:?}", c.kind))?,
            c.path.clone(),
        ),
        None => bail!("no pattern"),
    };
    let template = PathTemplate::parse(&path)?;
    let input = rpc.input();
    let path_fields = template
        .variables
        .iter()
        .map(|var| path_field(&input, &var.field_path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = match rule.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        name => BodyRule::Field(
            input
                .get_field_by_name(name)
                .ok_or_else(|| anyhow!("body field {name:?} is not a field of {}", input.full_name()))?,
        ),
    };
    if let BodyRule::Field(field) = &body
        && path_fields.iter().any(|p| p[0] == *field)
    {
        bail!("body field {:?} is also bound by the path", field.name());
    }
    let response_body = match rule.response_body.as_str() {
        "" => None,
        name => Some(rpc.output().get_field_by_name(name).ok_or_else(|| {
            anyhow!(
                "response_body field {name:?} is not a field of {}",
                rpc.output().full_name()
            )
        })?),
    };
    Ok(Binding {
        method,
        template,
        rpc: rpc.clone(),
        body,
        response_body,
        path_fields,
    })
}

/// Resolves a dotted path variable to fields: messages on the way, a singular scalar at the end.
fn path_field(message: &MessageDescriptor, path: &[String]) -> anyhow::Result<Vec<FieldDescriptor>> {
    let mut fields = Vec::with_capacity(path.len());
    let mut current = message.clone();
    for (i, name) in path.iter().enumerate() {
        let field = current.get_field_by_name(name).ok_or_else(|| {
            anyhow!(
                "path variable {:?}: no field {name:?} in {}",
                path.join("."),
                current.full_name()
            )
        })?;
        if field.is_list() || field.is_map() {
            bail!("path variable {:?}: {name:?} is repeated", path.join("."));
        }
        let last = i + 1 == path.len();
        match (field.kind(), last) {
            (Kind::Message(next), false) => current = next,
            (Kind::Message(_), true) => bail!("path variable {:?} is a message", path.join(".")),
            (_, false) => bail!("path variable {:?}: {name:?} is not a message", path.join(".")),
            (_, true) => {}
        }
        fields.push(field);
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let pool = DescriptorPool::decode(outpost_api::FILE_DESCRIPTOR_SET).unwrap();
        RouteTable::from_pool(&pool).unwrap()
    }

    fn found(table: &RouteTable, method: Method, path: &str) -> (String, Vec<String>) {
        match table.lookup(&method, path) {
            Lookup::Found(b, values) => (b.rpc.name().to_string(), values),
            Lookup::WrongMethod(m) => panic!("{method} {path}: wrong method, allowed {m:?}"),
            Lookup::NotFound => panic!("{method} {path}: not found"),
        }
    }

    #[test]
    fn reads_every_annotated_rpc_of_the_contracts() {
        let table = table();
        let names: Vec<&str> = table.bindings().iter().map(|b| b.rpc.name()).collect();
        for rpc in [
            "CreateRun",
            "CancelRun",
            "GetPlotJob",
            "GetCurrentValue",
            "AggregateReadings",
            "ReviewImage",
        ] {
            assert!(names.contains(&rpc), "{rpc} missing from {names:?}");
        }
        // Streaming RPCs have no HTTP rule.
        assert!(!names.contains(&"WatchRun") && !names.contains(&"UploadImage"));
    }

    #[test]
    fn looks_up_by_method_path_and_verb() {
        let t = table();
        assert_eq!(
            found(&t, Method::GET, "/api/v1/runs/r1"),
            ("GetRun".into(), vec!["runs/r1".into()])
        );
        assert_eq!(found(&t, Method::HEAD, "/api/v1/runs/r1").0, "GetRun");
        assert_eq!(found(&t, Method::DELETE, "/api/v1/runs/r1").0, "DeleteRun");
        assert_eq!(
            found(&t, Method::POST, "/api/v1/runs/r1:cancel"),
            ("CancelRun".into(), vec!["runs/r1".into()])
        );
        assert_eq!(found(&t, Method::GET, "/api/v1/runs").0, "ListRuns");
        assert_eq!(found(&t, Method::GET, "/api/v1/tracks/p:summary").0, "GetTrackSummary");
        assert_eq!(found(&t, Method::GET, "/api/v1/tracks/p").0, "GetTrack");
        assert_eq!(
            found(&t, Method::GET, "/api/v1/readings:aggregate").0,
            "AggregateReadings"
        );
        assert_eq!(found(&t, Method::GET, "/api/v1/devices/d/sensors/s").0, "GetSensor");
        assert_eq!(
            found(&t, Method::GET, "/api/v1/devices/d/sensors/s/currentValue"),
            (
                "GetCurrentValue".into(),
                vec!["devices/d/sensors/s/currentValue".into()]
            )
        );
        assert_eq!(
            found(&t, Method::GET, "/api/v1/devices/d/sensors/s/readings"),
            ("ListReadings".into(), vec!["devices/d/sensors/s".into()])
        );
        assert!(
            matches!(t.lookup(&Method::PUT, "/api/v1/runs/r1"), Lookup::WrongMethod(m) if m.contains(&Method::GET) && m.contains(&Method::DELETE))
        );
        // A custom verb's path is the verb's alone: not also `{name=runs/*}`.
        assert!(
            matches!(t.lookup(&Method::GET, "/api/v1/runs/r1:cancel"), Lookup::WrongMethod(m) if m == [Method::POST])
        );
        assert!(
            matches!(t.lookup(&Method::DELETE, "/api/v1/tracks/p:summary"), Lookup::WrongMethod(m) if m == [Method::GET])
        );
        assert!(matches!(
            t.lookup(&Method::GET, "/api/v1/nothing/here/at/all"),
            Lookup::NotFound
        ));
        assert!(matches!(t.lookup(&Method::GET, "/elsewhere"), Lookup::NotFound));
    }

    fn rpc(name: &str) -> MethodDescriptor {
        let pool = DescriptorPool::decode(outpost_api::FILE_DESCRIPTOR_SET).unwrap();
        pool.services()
            .flat_map(|s| s.methods().collect::<Vec<_>>())
            .find(|m| m.name() == name)
            .unwrap()
    }

    fn rule(pattern: Pattern, body: &str, response_body: &str) -> HttpRule {
        HttpRule {
            pattern: Some(pattern),
            body: body.into(),
            response_body: response_body.into(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_custom_methods_response_bodies_and_nested_variables() {
        use outpost_api::google::api::CustomHttpPattern;
        let custom = Pattern::Custom(CustomHttpPattern {
            kind: "PURGE".into(),
            path: "/v2/{name=plotJobs/*}".into(),
        });
        let b = binding(&rpc("GetPlotJob"), &rule(custom, "", "plot_job")).unwrap();
        assert_eq!(b.method.as_str(), "PURGE");
        assert_eq!(b.response_body.unwrap().name(), "plot_job");

        // A nested path variable resolves through the message fields.
        let nested = Pattern::Get("/v2/{plot_job.name=plotJobs/*}".into());
        let b = binding(&rpc("CreatePlotJob"), &rule(nested, "", "")).unwrap();
        let names: Vec<&str> = b.path_fields[0].iter().map(|f| f.name()).collect();
        assert_eq!(names, ["plot_job", "name"]);
    }

    #[test]
    fn rules_that_do_not_fit_their_messages_fail_at_start() {
        let get = |t: &str| Pattern::Get(t.into());
        for (rpc_name, rule) in [
            ("GetPlotJob", rule(get("/v1/{nope=plotJobs/*}"), "", "")),
            ("CreatePlotJob", rule(get("/v1/{plot_job=plotJobs/*}"), "", "")),
            ("CreatePlotJob", rule(get("/v1/{plot_job.spec.title.x}"), "", "")),
            ("ListPlotJobs", rule(get("/v1/plotJobs"), "nope", "")),
            ("ListPlotJobs", rule(get("/v1/plotJobs"), "", "nope")),
            ("GetPlotJob", rule(get("/v1/{name=plotJobs/*}"), "name", "")),
            ("GetPlotJob", rule(get("v1/{name}"), "", "")),
        ] {
            assert!(binding(&rpc(rpc_name), &rule).is_err(), "{rpc_name} {rule:?}");
        }
        let custom = Pattern::Custom(outpost_api::google::api::CustomHttpPattern {
            kind: "BAD METHOD".into(),
            path: "/x".into(),
        });
        assert!(binding(&rpc("ListPlotJobs"), &rule(custom, "", "")).is_err());
    }

    #[test]
    fn reads_body_rules() {
        let t = table();
        let body = |rpc: &str| t.bindings().iter().find(|b| b.rpc.name() == rpc).unwrap().body.clone();
        assert!(matches!(body("CreatePlotJob"), BodyRule::Field(f) if f.name() == "plot_job"));
        assert!(matches!(body("CancelRun"), BodyRule::Whole));
        assert!(matches!(body("ListRuns"), BodyRule::None));
    }
}
