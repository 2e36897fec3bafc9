//! The Azure templates and the Functions app, checked for the classes of
//! mistake that make a deployment fail (no Bicep compiler runs here; each
//! rule cites the documentation it comes from, see docs/deploy.md):
//!
//! - `utcNow()` anywhere but a parameter's default value (Bicep error
//!   BCP065);
//! - site properties and app settings that Flex Consumption refuses
//!   (ARM error 51021, "Flex Consumption plan deprecations");
//! - Kafka functions sharing a consumer group (on Flex each function scales
//!   on its own: one scaling would rebalance every function of the group);
//! - a Kafka extension that commits the offsets of a failed invocation
//!   (`commitOnFailure` defaults to true);
//! - account keys for Cosmos DB (local auth must be off; the app and its
//!   triggers use their identity), and an app that could start before its
//!   roles exist;
//! - profiles that would change an Event Hubs Standard partition count
//!   (fixed when a hub is created), or scale past a region's Flex
//!   Consumption memory quota (512,000 MB per subscription);
//! - Key Vault references that ARM could resolve before their secret exists.
//!
//! The AWS template (SAM) is linted by cfn-lint in `scripts/test`; here it is
//! checked against the code: its tables are the store's, its handlers the
//! binary's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Bicep file under infra/, with its lines that are code (not comments).
fn bicep() -> BTreeMap<String, Vec<String>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root().join("infra")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("infra/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "bicep") {
                let text = std::fs::read_to_string(&path).expect("a Bicep file");
                let code = text.lines().filter(|l| !l.trim_start().starts_with("//")).map(String::from).collect();
                files.insert(path.strip_prefix(root()).unwrap_or(&path).display().to_string(), code);
            }
        }
    }
    files
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("a JSON file")).expect("valid JSON")
}

#[test]
fn utc_now_is_only_a_parameter_default() {
    for (file, lines) in bicep() {
        for line in lines.iter().filter(|l| l.contains("utcNow(")) {
            let default = line.trim_start().starts_with("param ") && line.contains("= utcNow(");
            assert!(default, "{file}: utcNow() outside a parameter default: {line}");
        }
    }
}

/// What Flex Consumption sites refuse or ignore: site configuration
/// (`Site.SiteConfig.FtpsState` and others, ARM error 51021) and app
/// settings replaced by `functionAppConfig`.
const REFUSED_BY_FLEX: [&str; 18] = [
    "ftpsState",
    "use32BitWorkerProcess",
    "alwaysOn",
    "linuxFxVersion",
    "windowsFxVersion",
    "netFrameworkVersion",
    "javaVersion",
    "powerShellVersion",
    "functionsRuntimeScaleMonitoringEnabled",
    "preWarmedInstanceCount",
    "functionAppScaleLimit",
    "containerSize",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_NODE_DEFAULT_VERSION",
];

#[test]
fn the_function_app_uses_nothing_flex_consumption_refuses() {
    let files = bicep();
    let app = files.get("infra/modules/functionapp.bicep").expect("the Function App's template");
    for line in app {
        let lower = line.to_ascii_lowercase();
        for refused in REFUSED_BY_FLEX {
            assert!(!lower.contains(&refused.to_ascii_lowercase()), "Flex Consumption refuses {refused}: {line}");
        }
    }
    let text = app.join("\n");
    assert!(text.contains("runtime: { name: 'custom'"), "a custom handler, declared in functionAppConfig.runtime");
}

/// Every function of the app: (name, function.json).
fn functions() -> Vec<(String, Value)> {
    let mut functions = Vec::new();
    for entry in std::fs::read_dir(root().join("functions")).expect("functions/") {
        let dir = entry.expect("entry").path();
        let name = dir.file_name().and_then(|n| n.to_str()).expect("a name").to_string();
        functions.push((name, json(&dir.join("function.json"))));
    }
    functions
}

