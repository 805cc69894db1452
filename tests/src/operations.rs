//! Query-shape fuzzing (checklist 97): valid operations generated from the schema as the server
//! introspects it — fields with their arguments, aliases, directives, named and inline
//! fragments, variables, and introspection — driven by `arbitrary`'s [`Unstructured`] bytes, so
//! the same generator serves `cargo test` (seeded random bytes) and the `operation_shapes` fuzz
//! target (libFuzzer's bytes).
//!
//! Each operation comes with its [`Shape`], measured here on the generated syntax tree by the
//! rules the README states (independently of the server's code), and so with the limit the
//! server must refuse it with, if any; [`check`] holds an answer to that and to the budgets.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    time::Duration,
};

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Value, json};

use crate::{Backend, TestApp, spawn_app_with};

/// A server to generate operations against: the MSP's admin token, three clients (their ids),
/// the schema as the server introspects it, and the limits it was started with.
pub struct Target {
    pub app: TestApp,
    pub token: String,
    pub schema: Schema,
    pub ids: Vec<String>,
    pub limits: Limits,
}

impl Target {
    /// Starts one on `backend` with this answer budget and query timeout; `None` when the
    /// backend is not configured.
    pub async fn start(
        backend: Backend,
        max_response_bytes: usize,
        query_timeout: Duration,
    ) -> Option<Target> {
        let app = spawn_app_with(backend, |s| {
            s.max_response_bytes = max_response_bytes;
            s.query_timeout = query_timeout;
            // Thousands of operations from one MSP: its budgets are not what is measured.
            s.msp_queries_per_minute = 0;
            s.msp_mutations_per_minute = 0;
        })
        .await?;
        let caller = app.caller("msp-a", &["admin"]).await;
        let mut ids = Vec::new();
        for name in ["Contoso", "Fabrikam", "Northwind Traders"] {
            ids.push(caller.create_client(name).await);
        }
        let introspection = caller.run(INTROSPECTION, json!({})).await;
        let schema = Schema::from_introspection(introspection.data());
        let token = caller.token.clone().unwrap_or_default();
        Some(Target {
            app,
            token,
            schema,
            ids,
            limits: Limits::of_server(max_response_bytes, query_timeout),
        })
    }

    /// Generates an operation from `bytes`; `None` when they run out before it is written.
    pub fn generate(&self, bytes: &[u8]) -> Option<Operation> {
        generate(&self.schema, &self.ids, &mut Unstructured::new(bytes)).ok()
    }

    /// POSTs `operation`, timing the answer.
    pub async fn run(&self, operation: &Operation) -> Answer {
        let started = std::time::Instant::now();
        let response = self
            .app
            .http
            .post(self.app.url("/graphql"))
            .header("content-type", "application/json")
            .bearer_auth(&self.token)
            .json(&json!({ "query": operation.document, "variables": operation.variables }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        Answer {
            status,
            body,
            elapsed: started.elapsed(),
        }
    }

    /// Generates, runs and checks the operation of `bytes`; what became of it, or what broke.
    pub async fn fuzz(
        &self,
        bytes: &[u8],
    ) -> std::result::Result<Option<(Outcome, usize)>, String> {
        let Some(operation) = self.generate(bytes) else {
            return Ok(None);
        };
        let answer = self.run(&operation).await;
        let outcome = check(&operation, &answer, &self.limits)?;
        Ok(Some((outcome, answer.body.len())))
    }
}

/// The limits the server is configured with, as the README states them.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_depth: usize,
    pub max_nesting: usize,
    pub max_cost: u64,
    pub max_aliases: usize,
    pub max_directives: usize,
    pub max_introspection_lists: usize,
    /// `CONSENTRY_MAX_RESPONSE_BYTES` of the server under test.
    pub max_response_bytes: usize,
    /// `CONSENTRY_QUERY_TIMEOUT` of the server under test.
    pub query_timeout: Duration,
}

impl Limits {
    /// The server's limits, with its answer budget and query timeout.
    pub fn of_server(max_response_bytes: usize, query_timeout: Duration) -> Self {
        Self {
            max_depth: api::MAX_DEPTH,
            max_nesting: api::MAX_RECURSIVE_DEPTH,
            max_cost: api::MAX_COMPLEXITY as u64,
            max_aliases: api::MAX_ALIASES,
            max_directives: api::MAX_DIRECTIVES,
            max_introspection_lists: api::MAX_INTROSPECTION_LISTS,
            max_response_bytes,
            query_timeout,
        }
    }
}

/// A type as introspection names it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TypeRef {
    Named(String),
    List(Box<TypeRef>),
    NonNull(Box<TypeRef>),
}

impl TypeRef {
    fn from_introspection(value: &Value) -> TypeRef {
        match value["kind"].as_str() {
            Some("NON_NULL") => {
                TypeRef::NonNull(Box::new(Self::from_introspection(&value["ofType"])))
            }
            Some("LIST") => TypeRef::List(Box::new(Self::from_introspection(&value["ofType"]))),
            _ => TypeRef::Named(value["name"].as_str().unwrap_or_default().to_owned()),
        }
    }

    fn named(&self) -> &str {
        match self {
            TypeRef::Named(name) => name,
            TypeRef::List(inner) | TypeRef::NonNull(inner) => inner.named(),
        }
    }

