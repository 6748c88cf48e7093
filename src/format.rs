//! `--format` for `image cmd list`, `image cmd inspect` and `inspect`: the values podman's and
//! skopeo's Go templates see (their Go field names and types), built from the engine's
//! results, and the templates run on them with the engine's `gotemplate`.
//!
//! 1. [`image_rows`] renders `podman images` rows: podman's `imageReporter` fields (`ID`
//!    truncated unless `--no-trunc`, `Created`/`Size` human-readable, `CreatedAt` as Go
//!    prints a time), with a header row for `table` formats and tabwriter alignment.
//! 2. [`image_inspect`] renders `podman image inspect` objects (`{{.Id}}` read as `{{.ID}}`,
//!    as podman does).
//! 3. [`skopeo_inspect`] renders `skopeo inspect` output.

use stowage_engine::cstorage::catalog::{ImageInspect, ImageRow};
use stowage_engine::gotemplate::{
    headers_for, normalize_format, tabwrite, Data, Field, Shape, Struct, Template, TemplateError,
};
use stowage_engine::inspect::InspectOutput;

/// `podman images`' default table (`--digests` adds the DIGEST column; `read_only`, when a
/// listed image comes from a read-only additional image store, the R/O column, as podman 4.3).
pub fn default_images_format(digests: bool, read_only: bool) -> String {
    let mut f = String::from("table {{.Repository}}\t{{.Tag}}");
    if digests {
        f.push_str("\t{{.Digest}}");
    }
    f.push_str("\t{{.ID}}\t{{.Created}}\t{{.Size}}");
    if read_only {
        f.push_str("\t{{.ReadOnly}}");
    }
    f
}

/// The fields podman's images table can name in a header (its `imageReporter` struct's
/// fields; methods such as `CreatedAt` print `<no value>` there, as in podman).
const IMAGE_HEADER_FIELDS: [&str; 17] = [
    "Repository",
    "Tag",
    "ID",
    "ParentId",
    "RepoTags",
    "RepoDigests",
    "Created",
    "Size",
    "SharedSize",
    "VirtualSize",
    "Labels",
    "Containers",
    "ReadOnly",
    "Dangling",
    "Names",
    "Digest",
    "History",
];

fn strs(v: &[String]) -> Data {
    Data::List(v.iter().cloned().map(Data::Str).collect())
}

/// One `podman images` row as podman's template sees it.
fn image_row(row: &ImageRow, no_trunc: bool, now: i64) -> Data {
    let s = &row.summary;
    let id = if no_trunc {
        format!("sha256:{}", s.id)
    } else {
        s.id[..s.id.len().min(12)].to_string()
    };
    let created_human = format!("{} ago", crate::table::human_duration(now - s.created));
    let created_at = stowage_engine::gotemplate::go_time_unix(s.created);
    let labels = s
        .labels
        .as_ref()
        .map(|l| Data::any(&serde_json::Value::Object(l.clone())))
        .unwrap_or(Data::NilMap);
    let tags: Vec<String> = s
        .names
        .iter()
        .filter(|n| !n.contains('@'))
        .cloned()
        .collect();
    let f = |n: &str, d: Data| (n.to_string(), d);
    Data::Struct(Struct {
        type_name: "images.imageReporter".into(),
        fields: vec![
            f("Repository", Data::Str(row.repository.clone())),
            f("Tag", Data::Str(row.tag.clone())),
            f("ID", Data::Str(id)),
            f("ParentId", Data::Str(s.parent_id.clone())),
            f("RepoTags", strs(&tags)),
            f("RepoDigests", strs(&s.repo_digests)),
            f("Created", Data::Str(created_human.clone())),
            f("Size", Data::Str(crate::table::human_size(s.size as f64))),
            f("SharedSize", Data::Int(s.shared_size)),
            f("VirtualSize", Data::Int(s.virtual_size)),
            f("Labels", labels),
            f("Containers", Data::Int(s.containers as i64)),
            f("ReadOnly", Data::Bool(s.read_only)),
            f("Dangling", Data::Bool(s.dangling)),
            f("Names", strs(&s.names)),
            f("Digest", Data::Str(s.digest.clone())),
            f("History", Data::Str(s.history.join(", "))),
            f("CreatedAt", Data::Str(created_at.clone())),
            f("CreatedSince", Data::Str(created_human)),
            f("CreatedTime", Data::Str(created_at)),
            f("IsReadOnly", Data::Bool(s.read_only)),
        ],
        json: serde_json::to_value(s).ok(),
    })
}