#[test]
fn each_kafka_function_has_a_consumer_group_of_its_own() {
    let settings = json(&root().join("local.settings.json"));
    let app = bicep().remove("infra/modules/functionapp.bicep").expect("the template").join("\n");
    let mut groups = BTreeSet::new();
    let mut kafka_functions = 0;
    for (name, function) in functions() {
        let bindings = function["bindings"].as_array().cloned().unwrap_or_default();
        for trigger in bindings.iter().filter(|b| b["type"] == "kafkaTrigger") {
            kafka_functions += 1;
            let group = trigger["consumerGroup"].as_str().expect("a consumer group");
            let setting = group.trim_matches('%');
            let value = settings["Values"][setting].as_str().unwrap_or_default().to_string();
            assert!(groups.insert(value.clone()), "{name}: consumer group {value:?} is shared");
            assert!(app.contains(&format!("name: '{setting}'")), "{name}: infra sets {setting}");
        }
    }
    assert_eq!(kafka_functions, 3);
}

#[test]
fn a_failed_kafka_invocation_never_commits_its_offsets() {
    let host = json(&root().join("host.json"));
    assert_eq!(host["extensions"]["kafka"]["commitOnFailure"], false, "the extension's default commits them");
    for (name, function) in functions() {
        let kafka = function["bindings"].as_array().into_iter().flatten().any(|b| b["type"] == "kafkaTrigger");
        if kafka {
            assert_eq!(function["retry"]["maxRetryCount"], -1, "{name}: retried until it succeeds");
        }
    }
}

#[test]
fn cosmos_db_is_reached_by_identity_only_and_roles_come_first() {
    let files = bicep();
    let cosmos = files.get("infra/modules/cosmos.bicep").expect("the account").join("\n");
    assert!(cosmos.contains("disableLocalAuth: true"), "keys disabled on the account");
    for (file, lines) in &files {
        for line in lines {
            assert!(!line.contains("AccountKey"), "{file}: an account key: {line}");
            assert!(!(line.contains("cosmos") && line.contains("listKeys()")), "{file}: an account key: {line}");
        }
    }
    let app = files.get("infra/modules/functionapp.bicep").expect("the app").join("\n");
    for setting in
        ["CosmosDBConnection__accountEndpoint", "CosmosDBConnection__credential", "CosmosDBConnection__clientId"]
    {
        assert!(app.contains(setting), "the identity-based connection sets {setting}");
    }
    assert!(
        app.contains("'Microsoft.ManagedIdentity/userAssignedIdentities"),
        "an identity that exists before the app"
    );
    assert!(app.contains("dependsOn: [storageRoles, vaultRole, insightsRole, cosmosDataRole]"), "roles before the app");
}

#[test]
fn every_profile_keeps_the_partition_count_event_hubs_standard_cannot_change() {
    let main = bicep().remove("infra/main.bicep").expect("main.bicep");
    let counts: BTreeSet<&str> = main
        .iter()
        .filter_map(|line| line.split("kafkaPartitions:").nth(1))
        .map(|rest| rest.split(',').next().unwrap_or_default().trim())
        .collect();
    assert_eq!(counts.len(), 1, "one partition count for every profile: {counts:?}");
}

#[test]
fn the_cost_model_prices_the_profiles_the_template_deploys() {
    let main = bicep().remove("infra/main.bicep").expect("main.bicep").join("\n");
    let model = std::fs::read_to_string(root().join("src/cost/model.rs")).expect("the cost model");
    // The numbers after each `marker`, in order (Rust's `40_000.0` too).
    let numbers = |text: &str, marker: &str| -> Vec<f64> {
        text.split(marker)
            .skip(1)
            .filter_map(|rest| rest.trim_start().split(|c: char| !c.is_ascii_digit() && c != '_' && c != '.').next())
            .filter_map(|number| number.replace('_', "").trim_end_matches('.').parse().ok())
            .collect()
    };
    let deployed = numbers(&main, "cosmosMaxThroughput:");
    assert_eq!(deployed.len(), 3, "{deployed:?}");
    assert_eq!(deployed[1..], numbers(&model, "autoscale_max: Some(")[..], "autoscale maxima (small is serverless)");
    let memory: Vec<f64> = numbers(&model, "instance_gb:").iter().map(|gb| gb * 1024.0).collect();
    assert_eq!(numbers(&main, "instanceMemoryMB:")[..3], memory[..], "instance memory of each profile");
}

