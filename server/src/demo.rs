//! `paird serve --demo`: an organization with licenses, a configuration and a reusable code, so
//! that a new user can pair a device within a minute. Running it again reuses what exists.

use engine::admin::{AddLicenses, CreateConfiguration, CreateOrganization, CreateReusableCode};
use engine::model::{CodeKind, CodeStatus, CodeWithSecret, Organization, PageRequest};
use engine::query::{GetLicenseSummary, ListCodes, ListConfigurations, RevealCode};
use engine::{Engine, EngineError, Principal};

/// What the demo seeded (or found from an earlier start).
#[derive(Debug, Clone)]
pub struct DemoSeed {
    pub organization: Organization,
    pub code: CodeWithSecret,
}

const DEMO_ORGANIZATION: &str = "Demo organization";
const DEMO_LABEL: &str = "demo";
const DEMO_LICENSES: u32 = 10;

pub async fn seed_demo(engine: &Engine) -> Result<DemoSeed, EngineError> {
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
    Ok(DemoSeed { organization, code })
}