    fn is_non_null(&self) -> bool {
        matches!(self, TypeRef::NonNull(_))
    }

    fn render(&self) -> String {
        match self {
            TypeRef::Named(name) => name.clone(),
            TypeRef::List(inner) => format!("[{}]", inner.render()),
            TypeRef::NonNull(inner) => format!("{}!", inner.render()),
        }
    }
}

#[derive(Clone, Debug)]
struct InputValue {
    name: String,
    ty: TypeRef,
    default: Option<String>,
}

#[derive(Clone, Debug)]
struct FieldDef {
    name: String,
    args: Vec<InputValue>,
    ty: TypeRef,
}

#[derive(Clone, Debug, Default)]
struct TypeDef {
    kind: String,
    fields: Vec<FieldDef>,
    possible: Vec<String>,
    enum_values: Vec<String>,
    input_fields: Vec<InputValue>,
}

impl TypeDef {
    fn is_composite(&self) -> bool {
        matches!(self.kind.as_str(), "OBJECT" | "INTERFACE" | "UNION")
    }
}

/// The schema as the generator needs it, from an introspection answer.
#[derive(Clone, Debug)]
pub struct Schema {
    types: BTreeMap<String, TypeDef>,
    query: String,
}

/// The introspection query the model is built from (graphql-js's, every option).
pub const INTROSPECTION: &str = "query { __schema { queryType { name } types { kind name
    fields(includeDeprecated: true) { name args { ...Input } type { ...Ref } }
    inputFields { ...Input } enumValues(includeDeprecated: true) { name } possibleTypes { name } } } }
    fragment Input on __InputValue { name defaultValue type { ...Ref } }
    fragment Ref on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }";

impl Schema {
    /// The model of the `data` of [`INTROSPECTION`]'s answer.
    pub fn from_introspection(data: &Value) -> Schema {
        let schema = &data["__schema"];
        let input = |value: &Value| InputValue {
            name: value["name"].as_str().unwrap_or_default().to_owned(),
            ty: TypeRef::from_introspection(&value["type"]),
            default: value["defaultValue"].as_str().map(str::to_owned),
        };
        let mut types = BTreeMap::new();
        for ty in schema["types"].as_array().into_iter().flatten() {
            let name = ty["name"].as_str().unwrap_or_default().to_owned();
            let names = |key: &str, field: &str| -> Vec<String> {
                ty[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v[field].as_str().map(str::to_owned))
                    .collect()
            };
            let kind = ty["kind"].as_str().unwrap_or_default().to_owned();
            let mut possible = names("possibleTypes", "name");
            if kind == "OBJECT" {
                possible = vec![name.clone()];
            }
            let fields = ty["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| FieldDef {
                    name: f["name"].as_str().unwrap_or_default().to_owned(),
                    args: f["args"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(input)
                        .collect(),
                    ty: TypeRef::from_introspection(&f["type"]),
                })
                .collect();
            let def = TypeDef {
                kind,
                fields,
                possible,
                enum_values: names("enumValues", "name"),
                input_fields: ty["inputFields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(input)
                    .collect(),
            };
            types.insert(name, def);
        }
        let query = schema["queryType"]["name"]
            .as_str()
            .unwrap_or("Query")
            .to_owned();
        // The root's meta-fields, which introspection does not list.
        if let Some(root) = types.get_mut(&query) {
            root.fields.push(FieldDef {
                name: "__schema".into(),
                args: Vec::new(),
                ty: TypeRef::NonNull(Box::new(TypeRef::Named("__Schema".into()))),
            });
            root.fields.push(FieldDef {
                name: "__type".into(),
                args: vec![InputValue {
                    name: "name".into(),
                    ty: TypeRef::NonNull(Box::new(TypeRef::Named("String".into()))),
                    default: None,
                }],
                ty: TypeRef::Named("__Type".into()),
            });
        }
        Schema { types, query }
    }

    fn ty(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// Whether a fragment on `on` may be spread where `parent` is selected.
    fn overlaps(&self, on: &str, parent: &str) -> bool {
        let (Some(a), Some(b)) = (self.ty(on), self.ty(parent)) else {
            return false;
        };
        a.possible.iter().any(|t| b.possible.contains(t))
    }

    fn type_names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }
}

/// One selection of the generated document.
#[derive(Clone, Debug)]
enum Sel {
    Field(FieldSel),
    Spread {
        fragment: usize,
        directives: Vec<String>,
    },
    Inline {
        on: Option<String>,
        directives: Vec<String>,
        items: Vec<Sel>,
    },
}

/// For a list costed by its page: the page size asked for, and the default.
type Page = Option<(Option<i64>, i64)>;

/// A field's arguments as written, `(first: 5)` or empty, and its page.
type Arguments = (String, Page);

#[derive(Clone, Debug)]
struct FieldSel {
    alias: Option<String>,
    name: String,
    /// Rendered arguments, `(first: 5)`, or empty.
    args: String,
    directives: Vec<String>,
    items: Vec<Sel>,
    page: Page,
}

#[derive(Clone, Debug)]
struct Fragment {
    on: String,
    items: Vec<Sel>,
    done: bool,
}

/// What an operation looks like to the limits, measured on its syntax tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub directives: usize,
    pub aliases: usize,
    pub nesting: usize,
    pub fields: u64,
    pub depth: usize,
    /// The first introspection limit broken, walking the operation in order.
    pub introspection: Option<&'static str>,
    pub cost: u64,
}