#[test]
fn every_profile_fits_a_regions_flex_consumption_memory_quota() {
    const REGION_QUOTA_MB: u64 = 512_000;
    let main = bicep().remove("infra/main.bicep").expect("main.bicep");
    let setting = |line: &str, name: &str| -> Option<u64> {
        let rest = line.split(&format!("{name}:")).nth(1)?;
        rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let profiles: Vec<(u64, u64)> = main
        .iter()
        .filter_map(|line| Some((setting(line, "maximumInstanceCount")?, setting(line, "instanceMemoryMB")?)))
        .collect();
    assert_eq!(profiles.len(), 3, "{profiles:?}");
    for (instances, memory) in profiles {
        assert!(instances * memory <= REGION_QUOTA_MB, "{instances} instances of {memory} MB exceed the quota");
    }
}

#[test]
fn key_vault_references_name_their_secret_resource() {
    // A reference built from the secret resource's URI makes ARM create the
    // secret before the app; one built from the vault's name does not, and
    // the app would keep the unresolved reference as its setting for a day.
    for (file, lines) in bicep() {
        for line in lines.iter().filter(|l| l.contains("@Microsoft.KeyVault(")) {
            assert!(line.contains(".properties.secretUri"), "{file}: {line}");
        }
    }
}

#[test]
fn the_template_has_every_container_the_code_uses_indexed_as_it_queries() {
    let cosmos = bicep().remove("infra/modules/cosmos.bicep").expect("the account");
    for container in &orderflow_store_cosmos::CONTAINERS {
        let line = cosmos
            .iter()
            .find(|line| line.contains(&format!("name: '{}'", container.name)))
            .unwrap_or_else(|| panic!("container {} is missing from the template", container.name));
        assert!(line.contains(&format!("partitionKey: '{}'", container.partition_key)), "{line}");
        for path in container.indexed {
            assert!(line.contains(&format!("{{ path: '{path}' }}")), "{} indexes {path}: {line}", container.name);
        }
        assert!(line.contains(&format!("expiring: {}", container.expiring)), "{line}");
    }
}

/// The AWS template (cfn-lint checks it is valid CloudFormation, in
/// `scripts/test`): it creates the tables `orderflow init` creates, and each
/// function's handler names steps the binary runs — every one of them.
#[test]
fn the_aws_template_has_the_stores_tables_and_every_lambda_handler() {
    let template = std::fs::read_to_string(root().join("infra/aws/template.yaml")).expect("the AWS template");
    let tables = orderflow_store_dynamodb::Tables::new("${TablePrefix}");
    let named: BTreeSet<&str> = template
        .lines()
        .filter_map(|line| line.trim().strip_prefix("TableName: !Sub "))
        .map(|n| n.trim_matches('"'))
        .collect();
    let expected: BTreeSet<&str> = tables.all().iter().map(|name| name.as_str()).collect();
    assert_eq!(named, expected, "the template's tables are the store's");

    // A function may run several change-feed steps: "Handler: a,b".
    let handlers: BTreeSet<&str> = template
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Handler: "))
        .flat_map(|handler| handler.split(','))
        .collect();
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .args(["lambda", "--help"])
        .output()
        .expect("orderflow lambda --help");
    let help = String::from_utf8_lossy(&help.stdout);
    // Listed as "- name: what it does" under "Possible values:".
    let runs: BTreeSet<&str> = help
        .lines()
        .skip_while(|line| !line.contains("Possible values:"))
        .skip(1)
        .map_while(|line| line.trim().strip_prefix("- "))
        .map(|value| value.split(':').next().unwrap_or_default().trim())
        .collect();
    assert_eq!(handlers, runs, "every handler the binary runs has its function, and no other: {help}");
}