/// A user's format as podman runs it: a newline after each item unless it ends with one.
fn with_newline(mut f: String) -> String {
    if !f.ends_with('\n') {
        f.push('\n');
    }
    f
}

/// `podman images --format FORMAT` (not JSON) of `rows`; `noheading` leaves out a table's
/// header row.
pub fn image_rows(
    format: &str,
    rows: &[ImageRow],
    no_trunc: bool,
    noheading: bool,
) -> Result<String, TemplateError> {
    let (text, table) = normalize_format(format);
    let t = Template::parse("images", &with_newline(text), 11)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut out = String::new();
    if table && !noheading {
        out.push_str(&t.execute(&headers_for(
            &IMAGE_HEADER_FIELDS,
            &[("ID", "IMAGE ID"), ("ReadOnly", "R/O")],
        ))?);
    }
    for r in rows {
        out.push_str(&t.execute(&image_row(r, no_trunc, now))?);
    }
    Ok(if table { tabwrite(&out, 12, 2) } else { out })
}

static LIST_STR: Shape = Shape::List(&Shape::Str);
static IMAGE_CONFIG: Shape = Shape::Struct {
    type_name: "*v1.ImageConfig",
    fields: &[
        Field::named("User", &Shape::Str),
        Field::named("ExposedPorts", &Shape::Map),
        Field::named("Env", &LIST_STR),
        Field::named("Entrypoint", &LIST_STR),
        Field::named("Cmd", &LIST_STR),
        Field::named("Volumes", &Shape::Map),
        Field::named("WorkingDir", &Shape::Str),
        Field::named("Labels", &Shape::Map),
        Field::named("StopSignal", &Shape::Str),
        Field::named("ArgsEscaped", &Shape::Bool),
    ],
};
static HISTORY: Shape = Shape::List(&Shape::Struct {
    type_name: "v1.History",
    fields: &[
        Field::new("Created", "created", &Shape::Time),
        Field::new("CreatedBy", "created_by", &Shape::Str),
        Field::new("Author", "author", &Shape::Str),
        Field::new("Comment", "comment", &Shape::Str),
        Field::new("EmptyLayer", "empty_layer", &Shape::Bool),
    ],
});
/// podman's `inspect.ImageData`.
static IMAGE_DATA: Shape = Shape::Struct {
    type_name: "interface {}",
    fields: &[
        Field::new("ID", "Id", &Shape::Str),
        Field::named("Digest", &Shape::Str),
        Field::named("RepoTags", &LIST_STR),
        Field::named("RepoDigests", &LIST_STR),
        Field::named("Parent", &Shape::Str),
        Field::named("Comment", &Shape::Str),
        Field::named("Created", &Shape::Time),
        Field::named("Config", &IMAGE_CONFIG),
        Field::named("Version", &Shape::Str),
        Field::named("Author", &Shape::Str),
        Field::named("Architecture", &Shape::Str),
        Field::named("Os", &Shape::Str),
        Field::named("Size", &Shape::Int),
        Field::named("VirtualSize", &Shape::Int),
        Field::named(
            "GraphDriver",
            &Shape::Struct {
                type_name: "*define.DriverData",
                fields: &[
                    Field::named("Name", &Shape::Str),
                    Field::named("Data", &Shape::Map),
                ],
            },
        ),
        Field::named(
            "RootFS",
            &Shape::Struct {
                type_name: "*inspect.RootFS",
                fields: &[
                    Field::named("Type", &Shape::Str),
                    Field::named("Layers", &LIST_STR),
                ],
            },
        ),
        Field::named("Labels", &Shape::Map),
        Field::named("Annotations", &Shape::Map),
        Field::named("ManifestType", &Shape::Str),
        Field::named("User", &Shape::Str),
        Field::named("History", &HISTORY),
        Field::named("NamesHistory", &LIST_STR),
        Field::new("HealthCheck", "Healthcheck", &Shape::Any),
    ],
};