impl Shape {
    /// The limit the server must refuse the operation with, in the order it checks them.
    pub fn refusal(&self, limits: &Limits) -> Option<&'static str> {
        if self.directives > limits.max_directives {
            Some("DIRECTIVES")
        } else if self.aliases > limits.max_aliases {
            Some("ALIASES")
        } else if self.nesting > limits.max_nesting {
            Some("NESTING")
        } else if self.fields > limits.max_cost {
            Some("COST")
        } else if self.depth > limits.max_depth {
            Some("DEPTH")
        } else if self.introspection.is_some() {
            self.introspection
        } else if self.cost > limits.max_cost {
            Some("COST")
        } else {
            None
        }
    }
}

/// A generated operation: its document, variables and shape.
#[derive(Clone, Debug)]
pub struct Operation {
    pub document: String,
    pub variables: Value,
    pub shape: Shape,
}

/// How one document leans: generated once per document, so that some are wide, some deep,
/// some full of aliases or fragments.
#[derive(Clone, Copy, Debug)]
struct Mood {
    breadth: usize,
    max_level: usize,
    alias_percent: u8,
    directive_percent: u8,
    fragment_percent: u8,
    introspection_percent: u8,
    budget: usize,
}

struct Generator<'a, 'u, 'd> {
    schema: &'a Schema,
    u: &'u mut Unstructured<'d>,
    ids: &'a [String],
    mood: Mood,
    /// Each field's arguments, chosen once per document so that fields of one response key
    /// always merge.
    args: HashMap<(String, String), Arguments>,
    variables: Vec<(String, String, Value)>,
    fragments: Vec<Fragment>,
    next_alias: usize,
    selections: usize,
}

/// Generates one valid query from `u` against `schema`; `ids` are global ids that exist.
pub fn generate(schema: &Schema, ids: &[String], u: &mut Unstructured<'_>) -> Result<Operation> {
    let mood = Mood {
        breadth: u.int_in_range(1..=6)?,
        max_level: *u.choose(&[2, 3, 4, 5, 6, 8, 10, 12, 13, 14, 16, 20])?,
        alias_percent: *u.choose(&[0, 5, 10, 30, 60])?,
        directive_percent: *u.choose(&[0, 5, 20])?,
        fragment_percent: *u.choose(&[0, 10, 25])?,
        introspection_percent: *u.choose(&[0, 20, 50])?,
        budget: *u.choose(&[30, 100, 300, 600])?,
    };
    let mut generator = Generator {
        schema,
        u,
        ids,
        mood,
        args: HashMap::new(),
        variables: Vec::new(),
        fragments: Vec::new(),
        next_alias: 0,
        selections: 0,
    };
    let root = schema.query.clone();
    let mut items = if generator.u.ratio(1, 40)? {
        generator.fragment_bomb(&root)?
    } else if generator.u.ratio(1, 12)? {
        // The standard introspection query's selection, asked one or more times.
        let schema_field = generator.full_schema()?;
        let mut items = vec![schema_field.clone()];
        for _ in 0..generator.u.int_in_range(0..=3)? {
            if let Sel::Field(mut copy) = schema_field.clone() {
                copy.alias = Some(generator.alias());
                items.push(Sel::Field(copy));
            }
        }
        items
    } else {
        generator.set(&root, 0)?
    };
    if items.is_empty() {
        items.push(typename());
    }
    let shape = measure(&items, &generator.fragments);
    let document = generator.render(&items);
    let variables = Value::Object(
        generator
            .variables
            .iter()
            .map(|(name, _, value)| (name.clone(), value.clone()))
            .collect::<Map<_, _>>(),
    );
    Ok(Operation {
        document,
        variables,
        shape,
    })
}

fn typename() -> Sel {
    Sel::Field(FieldSel {
        alias: None,
        name: "__typename".into(),
        args: String::new(),
        directives: Vec::new(),
        items: Vec::new(),
        page: None,
    })
}

