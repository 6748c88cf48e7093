//! The evaluator against outputs podman 4.3 and skopeo 1.9 printed for the same templates
//! (captured from the real tools; the integration tests compare with them live).

use serde_json::json;

use super::*;

static LIST_STR: Shape = Shape::List(&Shape::Str);
static CONFIG: Shape = Shape::Struct {
    type_name: "*v1.ImageConfig",
    fields: &[
        Field::named("User", &Shape::Str),
        Field::named("Env", &LIST_STR),
        Field::named("Labels", &Shape::Map),
    ],
};
static TOP: Shape = Shape::Struct {
    type_name: "interface {}",
    fields: &[
        Field::new("ID", "Id", &Shape::Str),
        Field::named("RepoTags", &LIST_STR),
        Field::named("Created", &Shape::Time),
        Field::named("Size", &Shape::Int),
        Field::named("Config", &CONFIG),
        Field::named("Annotations", &Shape::Map),
    ],
};

fn data() -> Data {
    Data::from_json(
        &json!({
            "Id": "5b35",
            "RepoTags": ["localhost/basic:1", "quay.io/example/basic:latest"],
            "Created": "2024-01-02T03:04:05Z",
            "Size": 13104,
            "Config": {"Env": ["A=1", "B=2"], "Labels": {"z": "1", "a": "<&>"}},
        }),
        &TOP,
    )
}

fn run(t: &str) -> Result<String, TemplateError> {
    Template::parse("inspect", t, 11)?.execute(&data())
}

#[test]
fn fields_and_values_print_as_go_does() {
    assert_eq!(run("{{.ID}}").unwrap(), "5b35");
    assert_eq!(
        run("{{.RepoTags}}").unwrap(),
        "[localhost/basic:1 quay.io/example/basic:latest]"
    );
    assert_eq!(run("{{.Config.Labels}}").unwrap(), "map[a:<&> z:1]");
    assert_eq!(run("{{.Annotations}}").unwrap(), "map[]");
    assert_eq!(
        run("{{.Created}}").unwrap(),
        "2024-01-02 03:04:05 +0000 UTC"
    );
    assert_eq!(run("{{.Config}}").unwrap(), "{ [A=1 B=2] map[a:<&> z:1]}");
    assert_eq!(run("{{.Config.Labels.nope}}").unwrap(), "<no value>");
    assert_eq!(
        run(r#"{{index .Config.Labels "z"}}|{{index .Config.Labels "nope"}}|"#).unwrap(),
        "1||"
    );
    assert_eq!(
        run("{{json .Config.Labels}}").unwrap(),
        r#"{"a":"<&>","z":"1"}"#
    );
    assert_eq!(
        run("{{json .Created}}").unwrap(),
        r#""2024-01-02T03:04:05Z""#
    );
}

#[test]
fn control_structures_and_functions() {
    assert_eq!(
        run("{{range .RepoTags}}<{{.}}>{{end}}").unwrap(),
        "<localhost/basic:1><quay.io/example/basic:latest>"
    );
    assert_eq!(
        run("{{range $i, $t := .RepoTags}}{{$i}}={{$t}} {{end}}").unwrap(),
        "0=localhost/basic:1 1=quay.io/example/basic:latest "
    );
    assert_eq!(
        run("{{if .Annotations}}yes{{else}}no{{end}}").unwrap(),
        "no"
    );
    assert_eq!(
        run("{{if .Annotations}}a{{else if .Size}}s{{else}}n{{end}}").unwrap(),
        "s"
    );
    assert_eq!(
        run("{{with .Config}}{{.User}}|{{len .Env}}{{end}}").unwrap(),
        "|2"
    );
    assert_eq!(
        run(r#"{{printf "%s-%d|%-6s|%5d" .ID .Size "ab" 42}}"#).unwrap(),
        "5b35-13104|ab    |   42"
    );
    assert_eq!(
        run(r#"{{join .Config.Env ","}} {{.ID | upper}}"#).unwrap(),
        "A=1,B=2 5B35"
    );
    assert_eq!(
        run(r#"{{if eq .ID "5b35"}}same{{end}} {{len .RepoTags | printf "%d tags"}}"#).unwrap(),
        "same 2 tags"
    );
    assert_eq!(
        run("a {{- /* note */ -}} b\n{{- .ID -}}\n c").unwrap(),
        "ab5b35c"
    );
    assert_eq!(run("{{$x := .Size}}{{$x}}").unwrap(), "13104");
}

#[test]
fn unknown_fields_are_podmans_error() {
    assert_eq!(
        run("{{.Foo}}").unwrap_err().0,
        r#"template: inspect:1:13: executing "inspect" at <.Foo>: can't evaluate field Foo in type interface {}"#
    );
    assert_eq!(
        run("{{.Config.Foo}}").unwrap_err().0,
        r#"template: inspect:1:20: executing "inspect" at <.Config.Foo>: can't evaluate field Foo in type *v1.ImageConfig"#
    );
    assert!(run("{{.ID").is_err());
    assert!(run("{{if .ID}}x").is_err());
    assert!(run("{{nosuch .ID}}")
        .unwrap_err()
        .0
        .contains("function \"nosuch\" not defined"));
}

#[test]
fn tables_align_as_tabwriter() {
    let t = "IMAGE ID\tREPOSITORY\tTAG\n5b359747aa37\tlocalhost/basic\t1\n5b359747aa37\tquay.io/example/basic\tlatest\n";
    assert_eq!(
        tabwrite(t, 12, 2),
        "IMAGE ID      REPOSITORY             TAG\n5b359747aa37  localhost/basic        1\n5b359747aa37  quay.io/example/basic  latest\n"
    );
    assert_eq!(header_for("RepoDigests", &[]), "REPO DIGESTS");
    assert_eq!(header_for("ParentId", &[]), "PARENT ID");
    assert_eq!(header_for("ID", &[("ID", "IMAGE ID")]), "IMAGE ID");
    assert_eq!(
        normalize_format("table {{.ID}} {{.Tag}}\\t{{.Size}}"),
        ("{{.ID}}\t{{.Tag}}\t{{.Size}}".to_string(), true)
    );
    assert!(
        is_json_format("{{ json . }}")
            && is_json_format("json")
            && !is_json_format("{{json .Config}}")
    );
}