/// podman's `inspectNormalize` for images: `{{.Id}}` (spaces allowed inside the braces) is
/// `{{.ID}}`, `.Config.Healthcheck` is `.HealthCheck`.
fn inspect_normalize(format: &str) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let inner = after.trim_start();
        if let Some(tail) = inner.strip_prefix(".Id") {
            let t = tail.trim_start();
            if let Some(end) = t.strip_prefix("}}") {
                out.push_str("{{.ID}}");
                rest = end;
                continue;
            }
        }
        out.push_str("{{");
        rest = after;
    }
    out.push_str(rest);
    out.replace(".Config.Healthcheck", ".HealthCheck")
}

/// `podman image inspect --format FORMAT` (not JSON) of `images`.
pub fn image_inspect(format: &str, images: &[ImageInspect]) -> Result<String, TemplateError> {
    let f = inspect_normalize(format);
    let f = f.strip_prefix("table ").unwrap_or(&f).replace("\\t", "\t");
    let t = Template::parse("inspect", &with_newline(f), 11)?;
    let mut out = String::new();
    for i in images {
        let v = serde_json::to_value(i).map_err(|e| TemplateError(e.to_string()))?;
        out.push_str(&t.execute(&Data::from_json(&v, &IMAGE_DATA))?);
    }
    Ok(out)
}

/// skopeo's inspect output.
static SKOPEO_INSPECT: Shape = Shape::Struct {
    type_name: "interface {}",
    fields: &[
        Field::named("Name", &Shape::Str),
        Field::named("Digest", &Shape::Str),
        Field::named("RepoTags", &LIST_STR),
        Field::named("Created", &Shape::Time),
        Field::named("DockerVersion", &Shape::Str),
        Field::named("Labels", &Shape::Map),
        Field::named("Architecture", &Shape::Str),
        Field::named("Variant", &Shape::Str),
        Field::named("Os", &Shape::Str),
        Field::named("Layers", &LIST_STR),
        Field::named(
            "LayersData",
            &Shape::List(&Shape::Struct {
                type_name: "types.ImageInspectLayer",
                fields: &[
                    Field::named("MIMEType", &Shape::Str),
                    Field::named("Digest", &Shape::Str),
                    Field::named("Size", &Shape::Int),
                    Field::named("Annotations", &Shape::Map),
                ],
            }),
        ),
        Field::named("Env", &LIST_STR),
    ],
};

/// `skopeo inspect --format FORMAT` (not JSON) of `summary`.
pub fn skopeo_inspect(format: &str, summary: &InspectOutput) -> Result<String, TemplateError> {
    let t = Template::parse(
        "skopeo inspect",
        &with_newline(format.replace("\\t", "\t")),
        12,
    )?;
    let v = serde_json::to_value(summary).map_err(|e| TemplateError(e.to_string()))?;
    t.execute(&Data::from_json(&v, &SKOPEO_INSPECT))
}

#[cfg(test)]
mod tests {
    use super::inspect_normalize;

    #[test]
    fn id_is_read_as_podman_reads_it() {
        assert_eq!(inspect_normalize("{{ .Id }} {{.Id}}x"), "{{.ID}} {{.ID}}x");
        assert_eq!(inspect_normalize("{{.Ids}}"), "{{.Ids}}");
        assert_eq!(
            inspect_normalize("{{.Config.Healthcheck}}"),
            "{{.HealthCheck}}"
        );
    }
}