impl Generator<'_, '_, '_> {
    fn percent(&mut self, p: u8) -> Result<bool> {
        Ok(p > 0 && self.u.int_in_range(0..=99u8)? < p)
    }

    /// A selection set on `ty` (composite) at `level` (its fields are at `level + 1`).
    fn set(&mut self, ty: &str, level: usize) -> Result<Vec<Sel>> {
        let Some(def) = self.schema.ty(ty).cloned() else {
            return Ok(vec![typename()]);
        };
        let breadth = self.mood.breadth.saturating_sub(level / 3).max(1);
        let n = self.u.int_in_range(1..=breadth)?;
        let mut items = Vec::new();
        for _ in 0..n {
            if self.selections >= self.mood.budget {
                break;
            }
            self.selections += 1;
            let kind = self.u.int_in_range(0..=99u8)?;
            let fragments = self.mood.fragment_percent;
            if kind < fragments / 2 && level < self.mood.max_level {
                items.push(self.spread(ty, level)?);
            } else if kind < fragments && level < self.mood.max_level {
                items.push(self.inline(&def, ty, level)?);
            } else if kind >= 97 || def.fields.is_empty() {
                items.push(self.maybe_aliased_typename()?);
            } else if let Some(field) = self.field(ty, &def, level)? {
                items.push(field);
            }
        }
        if items.is_empty() {
            items.push(typename());
        }
        // Now and then, one root field asked again and again under aliases: the widest answers.
        if level == 0 && self.u.ratio(1, 8)? {
            let copies = self.u.int_in_range(1..=12)?;
            if let Some(Sel::Field(field)) = items.last().cloned() {
                for _ in 0..copies {
                    let mut copy = field.clone();
                    copy.alias = Some(self.alias());
                    items.push(Sel::Field(copy));
                }
            }
        }
        Ok(items)
    }

    fn maybe_aliased_typename(&mut self) -> Result<Sel> {
        let mut sel = typename();
        if let Sel::Field(field) = &mut sel
            && self.percent(self.mood.alias_percent)?
        {
            field.alias = Some(self.alias());
        }
        Ok(sel)
    }

    fn alias(&mut self) -> String {
        self.next_alias += 1;
        format!("a{}", self.next_alias)
    }

    /// `@skip` and `@include` may each be written once on a selection; on a field, more than
    /// the limit (repeats, which only the limit's refusal answers) now and then.
    fn directives(&mut self, on_field: bool) -> Result<Vec<String>> {
        if !self.percent(self.mood.directive_percent)? {
            return Ok(Vec::new());
        }
        let mut directives = Vec::new();
        let over = on_field && self.u.ratio(1, 40)?;
        let n = if over {
            self.u.int_in_range(5..=7)?
        } else {
            self.u.int_in_range(1..=2)?
        };
        for i in 0..n {
            let skip = if over { self.u.arbitrary()? } else { i == 0 };
            let condition = match self.u.int_in_range(0..=3u8)? {
                0 => "true".to_owned(),
                1 | 2 => (!skip).to_string(),
                _ => {
                    let name = format!("b{}", self.variables.len());
                    let value = self.u.arbitrary::<bool>()?;
                    self.variables
                        .push((name.clone(), "Boolean!".into(), Value::Bool(value)));
                    format!("${name}")
                }
            };
            let directive = if skip { "skip" } else { "include" };
            directives.push(format!("@{directive}(if: {condition})"));
        }
        Ok(directives)
    }

    fn field(&mut self, parent: &str, def: &TypeDef, level: usize) -> Result<Option<Sel>> {
        let candidates: Vec<&FieldDef> = def
            .fields
            .iter()
            .filter(|f| !f.name.starts_with("__") || level == 0)
            .collect();
        let wants_introspection = level == 0 && self.percent(self.mood.introspection_percent)?;
        let field = if wants_introspection {
            let meta: Vec<&FieldDef> = candidates
                .iter()
                .copied()
                .filter(|f| f.name.starts_with("__"))
                .collect();
            if meta.is_empty() {
                return Ok(None);
            }
            (*self.u.choose(&meta)?).clone()
        } else {
            (*self.u.choose(&candidates)?).clone()
        };
        let Some((args, page)) = self.arguments(parent, &field)? else {
            return Ok(None);
        };
        let alias = if self.percent(self.mood.alias_percent)? {
            Some(self.alias())
        } else {
            None
        };
        let directives = self.directives(true)?;
        let target = field.ty.named().to_owned();
        let composite = self.schema.ty(&target).is_some_and(TypeDef::is_composite);
        let items = if !composite {
            Vec::new()
        } else if level + 1 >= self.mood.max_level || self.selections >= self.mood.budget {
            vec![self.leaf_or_typename(&target)?]
        } else {
            self.set(&target, level + 1)?
        };
        Ok(Some(Sel::Field(FieldSel {
            alias,
            name: field.name.clone(),
            args,
            directives,
            items,
            page,
        })))
    }

    /// One field without a selection of its own (or `__typename`), to end a branch.
    fn leaf_or_typename(&mut self, ty: &str) -> Result<Sel> {
        let leaves: Vec<FieldDef> = self
            .schema
            .ty(ty)
            .map(|def| {
                def.fields
                    .iter()
                    .filter(|f| {
                        f.args.iter().all(|a| !a.ty.is_non_null())
                            && !self
                                .schema
                                .ty(f.ty.named())
                                .is_some_and(TypeDef::is_composite)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if leaves.is_empty() || self.u.ratio(1, 4)? {
            return Ok(typename());
        }
        let field = self.u.choose(&leaves)?.clone();
        Ok(Sel::Field(FieldSel {
            alias: None,
            name: field.name,
            args: String::new(),
            directives: Vec::new(),
            items: Vec::new(),
            page: None,
        }))
    }

    /// The arguments of `parent.field`, chosen once per document; `None` when a required one
    /// cannot be given a value.
    fn arguments(&mut self, parent: &str, field: &FieldDef) -> Result<Option<Arguments>> {
        let key = (parent.to_owned(), field.name.clone());
        if let Some(known) = self.args.get(&key) {
            return Ok(Some(known.clone()));
        }
        let mut rendered = Vec::new();
        let mut page = None;
        let mut variables = Vec::new();
        for arg in &field.args {
            let required = arg.ty.is_non_null() && arg.default.is_none();
            if !required && !self.u.ratio(1, 3)? {
                if arg.name == "first" {
                    page = Some((None, default_page(arg)));
                }
                continue;
            }
            let Some(value) = self.value(&arg.name, &arg.ty, 0)? else {
                if required {
                    return Ok(None);
                }
                continue;
            };
            if arg.name == "first" {
                page = Some((value.as_i64(), default_page(arg)));
            }
            let scalar = matches!(value, Value::Number(_) | Value::String(_) | Value::Bool(_));
            let literal = if scalar && self.u.ratio(1, 4)? {
                let name = format!("v{}", self.variables.len() + variables.len());
                let text = format!("${name}");
                variables.push((name, arg.ty.render(), value));
                text
            } else {
                self.literal(&arg.ty, &value)
            };
            rendered.push(format!("{}: {literal}", arg.name));
        }
        let args = if rendered.is_empty() {
            String::new()
        } else {
            format!("({})", rendered.join(", "))
        };
        let chosen = (args, page);
        self.variables.extend(variables);
        self.args.insert(key, chosen.clone());
        Ok(Some(chosen))
    }

    /// A value of type `ty` for argument (or input field) `name`; `None` when there is none to
    /// give (an unknown scalar).
    fn value(&mut self, name: &str, ty: &TypeRef, depth: usize) -> Result<Option<Value>> {
        match ty {
            TypeRef::NonNull(inner) => self.value(name, inner, depth),
            TypeRef::List(inner) => {
                let n = self.u.int_in_range(0..=3)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    if let Some(item) = self.value(name, inner, depth + 1)? {
                        items.push(item);
                    }
                }
                Ok(Some(Value::Array(items)))
            }
            TypeRef::Named(named) => {
                let value = match named.as_str() {
                    "Int" if name == "first" => {
                        json!(
                            *self
                                .u
                                .choose(&[1, 2, 3, 5, 10, 20, 50, 100, 100, 100, 0, 101])?
                        )
                    }
                    "Int" => json!(self.u.int_in_range(1..=100)?),
                    "Boolean" => json!(self.u.arbitrary::<bool>()?),
                    "ID" => {
                        if !self.ids.is_empty() && self.u.ratio(2, 3)? {
                            json!(self.u.choose(self.ids)?)
                        } else {
                            json!(*self.u.choose(&["Q2xpZW50Om5vbmU=", "nope", ""])?)
                        }
                    }
                    "String" if name == "name" => {
                        let names = self.schema.type_names();
                        json!(*self.u.choose(&names)?)
                    }
                    "String" => json!(*self.u.choose(&["", "a", "Contoso", "x y", "é\"\\"])?),
                    other => match self.schema.ty(other) {
                        Some(def) if def.kind == "ENUM" && !def.enum_values.is_empty() => {
                            json!(self.u.choose(&def.enum_values)?)
                        }
                        Some(def) if def.kind == "INPUT_OBJECT" && depth < 3 => {
                            let def = def.clone();
                            let mut object = Map::new();
                            for field in &def.input_fields {
                                let required = field.ty.is_non_null() && field.default.is_none();
                                if !required && !self.u.ratio(1, 2)? {
                                    continue;
                                }
                                match self.value(&field.name, &field.ty, depth + 1)? {
                                    Some(value) => {
                                        object.insert(field.name.clone(), value);
                                    }
                                    None if required => return Ok(None),
                                    None => {}
                                }
                            }
                            Value::Object(object)
                        }
                        _ => return Ok(None),
                    },
                };
                Ok(Some(value))
            }
        }
    }

    /// `value` written as a GraphQL literal of type `ty` (enums bare).
    fn literal(&self, ty: &TypeRef, value: &Value) -> String {
        match (ty, value) {
            (TypeRef::NonNull(inner), _) => self.literal(inner, value),
            (TypeRef::List(inner), Value::Array(items)) => {
                let items: Vec<String> = items.iter().map(|v| self.literal(inner, v)).collect();
                format!("[{}]", items.join(", "))
            }
            (TypeRef::Named(named), Value::Object(fields)) => {
                let def = self.schema.ty(named);
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| {
                        let field_ty = def
                            .and_then(|d| d.input_fields.iter().find(|f| &f.name == k))
                            .map_or_else(|| TypeRef::Named(String::new()), |f| f.ty.clone());
                        format!("{k}: {}", self.literal(&field_ty, v))
                    })
                    .collect();
                format!("{{{}}}", fields.join(", "))
            }
            (TypeRef::Named(named), Value::String(text))
                if self.schema.ty(named).is_some_and(|d| d.kind == "ENUM") =>
            {
                text.clone()
            }
            (_, value) => value.to_string(),
        }
    }

    /// An inline fragment in a selection of `ty`: on one of its possible types, on itself, or
    /// without a type condition.
    fn inline(&mut self, def: &TypeDef, ty: &str, level: usize) -> Result<Sel> {
        let on = match self.u.int_in_range(0..=2u8)? {
            0 => None,
            1 => Some(ty.to_owned()),
            _ => Some(self.u.choose(&def.possible)?.clone()),
        };
        let directives = self.directives(false)?;
        let inner = on.clone().unwrap_or_else(|| ty.to_owned());
        // One level deeper, as the nesting limit counts it (and so generation ends).
        let items = self.set(&inner, level + 1)?;
        Ok(Sel::Inline {
            on,
            directives,
            items,
        })
    }

    /// A named fragment spread where `ty` is selected: one already written that fits, or a
    /// new one (on `ty` or one of its possible types).
    fn spread(&mut self, ty: &str, level: usize) -> Result<Sel> {
        let fitting: Vec<usize> = (0..self.fragments.len())
            .filter(|&i| self.fragments[i].done && self.schema.overlaps(&self.fragments[i].on, ty))
            .collect();
        let fragment = if !fitting.is_empty() && self.u.ratio(1, 2)? {
            *self.u.choose(&fitting)?
        } else {
            let possible = self
                .schema
                .ty(ty)
                .map(|d| d.possible.clone())
                .unwrap_or_default();
            let on = if possible.len() > 1 && self.u.arbitrary()? {
                self.u.choose(&possible)?.clone()
            } else {
                ty.to_owned()
            };
            let index = self.fragments.len();
            self.fragments.push(Fragment {
                on: on.clone(),
                items: Vec::new(),
                done: false,
            });
            let items = self.set(&on, level + 1)?;
            self.fragments[index].items = items;
            self.fragments[index].done = true;
            index
        };
        let directives = self.directives(false)?;
        Ok(Sel::Spread {
            fragment,
            directives,
        })
    }

    /// `parent.name` with its arguments for this document and `items`.
    fn fixed(&mut self, parent: &str, name: &str, items: Vec<Sel>) -> Result<Sel> {
        let def = self
            .schema
            .ty(parent)
            .and_then(|d| d.fields.iter().find(|f| f.name == name))
            .cloned();
        let (args, page) = match def {
            Some(def) => self.arguments(parent, &def)?.unwrap_or_default(),
            None => Default::default(),
        };
        Ok(Sel::Field(FieldSel {
            alias: None,
            name: name.to_owned(),
            args,
            directives: Vec::new(),
            items,
            page,
        }))
    }

    fn leaves(&mut self, parent: &str, names: &[&str]) -> Result<Vec<Sel>> {
        names
            .iter()
            .map(|name| self.fixed(parent, name, Vec::new()))
            .collect()
    }

    fn type_ref(&mut self, depth: usize) -> Result<Vec<Sel>> {
        let mut items = self.leaves("__Type", &["kind", "name"])?;
        if depth > 0 {
            let inner = self.type_ref(depth - 1)?;
            items.push(self.fixed("__Type", "ofType", inner)?);
        }
        Ok(items)
    }

    fn input_value(&mut self) -> Result<Vec<Sel>> {
        let mut items = self.leaves("__InputValue", &["name", "description", "defaultValue"])?;
        let ty = self.type_ref(7)?;
        items.push(self.fixed("__InputValue", "type", ty)?);
        Ok(items)
    }

    /// `__schema` with the selection of graphql-js's introspection query (about 70 KB).
    fn full_schema(&mut self) -> Result<Sel> {
        let mut field = self.leaves(
            "__Field",
            &["name", "description", "isDeprecated", "deprecationReason"],
        )?;
        let args = self.input_value()?;
        field.push(self.fixed("__Field", "args", args)?);
        let ty = self.type_ref(7)?;
        field.push(self.fixed("__Field", "type", ty)?);
        let mut full_type = self.leaves("__Type", &["kind", "name", "description"])?;
        full_type.push(self.fixed("__Type", "fields", field)?);
        let input_fields = self.input_value()?;
        full_type.push(self.fixed("__Type", "inputFields", input_fields)?);
        for list in ["interfaces", "possibleTypes"] {
            let ty = self.type_ref(7)?;
            full_type.push(self.fixed("__Type", list, ty)?);
        }
        let values = self.leaves(
            "__EnumValue",
            &["name", "description", "isDeprecated", "deprecationReason"],
        )?;
        full_type.push(self.fixed("__Type", "enumValues", values)?);
        let mut directive = self.leaves("__Directive", &["name", "description", "locations"])?;
        let args = self.input_value()?;
        directive.push(self.fixed("__Directive", "args", args)?);
        let mut schema = Vec::new();
        for root in ["queryType", "mutationType", "subscriptionType"] {
            let name = self.leaves("__Type", &["name"])?;
            schema.push(self.fixed("__Schema", root, name)?);
        }
        schema.push(self.fixed("__Schema", "types", full_type)?);
        schema.push(self.fixed("__Schema", "directives", directive)?);
        let root = self.schema.query.clone();
        self.fixed(&root, "__schema", schema)
    }

    /// Fragments on the root, each spreading the next twice: 2^n fields.
    fn fragment_bomb(&mut self, root: &str) -> Result<Vec<Sel>> {
        let n: usize = self.u.int_in_range(4..=40)?;
        let first = self.fragments.len();
        for i in 0..=n {
            let items = if i == n {
                vec![typename()]
            } else {
                let next = Sel::Spread {
                    fragment: first + i + 1,
                    directives: Vec::new(),
                };
                vec![next.clone(), next]
            };
            self.fragments.push(Fragment {
                on: root.to_owned(),
                items,
                done: true,
            });
        }
        Ok(vec![Sel::Spread {
            fragment: first,
            directives: Vec::new(),
        }])
    }

    fn render(&self, items: &[Sel]) -> String {
        let mut out = String::from("query");
        if !self.variables.is_empty() {
            let definitions: Vec<String> = self
                .variables
                .iter()
                .map(|(name, ty, _)| format!("${name}: {ty}"))
                .collect();
            let _ = write!(out, "({})", definitions.join(", "));
        }
        render_set(&mut out, items);
        for (i, fragment) in self.fragments.iter().enumerate() {
            let _ = write!(out, "\nfragment F{i} on {}", fragment.on);
            render_set(&mut out, &fragment.items);
        }
        out
    }
}

fn default_page(arg: &InputValue) -> i64 {
    arg.default
        .as_deref()
        .and_then(|d| d.parse().ok())
        .unwrap_or(20)
}

fn render_set(out: &mut String, items: &[Sel]) {
    out.push_str(" {");
    for item in items {
        out.push(' ');
        match item {
            Sel::Field(field) => {
                if let Some(alias) = &field.alias {
                    let _ = write!(out, "{alias}: ");
                }
                out.push_str(&field.name);
                out.push_str(&field.args);
                for directive in &field.directives {
                    let _ = write!(out, " {directive}");
                }
                if !field.items.is_empty() {
                    render_set(out, &field.items);
                }
            }
            Sel::Spread {
                fragment,
                directives,
            } => {
                let _ = write!(out, "...F{fragment}");
                for directive in directives {
                    let _ = write!(out, " {directive}");
                }
            }
            Sel::Inline {
                on,
                directives,
                items,
            } => {
                out.push_str("...");
                if let Some(on) = on {
                    let _ = write!(out, " on {on}");
                }
                for directive in directives {
                    let _ = write!(out, " {directive}");
                }
                render_set(out, items);
            }
        }
    }
    out.push_str(" }");
}

/// Introspection fields that answer lists of objects (as the README names them).
const INTROSPECTION_LISTS: [&str; 8] = [
    "types",
    "directives",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
];

/// Measures the operation `items` (with `fragments`) by the README's rules.
fn measure(items: &[Sel], fragments: &[Fragment]) -> Shape {
    let mut shape = Shape::default();
    let mut count_written = |set: &[Sel]| {
        fn walk(set: &[Sel], shape: &mut Shape) {
            for item in set {
                match item {
                    Sel::Field(field) => {
                        shape.aliases += usize::from(field.alias.is_some());
                        shape.directives = shape.directives.max(field.directives.len());
                        walk(&field.items, shape);
                    }
                    Sel::Inline { items, .. } => walk(items, shape),
                    Sel::Spread { .. } => {}
                }
            }
        }
        walk(set, &mut shape);
    };
    count_written(items);
    for fragment in fragments {
        count_written(&fragment.items);
    }
    let mut memo = Memo::default();
    shape.nesting = nesting(items, fragments, &mut memo);
    shape.fields = expanded_fields(items, fragments, &mut memo);
    // Past any cost limit the rest cannot matter, and walking it expanded would take long.
    if shape.fields > 1_000_000 {
        return shape;
    }
    shape.depth = depth(items, fragments);
    shape.introspection = introspection(items, fragments, None);
    shape.cost = cost(items, fragments);
    shape
}

#[derive(Default)]
struct Memo {
    nesting: HashMap<usize, usize>,
    fields: HashMap<usize, u64>,
}

/// Selection sets nested below `set` (a field's selection, a spread and an inline fragment each
/// count one). Generated fragments never spread themselves.
fn nesting(set: &[Sel], fragments: &[Fragment], memo: &mut Memo) -> usize {
    set.iter()
        .map(|item| match item {
            Sel::Field(field) if field.items.is_empty() => 0,
            Sel::Field(field) => 1 + nesting(&field.items, fragments, memo),
            Sel::Inline { items, .. } => 1 + nesting(items, fragments, memo),
            Sel::Spread { fragment, .. } => {
                if let Some(&known) = memo.nesting.get(fragment) {
                    return 1 + known;
                }
                let known = nesting(&fragments[*fragment].items, fragments, memo);
                memo.nesting.insert(*fragment, known);
                1 + known
            }
        })
        .max()
        .unwrap_or(0)
}

fn expanded_fields(set: &[Sel], fragments: &[Fragment], memo: &mut Memo) -> u64 {
    set.iter()
        .map(|item| match item {
            Sel::Field(field) => {
                1u64.saturating_add(expanded_fields(&field.items, fragments, memo))
            }
            Sel::Inline { items, .. } => expanded_fields(items, fragments, memo),
            Sel::Spread { fragment, .. } => {
                if let Some(&known) = memo.fields.get(fragment) {
                    return known;
                }
                let known = expanded_fields(&fragments[*fragment].items, fragments, memo);
                memo.fields.insert(*fragment, known);
                known
            }
        })
        .fold(0u64, u64::saturating_add)
}

fn depth(set: &[Sel], fragments: &[Fragment]) -> usize {
    set.iter()
        .map(|item| match item {
            Sel::Field(field) if field.name.starts_with("__") => 0,
            Sel::Field(field) => 1 + depth(&field.items, fragments),
            Sel::Inline { items, .. } => depth(items, fragments),
            Sel::Spread { fragment, .. } => depth(&fragments[*fragment].items, fragments),
        })
        .max()
        .unwrap_or(0)
}

/// The first introspection limit broken, walking in order: a list inside itself, or more than
/// the README's lists nested.
fn introspection(
    set: &[Sel],
    fragments: &[Fragment],
    lists: Option<&[&str]>,
) -> Option<&'static str> {
    set.iter().find_map(|item| match item {
        Sel::Inline { items, .. } => introspection(items, fragments, lists),
        Sel::Spread { fragment, .. } => {
            introspection(&fragments[*fragment].items, fragments, lists)
        }
        Sel::Field(field) if field.items.is_empty() => None,
        Sel::Field(field) => {
            let name = field.name.as_str();
            let Some(lists) = lists else {
                let inside: Option<&[&str]> = matches!(name, "__schema" | "__type").then_some(&[]);
                return introspection(&field.items, fragments, inside);
            };
            if !INTROSPECTION_LISTS.contains(&name) {
                return introspection(&field.items, fragments, Some(lists));
            }
            if lists.contains(&name) {
                return Some("INTROSPECTION_CYCLE");
            }
            if lists.len() >= api::MAX_INTROSPECTION_LISTS {
                return Some("INTROSPECTION_LISTS");
            }
            let mut inner = lists.to_vec();
            inner.push(name);
            introspection(&field.items, fragments, Some(&inner))
        }
    })
}

