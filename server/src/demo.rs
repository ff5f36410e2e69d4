//! `paird serve --demo`: an organization with licenses, a configuration and a reusable code, so
//! that a new user can pair a device within a minute. Running it again reuses what exists.

use engine::model::{CodeKind, CodeStatus, CodeWithSecret, Organization, PageRequest};
use engine::{Engine, EngineError, Principal, ReusableCodeSpec};

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
            engine
                .create_organization(&operator, DEMO_ORGANIZATION, None)
                .await?
        }
    };
    let org = organization.id;
    if engine.license_summary(&operator, org).await?.total == 0 {
        engine
            .add_licenses(&operator, org, DEMO_LICENSES, None, None)
            .await?;
    }
    if engine
        .list_configurations(&operator, org, &PageRequest::first(1))
        .await?
        .items
        .is_empty()
    {
        engine
            .create_configuration(
                &operator,
                org,
                "Demo configuration",
                crate::SAMPLE_CONFIGURATION,
                None,
            )
            .await?;
    }
    let codes = engine
        .list_codes(
            &operator,
            org,
            Some(CodeKind::Reusable),
            &PageRequest::first(PageRequest::MAX_LIMIT),
        )
        .await?;
    let existing = codes.items.into_iter().find(|code| {
        code.label.as_deref() == Some(DEMO_LABEL) && code.status == CodeStatus::Active
    });
    let code = match existing {
        Some(code) => engine.show_code(&operator, org, code.id).await?,
        None => {
            let spec = ReusableCodeSpec {
                validity: None,
                max_uses: None,
                label: Some(DEMO_LABEL.into()),
            };
            engine
                .create_reusable_code(&operator, org, spec, None)
                .await?
        }
    };
    Ok(DemoSeed { organization, code })
}
