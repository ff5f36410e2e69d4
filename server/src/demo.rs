//! `paird serve --demo`: an organization with licenses, a configuration, a reusable code and a
//! key to sign in to the portal with, so that a new user can pair a device within a minute.
//! Running it again reuses what exists.

use std::path::{Path, PathBuf};

use anyhow::Context;
use engine::admin::{
    AddLicenses, CreateConfiguration, CreateKey, CreateOrganization, CreateReusableCode,
};
use engine::ids::OrgId;
use engine::model::{CodeKind, CodeStatus, CodeWithSecret, Organization, PageRequest};
use engine::query::{GetLicenseSummary, ListCodes, ListConfigurations, RevealCode};
use engine::{Engine, EngineError, Principal};

/// What the demo seeded (or found from an earlier start).
#[derive(Debug, Clone)]
pub struct DemoSeed {
    pub organization: Organization,
    pub code: CodeWithSecret,
    pub key: DemoKey,
}

/// The demo organization's key, for signing in to the portal. The API shows a key's secret only
/// when it creates it, so the demo keeps it in a file of the data directory ([`DEMO_KEY_FILE`]),
/// readable by its owner only, as the first operator token is.
#[derive(Debug, Clone)]
pub struct DemoKey {
    /// The secret, `paird_key_…`.
    pub secret: String,
    /// Whether this start created it (the file was missing, or its key no longer worked).
    pub created: bool,
    /// Where it is kept.
    pub path: PathBuf,
}

/// The file in the data directory that keeps the demo key between starts.
pub const DEMO_KEY_FILE: &str = "demo-key";
/// The name of the demo key, as the organization's key list shows it.
const DEMO_KEY_NAME: &str = "demo";

const DEMO_ORGANIZATION: &str = "Demo organization";
const DEMO_LABEL: &str = "demo";
const DEMO_LICENSES: u32 = 10;

/// Seeds (or finds) the demo organization and its code, and the key kept in `data_dir`.
pub async fn seed_demo(engine: &Engine, data_dir: &Path) -> anyhow::Result<DemoSeed> {
    let (organization, code) = seed_organization(engine)
        .await
        .map_err(|error| anyhow::anyhow!("demo data: {error}"))?;
    let key = demo_key(engine, organization.id, &data_dir.join(DEMO_KEY_FILE)).await?;
    Ok(DemoSeed {
        organization,
        code,
        key,
    })
}

async fn seed_organization(engine: &Engine) -> Result<(Organization, CodeWithSecret), EngineError> {
    let operator = Principal::Operator;
    let organizations = engine
        .list_organizations(&operator, &PageRequest::first(PageRequest::MAX_LIMIT))
        .await?;
    let organization = match organizations
        .items
        .into_iter()
        .find(|org| org.name == DEMO_ORGANIZATION)
    {
        Some(org) => org,
        None => {
            let command = CreateOrganization {
                name: DEMO_ORGANIZATION.into(),
            };
            engine.create_organization(&operator, command).await?
        }
    };
    let org = organization.id;
    if engine.query(&operator, org, GetLicenseSummary).await?.total == 0 {
        let command = AddLicenses {
            count: DEMO_LICENSES,
            valid_until: None,
        };
        engine.run(&operator, org, command).await?;
    }
    let configurations = ListConfigurations {
        page: PageRequest::first(1),
    };
    if engine
        .query(&operator, org, configurations)
        .await?
        .items
        .is_empty()
    {
        let command = CreateConfiguration {
            name: "Demo configuration".into(),
            body: crate::SAMPLE_CONFIGURATION.into(),
        };
        engine.run(&operator, org, command).await?;
    }
    let codes = ListCodes {
        kind: Some(CodeKind::Reusable),
        page: PageRequest::first(PageRequest::MAX_LIMIT),
    };
    let codes = engine.query(&operator, org, codes).await?;
    let existing = codes.items.into_iter().find(|code| {
        code.label.as_deref() == Some(DEMO_LABEL) && code.status == CodeStatus::Active
    });
    let code = match existing {
        Some(code) => {
            let reveal = RevealCode { code_id: code.id };
            engine.query(&operator, org, reveal).await?
        }
        None => {
            let command = CreateReusableCode::new(None, None, Some(DEMO_LABEL.into()));
            engine.run(&operator, org, command).await?
        }
    };
    Ok((organization, code))
}

/// The key kept in `path` while it still signs in to the demo organization; otherwise (first
/// start, file deleted, key revoked) a new key named "demo", written to `path`.
async fn demo_key(engine: &Engine, org: OrgId, path: &Path) -> anyhow::Result<DemoKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim().to_string();
            match engine.authenticate(&secret).await {
                Ok(Principal::OrgKey { org_id, .. }) if org_id == org => {
                    return Ok(DemoKey {
                        secret,
                        created: false,
                        path: path.to_path_buf(),
                    });
                }
                Ok(_) | Err(EngineError::Unauthorized) => {}
                Err(error) => return Err(anyhow::anyhow!("demo key: {error}")),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
    }
    let command = CreateKey {
        name: DEMO_KEY_NAME.into(),
        expires_at: None,
    };
    let created = engine
        .run(&Principal::Operator, org, command)
        .await
        .map_err(|error| anyhow::anyhow!("demo key: {error}"))?;
    crate::write_secret_file(path, &created.key)?;
    Ok(DemoKey {
        secret: created.key,
        created: true,
        path: path.to_path_buf(),
    })
}