/// The cost as the README states it: each field 1 (`__typename` nothing), and a list taking
/// `first` its page size (`first`, else its default, within 1 to 100) times what one item
/// selects, plus one.
fn cost(set: &[Sel], fragments: &[Fragment]) -> u64 {
    set.iter()
        .map(|item| match item {
            Sel::Field(field) if field.name == "__typename" => 0,
            Sel::Field(field) => {
                let inner = cost(&field.items, fragments);
                match field.page {
                    Some((first, default)) => {
                        let page = first.unwrap_or(default).clamp(1, 100) as u64;
                        page.saturating_mul(inner).saturating_add(1)
                    }
                    None => inner.saturating_add(1),
                }
            }
            Sel::Inline { items, .. } => cost(items, fragments),
            Sel::Spread { fragment, .. } => cost(&fragments[*fragment].items, fragments),
        })
        .fold(0u64, u64::saturating_add)
}

/// What the server answered one operation, as [`check`] judges it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub elapsed: Duration,
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Answered,
    Refused(&'static str),
}

/// Holds the server's answer to `operation` to the rules: a refused operation names, with a
/// stable code, the limit its shape breaks (and no other is refused before it runs); an
/// accepted one stays within the answer budget and the query timeout. `Err` says what broke.
pub fn check(
    operation: &Operation,
    answer: &Answer,
    limits: &Limits,
) -> std::result::Result<Outcome, String> {
    let context = || {
        format!(
            "{}\nvariables: {}\nshape: {:?}",
            operation.document, operation.variables, operation.shape
        )
    };
    let body: Value = serde_json::from_str(&answer.body).map_err(|_| {
        format!(
            "status {}, not JSON: {:.300}\n{}",
            answer.status,
            answer.body,
            context()
        )
    })?;
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    let refusal = errors.iter().find(|e| !e["extensions"]["limit"].is_null());
    let expected = operation.shape.refusal(limits);
    // Generous: this catches work that ignores the timeout (minutes), not a busy machine's
    // queueing (the whole suite shares two cores).
    let slack = Duration::from_secs(10);
    if answer.elapsed > limits.query_timeout + slack {
        return Err(format!(
            "answered after {:?}, past the timeout\n{}",
            answer.elapsed,
            context()
        ));
    }
    if let Some(refusal) = refusal {
        let limit = refusal["extensions"]["limit"].as_str().unwrap_or_default();
        let code = refusal["extensions"]["code"].as_str().unwrap_or_default();
        let Some(name) = api::limit_names().find(|n| *n == limit) else {
            return Err(format!(
                "refused with an unknown limit {limit:?}: {body}\n{}",
                context()
            ));
        };
        let expected_code = match name {
            "RESPONSE_SIZE" => "RESPONSE_TOO_LARGE",
            "QUERY_TIMEOUT" => "TIMEOUT",
            _ => "GRAPHQL_VALIDATION_FAILED",
        };
        if code != expected_code || errors.len() != 1 || !body["data"].is_null() {
            return Err(format!(
                "a refusal must be one error with code {expected_code} and no data: {body}\n{}",
                context()
            ));
        }
        let at_run = matches!(name, "RESPONSE_SIZE" | "QUERY_TIMEOUT");
        if at_run && expected.is_none() || Some(name) == expected {
            return Ok(Outcome::Refused(name));
        }
        return Err(format!(
            "refused by {name}, expected {expected:?}: {body}\n{}",
            context()
        ));
    }
    if let Some(expected) = expected {
        return Err(format!(
            "expected a refusal by {expected}, got {:.500}\n{}",
            answer.body,
            context()
        ));
    }
    // Field errors are fine (an id that does not exist, a `first` out of range); a refusal of
    // the document is not: it was valid.
    if let Some(error) = errors
        .iter()
        .find(|e| e["path"].as_array().is_none_or(Vec::is_empty))
    {
        return Err(format!(
            "a valid operation was refused: {error}\n{}",
            context()
        ));
    }
    if answer.body.len() > limits.max_response_bytes {
        return Err(format!(
            "an answer of {} bytes, over the budget of {}\n{}",
            answer.body.len(),
            limits.max_response_bytes,
            context()
        ));
    }
    Ok(Outcome::Answered)
}
